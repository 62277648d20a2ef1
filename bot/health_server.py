"""Socket Mode as a deployment: the Slack connection is a websocket the app opens, so nothing else would listen on
a port, yet a platform's boot check (Heroku's web dyno must bind $PORT within 60 seconds) and Prometheus need
one. When PORT is set, a small waitress server on a background thread answers GET /healthz and GET /metrics
(the same handlers as the HTTP mode's router, bot/server.py); every other request is a 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine

from bot.metrics import Metrics
from bot.server import StartResponse, not_found, ops_endpoint

log = logging.getLogger(__name__)


def make_ops_app(engine: Engine, metrics: Metrics | None) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """/healthz and /metrics alone: Slack's requests never come over HTTP in Socket Mode."""

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = ops_endpoint(environ, start_response, engine, metrics)
        return answer if answer is not None else not_found(start_response)

    return wsgi
