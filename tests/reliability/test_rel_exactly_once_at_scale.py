"""Promise 1 — exactly once, at scale: two `koding-iam serve` processes sharing one PostgreSQL database.

50 concurrent Approve clicks from two admins, spread over both processes, give one decision, one IAM user and
one provisioning run, and 49 clickers are told who decided. Deny racing Approve across the processes has one
winner. Reveal clicks racing across the processes make one key. Everything is read back from the database the
processes share (SQLAlchemy on the same DATABASE_URL), from moto, and from what the bot posted to Slack.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from reliability_support import (
    PG_URL,
    audit_count,
    koding_users,
    messages_with,
    postgres_schema,
    posts_with,
    record_figure,
    scalar,
    wait_for,
)

from bot import db
from bot.devtools.driver import Response
from bot.devtools.slack_standin import SlackStandIn
from bot.slack import ids
from tests.e2e.served import Served, free_port, moto_server, serve, serve_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMINS = ("UADMIN1", "UADMIN2")


@dataclass
class Pair:
    a: Served
    b: Served
    slack: SlackStandIn
    iam: Any
    url: str

    def processes(self) -> tuple[Served, Served]:
        return self.a, self.b


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    if not PG_URL:
        pytest.skip("two processes sharing PostgreSQL need TEST_DATABASE_URL (always set under CI)")
    logs = tmp_path_factory.mktemp("pair")
    with ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        slack = stack.enter_context(SlackStandIn())
        # Fifty clicks in a second, each updating every copy of a card, are far past chat.update's tier; the
        # rate limits have their own tests (tests/devtools/test_rate_limits.py), every Block Kit rule still applies.
        slack.disable_rate_limits()
        aws = stack.enter_context(moto_server())
        db.upgrade(url)
        env_a = serve_env(database_url=url, slack=slack, aws_endpoint=aws, port=free_port())
        env_b = {**env_a, "PORT": str(free_port())}
        a = stack.enter_context(serve(env_a, slack, str(logs / "a.log")))
        b = stack.enter_context(serve(env_b, slack, str(logs / "b.log")))
        yield Pair(a, b, slack, boto3.client("iam", region_name="us-east-1", endpoint_url=aws), url)
        for process in (a, b):
            assert "Traceback" not in process.output(), process.output()[-3000:]


def request_number(p: Pair, user: str, handle: str, via: Served) -> int:
    response, trigger = via.driver.command(user, "request", user_name=handle)
    assert response.status == 200, response.text
    submitted = via.driver.submit(user, via.driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Scale test"})
    assert (submitted.status, submitted.text) == (200, ""), submitted.text
    number = scalar(p.url, "SELECT id FROM access_requests WHERE requester_id = :u", u=user)
    assert number is not None
    for admin in ADMINS:
        wait_for(lambda admin=admin: messages_with(p.slack, admin, f"IAM user request #{number}"), what="card")
    return int(number)


def card(p: Pair, admin: str, number: int) -> dict[str, Any]:
    return messages_with(p.slack, admin, f"IAM user request #{number}")[-1]


def fire(jobs: list[Any]) -> tuple[list[Response], float]:
    """Run all jobs at once (released together by a barrier); returns their results and the wall time."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Any) -> Response:
        barrier.wait()
        return job()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    return results, time.monotonic() - started


