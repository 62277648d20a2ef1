"""The Slack stand-in's wire level: Slack's limits and rate tiers, the records it keeps, its error answers, and
parsing and writing of request and answer bodies the way the Web API does (bot/devtools/slack_standin.py).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

#: Bodies above this size are refused with HTTP 413 (Slack refuses oversized requests too).
MAX_BODY_BYTES = 1024 * 1024
#: A file's bytes posted to an upload URL may be larger (Slack takes files up to 1 GB; 50 MB is plenty here).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

# Limits Slack enforces; a stand-in that accepted more would hide bugs that only show up in production.
# Block Kit limits live in bot.devtools.blockkit_rules. Text: https://api.slack.com/methods/chat.postMessage
# ("truncates messages containing more than 40,000 characters"; refused here, as msg_too_long).
_MAX_TEXT_CHARS = 40_000
_MESSAGE_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")
_VIEW_METHODS = ("views.open", "views.update", "views.push", "views.publish")


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``burst`` calls at once, refilled at ``per_minute`` a minute, per channel or per workspace."""

    per_minute: float
    burst: int
    per_channel: bool = False


# Slack's published limits, https://api.slack.com/apis/rate-limits (Tier 3: 50+ per minute, Tier 4: 100+ per
# minute, "burst" behaviour tolerated) and each method's page. A tier's bucket holds a minute's worth of calls.
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    # https://api.slack.com/methods/chat.postMessage "Special rate limits": 1 message per second per channel,
    # "short bursts >1 allowed".
    "chat.postMessage": RateLimit(per_minute=60, burst=6, per_channel=True),
    # https://api.slack.com/methods/apps.connections.open: Tier 1 (1+ per minute); an app may hold up to 10
    # connections at once (https://api.slack.com/apis/connections/socket), so a burst of 10 is allowed.
    "apps.connections.open": RateLimit(per_minute=1, burst=10),
    "chat.update": RateLimit(per_minute=50, burst=50),  # https://api.slack.com/methods/chat.update: Tier 3
    "chat.postEphemeral": RateLimit(per_minute=100, burst=100),  # .../methods/chat.postEphemeral: Tier 4
    "conversations.open": RateLimit(per_minute=50, burst=50),  # .../methods/conversations.open: Tier 3
    "users.info": RateLimit(per_minute=100, burst=100),  # .../methods/users.info: Tier 4
    # https://api.slack.com/methods/usergroups.users.list: Tier 2 (20+ per minute).
    "usergroups.users.list": RateLimit(per_minute=20, burst=20),
    "views.open": RateLimit(per_minute=100, burst=100),  # .../methods/views.open: Tier 4
    "views.update": RateLimit(per_minute=100, burst=100),  # .../methods/views.update: Tier 4
    "views.push": RateLimit(per_minute=100, burst=100),  # .../methods/views.push: Tier 4
    "views.publish": RateLimit(per_minute=100, burst=100),  # .../methods/views.publish: Tier 4
    # .../methods/files.getUploadURLExternal and .../methods/files.completeUploadExternal: Tier 4
    "files.getUploadURLExternal": RateLimit(per_minute=100, burst=100),
    "files.completeUploadExternal": RateLimit(per_minute=100, burst=100),
}

# Methods that take the app-level token (xapp-), not the bot token.
APP_TOKEN_PREFIX = "xapp-"  # noqa: S105 - a token prefix, not a credential
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
_JSON_ARG_KEYS = ("blocks", "view", "attachments")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100
_APP_ID = "AKODING"


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in received; tests assert on these instead of on mocks."""

    method: str  # e.g. "chat.postMessage", or "response_url" for posts to a response_url
    body: dict[str, Any]  # parsed arguments; JSON-holding "blocks"/"view"/"attachments" strings decoded
    raw: str = field(repr=False)  # exact request body text (hidden from repr: it may hold secrets)
    headers: dict[str, str] = field(repr=False)  # hidden from repr: carries the bearer token
    at: float
    failed: bool = False  # True when the answer was not a success (injected or a real Slack error)
    status: int = 200  # HTTP status answered (0 when the connection was dropped on purpose)
    response: dict[str, Any] | None = field(default=None, repr=False)  # the JSON answered, if any


@dataclass(frozen=True)
class RecordedViolation:
    """A Block Kit rule a body broke: the method (or "ack" for an HTTP answer of the app), path and message."""

    method: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.message}"


@dataclass(frozen=True)
class RateLimited:
    """A call answered HTTP 429 because it went past the method's rate limit."""

    method: str
    key: str  # the channel for per-channel limits, else the workspace
    at: float
    retry_after: int


