"""Building the process: services (database, AWS gateway, Slack client) and the Bolt app with its listeners."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from sqlalchemy import Engine

from bot import logs, request_context
from bot.aws_iam import IamGateway
from bot.config import Settings
from bot.db import make_engine, make_session_factory
from bot.errors import DomainError
from bot.metrics import Metrics
from bot.services import Services
from bot.slack.directory import SlackDirectory
from bot.slack.notify import Notifier
from handlers import register_all
from handlers.parsing import user_of

log = logging.getLogger(__name__)


def make_slack_client(settings: Settings, metrics: Metrics | None = None) -> WebClient:
    """One client for the whole process, retrying rate limits, 5xx and dropped connections (each retry, and
    each 429, counted in `metrics` when given)."""
    handlers: list[RetryHandler] = [
        ConnectionErrorRetryHandler(max_retry_count=2),
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=metrics.slack_retry_handlers(handlers) if metrics is not None else handlers,
    )


def create_services(
    settings: Settings,
    *,
    engine: Engine | None = None,
    gateway: IamGateway | None = None,
    client: WebClient | None = None,
    **overrides: Any,
) -> Services:
    engine = engine or make_engine(settings.database_url)
    metrics = overrides.pop("metrics", None) or Metrics()
    client = client or make_slack_client(settings, metrics)
    gateway = gateway or IamGateway.from_environment()
    gateway.on_retry = metrics.aws_retried
    directory = overrides.pop("directory", None) or SlackDirectory(client)
    services = Services(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        gateway=gateway,
        # Read only when a card is drawn: building the services touches nothing on the gateway (a dry run refuses it).
        notifier=Notifier(client, settings, directory, describe=lambda arn: gateway.policy_summary(arn)),
        metrics=metrics,
        directory=directory,
        **overrides,
    )
    metrics.watch_keys(services.session_factory, settings, services.clock)
    return services


class _KnownClientWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that our client (which carries that same token) wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class _App(App):
    """Bolt's App with the Slack request's fields bound (bot/request_context.py) while it handles a request, so
    every log line about it, on this thread or on the pools after ack(), names the request; one line per request.

    dispatch() returns once the listener has called ack() (process_before_response is off), over HTTP and over
    Socket Mode alike, so its duration is the acknowledgement latency recorded in `metrics`.
    """

    metrics: Metrics | None = None

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        started = time.perf_counter()
        fields = request_context.fields_of(req.body)
        if request_context.current().get("request_id"):  # the Socket Mode envelope's id, bound by the transport
            del fields["request_id"]
        try:
            with request_context.bind(**fields) as fields:
                log.info("slack %s %s", fields.get("kind", "request"), fields.get("callback", "-"))
                return super().dispatch(req)
        finally:
            if self.metrics is not None:
                self.metrics.observe_ack(req.body, time.perf_counter() - started)


def create_app(services: Services, *, listener_executor: Executor | None = None) -> App:
    """The Bolt app: signatures verified, acknowledgements sent before slow work (process_before_response off).

    Bolt runs each listener, and the work after its ack(), on `listener_executor`; its default pool has five
    threads, so a few provisionings could hold up every other acknowledgement past Slack's 3 seconds.
    """
    if listener_executor is None:
        listener_executor = ThreadPoolExecutor(
            max_workers=services.settings.koding_iam_listener_threads, thread_name_prefix="listener"
        )
    listener_executor = request_context.carrying_context(listener_executor)
    logs.pin_chatty_loggers()
    logs.install_redaction()
    bolt_logger = logging.getLogger("slack_bolt.App")
    if not any(isinstance(f, _KnownClientWarning) for f in bolt_logger.filters):
        bolt_logger.addFilter(_KnownClientWarning())
    app = _App(
        name="koding-iam",
        client=services.notifier.client,
        signing_secret=services.settings.slack_signing_secret.get_secret_value(),
        token_verification_enabled=False,
        process_before_response=False,
        listener_executor=listener_executor,
    )
    app.metrics = services.metrics

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        """Last resort: log the failure (never the payload) and tell the person something went wrong."""
        user = user_of(body) if isinstance(body, dict) else None
        if isinstance(error, DomainError) and user:
            services.notifier.ephemeral(None, str(user), error.user_message)
            return
        log.error("unhandled %s in a listener: %s", type(error).__name__, error)
        if user:
            services.notifier.ephemeral(
                None, str(user), "Something went wrong on koding-iam's side; nothing was lost. Try again shortly."
            )

    register_all(app, services)
    return app


def socket_mode_handler(app: App, app_token: str) -> Any:
    """Bolt's Socket Mode handler, with each envelope's id bound as the request id of what it carries, and a
    watchdog (bot/socket_watchdog.py) that reconnects promptly when the websocket drops without a close."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.socket_mode.client import BaseSocketModeClient
    from slack_sdk.socket_mode.request import SocketModeRequest

    from bot.socket_watchdog import PING_INTERVAL, SocketWatchdog

    class _Handler(SocketModeHandler):
        watchdog: SocketWatchdog | None = None

        def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
            with request_context.bind(request_id=req.envelope_id):
                super().handle(client, req)  # type: ignore[arg-type]

        def connect(self) -> None:
            super().connect()
            if self.watchdog is None:
                self.watchdog = SocketWatchdog(self.client).start()

    return _Handler(app, app_token, ping_interval=PING_INTERVAL)
