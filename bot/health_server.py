"""Socket Mode as a deployment: the Slack connection is a websocket the app opens, so nothing else would listen on
a port, yet a platform's boot check (Heroku's web dyno must bind $PORT within 60 seconds) and Prometheus need
one. When PORT is set, a small waitress server on a background thread answers GET /healthz and GET /metrics
(the same handlers as the HTTP mode's router, bot/server.py); every other request is a 404.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from sqlalchemy import Engine

from bot.metrics import Metrics
from bot.server import StartResponse, create_http_server, not_found, ops_endpoint
from bot.services import Services

log = logging.getLogger(__name__)


def make_ops_app(engine: Engine, metrics: Metrics | None) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """/healthz and /metrics alone: Slack's requests never come over HTTP in Socket Mode."""

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = ops_endpoint(environ, start_response, engine, metrics)
        return answer if answer is not None else not_found(start_response)

    return wsgi


def start_health_server(
    engine: Engine,
    metrics: Metrics | None,
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - the platform's router reaches the dyno on all interfaces
) -> Any:
    """Bind `port` now (so a failure to bind stops start-up) and serve from a daemon thread; returns the server
    (its `.close()` stops it)."""
    server = create_http_server(make_ops_app(engine, metrics), port=port, host=host, threads=4)
    thread = threading.Thread(target=server.run, name="health-server", daemon=True)
    thread.start()
    return server


def run_socket_mode(app: App, services: Services, *, port: int | None) -> None:
    """Serve over Socket Mode until the process ends; with `port`, /healthz and /metrics on it alongside."""
    from bot.app import socket_mode_handler

    settings = services.settings
    assert settings.slack_app_token is not None
    if port is not None:
        start_health_server(services.engine, services.metrics, port=port)
        print(f"koding-iam: Socket Mode; GET /healthz and /metrics on port {port}", flush=True)
    else:
        print("koding-iam: Socket Mode (PORT is not set: no /healthz or /metrics)", flush=True)
    socket_mode_handler(app, settings.slack_app_token.get_secret_value()).start()
