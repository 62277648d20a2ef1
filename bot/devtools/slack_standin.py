"""A local HTTP server that plays the Slack Web API.

Why: the bot talks to Slack through ``slack_sdk`` over real HTTP. Mocking the client object would skip the
request encoding, auth header, retry handling and error mapping that break in production, so tests and the
offline demo point ``WebClient(base_url=standin.base_url)`` at this server instead. It answers with the same
shapes and error codes Slack uses, records every request, keeps the current state of messages and views,
and can inject failures (error answers, 429s, dropped connections).

It is strict on purpose: every message and view body is held to Slack's documented Block Kit limits
(`bot.devtools.blockkit_rules`) and refused the way Slack refuses it (``invalid_blocks`` for chat.* and
response_url posts, ``invalid_arguments`` for views.*); each broken rule is kept in ``violations`` so the test
suite can fail a test that produced one it did not expect. Calls past Slack's per-method rate limits are
answered HTTP 429 with Retry-After (``DEFAULT_RATE_LIMITS``, adjustable per method) and kept in ``rate_limited``.

Only the methods the bot uses are implemented; anything else answers ``unknown_method`` so an unexpected
call is loud. Request bodies are never printed or logged, because they may carry secrets.
"""

from __future__ import annotations

import contextlib
import copy
import email.parser
import email.policy
import hashlib
import json
import math
import re
import secrets
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.devtools import blockkit_rules

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "MAX_BODY_BYTES",
    "RateLimit",
    "RateLimited",
    "RecordedCall",
    "RecordedViolation",
    "SlackStandIn",
    "live_standins",
    "tracking_standins",
]

#: Bodies above this size are refused with HTTP 413 (Slack refuses oversized requests too).
MAX_BODY_BYTES = 1024 * 1024

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
    "chat.update": RateLimit(per_minute=50, burst=50),  # https://api.slack.com/methods/chat.update: Tier 3
    "chat.postEphemeral": RateLimit(per_minute=100, burst=100),  # .../methods/chat.postEphemeral: Tier 4
    "conversations.open": RateLimit(per_minute=50, burst=50),  # .../methods/conversations.open: Tier 3
    "users.info": RateLimit(per_minute=100, burst=100),  # .../methods/users.info: Tier 4
    "views.open": RateLimit(per_minute=100, burst=100),  # .../methods/views.open: Tier 4
    "views.update": RateLimit(per_minute=100, burst=100),  # .../methods/views.update: Tier 4
    "views.push": RateLimit(per_minute=100, burst=100),  # .../methods/views.push: Tier 4
    "views.publish": RateLimit(per_minute=100, burst=100),  # .../methods/views.publish: Tier 4
}

_live: weakref.WeakSet[SlackStandIn] = weakref.WeakSet()
_trackers: list[list[SlackStandIn]] = []


def live_standins() -> list[SlackStandIn]:
    """Every SlackStandIn not yet garbage-collected."""
    return list(_live)


