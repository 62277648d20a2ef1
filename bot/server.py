"""HTTP serving: a small WSGI router in front of Bolt (POST /slack/events) with GET /healthz, run by waitress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine

from bot.db import ping

SLACK_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack payloads are far smaller; anything larger is refused before parsing.

StartResponse = Callable[..., Any]


def make_wsgi_app(app: App, engine: Engine) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    slack = SlackRequestHandler(app, path=SLACK_PATH)

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy = ping(engine)
            body = json.dumps({"ok": healthy, "database": "reachable" if healthy else "unreachable"}).encode()
            start_response("200 OK" if healthy else "503 Service Unavailable", _json_headers(body))
            return [body]
        if path == SLACK_PATH and method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                return _plain(start_response, "413 Payload Too Large", "payload too large")
            return slack(environ, start_response)
        return _plain(start_response, "404 Not Found", "not found")

    return wsgi


def _json_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def serve_http(wsgi: Callable[..., Any], *, port: int, host: str = "0.0.0.0", threads: int = 16) -> None:  # noqa: S104
    """waitress: a production, multi-threaded WSGI server (Bolt's own `app.start()` is single-threaded)."""
    from waitress import serve

    serve(wsgi, host=host, port=port, threads=threads, ident="koding-iam", clear_untrusted_proxy_headers=True)
