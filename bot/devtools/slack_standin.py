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
call is loud. Request bodies are never printed or logged, because they may carry secrets. With a Socket Mode
stand-in attached (``socket_mode``, bot/devtools/socket_standin.py), apps.connections.open hands out its URL.

This module holds the server, its state and what tests read of it; the methods are in ``slack_methods`` (file
uploads in ``slack_files``), strictness and faults in ``slack_strictness``, records and parsing in ``slack_wire``.
"""

from __future__ import annotations

import contextlib
import copy
import re
import secrets
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from bot.devtools.slack_files import UPLOAD_PATH, FileUploads
from bot.devtools.slack_methods import WebApiMethods
from bot.devtools.slack_strictness import Strictness
from bot.devtools.slack_wire import (
    _FIRST_TS_MICROS,
    _TS_STEP_MICROS,
    _USER_ID,
    DEFAULT_RATE_LIMITS,
    MAX_BODY_BYTES,
    MAX_UPLOAD_BYTES,
    RateLimit,
    RateLimited,
    RecordedCall,
    RecordedViolation,
    _Answer,  # bench/rotation_sweep.py imports it from here too
    _drain,
    _Failure,
    _parse_args,  # noqa: F401 - bench/rotation_sweep.py imports it from here
    _ResponseUrl,
    _SlackError,
    _summarise,
    _write,
)

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


class SlackStandIn(WebApiMethods, FileUploads, Strictness):
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
        is_restricted: bool = False,
        unknown: bool = False,
    ) -> None:
        """Override what users.info answers for one user (a deactivated or bot account, a guest; `unknown`:
        users.info answers `user_not_found`)."""
        with self._lock:
            self._users[user_id] = {
                "real_name": real_name,
                "display_name": display_name,
                "email": email,
                "deleted": deleted,
                "is_bot": is_bot,
                "is_restricted": is_restricted,
                "unknown": unknown,
            }

    def deactivate_user(self, user_id: str) -> None:
        """The member is deactivated: users.info answers `deleted: true` from now on."""
        with self._lock:
            self._users[user_id] = {**self._users.get(user_id, {}), "deleted": True}

    def set_usergroup(self, group_id: str, members: list[str], *, disabled: bool = False) -> None:
        """Define (or replace) a user group (`S…`) and its members, as usergroups.users.list answers them."""
        with self._lock:
            self._usergroups[group_id] = list(members)
            if disabled:
                self._disabled_usergroups.add(group_id)
            else:
                self._disabled_usergroups.discard(group_id)

    def remove_from_usergroup(self, group_id: str, user_id: str) -> None:
        with self._lock:
            self._usergroups[group_id] = [u for u in self._usergroups.get(group_id, []) if u != user_id]

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {**WebApiMethods._methods(self), **self._file_methods()}

    def _reset_state(self) -> None:
        self._files: dict[str, Any] = {}
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
        self._usergroups: dict[str, list[str]] = {}
        self._disabled_usergroups: set[str] = set()
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
        elif url.path.startswith(UPLOAD_PATH):
            method = "upload_url"
        else:
            method = url.path
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = MAX_UPLOAD_BYTES if method == "upload_url" else MAX_BODY_BYTES
        if length < 0 or length > limit:
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
            elif method == "upload_url":
                body, answer = self._upload(url.path, h.command, raw_bytes)
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
