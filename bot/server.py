"""HTTP serving: a small WSGI router in front of Bolt (POST /slack/events) with GET /healthz and GET /metrics
(Prometheus text format, bot/metrics.py), run by waitress.

The router checks the Slack signature itself before handing the request to Bolt: Bolt checks it too, but
answers a non-numeric timestamp or an unparsable payload with a 500, where a 401 or 400 is the right answer.
A signed request seen before (same timestamp and signature) is a replay: an empty 200, and nothing runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Engine

from bot.db import ping
from bot.metrics import Metrics
from bot.replay import ReplayGuard

log = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack payloads are far smaller; anything larger is refused before parsing.

StartResponse = Callable[..., Any]


def ops_endpoint(
    environ: dict[str, Any], start_response: StartResponse, engine: Engine, metrics: Metrics | None
) -> list[bytes] | None:
    """GET /healthz (the database reachable?) and GET /metrics; None for any other request. Shared with the
    health server that runs beside Socket Mode (bot/health_server.py)."""
    path = environ.get("PATH_INFO", "")
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return None
    if path == "/healthz":
        healthy = ping(engine)
        body = json.dumps({"ok": healthy, "database": "reachable" if healthy else "unreachable"}).encode()
        return answer(start_response, 200 if healthy else 503, body, "application/json")
    if path == "/metrics" and metrics is not None:
        body, content_type = metrics.exposition()
        return answer(start_response, 200, body, content_type)
    return None


def make_wsgi_app(
    app: App, engine: Engine, *, signing_secret: str, metrics: Metrics | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The router; `metrics` defaults to the app's own (bot/app.py `create_app`)."""
    verifier = SignatureVerifier(signing_secret)
    guard = ReplayGuard(engine)
    metrics = metrics or getattr(app, "metrics", None)

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if (ops := ops_endpoint(environ, start_response, engine, metrics)) is not None:
            return ops
        if path != SLACK_PATH or method != "POST":
            return answer(start_response, 404, b"not found")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return answer(start_response, 413, b"payload too large")
        request = WsgiHttpRequest(environ)
        try:
            body = request.get_body()
        except UnicodeDecodeError:
            return answer(start_response, 400, b"body is not UTF-8")
        headers = request.get_headers()
        if not _signed(verifier, body, headers):
            return answer(start_response, 401, b"invalid signature")
        try:
            first = guard.first_delivery(
                timestamp=headers["x-slack-request-timestamp"],
                signature=headers["x-slack-signature"],
                retry_num=headers.get("x-slack-retry-num"),
            )
        except Exception as exc:  # the database is down: nothing could be done safely, and Slack retries events
            log.warning("replay guard unavailable: %s", type(exc).__name__)
            return answer(start_response, 503, b"try again shortly")
        if not first:
            log.info("ignored a replayed request")
            return answer(start_response, 200, b"")
        try:
            bolt_request = BoltRequest(body=body, query=request.query_string, headers=headers)
        except (ValueError, TypeError, KeyError, AttributeError):
            return answer(start_response, 400, b"malformed payload")
        try:
            response = app.dispatch(bolt_request)
        except Exception as exc:  # Bolt itself choked on a signed but malformed payload
            log.warning("could not dispatch a signed request: %s", type(exc).__name__)
            return answer(start_response, 400, b"malformed payload")
        content_type = response.headers.get("content-type", ["text/plain; charset=utf-8"])[0]
        return answer(start_response, response.status, response.body.encode(), content_type)

    return wsgi


def not_found(start_response: StartResponse) -> list[bytes]:
    return answer(start_response, 404, b"not found")


def _signed(verifier: SignatureVerifier, body: str, headers: dict[str, Any]) -> bool:
    timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    if not isinstance(timestamp, str) or not timestamp.isascii() or not timestamp.isdigit():
        return False
    return isinstance(signature, str) and verifier.is_valid(body=body, timestamp=timestamp, signature=signature)


def answer(
    start_response: StartResponse,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: tuple[tuple[str, str], ...] = (),
) -> list[bytes]:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    start_response(f"{status} {reason}", [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]


# waitress, tuned for what Slack sends (small bodies, quick requests) and against idle or slow clients:
# - a body larger than the app accepts is refused with a 413 from its Content-Length, before any of it is read
#   (waitress refuses when Content-Length >= max_request_body_size, the app when it is > MAX_BODY);
# - a connection that sends nothing for CHANNEL_TIMEOUT seconds is closed, checked every CLEANUP_INTERVAL;
# - up to CONNECTION_LIMIT connections at once, watched with poll(): select() cannot watch a descriptor numbered
#   1024 or above, so with select (waitress's default) a thousand idle connections stop the server answering.
# Idle connections cost no worker thread (waitress hands a request to a thread only once it is complete), so
# /healthz and Slack's requests are answered while they wait. docs/SECURITY.md has the reverse proxy to add.
WAITRESS_OPTIONS: dict[str, Any] = {
    "max_request_body_size": MAX_BODY + 1,
    "max_request_header_size": 65536,
    "channel_timeout": 15,
    "cleanup_interval": 5,
    "connection_limit": 4000,
    "asyncore_use_poll": True,
    "backlog": 2048,
    "ident": "koding-iam",
    "clear_untrusted_proxy_headers": True,
}


def create_http_server(
    wsgi: Callable[..., Any],
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104
    threads: int = 16,
    **overrides: Any,
) -> Any:
    """A waitress server with WAITRESS_OPTIONS (tests pass `overrides`, e.g. a shorter timeout); call `.run()`."""
    from waitress.server import create_server

    limit = int(overrides.get("connection_limit", WAITRESS_OPTIONS["connection_limit"]))
    if raise_open_files_limit(limit + 256) < limit + 256:
        log.warning("the open-files limit is below %s: fewer connections than connection_limit can be open", limit)
    return create_server(wsgi, host=host, port=port, threads=threads, **{**WAITRESS_OPTIONS, **overrides})


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); the soft limit is
    often 1024, below the connection limit. Returns the soft limit in force."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
