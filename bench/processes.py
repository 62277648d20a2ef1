"""Child processes of a benchmark run (the stand-ins, `koding-iam serve`, the bare Bolt floor), the database
they share, and the measurements taken from outside a process: start-up time and resident memory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.devtools.sandbox import FAKE_AWS_ENV, SIGNING_SECRET

BOT_TOKEN = "xoxb-bench-token"  # noqa: S105 - the local Slack stand-in's token, not a credential
ADMINS = ("UADMIN1", "UADMIN2")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
SERVE_COMMAND = (sys.executable, "-m", "bot.cli", "serve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB: psutil when installed, else /proc/<pid>/status (VmRSS)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process(pid).memory_info().rss) / 1024 / 1024
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, *, reaped: bool = False) -> float | None:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat); with `reaped`, also that of its
    children which have exited and been waited for (cutime, cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / tick, sum(values) / tick


def postgres_cpu_seconds() -> float | None:
    """CPU time used so far by every local PostgreSQL process (server and connection backends), those that have
    exited included: the server reaps each connection's backend, whose time then counts in its own cutime and
    cstime. Without them, a connection that closed during a window took its CPU with it (negative figures)."""
    total, found = 0.0, False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        used = cpu_seconds(int(proc.name), reaped=True)
        if used is not None:
            total, found = total + used, True
    return total if found else None


class CpuMeter:
    """CPU used by some processes (and the whole machine) between start() and stop(), as % of one core."""

    def __init__(self, pids: dict[str, int], *, postgres: bool = False) -> None:
        self.sources: dict[str, Callable[[], float | None]] = {
            name: (lambda pid=pid: cpu_seconds(pid)) for name, pid in pids.items()
        }
        if postgres:
            self.sources["PostgreSQL"] = postgres_cpu_seconds
        self._start: dict[str, float | None] = {}
        self._machine: tuple[float, float] | None = None
        self._began = 0.0

    def start(self) -> CpuMeter:
        self._start = {name: read() for name, read in self.sources.items()}
        self._machine = machine_busy()
        self._began = time.perf_counter()
        return self

    def stop(self) -> dict[str, float | None]:
        wall = max(time.perf_counter() - self._began, 1e-9)
        out: dict[str, float | None] = {}
        for name, read in self.sources.items():
            before, after = self._start.get(name), read()
            out[name] = None if before is None or after is None else round(100 * (after - before) / wall, 1)
        now = machine_busy()
        if self._machine and now and now[1] > self._machine[1]:
            busy = (now[0] - self._machine[0]) / (now[1] - self._machine[1])
            cores = os.cpu_count() or 1
            known = sum(v for v in out.values() if v is not None)
            out["everything else"] = round(max(0.0, 100 * busy * cores - known), 1)
            out[f"whole machine (% of all {cores} cores)"] = round(100 * busy, 1)
        return out


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - local URLs only
        return json.loads(answer.read() or b"null")


def wait_healthy(url: str, process: subprocess.Popen[Any], timeout: float = 60.0) -> float:
    """Seconds from now until GET /healthz answers 200; polls every 10 ms."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before answering /healthz")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return time.perf_counter() - started
        except (OSError, urllib.error.URLError):
            time.sleep(0.01)
    raise RuntimeError(f"{url}/healthz did not answer 200 within {timeout:.0f}s")


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


