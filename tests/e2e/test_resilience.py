"""Interrupted and failed provisioning: resume after a crash, a plain-language failure, an admin Retry."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
from sqlalchemy import select, update

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import recovery
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import AccessKey, AuditEvent, KeyGrant, ProvisioningStep
from tests.e2e.flow_steps import actions_in, card, click, only_request, refreshed, reveal_dm, submit_request


class Crash(BaseException):
    """Stands in for the process dying: not an Exception, so nothing in the app catches it."""


class CountingGateway:
    """Wraps the real gateway, counting calls per method, optionally crashing at one of them."""

    def __init__(self, inner: Any, crash_at: str | None = None) -> None:
        self.inner, self.crash_at, self.counts = inner, crash_at, {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == self.crash_at:
                raise Crash(name)
            return method(*args, **kwargs)

        return wrapped


def test_crash_between_steps_resumes_from_the_first_unfinished_step(sandbox: Sandbox) -> None:
    sb = sandbox
    real_gateway = sb.services.gateway
    sb.services.gateway = CountingGateway(real_gateway, crash_at="add_user_to_group")  # type: ignore[assignment]
    submit_request(sb, "UALICE")
    approval = card(sb)
    sb.driver.click("UADMIN1", ids.APPROVE, message=approval)
    sb.wait_idle()

    request = only_request(sb)
    assert request.status == "provisioning" and request.lease_owner == sb.services.owner
    with session_scope(sb.services.session_factory) as session:
        done = set(session.scalars(select(ProvisioningStep.step)))
    assert done == {
        "group:Developers",
        "policy:Developers:arn:aws:iam::aws:policy/AmazonEC2FullAccess",
        "policy:Developers:arn:aws:iam::aws:policy/IAMReadOnlyAccess",
        "user",
    }
    assert real_gateway.list_groups_for_user("koding-ualice") == []

    # "Restart": a new process (new lease owner) after the dead one's lease ran out.
    later = sb.services.clock() + timedelta(seconds=sb.settings.koding_iam_lease_seconds + 1)
    restarted_gateway = CountingGateway(real_gateway)
    restarted = sb.make_services(sb.settings, clock=lambda: later, gateway=restarted_gateway)
    recovery.resume_interrupted(restarted)
    sb.wait_idle()  # the cards are redrawn by the outbox's sender, after the resumed run's commits

    assert only_request(sb).status == "provisioned"
    assert real_gateway.list_groups_for_user("koding-ualice") == ["Developers"]
    assert restarted_gateway.counts == {"add_user_to_group": 1}  # nothing finished was done again
    assert actions_in(reveal_dm(sb, "UALICE")) == [ids.REVEAL]
    assert "Done" in json.dumps(refreshed(sb, approval)["blocks"])


def test_resume_leaves_a_live_run_alone(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.services.gateway = CountingGateway(sb.services.gateway, crash_at="create_user")  # type: ignore[assignment]
    submit_request(sb, "UALICE")
    sb.driver.click("UADMIN1", ids.APPROVE, message=card(sb))
    sb.wait_idle()
    other = sb.make_services(sb.settings)  # same moment: the first run's lease is still valid
    recovery.resume_interrupted(other)
    assert only_request(sb).status == "provisioning"


def test_failed_step_is_explained_and_an_admin_retry_finishes_it(sandbox: Sandbox) -> None:
    sb = sandbox
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_group(GroupName="Developers", Path="/")  # made by hand, outside koding-iam's path
    submit_request(sb, "UALICE")
    approval = card(sb)
    click(sb, "UADMIN1", ids.APPROVE, approval)

    request = only_request(sb)
    assert request.status == "failed" and "outside koding-iam's path /koding/" in (request.failure_reason or "")
    failed_card = refreshed(sb, approval)
    assert actions_in(failed_card) == [ids.RETRY]
    assert "✗ CreateGroup Developers" in json.dumps(failed_card["blocks"], ensure_ascii=False)
    assert "outside koding-iam's path" in json.dumps(failed_card["blocks"])  # the admins get the reason and fix
    told = sb.driver.latest_message("UALICE", containing="failed")
    assert "outside koding-iam" not in json.dumps(told["blocks"])  # the requester hears the admins are on it
    assert "The admins have been told" in json.dumps(told["blocks"])
    assert sb.services.gateway.get_user("koding-ualice") is None

    click(sb, "UMALLORY", ids.RETRY, failed_card)  # not an admin
    assert only_request(sb).status == "failed"
    assert "Only koding-iam admins" in json.dumps(sb.standin.ephemerals("UMALLORY"))

    iam.delete_group(GroupName="Developers")
    click(sb, "UADMIN2", ids.RETRY, failed_card)
    assert only_request(sb).status == "provisioned"
    assert actions_in(refreshed(sb, approval)) == []
    with session_scope(sb.services.session_factory) as session:
        retried = session.scalars(select(AuditEvent).where(AuditEvent.action == "provisioning.retried")).one()
        assert retried.actor == "UADMIN2"
    # A second Retry click on the stale card does nothing.
    sb.driver.click("UADMIN1", ids.RETRY, message=failed_card)
    sb.wait_idle()
    assert "nothing to retry" in json.dumps(sb.standin.ephemerals("UADMIN1"))


def test_access_denied_gives_a_plain_reason(sandbox: Sandbox) -> None:
    sb = sandbox
    client = sb.services.gateway._client

    class Denied:
        status_code = 403

    def deny(**_: Any) -> Any:
        return Denied(), {
            "Error": {"Code": "AccessDenied", "Message": "not authorized to perform iam:CreateUser"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    client.meta.events.register("before-call.iam.CreateUser", deny)
    try:
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, card(sb))
    finally:
        client.meta.events.unregister("before-call.iam.CreateUser", deny)
    request = only_request(sb)
    assert request.status == "failed"
    assert request.failure_reason is not None and "may not call CreateUser" in request.failure_reason
    assert "docs/iam-policy.json" in request.failure_reason


def test_expired_reveal_button_offers_a_fresh_window(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    dm = reveal_dm(sb, "UALICE")
    with session_scope(sb.services.session_factory) as session:
        session.execute(update(KeyGrant).values(expires_at=sb.services.clock() - timedelta(minutes=1)))

    click(sb, "UALICE", ids.REVEAL, dm)
    assert sb.services.gateway.list_access_keys("koding-ualice") == []
    assert "expired" in json.dumps(sb.standin.ephemerals("UALICE"))
    expired = refreshed(sb, dm)
    assert actions_in(expired) == [ids.RENEW_REVEAL]

    click(sb, "UMALLORY", ids.RENEW_REVEAL, expired)
    assert actions_in(refreshed(sb, dm)) == [ids.RENEW_REVEAL]

    click(sb, "UALICE", ids.RENEW_REVEAL, expired)
    renewed = refreshed(sb, dm)
    assert actions_in(renewed) == [ids.REVEAL]
    with session_scope(sb.services.session_factory) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "reveal.window_renewed")).one()
        assert event.actor == "UALICE" and event.detail["hours"] == 24
    click(sb, "UALICE", ids.REVEAL, renewed)
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 1


def test_reveal_cut_off_while_sending_the_key_keeps_it_as_the_owners(sandbox: Sandbox) -> None:
    """A crash while the key was on its way to Slack: the member may have seen it, so recovery keeps the key,
    records it as theirs and tells them to rotate it if they did not copy it; nothing is deleted."""
    sb = sandbox
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    dm = reveal_dm(sb, "UALICE")
    real = sb.services.notifier.update_modal

    def crash(*_: Any) -> None:
        raise Crash("views.update")

    sb.services.notifier.update_modal = crash  # type: ignore[method-assign]
    sb.driver.click("UALICE", ids.REVEAL, message=dm)
    sb.wait_idle()
    sb.services.notifier.update_modal = real  # type: ignore[method-assign]
    keys = sb.services.gateway.list_access_keys("koding-ualice")
    assert len(keys) == 1

    later = sb.services.clock() + timedelta(minutes=6)
    recovery.resume_interrupted(sb.make_services(sb.settings, clock=lambda: later))
    sb.wait_idle()  # what recovery marked, delivered by the outbox sender
    assert [k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")] == [keys[0].access_key_id]
    with session_scope(sb.services.session_factory) as session:
        grant = session.scalars(select(KeyGrant)).one()
        assert (grant.status, grant.access_key_id, grant.claimed_by) == ("revealed", keys[0].access_key_id, None)
        recorded = session.scalars(select(AccessKey)).one()
        assert (recorded.access_key_id, recorded.owner_id, recorded.status) == (
            keys[0].access_key_id,
            "UALICE",
            "active",
        )
    told = [c for c in sb.standin.calls_to("chat.postMessage") if c.body["channel"] == "UALICE"]
    assert any("was interrupted" in json.dumps(c.body) and keys[0].access_key_id in json.dumps(c.body) for c in told)


def test_cards_a_failed_drawing_lost_are_posted_once_after_the_back_off(sandbox: Sandbox) -> None:
    """Drawing the approval cards fails after the ack (a bug): the outbox keeps the announcement, backs off,
    and the next senders (two processes) post the cards once; the receipt went out on its own, once."""
    sb = sandbox
    real = sb.services.notifier.approval_card
    crashed: list[str] = []

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        if not crashed:
            crashed.append("approval_card")
            raise RuntimeError("a bug drawing the card")
        return real(*args, **kwargs)

    sb.outbox.pause()  # this process's sender draws only when told to below
    sb.services.notifier.approval_card = crash_once  # type: ignore[method-assign]
    submit_request(sb, "UALICE")
    assert OutboxSender(sb.services, pacer=Pacer({})).wait_idle() == 2  # the cards (crashed) and the receipt
    sb.services.notifier.approval_card = real  # type: ignore[method-assign]
    assert crashed and not [m for m in sb.standin.messages() if "IAM user request #" in json.dumps(m)]

    later = sb.services.clock() + timedelta(minutes=3)  # past the back-off
    for _ in range(2):  # two processes' senders post the cards once
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    sb.outbox.resume()
    sb.wait_idle()
    cards = [m for m in sb.standin.messages() if "IAM user request #1" in json.dumps(m)]
    assert sorted(m["channel"] for m in cards) == [sb.standin.dm_channel("UADMIN1"), sb.standin.dm_channel("UADMIN2")]
    received = [m for m in sb.standin.messages(sb.standin.dm_channel("UALICE")) if "received" in json.dumps(m)]
    assert len(received) == 1
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    assert only_request(sb).status == "provisioned"


def test_reveal_dm_that_slack_refused_is_delivered_later(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    posts_before = len(sb.standin.calls_to("chat.postMessage"))
    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # the reveal DM (the "approved" one is held)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert len(sb.standin.calls_to("chat.postMessage")) == posts_before + 1
    assert not [m for m in sb.standin.messages() if "Reveal my access keys" in json.dumps(m)]

    later = sb.services.clock() + timedelta(minutes=3)  # past the outbox's back-off
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    dms = [m for m in sb.standin.messages() if "Reveal my access keys" in json.dumps(m)]
    assert len(dms) == 1
    click(sb, "UALICE", ids.REVEAL, dms[0])
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 1
