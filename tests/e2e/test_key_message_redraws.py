"""A Deactivate, Reactivate or Keep click redraws every message recorded about the key through the outbox: marked
in the change's own transaction (its audit event names the redraw), drawn after commit, never inline."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from bot.slack import ids, key_messages
from models import AccessKey, KeyMessageRole
from tests.e2e.flow_steps import click, reveal_first_key


def overdue_key(sb: Sandbox) -> tuple[int, dict[str, Any]]:
    """The first key made overdue (and unused) by a sweep: its row id and the owner's reminder, as posted."""
    reveal_first_key(sb, "UALICE")
    with session_scope(sb.services.session_factory) as session:
        key_row_id, born = session.execute(select(AccessKey.id, AccessKey.created_at)).one()
    rotation_flows.sweep(sb.services, now=born + timedelta(days=95))
    sb.wait_idle()
    with session_scope(sb.services.session_factory) as session:
        recorded = key_messages.of_key(session, key_row_id, KeyMessageRole.OWNER)
        assert recorded == key_messages.of_key(session, key_row_id, KeyMessageRole.UNUSED)  # one DM, both roles
    ((channel, ts),) = recorded
    return key_row_id, {"channel": channel, "ts": ts}


def updates_of(sb: Sandbox, message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        call.body
        for call in sb.standin.calls_to("chat.update")
        if call.body.get("ts") == message["ts"] and call.body.get("channel") == message["channel"]
    ]


def shown(sb: Sandbox, message: dict[str, Any]) -> str:
    return json.dumps(sb.standin.message(message["channel"], message["ts"]), ensure_ascii=False)


def test_deactivate_now_redraws_the_owners_messages_after_commit_once(sandbox: Sandbox) -> None:
    sb = sandbox
    key_row_id, reminder = overdue_key(sb)
    sb.outbox.pause()
    rotation_flows.deactivate_old(sb.services, key_row_id=key_row_id, user_id="UADMIN1", by_admin=True)
    assert updates_of(sb, reminder) == []  # marked with the change, not updated inline

    sb.outbox.resume()
    sb.wait_idle()
    # Recorded as the owner's message and as the unused-key notice: one update, the owner's view.
    assert len(updates_of(sb, reminder)) == 1
    assert "was deactivated by <@UADMIN1>" in shown(sb, reminder) and ids.REACTIVATE in shown(sb, reminder)
    assert ids.KEEP_KEY not in shown(sb, reminder)

    # Reactivated from the owner's DM about it: every message recorded for the owner says so.
    notice = sb.driver.latest_message("UALICE", containing="was deactivated by <@UADMIN1>")
    click(sb, "UALICE", ids.REACTIVATE, notice)
    sb.wait_idle()
    for message in (notice, reminder):
        assert "is active again" in shown(sb, message) and ids.REACTIVATE not in shown(sb, message)
    assert len(updates_of(sb, reminder)) == 2


def test_a_deactivation_undone_before_the_sender_ran_is_never_drawn(sandbox: Sandbox) -> None:
    sb = sandbox
    key_row_id, reminder = overdue_key(sb)
    sb.outbox.pause()
    rotation_flows.deactivate_old(sb.services, key_row_id=key_row_id, user_id="UADMIN1", by_admin=True)
    rotation_flows.reactivate(sb.services, key_row_id=key_row_id, user_id="UADMIN1")
    sb.outbox.resume()
    sb.wait_idle()
    assert [json.dumps(update) for update in updates_of(sb, reminder) if "deactivated" in json.dumps(update)] == []
    assert "is active again" in shown(sb, reminder)


def test_a_recorded_message_slack_no_longer_has_does_not_stop_the_others(sandbox: Sandbox) -> None:
    sb = sandbox
    key_row_id, reminder = overdue_key(sb)
    with session_scope(sb.services.session_factory) as session:  # recorded first, then deleted in Slack
        key_messages.record(session, key_row_id, KeyMessageRole.OWNER, ("DALICE", "1600000000.000100"))
    rotation_flows.deactivate_old(sb.services, key_row_id=key_row_id, user_id="UALICE")
    sb.wait_idle()
    assert "was deactivated on" in shown(sb, reminder)
    gone = [call for call in sb.standin.calls_to("chat.update") if call.body.get("ts") == "1600000000.000100"]
    assert len(gone) == 1  # tried once: Slack answered message_not_found, and nothing retries it
