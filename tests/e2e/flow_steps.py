"""Steps a person takes, shared by the end-to-end tests; each drives the real app through signed requests."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.db import session_scope
from bot.devtools.driver import Response
from bot.devtools.sandbox import Sandbox
from bot.flows.requesting import APPROVED_NOTICE_HOLD
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import AccessRequest


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def open_request_modal(sb: Sandbox, user: str, handle: str | None = None) -> dict[str, Any]:
    response, trigger = sb.driver.command(user, "request", user_name=handle or user.lower())
    assert response.status == 200, response.text
    return sb.driver.view_opened_with(trigger)


def submit_request(
    sb: Sandbox,
    user: str,
    *,
    name: str | None = None,
    purpose: str = "Staging stack",
    profiles: list[str] | None = None,
    handle: str | None = None,
) -> Response:
    view = open_request_modal(sb, user, handle)
    values: dict[str, Any] = {ids.PURPOSE_BLOCK: purpose}
    if name is not None:
        values[ids.USER_NAME_BLOCK] = name
    if profiles is not None:
        values[ids.PROFILES_BLOCK] = profiles
    response = sb.driver.submit(user, view, values)
    sb.wait_idle()
    return response


def card(sb: Sandbox, admin: str = "UADMIN1", request_id: int | None = None) -> dict[str, Any]:
    """The approval card in this admin's DM (current state after updates)."""
    needle = f"IAM user request #{request_id}" if request_id else "IAM user request #"
    return sb.driver.latest_message(admin, containing=needle)


def refreshed(sb: Sandbox, message: dict[str, Any]) -> dict[str, Any]:
    current = sb.standin.message(message["channel"], message["ts"])
    assert current is not None
    return current


def click(sb: Sandbox, user: str, action_id: str, message: dict[str, Any], **kwargs: Any) -> tuple[Response, str]:
    response, trigger = sb.driver.click(user, action_id, message=refreshed(sb, message), **kwargs)
    assert response.status == 200, response.text
    sb.wait_idle()
    return response, trigger


def reveal_dm(sb: Sandbox, user: str) -> dict[str, Any]:
    return sb.driver.latest_message(user, containing="access keys")


def requests(sb: Sandbox) -> list[AccessRequest]:
    with session_scope(sb.services.session_factory) as session:
        return list(session.scalars(select(AccessRequest).order_by(AccessRequest.id)).all())


def only_request(sb: Sandbox) -> AccessRequest:
    found = requests(sb)
    assert len(found) == 1, found
    return found[0]


def actions_in(message: dict[str, Any]) -> list[str]:
    return [
        el.get("action_id")
        for b in message.get("blocks", [])
        if b.get("type") == "actions"
        for el in b.get("elements", [])
    ]


def ephemeral_texts(sb: Sandbox, user: str) -> str:
    return dumps(sb.standin.ephemerals(user))


def provision_for(sb: Sandbox, user: str = "UALICE", **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request and approve; returns (card, reveal DM)."""
    response = submit_request(sb, user, **kwargs)
    assert response.status == 200 and not response.text, response.text
    approval = card(sb)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    return refreshed(sb, approval), reveal_dm(sb, user)


def reveal_first_key(sb: Sandbox, user: str = "UALICE") -> str:
    """Request, approve and reveal; returns the access key id the requester saw."""
    _, dm = provision_for(sb, user)
    click(sb, user, ids.REVEAL, dm)
    keys = sb.services.gateway.list_access_keys(f"koding-{user.lower()}")
    assert len(keys) == 1
    return keys[0].access_key_id


def settle_holds(sb: Sandbox) -> None:
    """Draw now what the outbox holds back (the "approved" notice), with a sender whose clock is past every hold:
    a fixture whose state tests compare before and after must not change by itself when a hold ends."""
    later = sb.services.clock() + APPROVED_NOTICE_HOLD + timedelta(seconds=1)
    OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
