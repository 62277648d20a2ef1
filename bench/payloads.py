"""What Slack sends: request bodies built by the project's own driver (bot.devtools.driver.SlackDriver), so
the benchmark's payloads have the shapes the end-to-end tests use, plus the checks for each surface's answer.

The driver here only builds bodies; the load generator signs and sends them (signing at send time).
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

from bot.devtools.driver import SlackDriver
from bot.slack import ids

_triggers = itertools.count(1)


class _NoStandIn:
    """What the driver needs from the stand-in to build a payload: a response_url and a DM channel id."""

    def new_response_url(self, **_: Any) -> str:
        return f"http://127.0.0.1:9/response/{secrets.token_urlsafe(12)}"

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]


class PayloadBuilder(SlackDriver):
    """SlackDriver whose `post` returns the form body instead of sending it."""

    def __init__(self) -> None:
        super().__init__("http://unused", "unused", _NoStandIn())  # type: ignore[arg-type]

    def post(self, body: str, **_: Any) -> str:  # type: ignore[override]
        return body

    def new_trigger(self) -> str:
        return f"{next(_triggers)}.bench.{secrets.token_hex(4)}"

    # Bodies --------------------------------------------------------------------------------------------------
    def command_body(self, user_id: str, text: str, *, trigger_id: str | None = None) -> str:
        body, _ = self.command(user_id, text, user_name=user_id.lower(), trigger_id=trigger_id)
        return str(body)

    def approve_body(self, admin_id: str, card: dict[str, Any], request_id: int) -> str:
        body, _ = self.click(admin_id, ids.APPROVE, message=card, value=str(request_id))
        return str(body)

    def reveal_body(self, user_id: str, dm: dict[str, Any], grant_id: int) -> str:
        body, _ = self.click(user_id, ids.REVEAL, message=dm, value=str(grant_id))
        return str(body)

    def home_opened_body(self, user_id: str) -> str:
        """The Events API callback Slack posts when someone opens the app's Home tab (JSON)."""
        event = {"type": "app_home_opened", "user": user_id, "channel": self.standin.dm_channel(user_id), "tab": "home"}
        return str(self.event(event))

    def submit_body(self, user_id: str, modal: dict[str, Any], *, iam_user_name: str, purpose: str) -> str:
        values = {ids.USER_NAME_BLOCK: iam_user_name, ids.PROFILES_BLOCK: ["ec2"], ids.PURPOSE_BLOCK: purpose}
        return str(self.submit(user_id, modal, values))


# Answer checks: None when the answer is what the surface should say, else a short label -------------------
def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return "not json"


def check_help(_: int, data: bytes) -> str | None:
    body = _json(data)
    return None if isinstance(body, dict) and body.get("blocks") else "no help blocks"


def check_request(_: int, data: bytes) -> str | None:
    """Empty (the modal opens after the ack) or an ephemeral saying why this person cannot ask again."""
    if not data:
        return None
    body = _json(data)
    return None if isinstance(body, dict) and body.get("text") else "unexpected body"


def check_empty(_: int, data: bytes) -> str | None:
    if not data:
        return None
    body = _json(data)
    if isinstance(body, dict) and body.get("response_action") == "errors":
        return "form rejected: " + "; ".join(str(v) for v in (body.get("errors") or {}).values())[:80]
    return "unexpected body"


def check_healthz(_: int, data: bytes) -> str | None:
    body = _json(data)
    return None if isinstance(body, dict) and body.get("ok") is True else "unhealthy"
