"""Issue 10, rows 8 and 9 — bot messages are addressed by what the bot recorded; a replay does nothing twice.

Row 8 before: Deactivate / Reactivate passed the click's `container` to chat.update, so a forged container rewrote
another request's approval card. Row 9 before: the same signed Reactivate body, resent inside Slack's 5-minute
window, re-activated a key an admin had just deactivated; a resent `/koding-iam exempt` stored two rows.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reliability_support import audit_count, record_figure
from sqlalchemy import func, select

from bot.db import session_scope
from bot.devtools.driver import Response
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from bot.replay import MARGIN, SIGNATURE_WINDOW, ReplayGuard
from bot.slack import ids
from models import AccessKey, Exemption, SeenRequest
from tests.e2e.flow_steps import card, click, refreshed, reveal_first_key, submit_request

DAY = timedelta(days=1)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def key_status(sb: Sandbox, access_key_id: str) -> tuple[str, str]:
    """(database status, IAM status) of one key."""
    with session_scope(sb.services.session_factory) as session:
        row = session.scalars(select(AccessKey).where(AccessKey.access_key_id == access_key_id)).one()
        db_status = row.status
    iam = {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys(row.iam_user_name)}
    return db_status, iam[access_key_id]


def overdue(sb: Sandbox, key: str) -> None:
    with session_scope(sb.services.session_factory) as session:
        born = session.scalars(select(AccessKey.created_at).where(AccessKey.access_key_id == key)).one()
    rotation_flows.sweep(sb.services, now=born + 95 * DAY)


def forged(message: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The clicked button's blocks, with a container (channel, ts) pointing at another message."""
    return {"ts": target["ts"], "channel": target["channel"], "text": "", "blocks": message["blocks"]}


def press(sb: Sandbox, user: str, action_id: str, message: dict[str, Any]) -> None:
    """Click exactly the message given (no refresh: a forged one names another message's channel and ts)."""
    response, _ = sb.driver.click(user, action_id, message=message)
    assert response.status == 200, response.text
    sb.wait_idle()


def updates_of(sb: Sandbox, message: dict[str, Any]) -> list[Any]:
    return [
        c
        for c in sb.standin.calls_to("chat.update")
        if c.body.get("ts") == message["ts"] and c.body.get("channel") == message["channel"]
    ]


def test_forged_containers_never_rewrite_another_requests_card(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb, "UALICE")  # request #1
    assert submit_request(sb, "UBOB").text == ""  # request #2, pending: its card is the forged target
    target = card(sb, "UADMIN1", 2)
    before = sb.standin.message(target["channel"], target["ts"])
    overdue(sb, key)
    admin_card = sb.driver.latest_message("UADMIN1", containing="Overdue key")

    # An admin's Deactivate now, with the container pointing at Bob's approval card.
    press(sb, "UADMIN1", ids.ADMIN_DEACTIVATE, forged(admin_card, target))
    assert updates_of(sb, target) == [] and sb.standin.message(target["channel"], target["ts"]) == before
    assert key_status(sb, key) == ("inactive", "Inactive")
    for admin in ("UADMIN1", "UADMIN2"):  # both recorded copies of the overdue card show the outcome
        assert "Deactivated on" in dumps(sb.driver.latest_message(admin, containing="Overdue key"))

    # The owner's Reactivate (on the DM the bot recorded), forged the same way.
    notice = sb.driver.latest_message("UALICE", containing="was deactivated by")
    press(sb, "UALICE", ids.REACTIVATE, forged(notice, target))
    assert updates_of(sb, target) == []
    assert key_status(sb, key) == ("active", "Active")
    assert "active again" in dumps(refreshed(sb, notice))

    # Rotate now → Deactivate old key, forged the same way.
    _, trigger = click(sb, "UALICE", ids.ROTATE, sb.driver.latest_message("UALICE", containing="Rotate now"))
    sb.driver.view_opened_with(trigger)
    guide = sb.driver.latest_message("UALICE", containing="Deactivate old key")
    press(sb, "UALICE", ids.DEACTIVATE_OLD, forged(guide, target))
    assert key_status(sb, key) == ("inactive", "Inactive")
    assert "was deactivated" in dumps(refreshed(sb, guide))

    assert updates_of(sb, target) == []
    after = sb.standin.message(target["channel"], target["ts"])
    assert after == before and [e["action_id"] for e in after["blocks"][-1]["elements"]] == [ids.APPROVE, ids.DENY]
    record_figure(
        "row8-forged-container",
        backend=sb.services.engine.dialect.name,
        forged_clicks=3,
        target_card_updates=len(updates_of(sb, target)),
        recorded_messages_updated=len(updates_of(sb, guide)) + len(updates_of(sb, notice)),
    )


class Capture:
    """Remembers each body the driver sent with the timestamp it was signed with, to send it again."""

    def __init__(self, sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, int, dict[str, Any]]] = []
        self._post = sb.driver.post

        def post(body: str, **kwargs: Any) -> Response:
            kwargs.setdefault("timestamp", int(time.time()))
            self.sent.append((body, kwargs["timestamp"], dict(kwargs)))
            return self._post(body, **kwargs)

        monkeypatch.setattr(sb.driver, "post", post)

    def replay(self, index: int = -1, **extra: Any) -> Response:
        body, _, kwargs = self.sent[index]
        return self._post(body, **{**kwargs, **extra})