# Database ----------------------------------------------------------------------------------------------------
def postgres_reachable(url: str) -> bool:
    from sqlalchemy import create_engine, text

    from bot.config import normalise_database_url

    engine = create_engine(normalise_database_url(url), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


@contextlib.contextmanager
def database(requested: str | None, workdir: Path) -> Iterator[str]:
    """A migrated, empty database: a throwaway schema on PostgreSQL (bot.devtools.pg), else a SQLite file; both
    migrated by the sandbox's `migrate`, as the tests' databases are.

    `requested` is a URL, "sqlite", or None for: $BENCH_DATABASE_URL, else PostgreSQL at the default address
    when it answers, else SQLite.
    """
    from bot.devtools.pg import throwaway_schema
    from bot.devtools.sandbox import migrate

    requested = requested or os.environ.get("BENCH_DATABASE_URL")
    if requested is None:
        requested = DEFAULT_POSTGRES if postgres_reachable(DEFAULT_POSTGRES) else "sqlite"
    if requested == "sqlite" or requested.startswith("sqlite"):
        url = requested if requested.startswith("sqlite:") else f"sqlite:///{workdir / 'bench.db'}"
        migrate(url)
        yield url
        return
    with throwaway_schema(requested, prefix="bench") as url:
        migrate(url)
        yield url


# Stand-ins ---------------------------------------------------------------------------------------------------
@dataclass
class Backends:
    process: subprocess.Popen[str]
    aws: str
    slack: str
    control: str

    def stats(self) -> dict[str, Any]:
        return get_json(self.control + "stats")

    def view(self, trigger_id: str) -> dict[str, Any] | None:
        return get_json(self.control + "slack/view?trigger=" + quote(trigger_id))

    def message(self, channel: str, containing: str) -> dict[str, Any] | None:
        return get_json(self.control + f"slack/message?channel={quote(channel)}&containing={quote(containing)}")

    def card(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The current state of one posted message (after every chat.update)."""
        return get_json(self.control + f"slack/card?channel={quote(channel)}&ts={quote(ts)}")

    def slack_tiers(self, on: bool) -> None:
        """The Slack stand-in enforces Slack's per-method rate tiers (answering 429), or no limits at all."""
        get_json(self.control + f"slack/rate-limits?on={int(on)}")

    def keep_calls(self, on: bool) -> None:
        get_json(self.control + f"slack/keep-calls?on={int(on)}")

    def reset_aws(self) -> None:
        """An empty AWS account (with the managed policies the profiles attach)."""
        get_json(self.control + "aws/reset", timeout=60)


@contextlib.contextmanager
def backends(*, slack_latency_ms: float = 0, aws_latency_ms: float = 0) -> Iterator[Backends]:
    command = [
        sys.executable,
        "-m",
        "bench.backends",
        f"--slack-latency-ms={slack_latency_ms}",
        f"--aws-latency-ms={aws_latency_ms}",
    ]
    process = subprocess.Popen(  # noqa: S603
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env()
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("bench.backends did not start")
        urls = json.loads(line)
        running = Backends(process, urls["aws"], urls["slack"], urls["control"])
        running.reset_aws()
        yield running
    finally:
        if process.stdin:
            with contextlib.suppress(OSError):
                process.stdin.close()
        stop(process)


# koding-iam serve --------------------------------------------------------------------------------------------
@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    log_path: Path
    startup_s: float
    env: dict[str, str] = field(repr=False)
    command: Sequence[str] = SERVE_COMMAND

    def rss_mb(self) -> float | None:
        return rss_mb(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def serve_env(*, database_url: str, backends: Backends, port: int, **extra: str) -> dict[str, str]:
    env = _child_env()
    env.update(FAKE_AWS_ENV)
    env.update(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": backends.slack,
            "DATABASE_URL": database_url,
            "AWS_ENDPOINT_URL": backends.aws,
            "KODING_IAM_ADMINS": ",".join(ADMINS),
            "PORT": str(port),
            # The daily sync scan would start 10 minutes in, amid the measurements, and read every IAM user the
            # earlier modules made (four AWS calls each): minutes of background load no module asked for.
            "KODING_IAM_SYNC_SCAN_HOURS": "0",
            **extra,
        }
    )
    return env


@contextlib.contextmanager
def serve(env: dict[str, str], log_path: Path, command: Sequence[str] = SERVE_COMMAND) -> Iterator[Served]:
    """`koding-iam serve` (HTTP mode, waitress) as a child process; yields once /healthz answers 200."""
    url = f"http://127.0.0.1:{env['PORT']}"
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603
            list(command),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
    try:
        wait_healthy(url, process)
        yield Served(process, url, log_path, time.perf_counter() - started, env, command)
    finally:
        stop(process)


@dataclass
class BareBolt:
    process: subprocess.Popen[str]
    url: str
    startup_s: float

    def rss_mb(self) -> float | None:
        return rss_mb(self.process.pid)


@contextlib.contextmanager
def bare_bolt(slack_api_url: str) -> Iterator[BareBolt]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.bare_bolt", f"--port={port}", f"--slack-api-url={slack_api_url}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=_child_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield BareBolt(process, url, time.perf_counter() - started)
    finally:
        stop(process)


def _child_env() -> dict[str, str]:
    """This environment without Slack, koding-iam or AWS settings (ours are set explicitly), and with the
    repository on the import path so `-m bench.*` works from anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KODING_IAM_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(FAKE_AWS_ENV)
    return env
