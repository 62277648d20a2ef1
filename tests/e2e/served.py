"""`koding-iam serve` as a real child process, against a moto server for IAM and the Slack stand-in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer

from bot.devtools import strict_iam
from bot.devtools.driver import SlackDriver
from bot.devtools.sandbox import FAKE_AWS_ENV, SIGNING_SECRET, install_managed_policies, profile_policy_arns
from bot.devtools.slack_standin import SlackStandIn
from bot.metrics import LOOPS

BOT_TOKEN = "xoxb-served-process"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    strict_iam.install()  # the server shares this process's moto backends, so the strict rules apply to it too
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its state per Python process, not per server: start every test from an empty account.
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10).close()  # noqa: S310
    install_managed_policies(profile_policy_arns())
    try:
        yield url
    finally:
        server.stop()


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def serve_env(*, database_url: str, slack: SlackStandIn, aws_endpoint: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KODING_IAM_", "AWS_"))}
    env.update(FAKE_AWS_ENV)
    env.update(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "DATABASE_URL": database_url,
            "AWS_ENDPOINT_URL": aws_endpoint,
            "KODING_IAM_ADMINS": "UADMIN1,UADMIN2",
            "PORT": str(port),
            # A test ends its process with SIGTERM: a short drain keeps a teardown with work still held quick.
            "KODING_IAM_DRAIN_SECONDS": "5",
            **extra,
        }
    )
    return env


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    driver: SlackDriver
    log_path: str

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8") as handle:
            return handle.read()

    def _counter(self, sample: str) -> int:
        """One sample of this process's GET /metrics, 0 while it has none."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as answer:  # noqa: S310
            text = answer.read().decode()
        prefix = sample + " "
        return next((int(float(line.removeprefix(prefix))) for line in text.splitlines() if line.startswith(prefix)), 0)

    def job_runs(self, job: str) -> int:
        """How many runs of a scheduled job this process has finished: the visible tick counter
        (koding_iam_job_duration_seconds_count on GET /metrics)."""
        return self._counter(f'koding_iam_job_duration_seconds_count{{job="{job}"}}')

    def looks(self, loop: str) -> int:
        """How many times this process's worker or outbox sender looked in the database for work."""
        return self._counter(f'koding_iam_looks_total{{loop="{loop}"}}')

    def wait_for_ticks(self, job: str, more: int = 1, timeout: float = 30.0) -> None:
        """Wait until the job has run `more` more times than now: what was due has been looked at again."""
        self._wait({job: lambda: self.job_runs(job)}, more, timeout)

    def wait_for_looks(self, more: int = 2, timeout: float = 30.0) -> None:
        """Wait until the worker and the outbox sender have each looked for work `more` more times: a run or a
        message still due by then would have been taken. Two, because a look under way may have begun earlier."""
        self._wait({loop: lambda loop=loop: self.looks(loop) for loop in LOOPS}, more, timeout)

    @staticmethod
    def _wait(counters: dict[str, Callable[[], int]], more: int, timeout: float) -> None:
        goals = {name: read() + more for name, read in counters.items()}
        deadline = time.monotonic() + timeout
        while behind := [name for name, read in counters.items() if read() < goals[name]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{', '.join(behind)} did not tick {more} more time(s) within {timeout} s")
            time.sleep(0.05)


def wait_healthy(url: str, process: subprocess.Popen[Any], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"koding-iam serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise AssertionError("koding-iam serve did not become healthy")


@contextmanager
def serve(env: dict[str, str], slack: SlackStandIn, log_path: str) -> Iterator[Served]:
    port = int(env["PORT"])
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield Served(process, url, SlackDriver(url + "/slack/events", SIGNING_SECRET, slack), log_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