@contextlib.contextmanager
def tracking_standins() -> Iterator[list[SlackStandIn]]:
    """A list of the stand-ins alive at entry plus every one created inside the block, held until the block
    ends (so a test fixture can check all of them for violations even after they were stopped and dropped)."""
    tracked = live_standins()
    _trackers.append(tracked)
    try:
        yield tracked
    finally:
        _trackers.remove(tracked)


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: SlackStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up (timeouts, dropped connections); report real bugs."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection keeps drop_connection simple and exact

    def do_POST(self) -> None:
        self.server.standin._serve(self)

    def do_GET(self) -> None:
        self.server.standin._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; tests run many requests and bodies must never leak."""


class SlackStandIn:
    """A real HTTP server on 127.0.0.1 that answers like the Slack Web API and records every call."""

    def __init__(
        self,
        *,
        team_id: str = "T0KODING",
        bot_user_id: str = "UKODINGBOT",
        bot_id: str = "BKODINGBOT",
        token_prefix: str = "xoxb-",  # noqa: S107 - a token *prefix* to accept, not a credential
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        """``rate_limits`` replaces DEFAULT_RATE_LIMITS (``{}``: none); ``set_rate_limit`` changes one method."""
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.token_prefix = token_prefix
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._rate_limits: dict[str, RateLimit] = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self._violations: list[RecordedViolation] = []
        self._expected: list[tuple[str | None, re.Pattern[str]]] = []
        self._reset_state()
        _live.add(self)
        for tracked in _trackers:
            tracked.append(self)

    # ----------------------------------------------------------------------------------------- lifecycle

    def start(self) -> SlackStandIn:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread (so a hung test can still exit)."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port; only known after start()."""
        if self._port is None:
            raise RuntimeError("SlackStandIn is not started; call start() or use it as a context manager")
        return self._port

    @property
    def base_url(self) -> str:
        """Pass to ``WebClient(base_url=...)``; the trailing slash matters to slack_sdk."""
        return f"http://127.0.0.1:{self.port}/api/"

    def new_response_url(self, *, channel: str | None = None, ts: str | None = None, user: str | None = None) -> str:
        """Mint a response_url like the ones in interaction payloads.

        Posts to it are recorded with method "response_url". When bound to a message (channel + ts),
        ``replace_original`` / ``delete_original`` change that message's state, as they do in Slack;
        ``response_type: in_channel`` posts a new message to ``channel``, and an ephemeral reply is stored
        for ``user`` when given.
        """
        token = secrets.token_urlsafe(18)
        url = f"http://127.0.0.1:{self.port}/response/{token}"
        resolved = self._resolve_channel(channel) if channel else None
        with self._lock:
            self._response_urls[token] = _ResponseUrl(url=url, channel=resolved, ts=ts, user=user)
        return url

    # -------------------------------------------------------------------------------------- inspection

    @property
    def calls(self) -> list[RecordedCall]:
        """A snapshot of every recorded call, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Recorded calls for one method (e.g. "chat.postMessage" or "response_url")."""
        return [c for c in self.calls if c.method == method]

    def clear(self) -> None:
        """Forget recorded calls only; messages, views and pending failures stay."""
        with self._lock:
            self._calls.clear()

    def reset(self) -> None:
        """Forget everything (calls, messages, views, users, failures) so one server can serve many tests."""
        with self._lock:
            self._reset_state()

    def wait_for(self, predicate: Callable[[list[RecordedCall]], bool], timeout: float = 5.0) -> list[RecordedCall]:
        """Poll until ``predicate(calls)`` holds, for code that calls Slack from another thread."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.calls
            if predicate(snapshot):
                return snapshot
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"SlackStandIn.wait_for timed out after {timeout}s; "
                    f"{len(snapshot)} call(s) recorded:\n{_summarise(snapshot)}"
                )
            time.sleep(0.02)

    def fail_next(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
        drop_connection: bool = False,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail, to exercise the bot's error and retry paths.

        Answers ``{"ok": false, "error": error}`` with HTTP ``status``; with ``retry_after`` the status
        becomes 429 (unless another non-200 status is given) and a Retry-After header is sent; with
        ``drop_connection`` the socket is closed without any answer. Failures queue up per method.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if retry_after is not None and status == 200:
            status = 429
        with self._lock:
            self._failures.setdefault(method, []).append(
                _Failure(
                    error=error,
                    status=status,
                    retry_after=retry_after,
                    drop_connection=drop_connection,
                    remaining=times,
                )
            )

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Current state of a posted message (after any chat.update), or None; a user id means their DM."""
        with self._lock:
            found = self._messages.get((self._resolve_channel(channel), ts))
            return copy.deepcopy(found)

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Current state of all posted messages in post order, optionally for one channel."""
        wanted = self._resolve_channel(channel) if channel else None
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.values() if wanted is None or m["channel"] == wanted]

    def ephemerals(self, user_id: str) -> list[dict[str, Any]]:
        """Bodies of ephemeral messages shown to ``user_id`` (chat.postEphemeral and response_url)."""
        with self._lock:
            return [copy.deepcopy(body) for user, body in self._ephemerals if user == user_id]

    def view(self, view_id: str) -> dict[str, Any] | None:
        """Current state of a modal or home view (after views.update / push), or None."""
        with self._lock:
            return copy.deepcopy(self._views.get(view_id))

    def published_home(self, user_id: str) -> dict[str, Any] | None:
        """The last App Home view published for ``user_id``, or None."""
        with self._lock:
            view_id = self._homes.get(user_id)
            return copy.deepcopy(self._views.get(view_id)) if view_id else None

    def dm_channel(self, user_id: str) -> str:
        """The DM channel id used for ``user_id``: deterministic so tests can predict it."""
        return "D" + user_id[1:]

    def set_user(
        self,
        user_id: str,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        deleted: bool = False,
        is_bot: bool = False,
    ) -> None:
        """Override what users.info answers for one user (e.g. a deactivated or bot account)."""
        with self._lock:
            self._users[user_id] = {
                "real_name": real_name,
                "display_name": display_name,
                "email": email,
                "deleted": deleted,
                "is_bot": is_bot,
            }

    # ------------------------------------------------------------------------------ strictness: Block Kit

    @property
    def violations(self) -> list[RecordedViolation]:
        """Every Block Kit rule broken so far, oldest first (kept across clear() and reset())."""
        with self._lock:
            return list(self._violations)

    def record_violations(self, method: str, found: list[blockkit_rules.Violation]) -> None:
        """Keep violations found elsewhere (the driver checks the app's HTTP acks) beside the stand-in's own."""
        with self._lock:
            self._violations += [RecordedViolation(method, v.path, v.message) for v in found]

    def expect_violations(self, pattern: str = "", *, method: str | None = None) -> None:
        """Declare that this test means to break a rule: violations whose ``str()`` matches ``pattern`` (a regular
        expression searched in "method path: message"), for ``method`` if given, are not reported."""
        with self._lock:
            self._expected.append((method, re.compile(pattern)))

    def unexpected_violations(self, since: int = 0) -> list[RecordedViolation]:
        """Violations from the ``since``-th on that no ``expect_violations`` declaration covers."""
        with self._lock:
            found, expected = self._violations[since:], list(self._expected)
        return [v for v in found if not any((m is None or m == v.method) and p.search(str(v)) for m, p in expected)]

    def forget_expectations(self) -> None:
        with self._lock:
            self._expected.clear()

    def _check(self, method: str, found: list[blockkit_rules.Violation], error: str, status: int = 200) -> None:
        """Record and refuse, as Slack does, a body that broke a rule (caller holds the lock)."""
        if not found:
            return
        self._violations += [RecordedViolation(method, v.path, v.message) for v in found]
        raise _SlackError(error, status=status, details=[str(v) for v in found])

    # ------------------------------------------------------------------------------ strictness: rate limits

    @property
    def rate_limited(self) -> list[RateLimited]:
        """Every call answered 429 by a rate limit (not by fail_next), oldest first."""
        with self._lock:
            return list(self._rate_limited)

    def set_rate_limit(self, method: str, limit: RateLimit | None) -> None:
        """Tighten, loosen or (None) lift one method's limit; its buckets start full."""
        with self._lock:
            if limit is None:
                self._rate_limits.pop(method, None)
            else:
                self._rate_limits[method] = limit
            self._buckets = {k: b for k, b in self._buckets.items() if k[0] != method}

    def disable_rate_limits(self) -> None:
        with self._lock:
            self._rate_limits.clear()
            self._buckets.clear()

    @contextlib.contextmanager
    def rate_limits_lifted(self) -> Iterator[None]:
        """No rate limits inside the block (e.g. a test that seeds many messages fast), the same ones after it."""
        with self._lock:
            saved = dict(self._rate_limits)
        self.disable_rate_limits()
        try:
            yield
        finally:
            with self._lock:
                self._rate_limits = saved

    def _take_token(self, method: str, args: dict[str, Any]) -> _Answer | None:
        """None when the call is within the method's limit, else the 429 Slack answers (caller holds the lock)."""
        limit = self._rate_limits.get(method)
        if limit is None:
            return None
        key = self._resolve_channel(_str(args.get("channel")) or "") if limit.per_channel else self.team_id
        now = time.monotonic()
        tokens, last = self._buckets.get((method, key), (float(limit.burst), now))
        rate = limit.per_minute / 60.0
        tokens = min(float(limit.burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[(method, key)] = (tokens - 1.0, now)
            return None
        self._buckets[(method, key)] = (tokens, now)
        retry_after = max(1, math.ceil((1.0 - tokens) / rate))
        self._rate_limited.append(RateLimited(method, key, time.time(), retry_after))
        return _Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    # ----------------------------------------------------------------------------------------- internals

    def _reset_state(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._rate_limited: list[RateLimited] = []
        self._calls: list[RecordedCall] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ephemerals: list[tuple[str, dict[str, Any]]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._external_ids: dict[str, str] = {}
        self._homes: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._last_root_view_id: str | None = None
        self._last_modal_view_id: str | None = None
        self._seq = 0

    def _resolve_channel(self, channel: str) -> str:
        return self.dm_channel(channel) if _USER_ID.fullmatch(channel) else channel

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_ts(self) -> str:
        micros = _FIRST_TS_MICROS + self._next_seq() * _TS_STEP_MICROS
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_hash(self) -> str:
        return f"{1_700_000_000 + self._next_seq()}.{secrets.token_hex(4)}"

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    # ----------------------------------------------------------------------------------- HTTP plumbing

    def _serve(self, h: _Handler) -> None:
        """Handle one request: read, record, answer. Recording happens before answering so a caller that
        got its answer always finds its call in ``calls``."""
        url = urlsplit(h.path)
        headers = {k: v for k, v in h.headers.items()}
        if url.path.startswith("/api/"):
            method = url.path[len("/api/") :]
        elif url.path.startswith("/response/"):
            method = "response_url"
        else:
            method = url.path
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            _drain(h, length)
            error = _SlackError("request_too_large", status=413)
            answer = _Answer(status=413 if length > 0 else 400, payload=error.payload())
            self._record(method, {}, "", headers, answer)
            h.close_connection = True
            _write(h, answer)
            return
        raw_bytes = h.rfile.read(length) if length else b""
        raw = raw_bytes.decode("utf-8", errors="replace")
        try:
            if url.path.startswith("/api/"):
                body, answer = self._api(method, url.query, h.headers.get("Content-Type", ""), raw_bytes, h)
            elif method == "response_url":
                body, answer = self._response_url(url.path, h.command, h.headers.get("Content-Type", ""), raw)
            else:
                body, answer = {}, _Answer(404, {"ok": False, "error": "unknown_path"})
        except Exception:
            answer = _Answer(500, {"ok": False, "error": "standin_internal_error"})
            self._record(method, {}, raw, headers, answer)
            _write(h, answer)
            raise  # a bug in the stand-in itself: let the server print the traceback
        self._record(method, body, raw, headers, answer)
        if answer.drop:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        _write(h, answer)

    def _record(self, method: str, body: dict[str, Any], raw: str, headers: dict[str, str], answer: _Answer) -> None:
        ok = answer.payload is not None and answer.payload.get("ok") is True and answer.status == 200
        call = RecordedCall(
            method=method,
            body=body,
            raw=raw,
            headers=headers,
            at=time.time(),
            failed=not ok,
            status=0 if answer.drop else answer.status,
            response=copy.deepcopy(answer.payload),
        )
        with self._lock:
            self._calls.append(call)

    def _injected(self, method: str) -> _Answer | None:
        with self._lock:
            failure = self._take_failure(method)
        if failure is None:
            return None
        if failure.drop_connection:
            return _Answer(0, None, drop=True)
        error = failure.error or ("ratelimited" if failure.status == 429 else "internal_error")
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
        return _Answer(failure.status, {"ok": False, "error": error}, headers)

    def _api(
        self, method: str, query: str, content_type: str, raw: bytes, h: _Handler
    ) -> tuple[dict[str, Any], _Answer]:
        try:
            args = _parse_args(query, content_type, raw)
        except _SlackError as exc:
            return {}, _Answer(exc.status, exc.payload())
        injected = self._injected(method)
        if injected is not None:
            return args, injected
        token = _bearer(h.headers.get("Authorization")) or args.get("token")
        if not token:
            return args, _Answer(200, {"ok": False, "error": "not_authed"})
        if not isinstance(token, str) or not token.startswith(self.token_prefix):
            return args, _Answer(200, {"ok": False, "error": "invalid_auth"})
        handler = self._methods().get(method)
        if handler is None:
            return args, _Answer(200, {"ok": False, "error": "unknown_method"})
        try:
            with self._lock:
                limited = self._take_token(method, args)
                if limited is not None:
                    return args, limited
                if method in _MESSAGE_METHODS and _blocks_well_formed(args.get("blocks", [])):
                    self._check(method, blockkit_rules.check_message(args), "invalid_blocks")
                elif method in _VIEW_METHODS and isinstance(args.get("view"), dict):
                    self._check(method, blockkit_rules.check_view(args["view"]), "invalid_arguments")
                result = handler(args)
        except _SlackError as exc:
            return args, _Answer(exc.status, exc.payload())
        return args, _Answer(200, {"ok": True, **result})

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    # ------------------------------------------------------------------------- Web API methods (locked)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://koding-test.slack.com/",
            "team": "Koding Test",
            "user": "koding-iam",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel:
            raise _SlackError("channel_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text")
        resolved = self._resolve_channel(channel)
        ts = self._next_ts()
        stored: dict[str, Any] = {"channel": resolved, "ts": ts, "text": text or "", "blocks": blocks or []}
        if attachments:
            stored["attachments"] = attachments
        if args.get("thread_ts"):
            stored["thread_ts"] = _str(args["thread_ts"])
        self._messages[(resolved, ts)] = copy.deepcopy(stored)
        return {"channel": resolved, "ts": ts, "message": self._message_payload(stored)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel or _USER_ID.fullmatch(channel):
            raise _SlackError("channel_not_found")
        ts = _str(args.get("ts"))
        stored = self._messages.get((channel, ts or ""))
        if stored is None:
            raise _SlackError("message_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and blocks is None and attachments is None:
            raise _SlackError("no_text")
        # Like Slack: fields left out keep their previous value; an empty blocks list removes the blocks.
        if text is not None:
            stored["text"] = text
        if blocks is not None:
            stored["blocks"] = blocks
        if attachments is not None:
            stored["attachments"] = attachments
        message = self._message_payload(stored)
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": stored["ts"], "text": stored["text"], "message": message}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel:
            raise _SlackError("channel_not_found")
        user = _str(args.get("user"))
        if not user:
            raise _SlackError("user_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text")
        self._ephemerals.append((user, copy.deepcopy(args)))
        return {"message_ts": self._next_ts()}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        users = [u.strip() for u in (_str(args.get("users")) or "").split(",") if u.strip()]
        if channel:
            return {"channel": {"id": channel}}
        if not users:
            raise _SlackError("users_list_not_supplied")
        if any(not _USER_ID.fullmatch(u) for u in users):
            raise _SlackError("user_not_found")
        if len(users) == 1:
            return {"channel": {"id": self.dm_channel(users[0])}}
        digest = hashlib.sha256(",".join(sorted(users)).encode()).hexdigest()[:10].upper()
        return {"channel": {"id": "G" + digest}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _str(args.get("user"))
        if not user_id or not _USER_ID.fullmatch(user_id):
            raise _SlackError("user_not_found")
        override = self._users.get(user_id, {})
        real_name = override.get("real_name") or f"Test User {user_id}"
        display_name = override.get("display_name") or user_id.lower()
        profile: dict[str, Any] = {"display_name": display_name, "real_name": real_name}
        if override.get("email"):
            profile["email"] = override["email"]
        return {
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": user_id.lower(),
                "real_name": real_name,
                "deleted": bool(override.get("deleted", False)),
                "is_bot": bool(override.get("is_bot", False)),
                "profile": profile,
            }
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_modal(args, push=False)

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_modal(args, push=True)

    def _open_modal(self, args: dict[str, Any], *, push: bool) -> dict[str, Any]:
        trigger_id = _str(args.get("trigger_id"))
        if not trigger_id:
            raise _SlackError("invalid_arguments", detail="missing required field: trigger_id")
        view = _validate_view(args.get("view"), allowed_types={"modal"})
        external_id = _str(view.get("external_id"))
        if external_id and external_id in self._external_ids:
            raise _SlackError("duplicate_external_id")
        if "expired" in trigger_id:
            raise _SlackError("expired_trigger_id")
        if trigger_id in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        self._used_triggers.add(trigger_id)
        view_id = f"V{self._next_seq():010d}"
        if push and self._last_root_view_id:
            root_view_id, previous_view_id = self._last_root_view_id, self._last_modal_view_id
        else:
            root_view_id, previous_view_id = view_id, None
        stored = self._stored_view(view, view_id, root_view_id=root_view_id, previous_view_id=previous_view_id)
        self._views[view_id] = stored
        if external_id:
            self._external_ids[external_id] = view_id
        self._last_root_view_id, self._last_modal_view_id = root_view_id, view_id
        return {"view": copy.deepcopy(stored)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = _str(args.get("view_id"))
        external_id = _str(args.get("external_id"))
        if not view_id and not external_id:
            raise _SlackError("invalid_arguments", detail="missing required field: view_id or external_id")
        if not view_id and external_id:
            view_id = self._external_ids.get(external_id)
        current = self._views.get(view_id or "")
        if current is None:
            raise _SlackError("not_found")
        view = _validate_view(args.get("view"), allowed_types={current["type"]})
        wanted_hash = _str(args.get("hash"))
        if wanted_hash and wanted_hash != current["hash"]:
            raise _SlackError("hash_conflict")
        new_external_id = _str(view.get("external_id"))
        if new_external_id and self._external_ids.get(new_external_id, current["id"]) != current["id"]:
            raise _SlackError("duplicate_external_id")
        stored = self._stored_view(
            view,
            current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current.get("previous_view_id"),
        )
        if not new_external_id and current.get("external_id"):
            stored["external_id"] = current["external_id"]
        elif new_external_id:
            self._external_ids[new_external_id] = current["id"]
        self._views[current["id"]] = stored
        return {"view": copy.deepcopy(stored)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _str(args.get("user_id"))
        if not user_id:
            raise _SlackError("invalid_arguments", detail="missing required field: user_id")
        view = _validate_view(args.get("view"), allowed_types={"home"})
        existing_id = self._homes.get(user_id)
        wanted_hash = _str(args.get("hash"))
        if wanted_hash and existing_id and wanted_hash != self._views[existing_id]["hash"]:
            raise _SlackError("hash_conflict")
        view_id = existing_id or f"V{self._next_seq():010d}"
        stored = self._stored_view(view, view_id, root_view_id=view_id, previous_view_id=None)
        self._views[view_id] = stored
        self._homes[user_id] = view_id
        return {"view": copy.deepcopy(stored)}

    def _stored_view(
        self, view: dict[str, Any], view_id: str, *, root_view_id: str, previous_view_id: str | None
    ) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "title": None,
            "close": None,
            "submit": None,
            "clear_on_close": False,
            "notify_on_close": False,
            "external_id": "",
        }
        server_fields = {
            "id": view_id,
            "team_id": self.team_id,
            "hash": self._new_hash(),
            "previous_view_id": previous_view_id,
            "root_view_id": root_view_id,
            "app_id": _APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        return copy.deepcopy({**defaults, **view, **server_fields})

    def _message_payload(self, stored: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "text": stored["text"],
            "blocks": copy.deepcopy(stored["blocks"]),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": stored["ts"],
        }
        for key in ("attachments", "thread_ts"):
            if key in stored:
                message[key] = copy.deepcopy(stored[key])
        return message

    # ---------------------------------------------------------------------------------- response_url

    def _response_url(self, path: str, command: str, content_type: str, raw: str) -> tuple[dict[str, Any], _Answer]:
        token = path[len("/response/") :]
        url = f"http://127.0.0.1:{self.port}/response/{token}"
        try:
            body = _parse_response_url_body(content_type, raw)
        except _SlackError as exc:
            return {"_response_url": url}, _Answer(exc.status, exc.payload())
        body["_response_url"] = url
        injected = self._injected("response_url")
        if injected is not None:
            return body, injected
        if command != "POST":
            return body, _Answer(405, {"ok": False, "error": "method_not_allowed"})
        try:
            with self._lock:
                binding = self._response_urls.get(token)
                if binding is None:
                    raise _SlackError("expired_url", status=404)
                self._apply_response(binding, body)
        except _SlackError as exc:
            return body, _Answer(exc.status, exc.payload())
        return body, _Answer(200, {"ok": True})

    def _apply_response(self, binding: _ResponseUrl, body: dict[str, Any]) -> None:
        """Mirror what Slack does with a response_url post on the message it came from."""
        key = (binding.channel, binding.ts) if binding.channel is not None and binding.ts is not None else None
        if _truthy(body.get("delete_original")):
            if key is not None:
                self._messages.pop(key, None)
            return
        if _blocks_well_formed(body.get("blocks", [])):
            self._check("response_url", blockkit_rules.check_message(body), "invalid_blocks", status=400)
        text, blocks, attachments = _message_content(body, status=400)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text", status=400)
        if _truthy(body.get("replace_original")):
            if key is not None and key in self._messages:
                stored = self._messages[key]
                stored["text"] = text or ""
                stored["blocks"] = blocks or []
                stored.pop("attachments", None)
                if attachments:
                    stored["attachments"] = attachments
            return
        if body.get("response_type") == "in_channel":
            if binding.channel:
                ts = self._next_ts()
                stored = {"channel": binding.channel, "ts": ts, "text": text or "", "blocks": blocks or []}
                if attachments:
                    stored["attachments"] = attachments
                self._messages[(binding.channel, ts)] = stored
            return
        if binding.user:
            self._ephemerals.append((binding.user, copy.deepcopy(body)))


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


def _drain(h: _Handler, length: int) -> None:
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


def _write(h: _Handler, answer: _Answer) -> None:
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
