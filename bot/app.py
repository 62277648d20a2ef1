"""Building the process: services (database, AWS gateway, Slack client) and the Bolt app with its listeners."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
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

from bot import ack_signal, logs, request_context
from bot.aws_iam import IamGateway
from bot.config import Settings
from bot.db import make_engine, make_session_factory
from bot.errors import AlreadyDecided, DomainError, ValidationFailed
from bot.metrics import Metrics
from bot.services import Services
from bot.slack import ids, timebound_views, views
from bot.slack.directory import SlackDirectory
from bot.slack.notify import Notifier
from handlers import register_all
from handlers.parsing import channel_of, user_of

log = logging.getLogger(__name__)
FIELD_ERROR = 150  # Slack shows at most this much of a field error


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
            with request_context.bind(**fields) as fields, ack_signal.waiting_for(req.context):
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
    ack_signal.install()
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

    def answer_after_ack(error: DomainError, body: dict[str, Any]) -> None:
        """A refusal once the request is acknowledged: only a message can answer it."""
        if user := user_of(body):
            services.notifier.ephemeral(where_of(body), user, refusal_text(error))

    @app.error
    def on_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> BoltResponse | None:
        """The one error handler: a DomainError is answered by surface (refusal_response in the ack, else a
        message); anything else is logged (never the payload) and the person told something went wrong.
        `response` is None once acknowledged. Listeners hand refusals after their ack to answer_after_ack."""
        if not isinstance(body, dict):
            body = {}
        user = user_of(body)
        if isinstance(error, DomainError):
            answer = refusal_response(error, body) if response is not None else None
            if answer is None:
                answer_after_ack(error, body)
            return answer
        log.error("unhandled %s in a listener: %s", type(error).__name__, error)
        if user:
            services.notifier.ephemeral(
                None, str(user), "Something went wrong on koding-iam's side; nothing was lost. Try again shortly."
            )
        return None

    register_all(app, services, answer_after_ack)
    return app


def refusal_text(error: DomainError) -> str:
    """mrkdwn for a message: a lost race names the winner and the time."""
    if isinstance(error, AlreadyDecided):
        return views.already_decided_text(error.status, error.decided_by, error.decided_at)
    return views.escape(error.user_message)


def _field_text(error: DomainError) -> str:
    """Plain text for a form field (Slack shows it unformatted, at most 150 characters)."""
    if isinstance(error, AlreadyDecided):
        at = error.decided_at.strftime("%Y-%m-%d %H:%M UTC") if error.decided_at else "earlier"
        return f"Already {error.status} by another admin ({error.decided_by}) at {at}."[:FIELD_ERROR]
    return error.user_message[:FIELD_ERROR]


# How a modal shows a refusal on submit: field errors on a form (its ValidationFailed mapping, and the block for
# any other refusal), or the modal replaced by the reason (a confirmation has no field).
FORM_ERRORS: dict[str, tuple[Callable[[dict[str, str]], dict[str, str]] | None, str]] = {
    ids.View.REQUEST: (views.form_errors, ids.Block.USER_NAME),
    ids.View.DENY: (None, ids.Block.DENY_REASON),
    ids.LEGACY_DENY_VIEW: (None, ids.Block.DENY_REASON),
    ids.View.EXTEND: (timebound_views.form_errors, ids.Block.EXTEND_DATE),
}
PROBLEM_MODALS: dict[str, Callable[[str], dict[str, Any]]] = {
    ids.View.DONE: lambda text: timebound_views.problem_modal("End your access", text),
}


def refusal_response(error: DomainError, body: dict[str, Any]) -> BoltResponse | None:
    """The acknowledgement that answers a refusal raised before ack(): field errors or a replaced modal for a
    submission, an ephemeral reply for a slash command; None where only a message can answer (after ack)."""
    if body.get("type") == "view_submission":
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        callback = str(view.get("callback_id") or "")
        if callback in FORM_ERRORS:
            mapping, block = FORM_ERRORS[callback]
            if mapping is not None and isinstance(error, ValidationFailed):
                errors = mapping(error.errors)
            else:
                errors = {block: _field_text(error)}
            answer: dict[str, Any] = {"response_action": "errors", "errors": errors}
        else:
            problem = PROBLEM_MODALS.get(callback, views.reveal_problem_modal)
            answer = {"response_action": "update", "view": problem(error.user_message)}
    elif "command" in body:
        answer = {"response_type": "ephemeral", "text": refusal_text(error)}
    else:
        return None
    return BoltResponse(status=200, body=json.dumps(answer), headers={"content-type": "application/json"})


def where_of(body: dict[str, Any]) -> str | None:
    """The conversation to answer in: a click's channel, or a slash command's."""
    return channel_of(body) or (str(body["channel_id"]) if body.get("channel_id") else None)


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
