"""The floor for acknowledgement latency: a bare Bolt app whose listeners only call ack().

Run as `python -m bench.bare_bolt --port N --slack-api-url URL`. Same framework, same signature verification,
same waitress settings as `koding-iam serve` (bot.server.create_http_server), so the gap between its latency
and the real app's is what koding-iam itself adds. GET /healthz answers 200 without touching anything (for
start-up timing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.devtools.sandbox import SIGNING_SECRET
from bot.slack import ids

WAITRESS_THREADS = 16  # bot.server.create_http_server's default, which `koding-iam serve` uses


def make_app(slack_api_url: str, signing_secret: str = SIGNING_SECRET) -> App:
    """Built like bot.app.create_app: a WebClient on the Slack stand-in, so Bolt's authorization middleware
    makes its one auth.test call there (and caches it) exactly as it does in the real app."""
    client = WebClient(token="xoxb-bare-bolt", base_url=slack_api_url)  # noqa: S106 - the stand-in's token
    app = App(
        name="bare-bolt",
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        process_before_response=False,
    )

    @app.command(ids.COMMAND)
    def on_command(ack: Ack) -> None:
        ack()

    @app.action(ids.APPROVE)
    def on_approve(ack: Ack) -> None:
        ack()

    @app.view(ids.REQUEST_MODAL)
    def on_submit(ack: Ack) -> None:
        ack()

    return app


def make_wsgi(app: App) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    handler = SlackRequestHandler(app)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return handler(environ, start_response)

    return wsgi


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_bolt", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slack-api-url", required=True, help="the Slack stand-in's Web API URL")
    args = parser.parse_args(argv)
    from bot.server import create_http_server

    server = create_http_server(
        make_wsgi(make_app(args.slack_api_url)),
        host="127.0.0.1",
        port=args.port,
        threads=WAITRESS_THREADS,
        ident="bare-bolt",
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
