"""Exactly one decision wins, whatever races: concurrent clicks, two admins, Deny racing Approve."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from models import AuditEvent, KeyGrant
from tests.e2e.flow_steps import card, only_request, refreshed, submit_request


def audit_count(sb: Sandbox, action: str) -> int:
    with session_scope(sb.services.session_factory) as session:
        return session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0


def test_ten_concurrent_approve_clicks_give_one_user(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    cards = {admin: card(sb, admin) for admin in ("UADMIN1", "UADMIN2")}
    clickers = [("UADMIN1" if n % 2 else "UADMIN2") for n in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda admin: sb.driver.click(admin, ids.APPROVE, message=cards[admin])[0], clickers))
    sb.wait_idle()
    assert [r.status for r in responses] == [200] * 10
    request = only_request(sb)
    assert request.status == "provisioned"
    assert audit_count(sb, "request.approved") == 1
    assert audit_count(sb, "provisioning.started") == 1
    with session_scope(sb.services.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(KeyGrant)) == 1
    # Nine losers were each told who decided.
    told = [e for admin in ("UADMIN1", "UADMIN2") for e in sb.standin.ephemerals(admin)]
    assert len(told) == 9
    assert all(f"already approved by <@{request.decided_by}>" in json.dumps(e) for e in told)
    told = sb.driver.standin.messages(sb.standin.dm_channel("UALICE"))
    assert len(told) == 2  # received, then the Reveal DM naming the one approver (the held "approved" was dropped)
    assert f"was approved by <@{request.decided_by}>" in json.dumps(told[1])


def test_deny_racing_approve_has_one_winner(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    deny_card = card(sb, "UADMIN2")
    _, trigger = sb.driver.click("UADMIN2", ids.DENY, message=deny_card)
    sb.wait_idle()
    deny_modal = sb.driver.view_opened_with(trigger)
    with ThreadPoolExecutor(max_workers=2) as pool:
        approve = pool.submit(lambda: sb.driver.click("UADMIN1", ids.APPROVE, message=card(sb, "UADMIN1"))[0])
        deny = pool.submit(lambda: sb.driver.submit("UADMIN2", deny_modal, {ids.DENY_REASON_BLOCK: "no"}))
        approve_response, deny_response = approve.result(), deny.result()
    sb.wait_idle()
    assert approve_response.status == 200 and deny_response.status == 200
    request = only_request(sb)
    assert audit_count(sb, "request.approved") + audit_count(sb, "request.denied") == 1
    if request.status == "denied":
        assert sb.services.gateway.get_user("koding-ualice") is None
        assert "already denied" in json.dumps(sb.standin.ephemerals("UADMIN1"))
    else:
        assert request.status == "provisioned"
        assert "Already approved" in deny_response.json()["errors"][ids.DENY_REASON_BLOCK]
    assert [b for b in refreshed(sb, deny_card)["blocks"] if b["type"] == "actions"] == []


def test_double_reveal_click_creates_one_key(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    sb.driver.click("UADMIN1", ids.APPROVE, message=card(sb))
    sb.wait_idle()
    dm = sb.driver.latest_message("UALICE", containing="Reveal my access keys")
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda _: sb.driver.click("UALICE", ids.REVEAL, message=dm), range(5)))
    sb.wait_idle()
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 1
    assert audit_count(sb, "reveal.succeeded") == 1
    assert len([c for c in sb.standin.calls_to("views.update") if not c.failed]) == 1
