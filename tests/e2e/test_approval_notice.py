"""The requester hears of an approval once: keys ready within the notice's hold are announced by the Reveal DM
alone (it names the approver); a provisioning still running when the hold ends gets the "approved" DM first. A
denial is never held. Counted calls: one approval with two admin cards costs at most eight Slack calls."""

from __future__ import annotations

import json
from collections import Counter

from bot.core import outbox
from bot.devtools.sandbox import Sandbox
from bot.flows.requesting import APPROVED_NOTICE_HOLD
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from tests.e2e.flow_steps import card, click, only_request, submit_request


def requester_posts(sb: Sandbox, user: str, since: int) -> list[str]:
    return [
        json.dumps(call.body)
        for call in sb.standin.calls_to("chat.postMessage")[since:]
        if call.body.get("channel") == user
    ]


def past_the_hold(sb: Sandbox) -> OutboxSender:
    """A sender whose clock is past the hold: it draws the held notice now."""
    later = sb.services.clock() + APPROVED_NOTICE_HOLD
    return OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({}))


def test_keys_ready_within_the_hold_are_announced_once_by_the_reveal_dm(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    sb.wait_idle()
    before = len(sb.standin.calls)
    posts_before = len(sb.standin.calls_to("chat.postMessage"))
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert only_request(sb).status == "provisioned"

    told = requester_posts(sb, "UALICE", posts_before)
    assert len(told) == 1 and "Reveal my access keys" in told[0]
    assert "was approved by <@UADMIN1>" in told[0]
    # The Reveal DM, three App Homes, and each card copy updated twice (decided, then done) or, when provisioning
    # ended before the sender drew the decided card, once: the superseded update is coalesced away.
    new_calls = sb.standin.calls[before:]
    calls = Counter(call.method for call in new_calls)
    assert calls["chat.update"] in (2, 4), calls
    assert calls - Counter({"chat.update": calls["chat.update"]}) == {"chat.postMessage": 1, "views.publish": 3}
    assert sum(calls.values()) <= 8, calls
    last_update_per_copy = {c.body["channel"]: c.raw for c in new_calls if c.method == "chat.update"}
    assert len(last_update_per_copy) == 2 and all("rovisioned" in raw for raw in last_update_per_copy.values())

    assert past_the_hold(sb).wait_idle() == 1  # the held notice is drawn once its hold ends, and dropped
    assert requester_posts(sb, "UALICE", posts_before) == told
    assert past_the_hold(sb).wait_idle() == 0


def test_a_provisioning_still_running_when_the_hold_ends_gets_the_approved_dm(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    sb.wait_idle()
    sb.worker.pause()  # the run waits: no worker has taken it
    posts_before = len(sb.standin.calls_to("chat.postMessage"))
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert only_request(sb).status == "provisioning"
    assert requester_posts(sb, "UALICE", posts_before) == []  # held

    assert past_the_hold(sb).wait_idle() == 1
    told = requester_posts(sb, "UALICE", posts_before)
    assert len(told) == 1 and "was approved by <@UADMIN1>" in told[0] and "Creating IAM user" in told[0]

    sb.worker.resume()
    sb.wait_idle()
    told = requester_posts(sb, "UALICE", posts_before)
    assert len(told) == 2 and "Reveal my access keys" in told[1]


def test_a_denial_is_not_held(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    posts_before = len(sb.standin.calls_to("chat.postMessage"))
    _, trigger = click(sb, "UADMIN1", ids.DENY, approval)
    sb.driver.submit("UADMIN1", sb.driver.view_opened_with(trigger), {ids.Block.DENY_REASON: "Not this quarter"})
    sb.wait_idle()
    told = requester_posts(sb, "UALICE", posts_before)
    assert len(told) == 1 and "Not this quarter" in told[0]
    assert sb.outbox.wait_idle() == 0


def test_a_held_surface_is_not_claimed_before_its_hold_ends(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    with sb.services.session_factory.begin() as session:
        outbox.touch(session, outbox.DECISION, "999", now=now, hold=APPROVED_NOTICE_HOLD)
        outbox.touch(session, outbox.HOME, "UALICE", now=now)
    factory = sb.services.session_factory
    early = outbox.claim_due(factory, owner="a", now=now + APPROVED_NOTICE_HOLD / 2, seconds=60)
    assert [c.kind for c in early] == [outbox.HOME]
    late = outbox.claim_due(factory, owner="b", now=now + APPROVED_NOTICE_HOLD, seconds=60)
    assert [(c.kind, c.subject) for c in late] == [(outbox.DECISION, "999")]
