"""Notices a state change causes go through the outbox: marked in that change's transaction, drawn from the database
at their turn (dropped when the state moved on), retried after Slack refused them, each delivered once. The autouse
guard in tests/conftest.py fails any of these tests that calls Slack inside an open transaction."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
from sqlalchemy import select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import offboarding as admin_flows
from bot.flows import recovery, requesting
from bot.flows import rotation as rotation_flows
from bot.flows import timebound as timebound_flows
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import AccessExtension, AccessKey, OutboxEntry
from tests.e2e.flow_steps import card, click, only_request, reveal_dm, reveal_first_key, submit_request
from tests.e2e.test_timebound import PROFILES, request_and_approve

FAILED_DM = "failed on koding-iam's side"


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the app catches it."""


def texts_to(sb: Sandbox, user: str, containing: str) -> list[str]:
    channel = sb.standin.dm_channel(user)
    found = [json.dumps(m) for m in sb.standin.messages() if m["channel"] == channel]
    return [text for text in found if containing in text]


def notice_row(sb: Sandbox, subject: str) -> OutboxEntry:
    with session_scope(sb.services.session_factory) as session:
        return session.scalars(
            select(OutboxEntry).where(OutboxEntry.kind == outbox.NOTICE, OutboxEntry.subject == subject)
        ).one()


def failing_request(sb: Sandbox) -> dict:
    """A request whose provisioning fails (a group made by hand outside koding-iam's path); its card."""
    boto3.client("iam", region_name="us-east-1").create_group(GroupName="Developers", Path="/")
    submit_request(sb, "UALICE")
    return card(sb)


def test_failure_dm_that_slack_refused_is_delivered_later_once(sandbox: Sandbox) -> None:
    sb = sandbox
    approval = failing_request(sb)
    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # the failure DM (the "approved" one is held)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    request = only_request(sb)
    assert request.status == "failed"
    assert texts_to(sb, "UALICE", FAILED_DM) == []
    row = notice_row(sb, f"failed:{request.id}")
    assert row.delivered_version < row.version and row.attempts == 1 and row.last_error == "fatal_error"

    later = sb.services.clock() + timedelta(minutes=3)  # past the outbox's back-off
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    assert len(texts_to(sb, "UALICE", FAILED_DM)) == 1
    assert texts_to(sb, "UALICE", "was approved by") == []  # the held "approved" notice was dropped


def test_failure_dm_is_dropped_when_a_retry_provisioned_the_request_before_its_turn(sandbox: Sandbox) -> None:
    sb = sandbox
    approval = failing_request(sb)
    sb.outbox.pause()
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert only_request(sb).status == "failed"
    boto3.client("iam", region_name="us-east-1").delete_group(GroupName="Developers")
    requesting.retry(sb.services, request_id=only_request(sb).id, admin_id="UADMIN2")  # Retry
    sb.wait_idle()
    assert only_request(sb).status == "provisioned"
    assert texts_to(sb, "UALICE", FAILED_DM) == []  # marked, not sent inline

    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    assert texts_to(sb, "UALICE", FAILED_DM) == []  # the state moved on: dropped
    assert len(texts_to(sb, "UALICE", "Reveal my access keys")) == 1
    row = notice_row(sb, f"failed:{only_request(sb).id}")
    assert row.delivered_version == row.version


