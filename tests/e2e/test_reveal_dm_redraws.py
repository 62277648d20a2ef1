"""The requester's Reveal DM is redrawn through the outbox: the change to its grant (a reveal, a revoke) marks the
redraw in its own transaction, and the sender updates the DM after commit, never inline. A DM whose post was in
flight when its grant ended is redrawn once its post is recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import offboarding as offboarding_flows
from bot.slack import ids, outbox_messages
from models import KeyGrant, OutboxEntry
from tests.e2e.flow_steps import actions_in, card, click, only_request, provision_for, refreshed, submit_request


def updates_of(sb: Sandbox, message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        call.body
        for call in sb.standin.calls_to("chat.update")
        if call.body.get("ts") == message["ts"] and call.body.get("channel") == message["channel"]
    ]


def redraw_row(sb: Sandbox, grant_id: int) -> OutboxEntry | None:
    with session_scope(sb.services.session_factory) as session:
        return session.get(OutboxEntry, (outbox.NOTICE, f"{outbox.Notice.REVEAL_DM}:{grant_id}"))


def only_grant(sb: Sandbox) -> KeyGrant:
    with session_scope(sb.services.session_factory) as session:
        (grant,) = session.scalars(select(KeyGrant)).all()
        return grant


def test_a_revoke_redraws_the_reveal_dm_after_commit_once(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    assert ids.REVEAL in actions_in(dm)
    sb.outbox.pause()
    sb.worker.pause()  # the offboarding run itself is not what this test watches
    offboarding_flows.confirm_revoke(sb.services, request_id=only_request(sb).id, admin_id="UADMIN1")
    assert updates_of(sb, dm) == []  # marked with the revoke, not updated inline
    row = redraw_row(sb, only_grant(sb).id)
    assert row is not None and row.version > row.delivered_version

    sb.outbox.resume()
    sb.worker.resume()
    sb.wait_idle()
    assert len(updates_of(sb, dm)) == 1
    assert ids.REVEAL not in actions_in(refreshed(sb, dm))


def test_a_reveal_marks_its_dm_in_the_transaction_that_records_the_key(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    click(sb, "UALICE", ids.REVEAL, dm)
    row = redraw_row(sb, only_grant(sb).id)
    assert row is not None and row.version == row.delivered_version == 1
    assert len(updates_of(sb, dm)) == 1
    assert ids.REVEAL not in actions_in(refreshed(sb, dm))


def test_a_dm_posted_after_its_grant_ended_is_redrawn_once_recorded(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.outbox.pause()  # the Reveal DM is not posted yet when the grant ends
    submit_request(sb, "UALICE")
    sb.outbox.resume()
    sb.wait_idle()
    sb.outbox.pause()
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    grant_id = only_grant(sb).id
    with session_scope(sb.services.session_factory) as session:  # the sender draws the DM: the grant is available
        draft = outbox_messages.draw_reveal(sb.services, session, outbox.Claim(outbox.REVEAL, str(grant_id), 1, "t"))
    assert draft is not None

    sb.worker.pause()
    offboarding_flows.confirm_revoke(sb.services, request_id=only_request(sb).id, admin_id="UADMIN1")
    sb.outbox.resume()
    sb.worker.resume()
    sb.wait_idle()  # the revoke's redraw found no DM to update, and the outbox's own Reveal DM was dropped
    assert sb.standin.calls_to("chat.postMessage") and not [
        call for call in sb.standin.calls_to("chat.postMessage") if ids.REVEAL in str(call.body.get("blocks"))
    ]

    posted: dict[str, Any] = {}

    def post(channel: str, text: str, blocks: list[dict[str, Any]]) -> tuple[str, str]:
        response = sb.services.notifier.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        posted.update(channel=str(response["channel"]), ts=str(response["ts"]))
        return posted["channel"], posted["ts"]

    record = draft.send(post)  # the post that was in flight when the grant ended
    with session_scope(sb.services.session_factory) as session:
        record(session)
    sb.services.wake_outbox()
    sb.wait_idle()
    assert ids.REVEAL in str(draft.blocks)  # it went out with the button
    assert len(updates_of(sb, posted)) == 1
    assert ids.REVEAL not in actions_in(refreshed(sb, posted))
