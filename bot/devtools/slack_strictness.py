"""The Slack stand-in's strictness and fault injection: Block Kit violations kept and refused, per-method rate
limits answered 429 with Retry-After, and failures a test asks for (`fail_next`). A mixin of SlackStandIn.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.devtools import blockkit_rules
from bot.devtools.slack_wire import (
    _MESSAGE_METHODS,
    _VIEW_METHODS,
    APP_TOKEN_METHODS,
    APP_TOKEN_PREFIX,
    RateLimit,
    RateLimited,
    RecordedViolation,
    _Answer,
    _bearer,
    _blocks_well_formed,
    _Failure,
    _parse_args,
    _SlackError,
    _str,
)


class Strictness:
    """Violations, rate limits and injected failures, and `_api`, the gate every Web API call passes through
    (injected failure, token, rate limit, Block Kit rules) before its method runs; state lives on the SlackStandIn
    (see its _reset_state)."""

    token_prefix: str
    _methods: Callable[[], dict[str, Callable[[dict[str, Any]], dict[str, Any]]]]

    team_id: str
    _lock: threading.Lock
    _violations: list[RecordedViolation]
    _expected: list[tuple[str | None, re.Pattern[str]]]
    _rate_limits: dict[str, RateLimit]
    _buckets: dict[tuple[str, str], tuple[float, float]]
    _rate_limited: list[RateLimited]
    _failures: dict[str, list[_Failure]]
    _resolve_channel: Callable[[str], str]

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

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """The limits in force now (a test may have lifted or tightened some)."""
        with self._lock:
            return dict(self._rate_limits)

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

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

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
        self, method: str, query: str, content_type: str, raw: bytes, h: BaseHTTPRequestHandler
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
        if not isinstance(token, str):
            return args, _Answer(200, {"ok": False, "error": "invalid_auth"})
        # apps.connections.open takes the app-level token (xapp-) alone, every other method a bot token; a token of
        # the other kind is refused with not_allowed_token_type (https://api.slack.com/methods/apps.connections.open,
        # https://api.slack.com/authentication/token-types#app).
        wanted = APP_TOKEN_PREFIX if method in APP_TOKEN_METHODS else self.token_prefix
        if not token.startswith(wanted):
            known = token.startswith((APP_TOKEN_PREFIX, self.token_prefix))
            return args, _Answer(200, {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"})
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