def test_admin_notice_goes_to_each_admin_once_when_slack_refused_one_copy(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    sb.outbox.pause()
    sb.driver.event({"type": "user_change", "user": {"id": "UALICE", "deleted": True}})
    sb.wait_idle()
    assert [texts_to(sb, a, "was deactivated in Slack") for a in ("UADMIN1", "UADMIN2")] == [[], []]  # marked only

    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # one admin's copy
    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    told = sorted(len(texts_to(sb, a, "was deactivated in Slack")) for a in ("UADMIN1", "UADMIN2"))
    assert told == [0, 1]  # the refused copy waits out its back-off; the other admin's is not posted again

    later = sb.services.clock() + timedelta(minutes=3)
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    assert [len(texts_to(sb, a, "was deactivated in Slack")) for a in ("UADMIN1", "UADMIN2")] == [1, 1]


def test_expiry_reminder_is_dropped_when_the_request_was_decided_before_its_turn(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    created = only_request(sb).created_at
    half = sb.make_services(sb.settings, clock=lambda: created + timedelta(hours=36))
    sb.outbox.pause()
    admin_flows.expire_requests(half)  # marks the admins' reminder
    click(sb, "UADMIN1", ids.APPROVE, approval)
    OutboxSender(half, pacer=Pacer({})).wait_idle()
    assert only_request(sb).status == "provisioned"
    assert [texts_to(sb, a, "still waiting") for a in ("UADMIN1", "UADMIN2")] == [[], []]
    row = notice_row(sb, f"expiring:{only_request(sb).id}")
    assert row.delivered_version == row.version  # dropped, not left behind


def test_expired_request_tells_its_requester_once_through_the_outbox(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    created = only_request(sb).created_at
    expired = sb.make_services(sb.settings, clock=lambda: created + timedelta(hours=73))
    sb.outbox.pause()
    admin_flows.expire_requests(expired)
    assert only_request(sb).status == "expired" and texts_to(sb, "UALICE", "expired: no admin") == []
    sb.standin.fail_next("chat.postMessage", error="fatal_error")
    OutboxSender(expired, pacer=Pacer({})).wait_idle()
    later = created + timedelta(hours=74)
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    assert len(texts_to(sb, "UALICE", "expired: no admin")) == 1


def extension_asked(sb: Sandbox, days: int) -> int:
    """A 10-day access whose owner asks for `days` more (the card and the receipt marked, not sent yet)."""
    request_and_approve(sb, days="10")
    request = only_request(sb)
    assert request.ends_at is not None
    sb.outbox.pause()
    new_end = (request.ends_at + timedelta(days=days)).date()
    extension_id = timebound_flows.submit_extension(
        sb.services, request_id=request.id, user_id="UALICE", reason="Load test runs late", new_end=new_end
    )
    timebound_flows.announce_extension(sb.services, extension_id)
    return extension_id


def test_extension_decided_before_its_card_went_out_shows_the_outcome_on_one_card_each(database_url: str) -> None:
    with Sandbox(database_url, koding_iam_profiles=json.dumps(PROFILES)) as sb:
        extension_id = extension_asked(sb, 5)
        timebound_flows.decide_extension(sb.services, extension_id=extension_id, admin_id="UADMIN1", approve=True)
        OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
        for admin in ("UADMIN1", "UADMIN2"):
            (posted,) = texts_to(sb, admin, "asks to extend")
            assert "Approved by <@UADMIN1>" in posted and ids.EXTENSION_APPROVE not in posted
        assert texts_to(sb, "UALICE", "You asked to extend") == []  # decided first: the receipt was dropped
        assert len(texts_to(sb, "UALICE", "extended your access")) == 1


def test_access_ended_by_its_owner_closes_the_extension_cards_in_place_and_tells_the_admins(
    database_url: str,
) -> None:
    with Sandbox(database_url, koding_iam_profiles=json.dumps(PROFILES)) as sb:
        extension_id = extension_asked(sb, 5)
        sb.outbox.resume()
        sb.wait_idle()
        posts = len(sb.standin.calls_to("chat.postMessage"))
        timebound_flows.confirm_done(sb.services, request_id=only_request(sb).id, user_id="UALICE")
        timebound_flows.finish(sb.services, only_request(sb).id, by_owner=True)
        sb.wait_idle()
        assert only_request(sb).status == "revoked"
        for admin in ("UADMIN1", "UADMIN2"):
            (closed,) = texts_to(sb, admin, "asks to extend")  # updated in place, not posted again
            assert "The access ended before anyone decided" in closed
            assert len(texts_to(sb, admin, "said they are done with it")) == 1
        assert len(texts_to(sb, "UALICE", "Your access ended on")) == 1
        # Each admin: the ending notice and the revoke's own message; the owner: "your access ended".
        assert len(sb.standin.calls_to("chat.postMessage")) - posts == 5
        with session_scope(sb.services.session_factory) as session:
            assert len(session.get(AccessExtension, extension_id).cards) == 2


def rotate(sb: Sandbox) -> tuple[str, dict]:
    """A key overdue for rotation; its owner's reminder (with Rotate) and the key id."""
    old_key = reveal_first_key(sb)
    with session_scope(sb.services.session_factory) as session:
        born = session.scalars(select(AccessKey.created_at).where(AccessKey.access_key_id == old_key)).one()
    rotation_flows.sweep(sb.services, now=born + timedelta(days=91))
    sb.wait_idle()
    (reminder,) = [m for m in sb.standin.messages(sb.standin.dm_channel("UALICE")) if "due for rotation" in str(m)]
    return old_key, reminder


def test_rotation_guide_that_slack_refused_is_delivered_later_once(sandbox: Sandbox) -> None:
    sb = sandbox
    old_key, reminder = rotate(sb)
    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # the guide to deactivating the old key
    click(sb, "UALICE", ids.ROTATE, reminder)
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 2
    assert texts_to(sb, "UALICE", "Deactivate old key") == []
    (old,) = [m for m in sb.standin.messages(reminder["channel"]) if m["ts"] == reminder["ts"]]
    assert ids.ROTATE not in json.dumps(old) and "rotated" in json.dumps(old).lower()  # updated all the same

    later = sb.services.clock() + timedelta(minutes=3)
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    (guide,) = texts_to(sb, "UALICE", "Deactivate old key")
    assert old_key in guide


def test_rotation_guide_is_dropped_when_the_old_key_was_deactivated_before_its_turn(sandbox: Sandbox) -> None:
    sb = sandbox
    old_key, reminder = rotate(sb)
    sb.outbox.pause()
    click(sb, "UALICE", ids.ROTATE, reminder)
    with session_scope(sb.services.session_factory) as session:
        old_id = session.scalars(select(AccessKey.id).where(AccessKey.access_key_id == old_key)).one()
    rotation_flows.deactivate_old(sb.services, key_row_id=old_id, user_id="UALICE")
    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    assert texts_to(sb, "UALICE", "Deactivate old key") == []


def test_recovered_reveal_dm_is_marked_with_the_settlement_and_delivered_once(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    dm = reveal_dm(sb, "UALICE")
    real = sb.services.notifier.update_modal

    def lost(*_: object) -> None:
        raise Crash("views.update")

    sb.services.notifier.update_modal = lost  # type: ignore[method-assign]
    sb.driver.click("UALICE", ids.REVEAL, message=dm)
    sb.wait_idle()
    sb.services.notifier.update_modal = real  # type: ignore[method-assign]

    later = sb.services.clock() + timedelta(minutes=6)
    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # the owner's "your key was kept"
    recovery.recover_reveals(sb.make_services(sb.settings, clock=lambda: later))
    sb.wait_idle()
    assert texts_to(sb, "UALICE", "was interrupted") == []
    much_later = later + timedelta(minutes=3)
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: much_later), pacer=Pacer({})).wait_idle()
    (told,) = texts_to(sb, "UALICE", "was interrupted")
    assert sb.services.gateway.list_access_keys("koding-ualice")[0].access_key_id in told


def admin_deactivates_the_first_key(sb: Sandbox) -> int:
    """An admin deactivates the owner's revealed key with the sender held back; returns the key's row id."""
    reveal_first_key(sb)
    with session_scope(sb.services.session_factory) as session:
        key_row_id = session.scalars(select(AccessKey.id)).one()
    sb.outbox.pause()
    rotation_flows.deactivate_old(sb.services, key_row_id=key_row_id, user_id="UADMIN1", by_admin=True)
    assert texts_to(sb, "UALICE", "was deactivated by") == []  # marked with the change, not sent inline
    return key_row_id


def test_an_admins_deactivation_tells_the_owner_once_through_the_outbox(sandbox: Sandbox) -> None:
    sb = sandbox
    key_row_id = admin_deactivates_the_first_key(sb)
    with session_scope(sb.services.session_factory) as session:
        assert session.get(AccessKey, key_row_id).reminder_stage == "deactivated"  # type: ignore[union-attr]
    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    (told,) = texts_to(sb, "UALICE", "was deactivated by <@UADMIN1>")
    assert ids.REACTIVATE in told
    assert OutboxSender(sb.services, pacer=Pacer({})).wait_idle() == 0  # delivered once

    sb.outbox.resume()
    dm = sb.driver.latest_message("UALICE", containing="was deactivated by")
    click(sb, "UALICE", ids.REACTIVATE, dm)  # the posted DM was recorded: the click updates it in place
    (updated,) = [m for m in sb.standin.messages(dm["channel"]) if m["ts"] == dm["ts"]]
    assert "is active again" in json.dumps(updated) and ids.REACTIVATE not in json.dumps(updated)


def test_an_admins_deactivation_undone_before_its_turn_tells_the_owner_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    key_row_id = admin_deactivates_the_first_key(sb)
    rotation_flows.reactivate(sb.services, key_row_id=key_row_id, user_id="UALICE")
    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    assert texts_to(sb, "UALICE", "was deactivated by") == []
