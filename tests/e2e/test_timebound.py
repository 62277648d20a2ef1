"""Time-bound users end to end: the end date on every surface, reminders 7 days and 1 day before (once each, under
concurrent sweeps), expiry offboarding exactly once, extensions that move the end date, and "I'm done"."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import scheduler
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.services import Services
from bot.slack import ids
from models import AccessExtension, AuditEvent
from tests.e2e.flow_steps import actions_in, card, click, only_request, open_request_modal, refreshed, reveal_dm

DAY = timedelta(days=1)
PROFILES = {
    "ec2": {
        "label": "EC2 stacks",
        "group": "Developers",
        "policies": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess", "arn:aws:iam::aws:policy/IAMReadOnlyAccess"],
        "default": True,
        "max_days": 30,
    },
    "route53": {
        "label": "Route53",
        "group": "Developers-Route53",
        "policies": ["arn:aws:iam::aws:policy/AmazonRoute53FullAccess"],
    },
}


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.fixture
def sb(database_url: str) -> Iterator[Sandbox]:
    with Sandbox(database_url, koding_iam_profiles=json.dumps(PROFILES)) as running:
        yield running


def dms(sb: Sandbox, user: str, containing: str) -> list[dict[str, Any]]:
    return [m for m in sb.standin.messages(sb.standin.dm_channel(user)) if containing in dumps(m)]


def audit_count(sb: Sandbox, action: str) -> int:
    with session_scope(sb.services.session_factory) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0


def at(sb: Sandbox, when: datetime) -> Services:
    """Another process (own engine, own IAM client, own lease owner) whose clock reads `when`."""
    return sb.make_services(sb.settings, clock=lambda: when)


def sweep_concurrently(sb: Sandbox, when: datetime, processes: int = 2) -> None:
    """The scheduler's sweep job, run at the same moment by several processes."""
    others = [at(sb, when) for _ in range(processes)]
    barrier = threading.Barrier(processes)

    def run(services: Services) -> None:
        barrier.wait()
        scheduler._sweep(services)

    threads = [threading.Thread(target=run, args=(services,)) for services in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for services in others:
        services.engine.dispose()


def request_and_approve(sb: Sandbox, user: str = "UALICE", days: str | None = None) -> dict[str, Any]:
    """Fill the request form (with "Access for" when given), approve it; returns the approval card."""
    view = open_request_modal(sb, user)
    values: dict[str, Any] = {ids.PURPOSE_BLOCK: "Staging stack"}
    if days is not None:
        values[ids.ACCESS_DAYS_BLOCK] = days
    response = sb.driver.submit(user, view, values)
    assert response.status == 200 and response.text == "", response.text
    sb.wait_idle()
    approval = card(sb)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    return refreshed(sb, approval)


def test_expired_user_is_offboarded_once_after_one_reminder_per_stage(sb: Sandbox) -> None:
    submitted = request_and_approve(sb)  # the EC2 profile's max_days: 30
    request = only_request(sb)
    assert request.access_days == 30 and request.ends_at is not None
    assert abs(request.ends_at - (request.updated_at + 30 * DAY)) < timedelta(seconds=1)
    ends = request.ends_at
    assert "Access ends" in dumps(submitted)  # the card, once the user exists
    assert "Access for* 30 days" in dumps(dms(sb, "UALICE", "received"))  # the receipt, before approval

    # The end date in the reveal modal, the App Home and status.
    _, trigger = click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
    assert "Its access ends on" in dumps(sb.driver.view_opened_with(trigger))
    sb.driver.event({"type": "app_home_opened", "user": "UALICE", "tab": "home", "event_ts": "1.0"})
    sb.wait_idle()
    assert "Access ends" in dumps(sb.standin.published_home("UALICE"))
    assert "Access ends" in dumps(sb.driver.command("UALICE", "status")[0].json())

    # Reminders: none 8 days before; 7 days before, one, with both buttons, however many sweeps run.
    sweep_concurrently(sb, ends - 8 * DAY)
    assert dms(sb, "UALICE", "Your access ends") == []
    sweep_concurrently(sb, ends - 7 * DAY)
    sweep_concurrently(sb, ends - 6 * DAY)
    week = dms(sb, "UALICE", "Your access ends in")
    assert len(week) == 1 and actions_in(week[0]) == [ids.EXTEND, ids.DONE]
    sweep_concurrently(sb, ends - DAY + timedelta(minutes=1))
    sweep_concurrently(sb, ends - timedelta(hours=1))
    day = dms(sb, "UALICE", "within a day")
    assert len(day) == 1 and actions_in(day[0]) == [ids.EXTEND, ids.DONE]
    assert sb.services.gateway.get_user("koding-ualice") is not None

    # The end: two sweeps at once offboard the user exactly once, by the admins' revoke.
    sweep_concurrently(sb, ends + timedelta(minutes=1))
    sweep_concurrently(sb, ends + timedelta(minutes=6))
    assert only_request(sb).status == "revoked"
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert (audit_count(sb, "access.ended"), audit_count(sb, "revoke.succeeded")) == (1, 1)
    assert (audit_count(sb, "access.reminded_week"), audit_count(sb, "access.reminded_day")) == (1, 1)
    assert len(dms(sb, "UALICE", "Your access ended on")) == 1
    assert dms(sb, "UALICE", "deleted by a koding-iam admin") == []
    for admin in ("UADMIN1", "UADMIN2"):
        assert len(dms(sb, admin, "passed. koding-iam is revoking it")) == 1
        assert len(dms(sb, admin, "was revoked")) == 1
    assert len(dms(sb, "UALICE", "Your access ends")) == 2  # and nothing more after the end


def test_access_for_is_validated_and_an_extension_moves_the_end_date(sb: Sandbox) -> None:
    view = open_request_modal(sb, "UALICE")
    assert ids.ACCESS_DAYS_BLOCK in dumps(view) and "EC2 stacks: at most 30 days" in dumps(view)
    for typed, problem in (("45", "At most 30 days"), ("0", "at least 1 day"), ("2.5", "whole number")):
        refused = sb.driver.submit("UALICE", view, {ids.PURPOSE_BLOCK: "x", ids.ACCESS_DAYS_BLOCK: typed})
        errors = refused.json()["errors"]
        assert problem in errors[ids.ACCESS_DAYS_BLOCK], (typed, errors)
    assert sb.standin.calls_to("chat.postMessage") == []  # nothing stored, nobody told

    request_and_approve(sb, days="10")
    ends = only_request(sb).ends_at
    assert ends is not None and only_request(sb).access_days == 10
    sweep_concurrently(sb, ends - 7 * DAY)
    reminder = dms(sb, "UALICE", "Your access ends in")[0]

    # Only the owner may ask; the form refuses an earlier date and one past the profile's 30 days.
    click(sb, "UBOB", ids.EXTEND, reminder)
    assert "Only the owner" in dumps(sb.standin.ephemerals("UBOB"))
    _, trigger = click(sb, "UALICE", ids.EXTEND, reminder)
    form = sb.driver.view_opened_with(trigger)
    now = sb.services.clock()
    for day, problem in ((ends - DAY, "after the current end"), (now + 40 * DAY, "allows access up to")):
        answer = sb.driver.submit(
            "UALICE", form, {ids.EXTEND_DATE_BLOCK: f"{day:%Y-%m-%d}", ids.EXTEND_REASON_BLOCK: "r"}
        )
        assert problem in answer.json()["errors"][ids.EXTEND_DATE_BLOCK]
    empty = sb.driver.submit("UALICE", form, {ids.EXTEND_DATE_BLOCK: f"{ends + DAY:%Y-%m-%d}"})
    assert "reason is required" in empty.json()["errors"][ids.EXTEND_REASON_BLOCK]
    wanted = ends + 12 * DAY
    values = {ids.EXTEND_DATE_BLOCK: f"{wanted:%Y-%m-%d}", ids.EXTEND_REASON_BLOCK: "Load test runs late"}
    assert sb.driver.submit("UALICE", form, values).text == ""
    sb.wait_idle()
    assert "already asked" in sb.driver.submit("UALICE", form, values).text  # one pending ask at a time
    asked = sb.driver.latest_message("UADMIN1", containing="asks to extend")
    assert "Load test runs late" in dumps(asked) and actions_in(asked) == [ids.EXTENSION_APPROVE, ids.EXTENSION_DENY]
    assert len(dms(sb, "UALICE", "You asked to extend")) == 1

    # Authorized on the server: the owner cannot approve their own extension; one admin's click wins.
    click(sb, "UALICE", ids.EXTENSION_APPROVE, asked)
    assert "You cannot decide on your own request" in dumps(sb.standin.ephemerals("UALICE"))
    click(sb, "UCAROL", ids.EXTENSION_APPROVE, asked)  # neither admin nor approver of the profile
    assert "Only koding-iam admins and the approvers" in dumps(sb.standin.ephemerals("UCAROL"))
    assert only_request(sb).ends_at == ends
    stale = sb.driver.latest_message("UADMIN2", containing="asks to extend")  # the other admin's copy, unrefreshed
    click(sb, "UADMIN1", ids.EXTENSION_APPROVE, asked)
    sb.driver.click("UADMIN2", ids.EXTENSION_DENY, message=stale)
    sb.wait_idle()
    assert "already approved" in dumps(sb.standin.ephemerals("UADMIN2"))
    moved = only_request(sb)
    assert moved.ends_at == ends + 12 * DAY and moved.end_stage == "none"
    assert "Approved by <@UADMIN1>" in dumps(refreshed(sb, asked)) and actions_in(refreshed(sb, asked)) == []
    assert len(dms(sb, "UALICE", "extended your access")) == 1

    # The old end passes and nothing happens; the reminders start again before the new end.
    sweep_concurrently(sb, ends + timedelta(minutes=1))
    assert only_request(sb).status == "provisioned" and sb.services.gateway.get_user("koding-ualice") is not None
    sweep_concurrently(sb, moved.ends_at - 7 * DAY)
    assert len(dms(sb, "UALICE", "Your access ends in")) == 2
    with session_scope(sb.services.session_factory) as session:
        assert [e.status for e in session.scalars(select(AccessExtension))] == ["approved"]


def test_im_done_revokes_after_a_confirmation(sb: Sandbox) -> None:
    request_and_approve(sb, days="3")
    ends = only_request(sb).ends_at
    assert ends is not None
    sweep_concurrently(sb, ends - DAY)
    reminder = dms(sb, "UALICE", "within a day")[0]
    click(sb, "UBOB", ids.DONE, reminder)
    assert "Only the owner" in dumps(sb.standin.ephemerals("UBOB"))
    _, trigger = click(sb, "UALICE", ids.DONE, reminder)
    confirm = sb.driver.view_opened_with(trigger)
    assert "cannot be undone" in dumps(confirm)
    assert only_request(sb).status == "provisioned"  # opening the confirmation changes nothing

    forged = sb.driver.submit("UBOB", confirm, {})  # someone else replaying the owner's confirmation
    assert "Only the owner" in forged.text and only_request(sb).status == "provisioned"
    assert sb.driver.submit("UALICE", confirm, {}).text == ""
    sb.wait_idle()
    done = only_request(sb)
    assert done.status == "revoked" and done.ends_at is not None and done.ends_at < ends
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert len(dms(sb, "UALICE", "Your access ended on")) == 1
    for admin in ("UADMIN1", "UADMIN2"):
        assert len(dms(sb, admin, "its owner said they are done")) == 1
    assert "nothing to end" in sb.driver.submit("UALICE", confirm, {}).text
    sweep_concurrently(sb, ends + timedelta(minutes=1))
    assert (audit_count(sb, "access.ended"), audit_count(sb, "revoke.succeeded")) == (1, 1)