class _SlackError(Exception):
    """A Slack-style ``{"ok": false, "error": ...}`` answer."""

    def __init__(
        self, error: str, *, status: int = 200, detail: str | None = None, details: list[str] | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.details = [detail] if detail else list(details or [])

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.details:
            body["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in self.details]}
        return body


@dataclass
class _Failure:
    error: str | None
    status: int
    retry_after: int | None
    drop_connection: bool
    remaining: int


@dataclass
class _ResponseUrl:
    url: str
    channel: str | None
    ts: str | None
    user: str | None


@dataclass
class _Answer:
    status: int
    payload: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


# ------------------------------------------------------------------------------------------------ helpers


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[len("bearer ") :].strip() or None
    return None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _decode_json_args(args: dict[str, Any]) -> dict[str, Any]:
    """Form posts carry blocks/view/attachments as JSON strings; decode them so tests see real objects."""
    for key in _JSON_ARG_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            # Undecodable text is left as is; the method then answers with its own format error.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def _parse_args(query: str, content_type: str, raw: bytes) -> dict[str, Any]:
    """Merge query-string and body arguments (body wins), whatever encoding slack_sdk chose."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";")[0].strip().lower()
    if raw:
        if mime == "application/json":
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                raise _SlackError("invalid_json") from exc
            if not isinstance(parsed, dict):
                raise _SlackError("invalid_json")
            args.update(parsed)
        elif mime == "multipart/form-data":
            args.update(_parse_multipart(content_type, raw))
        else:
            args.update(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    return _decode_json_args(args)


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    out: dict[str, Any] = {}
    if not message.is_multipart():
        return out
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        out[str(name)] = f"<file {filename}, {len(payload)} bytes>" if filename else payload.decode()
    return out


def _parse_response_url_body(content_type: str, raw: str) -> dict[str, Any]:
    """response_url posts are JSON; a form-encoded ``payload=<json>`` is accepted as Slack does."""
    mime = content_type.split(";")[0].strip().lower()
    text = raw
    if mime == "application/x-www-form-urlencoded":
        text = dict(parse_qsl(raw, keep_blank_values=True)).get("payload", "")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise _SlackError("invalid_payload", status=400) from exc
    if not isinstance(body, dict):
        raise _SlackError("invalid_payload", status=400)
    return _decode_json_args(body)


def _message_content(
    args: dict[str, Any], *, status: int = 200
) -> tuple[str | None, list[Any] | None, list[Any] | None]:
    """Pull text/blocks/attachments out of a message call and apply Slack's format and size limits."""
    text = _str(args.get("text"))
    if text == "":
        text = None
    if text is not None and len(text) > _MAX_TEXT_CHARS:
        raise _SlackError("msg_too_long", status=status)
    blocks = args.get("blocks")
    if blocks is not None and not _blocks_well_formed(blocks):
        raise _SlackError("invalid_blocks_format", status=status)
    attachments = args.get("attachments")
    if attachments is not None and not isinstance(attachments, list):
        raise _SlackError("invalid_attachments", status=status)
    return text, blocks, attachments


def _blocks_well_formed(blocks: Any) -> bool:
    return isinstance(blocks, list) and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)


def _validate_view(view: Any, *, allowed_types: set[str]) -> dict[str, Any]:
    """Reject views Slack would reject (``invalid_arguments``) so layout bugs fail in tests, not in prod."""
    if not isinstance(view, dict):
        raise _SlackError("invalid_arguments", detail="failed to match all allowed schemas [json-pointer:/view]")
    view_type = view.get("type")
    if view_type not in allowed_types:
        raise _SlackError(
            "invalid_arguments", detail=f"view type must be one of {sorted(allowed_types)} [json-pointer:/view/type]"
        )
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or any(not isinstance(b, dict) or "type" not in b for b in blocks):
        raise _SlackError("invalid_arguments", detail="blocks must be a list of blocks [json-pointer:/view/blocks]")
    # Sizes, counts and block_ids were checked by blockkit_rules before the method ran; these are the shape rules.
    if view_type == "modal":
        if not isinstance(view.get("title"), dict):
            raise _SlackError("invalid_arguments", detail="missing required field: title [json-pointer:/view]")
        if view.get("submit") is None and any(b.get("type") == "input" for b in blocks):
            raise _SlackError("invalid_arguments", detail="must provide a submit property when using input blocks")
    return view


def _drain(h: BaseHTTPRequestHandler, length: int) -> None:
    """Read and discard an oversized body so the client sees our 413 instead of a connection reset."""
    if length <= 0:
        return
    remaining = length
    h.connection.settimeout(5)
    try:
        while remaining > 0:
            chunk = h.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:
        pass


def _write(h: BaseHTTPRequestHandler, answer: _Answer) -> None:
    data = json.dumps(answer.payload if answer.payload is not None else {}).encode("utf-8")
    h.send_response(answer.status)
    h.send_header("Content-Type", "application/json; charset=utf-8")
    h.send_header("Content-Length", str(len(data)))
    for name, value in answer.headers.items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(data)


def _summarise(calls: list[RecordedCall]) -> str:
    """Method names, outcome and argument *names* only: bodies may hold secrets and must not be printed."""
    if not calls:
        return "  (none)"
    lines = []
    for i, call in enumerate(calls, 1):
        outcome = ""
        if call.failed:
            error = call.response.get("error") if call.response else None
            outcome = f" [failed: HTTP {call.status}{', ' + str(error) if error else ''}]"
        lines.append(f"  {i}. {call.method}{outcome} args={sorted(call.body)}")
    return "\n".join(lines)