def test_fifty_concurrent_approve_clicks_over_two_processes_make_one_user(pair: Pair) -> None:
    p = pair
    number = request_number(p, "UALICE", "alice", p.a)
    cards = {admin: card(p, admin, number) for admin in ADMINS}
    clicks = [(p.processes()[n % 2], ADMINS[(n // 2) % 2]) for n in range(50)]
    assert {(proc.url, admin) for proc, admin in clicks} == {(proc.url, a) for proc in p.processes() for a in ADMINS}

    already = {admin: len(p.slack.ephemerals(admin)) for admin in ADMINS}
    started = time.monotonic()
    responses, burst = fire(
        [
            lambda proc=proc, admin=admin: proc.driver.click(admin, ids.APPROVE, message=cards[admin])[0]
            for proc, admin in clicks
        ]
    )
    assert [r.status for r in responses] == [200] * 50

    def told() -> list[dict[str, Any]]:
        return [e for admin in ADMINS for e in p.slack.ephemerals(admin)[already[admin] :]]

    wait_for(lambda: len(told()) >= 49, timeout=60, what="49 losers told")
    wait_for(lambda: messages_with(p.slack, "UALICE", "Reveal my access keys"), timeout=60, what="reveal DM")
    settled = time.monotonic() - started
    for proc in p.processes():  # anything late (a 51st message, a second run) would have been taken by now
        proc.wait_for_looks()

    winner = scalar(p.url, "SELECT decided_by FROM access_requests WHERE id = :n", n=number)
    assert winner in ADMINS
    assert scalar(p.url, "SELECT status FROM access_requests WHERE id = :n", n=number) == "provisioned"
    assert audit_count(p.url, "request.approved") == 1
    assert audit_count(p.url, "provisioning.started") == 1
    assert audit_count(p.url, "provisioning.succeeded") == 1
    assert scalar(p.url, "SELECT count(*) FROM key_grants WHERE request_id = :n", n=number) == 1
    assert koding_users(p.iam) == ["koding-alice"]

    losers = told()
    assert len(losers) == 49
    assert all(f"already approved by <@{winner}>" in e["text"] for e in losers), losers[:2]
    assert len(posts_with(p.slack, "was approved by")) == 1  # one "approved" DM to the requester
    assert len(messages_with(p.slack, "UALICE", "Reveal my access keys")) == 1
    for admin in ADMINS:
        current = card(p, admin, number)
        assert not [b for b in current["blocks"] if b["type"] == "actions"]
        assert f"Approved by <@{winner}>" in json.dumps(current["blocks"])
    record_figure(
        "fifty-approve-clicks",
        clicks=50,
        processes=2,
        admins=2,
        winners=audit_count(p.url, "request.approved"),
        provisioning_runs=audit_count(p.url, "provisioning.started"),
        iam_users=len(koding_users(p.iam)),
        losers_told=len(losers),
        burst_seconds=round(burst, 2),
        click_to_settled_seconds=round(settled, 2),
    )


def test_deny_racing_approve_across_processes_has_one_winner(pair: Pair) -> None:
    p = pair
    outcomes = []
    # Rounds 0-1 fire both at the same instant; in rounds 2-3 the deny lands 0.3 s later, so both branches
    # (deny wins / approve wins) are exercised across the two processes.
    for round_number, deny_delay in enumerate((0.0, 0.0, 0.3, 0.3)):
        user, handle = f"URACE{round_number}", f"race{round_number}"
        number = request_number(p, user, handle, p.b)
        deny_via, approve_via = (p.b, p.a) if round_number % 2 == 0 else (p.a, p.b)
        _, trigger = deny_via.driver.click("UADMIN2", ids.DENY, message=card(p, "UADMIN2", number))
        deny_modal = deny_via.driver.view_opened_with(trigger)
        approve_card = card(p, "UADMIN1", number)
        before = len(p.slack.ephemerals("UADMIN1"))

        def approve(via: Served = approve_via, message: dict[str, Any] = approve_card) -> Response:
            return via.driver.click("UADMIN1", ids.APPROVE, message=message)[0]

        def deny(via: Served = deny_via, modal: dict[str, Any] = deny_modal, delay: float = deny_delay) -> Response:
            time.sleep(delay)
            return via.driver.submit("UADMIN2", modal, {ids.DENY_REASON_BLOCK: "race"})

        (approved, denied), _ = fire([approve, deny])
        assert approved.status == 200 and denied.status == 200
        decided = wait_for(
            lambda n=number: (
                scalar(p.url, "SELECT status FROM access_requests WHERE id = :n", n=n) in ("provisioned", "denied")
            ),
            what="decision settled",
        )
        assert decided
        status = scalar(p.url, "SELECT status FROM access_requests WHERE id = :n", n=number)
        decisions = scalar(
            p.url,
            "SELECT count(*) FROM audit_events WHERE request_id = :n"
            " AND action IN ('request.approved', 'request.denied')",
            n=number,
        )
        assert decisions == 1
        name = f"koding-{handle}"
        if status == "denied":
            assert name not in koding_users(p.iam)
            wait_for(lambda b=before: len(p.slack.ephemerals("UADMIN1")) > b, what="approver told")
            assert "already denied by <@UADMIN2>" in p.slack.ephemerals("UADMIN1")[-1]["text"]
            assert denied.text == ""
        else:
            assert name in koding_users(p.iam)
            assert "Already approved" in json.dumps(denied.json())
        for admin in ADMINS:
            wait_for(
                lambda a=admin, n=number: not [b for b in card(p, a, n)["blocks"] if b["type"] == "actions"],
                what="cards show the outcome",
            )
        outcomes.append(status)
    assert outcomes[2:] == ["provisioned", "provisioned"]  # a late deny loses and is told so in its modal
    record_figure(
        "deny-vs-approve-race",
        rounds=len(outcomes),
        approve_won=outcomes.count("provisioned"),
        deny_won=outcomes.count("denied"),
        double_decisions=0,
    )


def test_reveal_clicks_racing_across_processes_make_one_key(pair: Pair) -> None:
    p = pair
    number = request_number(p, "UREVEAL", "reveal", p.a)
    p.b.driver.click("UADMIN2", ids.APPROVE, message=card(p, "UADMIN2", number))
    dm = wait_for(lambda: messages_with(p.slack, "UREVEAL", "Reveal my access keys"), what="reveal DM")[-1]
    shown_before = len(posts_with(p.slack, "Secret Access Key", method="views.update"))
    responses, burst = fire(
        [lambda proc=proc: proc.driver.click("UREVEAL", ids.REVEAL, message=dm)[0] for proc in p.processes() * 5]
    )
    assert [r.status for r in responses] == [200] * 10
    wait_for(lambda: len(p.slack.ephemerals("UREVEAL")) == 9, what="nine clicks told")
    wait_for(lambda: scalar(p.url, "SELECT status FROM key_grants WHERE request_id = :n", n=number) == "revealed")
    for proc in p.processes():  # every click has ended (nine told, one revealed); a recovery would have run by now
        proc.wait_for_looks()
    keys = p.iam.list_access_keys(UserName="koding-reveal")["AccessKeyMetadata"]
    assert len(keys) == 1
    shown = posts_with(p.slack, "Secret Access Key", method="views.update")[shown_before:]
    assert len(shown) == 1 and keys[0]["AccessKeyId"] in json.dumps(shown[0].body)
    assert scalar(p.url, "SELECT count(*) FROM access_keys WHERE iam_user_name = 'koding-reveal'") == 1
    texts = [e["text"] for e in p.slack.ephemerals("UREVEAL")]
    assert all("being generated in another window" in t or "already revealed" in t for t in texts), texts
    record_figure(
        "reveal-race", clicks=10, processes=2, keys=len(keys), refused=len(texts), burst_seconds=round(burst, 2)
    )
