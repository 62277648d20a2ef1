"""The user lease's claim inside a caller's transaction (one upsert) and a run's start that takes it with the
request's own lease: both or neither."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.core import leases
from bot.core.runs import Outcome, under_user_lease
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from models import UserLease
from tests.e2e.flow_steps import only_request, submit_request


def claim(sb: Sandbox, name: str, owner: str, *, later: int = 0) -> bool:
    now = sb.services.clock() + timedelta(seconds=later)
    with session_scope(sb.services.session_factory) as session:
        return leases.claim(session, iam_user_name=name, owner=owner, purpose="test", now=now, seconds=60)


def holder(sb: Sandbox, name: str) -> str | None:
    with session_scope(sb.services.session_factory) as session:
        return session.scalar(select(UserLease.owner).where(UserLease.name_key == name.lower()))


def test_a_claim_inserts_the_row_refuses_a_live_holder_in_any_case_and_takes_a_lapsed_one(sandbox: Sandbox) -> None:
    sb = sandbox
    assert claim(sb, "Koding-Bob", "first")
    assert not claim(sb, "koding-bob", "second")  # IAM names are case-insensitive: one lease
    assert holder(sb, "koding-bob") == "first"
    assert claim(sb, "KODING-BOB", "third", later=61)  # the first holder stopped beating
    assert holder(sb, "koding-bob") == "third"


def test_a_run_that_cannot_start_leaves_the_user_lease_free(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    request = only_request(sb)
    worked: list[str] = []

    def start(begin: Callable[..., Any], work: Callable[..., Outcome]) -> Outcome:
        return under_user_lease(
            sb.services.session_factory,
            request_id=request.id,
            status=request.status,
            leaser=sb.services.leaser,
            purpose="test",
            begin=begin,
            work=work,
        )

    # The request's own lease is held elsewhere, say: begin says no.
    outcome = start(lambda session, req: None, lambda started, lease: Outcome(worked.append("ran") or "ran"))
    assert outcome.status == "skipped" and worked == []
    assert holder(sb, request.iam_user_name) is None  # the claim was rolled back with the start

    outcome = start(
        lambda session, req: req.iam_user_name,
        lambda started, lease: Outcome(f"held {lease.owner == holder(sb, started)}"),
    )
    assert outcome.status == "held True"
    assert holder(sb, request.iam_user_name) is None  # let go when the work returned