def test_replayed_reactivate_after_an_admin_deactivation_changes_nothing(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox
    key = reveal_first_key(sb, "UALICE")
    overdue(sb, key)
    admin_card = sb.driver.latest_message("UADMIN2", containing="Overdue key")  # a snapshot, as the admin saw it
    click(sb, "UADMIN1", ids.ADMIN_DEACTIVATE, sb.driver.latest_message("UADMIN1", containing="Overdue key"))
    capture = Capture(sb, monkeypatch)
    click(sb, "UALICE", ids.REACTIVATE, sb.driver.latest_message("UALICE", containing="was deactivated by"))
    assert key_status(sb, key) == ("active", "Active")
    # The second admin deactivates it again from the card they still have open.
    response, _ = sb.driver.click("UADMIN2", ids.ADMIN_DEACTIVATE, message=admin_card)
    sb.wait_idle()
    assert response.status == 200 and key_status(sb, key) == ("inactive", "Inactive")

    started = time.perf_counter()
    again = capture.replay(0)  # the owner's Reactivate, byte for byte, same timestamp and signature
    replay_ms = (time.perf_counter() - started) * 1000
    sb.wait_idle()
    assert (again.status, again.text) == (200, "")
    assert key_status(sb, key) == ("inactive", "Inactive")
    # With a forged Slack retry header the guard lets it through once; the button names the deactivation it undid.
    retried = capture.replay(0, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    sb.wait_idle()
    assert retried.status == 200 and key_status(sb, key) == ("inactive", "Inactive")
    assert "earlier deactivation" in dumps(sb.standin.ephemerals("UALICE"))
    assert audit_count(sb.services.engine, "key.active") == 1
    # A Deactivate now pressed again on a key already inactive is a no-op, and says so.
    sb.driver.click("UADMIN2", ids.ADMIN_DEACTIVATE, message=admin_card)
    sb.wait_idle()
    assert "already inactive" in dumps(sb.standin.ephemerals("UADMIN2"))
    assert audit_count(sb.services.engine, "key.inactive") == 2
    record_figure(
        "row9-replayed-reactivate",
        backend=sb.services.engine.dialect.name,
        replay_answer_ms=round(replay_ms, 1),
        reactivations=audit_count(sb.services.engine, "key.active"),
    )


def exemption_rows(sb: Sandbox) -> int:
    with session_scope(sb.services.session_factory) as session:
        return int(session.scalar(select(func.count()).select_from(Exemption)) or 0)


def test_replayed_exempt_command_stores_one_row_even_when_replays_race(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox
    reveal_first_key(sb, "UALICE")
    capture = Capture(sb, monkeypatch)
    until = f"{datetime.now(UTC) + 30 * DAY:%Y-%m-%d}"
    response, _ = sb.driver.command("UADMIN1", f"exempt koding-ualice {until} Migrating stacks")
    assert "is exempt" in response.json()["text"]
    assert (capture.replay().status, capture.replay().text) == (200, "")
    # Eight replays at the same moment, from eight threads: the unique digest lets none of them through.
    barrier = threading.Barrier(8)
    answers: list[Response] = []

    def replay() -> None:
        barrier.wait()
        answers.append(capture.replay(0))

    threads = [threading.Thread(target=replay) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sb.wait_idle()
    assert [(a.status, a.text) for a in answers] == [(200, "")] * 8
    # A forged Slack retry header gets past the guard (Slack's retries are deliveries of their own); the same
    # exemption asked for again is still one row.
    retried = capture.replay(0, headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    assert "is exempt" in retried.json()["text"]
    assert exemption_rows(sb) == 1 and audit_count(sb.services.engine, "rotation.exempted") == 1
    record_figure("row9-replayed-exempt", backend=sb.services.engine.dialect.name, replays=11, rows=1)


def test_seen_requests_are_pruned_once_no_signature_check_would_accept_them(sandbox: Sandbox) -> None:
    sb = sandbox
    now = time.time()
    guard = ReplayGuard(sb.services.engine, clock=lambda: now)
    old, fresh = str(int(now) - SIGNATURE_WINDOW - MARGIN - 1), str(int(now) - 10)
    assert guard.first_delivery(timestamp=old, signature="v0=old")
    assert guard.first_delivery(timestamp=fresh, signature="v0=fresh")
    assert not guard.first_delivery(timestamp=fresh, signature="v0=fresh")
    with session_scope(sb.services.session_factory) as session:
        kept = set(session.scalars(select(SeenRequest.request_ts)))
    assert kept == {int(fresh)}  # the first call pruned the expired row; the fresh one stays until it expires
    # And a replay that old is refused by the signature check before the guard is asked.
    body = "token=unused&command=%2Fkoding-iam&text=help&user_id=UADMIN1&team_id=T0KODING"
    assert sb.driver.post(body, timestamp=int(old)).status == 401
