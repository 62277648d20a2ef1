"""Graceful stop of a real `koding-iam serve` (SIGTERM), on SQLite and PostgreSQL.

A provisioning run is held mid-way by a proxy in front of moto. After SIGTERM the process answers /healthz with
503 and refuses new Slack requests while it drains, then:
- when the held call is let through within the drain, it finishes the run itself and exits 0;
- when the run is still stuck at the end of the drain, it releases its leases (the request's run lease and the
  IAM user's lease) and exits 0 within the drain, and a second process resumes the run at once. The lease is
  600 s, so only the release can explain a resume within seconds.
`koding-iam scheduler` stops the same way, and so does `serve` in Socket Mode (the websocket closes at once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from reliability_support import (
    ALL_STEPS,
    audit_count,
    hanging_proxy,
    iam_action,
    koding_users,
    messages_with,
    record_figure,
    wait_for,
)
from sqlalchemy import select

from bot import db
from bot.devtools.driver import SocketDriver
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.socket_standin import SocketStandIn
from bot.slack import ids
from models import AccessRequest, ProvisioningStep, UserLease
from tests.e2e.served import Served, free_port, moto_server, serve, serve_env

pytestmark = pytest.mark.slow

LEASE_SECONDS = 600  # far longer than any wait below: a lapsed lease cannot explain a resume


class Store:
    """The database the served processes share."""

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)
        self.factory = db.make_session_factory(self.engine)

    def request(self) -> AccessRequest:
        with db.session_scope(self.factory) as session:
            return session.scalars(select(AccessRequest)).one()

    def user_lease_owner(self, name: str = "koding-alice") -> str | None:
        with db.session_scope(self.factory) as session:
            return session.scalars(select(UserLease.owner).where(UserLease.name_key == name)).first()

    def steps(self) -> set[str]:
        with db.session_scope(self.factory) as session:
            return set(session.scalars(select(ProvisioningStep.step)))


def healthz(app: Served) -> int:
    try:
        with urllib.request.urlopen(app.url + "/healthz", timeout=2) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def approve_and_hold(app: Served, slack: SlackStandIn, proxy: Any, operation: str, driver: Any = None) -> None:
    """Request, approve, and wait until provisioning reaches `operation` (held by the proxy)."""
    driver = driver or app.driver
    response, trigger = driver.command("UALICE", "request", user_name="alice")
    assert response.status == 200, response.text
    submitted = driver.submit("UALICE", driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Stop test"})
    assert (submitted.status, submitted.text) == (200, "")
    card = wait_for(lambda: messages_with(slack, "UADMIN1", "IAM user request #1"), what="approval card")[-1]
    assert driver.click("UADMIN1", ids.APPROVE, message=card)[0].status == 200
    proxy.wait_hung(operation)


def sigterm(app: Served) -> float:
    os.kill(app.process.pid, signal.SIGTERM)
    return time.monotonic()


def test_a_run_stuck_past_the_drain_is_released_and_resumed_at_once_by_another_process(
    database_url: str, tmp_path: Path
) -> None:
    db.upgrade(database_url)
    store = Store(database_url)
    drain = 4
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        first = serve_env(
            database_url=database_url,
            slack=slack,
            aws_endpoint=proxy.url,
            port=free_port(),
            KODING_IAM_LEASE_SECONDS=str(LEASE_SECONDS),
            KODING_IAM_RESUME_INTERVAL_SECONDS="3600",
            KODING_IAM_DRAIN_SECONDS=str(drain),
        )
        second = {**first, "PORT": str(free_port()), "KODING_IAM_RESUME_INTERVAL_SECONDS": "1"}
        proxy.hang_before.add("AddUserToGroup")  # never answered while the first process lives
        with serve(first, slack, str(tmp_path / "first.log")) as app:
            approve_and_hold(app, slack, proxy, "AddUserToGroup")
            owner = store.request().lease_owner
            assert owner is not None and (store.user_lease_owner() or "").startswith(owner + "/")

            stopped_at = sigterm(app)
            assert wait_for(lambda: healthz(app) == 503, timeout=drain, what="/healthz 503 while draining")
            assert app.process.wait(drain + 5) == 0
            stopped_in = time.monotonic() - stopped_at
            assert stopped_in <= drain + 0.5, stopped_in
            log = app.output()
            assert "released 1 run lease(s), 1 user lease(s)" in log and "Traceback" not in log

        # Nothing this process held is held any more; the run is where the stop left it.
        request = store.request()
        assert (request.status, request.lease_owner, request.lease_until) == ("provisioning", None, None)
        assert store.user_lease_owner() is None
        assert store.steps() == ALL_STEPS - {"membership:Developers"}

        proxy.pass_everything()
        started = time.monotonic()
        with serve(second, slack, str(tmp_path / "second.log")) as app:
            wait_for(lambda: store.request().status == "provisioned", timeout=30, what="provisioned by the second")
            resumed_in = time.monotonic() - started
            wait_for(lambda: messages_with(slack, "UALICE", "Reveal my access keys"), what="reveal DM")
            assert "Traceback" not in app.output()
        assert resumed_in < LEASE_SECONDS / 10, resumed_in
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws)
        assert koding_users(iam) == ["koding-alice"]
        assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="koding-alice")["Groups"]] == ["Developers"]
        assert store.steps() == ALL_STEPS
        assert audit_count(store.engine, "provisioning.started") == 2  # the stopped run and the resumed one
        assert audit_count(store.engine, "provisioning.succeeded") == 1
        assert len(messages_with(slack, "UALICE", "Reveal my access keys")) == 1
    store.engine.dispose()
    record_figure(
        f"graceful-stop-release-{database_url.split(':', 1)[0]}",
        drain_seconds=drain,
        sigterm_to_exit_seconds=round(stopped_in, 2),
        restart_to_provisioned_seconds=round(resumed_in, 2),
        lease_seconds=LEASE_SECONDS,
    )


def test_a_run_in_flight_at_sigterm_is_finished_before_the_process_exits(database_url: str, tmp_path: Path) -> None:
    db.upgrade(database_url)
    store = Store(database_url)
    drain = 20
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        env = serve_env(
            database_url=database_url,
            slack=slack,
            aws_endpoint=proxy.url,
            port=free_port(),
            KODING_IAM_LEASE_SECONDS=str(LEASE_SECONDS),
            KODING_IAM_RESUME_INTERVAL_SECONDS="3600",
            KODING_IAM_DRAIN_SECONDS=str(drain),
        )
        proxy.pause_before.add("AddUserToGroup")  # slow IAM: answered once the test resumes it
        with serve(env, slack, str(tmp_path / "serve.log")) as app:
            approve_and_hold(app, slack, proxy, "AddUserToGroup")
            stopped_at = sigterm(app)
            assert wait_for(lambda: healthz(app) == 503, timeout=5, what="/healthz 503 while draining")
            # New work on a new connection is refused while the run drains; Slack retries or the member clicks again.
            refused, _ = app.driver.command("UBOB", "request", user_name="bob")
            assert refused.status == 503
            assert app.process.poll() is None  # still draining: the run has not finished
            proxy.resume()
            assert app.process.wait(drain + 5) == 0
            stopped_in = time.monotonic() - stopped_at
            log = app.output()
            assert "all work finished" in log and "Traceback" not in log
            # The leases are given up only once the run has ended, never under it.
            assert log.index("provisioning of request 1 ended: provisioned") < log.index("stopped after")

        # The stopping process finished the run itself, told the requester, and holds nothing.
        request = store.request()
        assert (request.status, request.lease_owner) == ("provisioned", None)
        assert store.user_lease_owner() is None and store.steps() == ALL_STEPS
        assert audit_count(store.engine, "provisioning.started") == 1
        assert len(messages_with(slack, "UALICE", "Reveal my access keys")) == 1
        assert not messages_with(slack, "UBOB", "received")
    store.engine.dispose()
    assert stopped_in < drain, stopped_in
    record_figure(
        f"graceful-stop-drained-{database_url.split(':', 1)[0]}", sigterm_to_exit_seconds=round(stopped_in, 2)
    )


def test_the_scheduler_command_stopped_mid_run_releases_its_leases_and_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    """`koding-iam scheduler` resumes a stopped run, is stopped in turn while the run is stuck, and gives it up."""
    db.upgrade(database_url)
    store = Store(database_url)
    drain = 3
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        env = serve_env(
            database_url=database_url,
            slack=slack,
            aws_endpoint=proxy.url,
            port=free_port(),
            KODING_IAM_LEASE_SECONDS=str(LEASE_SECONDS),
            KODING_IAM_RESUME_INTERVAL_SECONDS="1",
            KODING_IAM_RUN_SCHEDULER="false",
            KODING_IAM_DRAIN_SECONDS=str(drain),
        )
        proxy.hang_before.add("AddUserToGroup")
        with serve(env, slack, str(tmp_path / "serve.log")) as app:
            approve_and_hold(app, slack, proxy, "AddUserToGroup")
            sigterm(app)
            assert app.process.wait(drain + 5) == 0
        assert store.request().lease_owner is None

        with open(tmp_path / "scheduler.log", "w", encoding="utf-8") as log:
            scheduler = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(lambda: proxy.count("AddUserToGroup") == 2, what="the scheduler resuming the run")
            owner = wait_for(lambda: store.request().lease_owner, what="the scheduler's run lease")
            assert (store.user_lease_owner() or "").startswith(owner + "/")
            stopped_at = time.monotonic()
            os.kill(scheduler.pid, signal.SIGTERM)
            assert scheduler.wait(drain + 5) == 0
            assert time.monotonic() - stopped_at <= drain + 0.5
        finally:
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait(10)
        output = (tmp_path / "scheduler.log").read_text(encoding="utf-8")
        assert "released 1 run lease(s), 1 user lease(s)" in output and "Traceback" not in output
        request = store.request()
        assert (request.status, request.lease_owner) == ("provisioning", None)
        assert store.user_lease_owner() is None
    store.engine.dispose()


def test_socket_mode_disconnects_at_sigterm_and_finishes_the_run_in_flight(database_url: str, tmp_path: Path) -> None:
    """Socket Mode: the websocket closes at once (no new envelope arrives), /healthz on $PORT answers 503, and
    the run in flight is finished before the process exits 0."""
    db.upgrade(database_url)
    store = Store(database_url)
    with (
        SlackStandIn() as slack,
        SocketStandIn(slack) as socket,
        moto_server() as aws,
        hanging_proxy(aws, iam_action) as proxy,
    ):
        env = serve_env(
            database_url=database_url,
            slack=slack,
            aws_endpoint=proxy.url,
            port=free_port(),
            SLACK_APP_TOKEN="xapp-1-AKODING-1-socketmode",
            KODING_IAM_LEASE_SECONDS=str(LEASE_SECONDS),
            KODING_IAM_DRAIN_SECONDS="20",
        )
        proxy.pause_before.add("AddUserToGroup")
        with serve(env, slack, str(tmp_path / "serve.log")) as app:
            socket.wait_connected()
            approve_and_hold(app, slack, proxy, "AddUserToGroup", driver=SocketDriver(socket, slack))
            sigterm(app)
            wait_for(lambda: socket.open_connections() == 0, what="the websocket closed")
            assert wait_for(lambda: healthz(app) == 503, timeout=5, what="/healthz 503 while draining")
            assert app.process.poll() is None  # still draining: the run has not finished
            proxy.resume()
            assert app.process.wait(25) == 0
            log = app.output()
            assert "all work finished" in log and "Traceback" not in log
        request = store.request()
        assert (request.status, request.lease_owner) == ("provisioned", None)
        assert store.user_lease_owner() is None and store.steps() == ALL_STEPS
        assert len(messages_with(slack, "UALICE", "Reveal my access keys")) == 1
    store.engine.dispose()
