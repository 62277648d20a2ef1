"""The worker as its own process (`koding-iam worker`) beside `koding-iam serve` with KODING_IAM_WORKER=external,
against a moto server and the Slack stand-in, on SQLite and PostgreSQL.

The web process only records work: nothing is provisioned until a worker runs, then exactly once. Two workers over
one database take each of several runs exactly once. A worker killed (SIGKILL) mid-run leaves its claim; another
worker takes the run over once that claim has lapsed, not before, and finishes it once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from reliability_support import audit_count, hanging_proxy, iam_action, koding_users, messages_with, wait_for
from sqlalchemy import select

from bot import db
from bot.devtools.slack_standin import SlackStandIn
from bot.slack import ids
from models import AccessRequest, ProvisioningStep
from tests.e2e.served import Served, free_port, moto_server, serve, serve_env, wait_healthy

pytestmark = pytest.mark.slow

LEASE_SECONDS = 5  # long beside the worker's 0.2 s look: a takeover before the lapse could not hide in it


class Store:
    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)
        self.factory = db.make_session_factory(self.engine)

    def requests(self) -> list[AccessRequest]:
        with db.session_scope(self.factory) as session:
            return list(session.scalars(select(AccessRequest).order_by(AccessRequest.id)))

    def request(self, number: int = 1) -> AccessRequest:
        return next(r for r in self.requests() if r.id == number)

    def steps(self) -> set[str]:
        with db.session_scope(self.factory) as session:
            return set(session.scalars(select(ProvisioningStep.step)))


@contextmanager
def workers(*started: tuple[dict[str, str], Path]) -> Iterator[list[subprocess.Popen[str]]]:
    """`koding-iam worker` child processes, all launched before any is waited for, each serving /healthz on its
    own PORT; SIGTERM at the end."""
    processes = []
    for env, log_path in started:
        with open(log_path, "w", encoding="utf-8") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "worker"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    try:
        for (env, _), process in zip(started, processes, strict=True):
            wait_healthy(f"http://127.0.0.1:{env['PORT']}", process)
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


@contextmanager
def worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[str]]:
    with workers((env, log_path)) as (process,):
        yield process


def stop(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(15) == 0


def request_and_approve(app: Served, slack: SlackStandIn, user: str, handle: str, number: int) -> None:
    """The requester's form, then the admin's Approve; returns once the card shows the decision (the web process's
    last step before it hands the run over)."""
    response, trigger = app.driver.command(user, "request", user_name=handle)
    assert response.status == 200, response.text
    submitted = app.driver.submit(user, app.driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Worker test"})
    assert (submitted.status, submitted.text) == (200, "")
    card = wait_for(lambda: messages_with(slack, "UADMIN1", f"IAM user request #{number}"), what="approval card")[-1]
    assert app.driver.click("UADMIN1", ids.APPROVE, message=card)[0].status == 200

    def decided() -> list[dict[str, Any]]:
        return [m for m in messages_with(slack, "UADMIN1", f"IAM user request #{number}") if ids.APPROVE not in str(m)]

    wait_for(decided, what="the card to drop its Approve button")


def envs(database_url: str, slack: SlackStandIn, aws: str, **extra: str) -> tuple[dict[str, str], dict[str, str]]:
    web = serve_env(
        database_url=database_url,
        slack=slack,
        aws_endpoint=aws,
        port=free_port(),
        KODING_IAM_WORKER="external",
        KODING_IAM_WORKER_POLL_SECONDS="0.2",
        LOG_FORMAT="json",
        **extra,
    )
    return web, {**web, "PORT": str(free_port())}


def took_at(log_path: Path, request_id: int, status: str) -> list[datetime]:
    """When a worker's log says it took a run (its own clock, the same machine's)."""
    needle = f"worker: took the {status} run of request {request_id}"
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    return [datetime.fromisoformat(line["time"]) for line in lines if line["message"] == needle]


def test_serve_with_an_external_worker_provisions_nothing_until_a_worker_runs_then_once(
    database_url: str, tmp_path: Path
) -> None:
    db.upgrade(database_url)
    store = Store(database_url)
    with SlackStandIn() as slack, moto_server() as aws:
        web, work = envs(database_url, slack, aws)
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws)
        with serve(web, slack, str(tmp_path / "serve.log")) as app:
            request_and_approve(app, slack, "UALICE", "alice", 1)
            # Approved and handed over: the web process ran nothing of it.
            request = store.request()
            assert (request.status, request.lease_owner) == ("provisioning", None)
            assert store.steps() == set() and koding_users(iam) == []
            assert audit_count(store.engine, "provisioning.started") == 0
            assert "KODING_IAM_WORKER=external" in app.output()

            with worker(work, tmp_path / "worker.log") as process:
                wait_for(lambda: store.request().status == "provisioned", timeout=30, what="provisioned by the worker")
                wait_for(lambda: messages_with(slack, "UALICE", "Reveal my access keys"), what="the reveal DM")
                stop(process)
            assert "Traceback" not in app.output()
        log = (tmp_path / "worker.log").read_text(encoding="utf-8")
        assert "Traceback" not in log and len(took_at(tmp_path / "worker.log", 1, "provisioning")) == 1
        assert koding_users(iam) == ["koding-alice"]
        assert audit_count(store.engine, "provisioning.started") == 1
        assert audit_count(store.engine, "provisioning.succeeded") == 1
        assert len(messages_with(slack, "UALICE", "Reveal my access keys")) == 1
        assert store.request().lease_owner is None  # the stopped worker holds nothing
    store.engine.dispose()


def test_two_worker_processes_provision_each_request_exactly_once(database_url: str, tmp_path: Path) -> None:
    db.upgrade(database_url)
    store = Store(database_url)
    people = [(f"UPERSON{n}", f"person{n}") for n in range(1, 7)]
    with SlackStandIn() as slack, moto_server() as aws:
        web, work = envs(database_url, slack, aws, KODING_IAM_WORKER_THREADS="2")
        other = {**work, "PORT": str(free_port())}
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws)
        with serve(web, slack, str(tmp_path / "serve.log")) as app:
            for number, (user, handle) in enumerate(people, start=1):
                request_and_approve(app, slack, user, handle, number)
            assert koding_users(iam) == []
            with workers((work, tmp_path / "a.log"), (other, tmp_path / "b.log")) as (a, b):
                wait_for(
                    lambda: all(r.status == "provisioned" for r in store.requests()),
                    timeout=90,
                    what="every request provisioned",
                )
                stop(a)
                stop(b)
        assert koding_users(iam) == sorted(f"koding-{handle}" for _, handle in people)
        assert audit_count(store.engine, "provisioning.started") == len(people)
        assert audit_count(store.engine, "provisioning.succeeded") == len(people)
        taken = {
            name: [n for n in range(1, len(people) + 1) if took_at(tmp_path / f"{name}.log", n, "provisioning")]
            for name in ("a", "b")
        }
        assert sorted(taken["a"] + taken["b"]) == list(range(1, len(people) + 1)), taken  # each by one worker
        print(f"runs taken per worker: {taken}")
        for user, _ in people:
            assert len(messages_with(slack, user, "Reveal my access keys")) == 1
        for name in ("a", "b"):
            assert "Traceback" not in (tmp_path / f"{name}.log").read_text(encoding="utf-8")
    store.engine.dispose()


@pytest.mark.parametrize("run", ["provisioning", "revoking"])
def test_a_worker_killed_mid_run_is_taken_over_once_its_claim_lapsed_not_before(
    database_url: str, tmp_path: Path, run: str
) -> None:
    db.upgrade(database_url)
    store = Store(database_url)
    held = "AddUserToGroup" if run == "provisioning" else "RemoveUserFromGroup"
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        web, first = envs(database_url, slack, proxy.url, KODING_IAM_LEASE_SECONDS=str(LEASE_SECONDS))
        second = {**first, "PORT": str(free_port())}
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws)
        with serve(web, slack, str(tmp_path / "serve.log")) as app:
            proxy.hang_before.add(held)
            with worker(first, tmp_path / "first.log") as killed:
                request_and_approve(app, slack, "UALICE", "alice", 1)
                if run == "revoking":
                    wait_for(lambda: store.request().status == "provisioned", timeout=30, what="provisioned")
                    _, trigger = app.driver.command("UADMIN1", "revoke koding-alice")
                    modal = wait_for(  # "checking…" first, then what the revoke removes, listed from IAM
                        lambda: (view := app.driver.view_opened_with(trigger)).get("private_metadata") and view,
                        what="the revoke confirmation",
                    )
                    assert app.driver.submit("UADMIN1", modal, {}).text == ""
                proxy.wait_hung(held)
                os.kill(killed.pid, signal.SIGKILL)
                assert killed.wait(10) == -signal.SIGKILL
            claim = store.request()
            assert claim.status == run and claim.lease_owner is not None and claim.lease_until is not None
            lapses_at = claim.lease_until

            proxy.pass_everything()
            done = "provisioned" if run == "provisioning" else "revoked"
            with worker(second, tmp_path / "second.log") as process:
                wait_for(lambda: store.request().status == done, timeout=60, what=f"{done} by the second worker")
                stop(process)
            assert "Traceback" not in app.output()
        taken = took_at(tmp_path / "second.log", 1, run)
        assert taken and taken[0] > lapses_at, (taken, lapses_at)  # not before the dead worker's claim lapsed
        assert "Traceback" not in (tmp_path / "second.log").read_text(encoding="utf-8")
        if run == "provisioning":
            assert koding_users(iam) == ["koding-alice"]
            assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="koding-alice")["Groups"]] == [
                "Developers"
            ]
            assert audit_count(store.engine, "provisioning.succeeded") == 1
            assert len(messages_with(slack, "UALICE", "Reveal my access keys")) == 1
        else:
            assert koding_users(iam) == []
            assert audit_count(store.engine, "revoke.succeeded") == 1
            assert len(messages_with(slack, "UALICE", "was revoked")) == 1
        assert store.request().lease_owner is None
    store.engine.dispose()
