"""Database work per operation: transactions, statements and connection checkouts the app's own flows make for
one submission, one announcement, one approval (with its provisioning) and one reveal.

The flows (bot/flows/) run in this process against the same Slack stand-in and moto server as the served app, on
a fresh database of the same kind (so the served app's outbox sender does not deliver for them), with SQLAlchemy
events counting on the engine. Work the app runs after the ack (provisioning) runs inline here, and the outbox
deliveries each operation caused are drawn by the app's own OutboxSender in this process and counted with it.
A checkout is also a round trip: the engine pings every connection it hands out (pool_pre_ping), and on
PostgreSQL every commit waits for the WAL to reach disk.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from sqlalchemy import event, text

from bench.context import Context, Section
from bench.processes import ADMINS, BOT_TOKEN, database
from bot.devtools.sandbox import FAKE_AWS_ENV, SIGNING_SECRET

NAME = "dbwork"
APPROVAL = "approve click: decision and provisioning (after the ack)"
TRANSACTIONS_PER_APPROVAL = 8  # per approval, its provisioning and deliveries included (was 20)


class _Inline(Executor):
    """Runs what the app hands its background pool at once, in the caller's thread, so it is counted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def _services(ctx: Context, database_url: str) -> Any:
    import boto3

    from bot.app import create_services
    from bot.aws_iam import Backoff, IamGateway
    from bot.config import load_settings
    from bot.db import make_engine

    settings = load_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token="",
        slack_api_url=ctx.backends.slack,
        database_url=database_url,
        koding_iam_admins=",".join(ADMINS),
    )
    client_args = {
        "region_name": "us-east-1",
        "endpoint_url": ctx.backends.aws,
        "aws_access_key_id": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }
    gateway = IamGateway(boto3.client("iam", **client_args), backoff=Backoff(sleep=lambda _: None))
    return create_services(settings, engine=make_engine(database_url), gateway=gateway, background=_Inline())


def _fresh_url(ctx: Context) -> str:
    if ctx.database_url.startswith("postgresql"):
        return ctx.database_url.split("?", 1)[0]
    return f"sqlite:///{ctx.workdir / 'dbwork.db'}"


def run(ctx: Context) -> list[Section]:
    with database(_fresh_url(ctx), ctx.workdir) as url:
        return _run(ctx, url)


def _run(ctx: Context, database_url: str) -> list[Section]:
    from bot.core import intake
    from bot.flows import requesting as flows
    from bot.flows import revealing
    from bot.slack.outbox_sender import OutboxSender
    from bot.worker import Worker

    services = _services(ctx, database_url)
    sender = OutboxSender(services)  # not started: drawn here, after each operation, and counted
    services.wake_outbox = sender.wake  # as start() wires it: a delivery that marks more surfaces says so
    counts = _Counts()
    engine = services.engine
    event.listen(engine, "before_cursor_execute", lambda *a, **k: counts.add("statements"))
    event.listen(engine, "commit", lambda *a, **k: counts.add("commits"))
    event.listen(engine.pool, "checkout", lambda *a, **k: counts.add("checkouts"))

    measured: dict[str, dict[str, int]] = {}

    def measure(label: str, action: Callable[[], Any]) -> Any:
        before = counts.snapshot()
        result = action()
        after = counts.snapshot()
        sender.deliver_burst()  # as the sender's own loop does once woken
        delivered = counts.snapshot()
        measured[label] = {k: after[k] - before[k] for k in ("commits", "statements", "checkouts")}
        measured[label]["outbox_commits"] = delivered["commits"] - after["commits"]
        measured[label]["outbox_statements"] = delivered["statements"] - after["statements"]
        return result

    try:
        user, name = ctx.new_user()
        form = intake.RequestForm(iam_user_name=name, profiles=["ec2"], purpose="database work")
        request_id = measure(
            "view_submission: validate and store (before the ack)",
            lambda: flows.submit_request(services, user_id=user, team_id="T0KODING", form=form),
        )
        measure(
            "after the submission: requester DM and approval cards",
            lambda: flows.announce_request(services, request_id),
        )
        # The worker takes the approved run from the database and provisions it; inline here, so it is counted.
        worker = Worker(services, pool=_Inline(), slots=1)
        measure(
            APPROVAL,
            lambda: (flows.approve(services, request_id=request_id, admin_id=ADMINS[0], channel=None), worker.pick()),
        )
        with engine.connect() as connection:
            grant = list(connection.execute(text("SELECT id FROM key_grants WHERE request_id = :r"), {"r": request_id}))
        if grant:
            measure(
                "reveal click: claim, create the key, show it",
                lambda: revealing.reveal_keys(
                    services,
                    grant_id=int(grant[0][0]),
                    user_id=user,
                    trigger_id=ctx.payloads.new_trigger(),
                    channel=None,
                ),
            )
        measure(
            "/koding-iam request: open-request check (before the ack)", lambda: flows.request_blocker(services, user)
        )
    finally:
        engine.dispose()

    ctx.data[NAME] = measured
    section = Section(
        NAME,
        "Database work per operation (the app's flows, counted on its engine)",
        [
            "operation",
            "transactions (commits)",
            "statements",
            "connection checkouts (each pinged)",
            "outbox deliveries it caused: commits / statements",
            "target",
            "result",
        ],
    )
    for label, n in measured.items():
        target, result = "—", "INFO"
        if label == APPROVAL:
            total = n["commits"] + n["outbox_commits"]
            target = f"≤ {TRANSACTIONS_PER_APPROVAL} transactions in all (was 20); here {total}"
            result = "PASS" if total <= TRANSACTIONS_PER_APPROVAL else "FAIL"
        section.rows.append(
            [
                label,
                str(n["commits"]),
                str(n["statements"]),
                str(n["checkouts"]),
                f"{n['outbox_commits']} / {n['outbox_statements']}",
                target,
                result,
            ]
        )
    section.notes.append(
        "Transactions per approval count the decision, the provisioning the approval starts (run inline here) and "
        "the outbox deliveries they caused (the app's OutboxSender, drawn after the operation). The other rows "
        "have no target: they show where the database round trips go. On PostgreSQL every checkout also sends a "
        "ping (SELECT 1, pool_pre_ping; not in the statement count) and every commit waits for a WAL flush."
    )
    return [section]
