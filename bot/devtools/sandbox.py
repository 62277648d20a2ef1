"""The whole app on one machine with no Slack and no AWS: the real code behind a real HTTP server, a Slack Web
API stand-in, moto's in-process IAM held to IAM's documented rules (bot/devtools/strict_iam.py), and a migrated
database. Used by `koding-iam demo` and the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import inspect

from bot import db
from bot.app import create_app, create_services
from bot.aws_iam import Backoff, IamGateway
from bot.config import Settings, load_settings
from bot.core.key_verification import Pace
from bot.devtools.driver import SlackDriver
from bot.devtools.slack_standin import SlackStandIn
from bot.server import SLACK_PATH, make_wsgi_app
from bot.services import Services
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import DEFAULT_RATES, Pacer, Rate

SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a local stand-in's secret, not a credential
BOT_TOKEN = "xoxb-sandbox-token"  # noqa: S105
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's placeholder credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MOTO_ACCOUNT_ID = "123456789012"
# GetPolicy's Description of the AWS managed policies the default profiles name, as AWS states it in the managed
# policy reference (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/<name>.html). moto's policy
# data carries no descriptions, so the sandbox gives them, and GetPolicy answers them as IAM does.
AWS_POLICY_DESCRIPTIONS = {
    "AmazonEC2FullAccess": "Provides full access to Amazon EC2 via the AWS Management Console.",
    "IAMReadOnlyAccess": "Provides read only access to IAM via the AWS Management Console.",
    "AmazonRoute53FullAccess": "Provides full access to all Amazon Route 53 via the AWS Management Console.",
    "AmazonRoute53DomainsFullAccess": "Provides full access to all Route 53 Domains actions and Create Hosted Zone "
    "to allow Hosted Zone creation as part of domain registrations.",
    "ReadOnlyAccess": "Provides read-only access to AWS services and resources.",
}
_managed_policy_data: dict[str, Any] | None = None


_template_lock = threading.Lock()
_sqlite_template: str | None = None
_postgres_script: str | None = None


def migrate(database_url: str) -> None:
    """Bring the sandbox's database to the head revision.

    A SQLite file that does not exist yet is copied from one migrated template per process (a copy takes a
    millisecond, running every migration a few hundred). An empty PostgreSQL schema runs the migrations' SQL as
    Alembic renders it offline, rendered once per process. Anything else is migrated in place.
    """
    global _sqlite_template
    if database_url.startswith("postgresql"):
        _migrate_empty_postgres(database_url)
        return
    path = database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite:///") else None
    if path is None or path == ":memory:" or os.path.exists(path):
        db.upgrade(database_url)
        return
    with _template_lock:
        if _sqlite_template is None:
            template = os.path.join(tempfile.mkdtemp(prefix="koding-iam-template-"), "head.db")
            db.upgrade(f"sqlite:///{template}")
            _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)


def _migrate_empty_postgres(database_url: str) -> None:
    global _postgres_script
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            empty = not inspect(connection).get_table_names()
        if not empty:
            db.upgrade(database_url)
            return
        with _template_lock:
            if _postgres_script is None:
                _postgres_script = db.upgrade_script(database_url)
        with engine.connect() as connection:
            connection.exec_driver_sql(_postgres_script)
            connection.commit()
    finally:
        engine.dispose()


def install_managed_policies(arns: Iterable[str]) -> None:
    """Give moto's IAM the AWS managed policies the profiles name.

    moto can load all of AWS's ~1,300 managed policies (MOTO_IAM_LOAD_MANAGED_POLICIES), but that costs about
    a second at every mock start and reset; the few that koding-iam attaches are taken from the same data.
    Works for the in-process mock and for a moto server running in this process (they share the backends).
    """
    global _managed_policy_data
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    if _managed_policy_data is None:
        _managed_policy_data = json.loads(aws_managed_policies_data)
    backend = iam_backends[MOTO_ACCOUNT_ID]["global"]
    for arn in arns:
        name = arn.rsplit("/", 1)[-1]
        if arn in backend.managed_policies or name not in _managed_policy_data or ":aws:policy/" not in arn:
            continue
        policy = AWSManagedPolicy.from_data(name, MOTO_ACCOUNT_ID, backend.region_name, _managed_policy_data[name])
        policy.description = AWS_POLICY_DESCRIPTIONS.get(name, "")
        backend.managed_policies[policy.arn] = policy
        backend.aws_managed_policies.append(policy)


def profile_policy_arns(settings: Settings | None = None) -> set[str]:
    """The managed policies the configured (or, without settings, the default) profiles attach."""
    if settings is not None:
        return {arn for profile in settings.profiles.values() for arn in profile.policies}
    from bot.config import DEFAULT_PROFILES

    return {arn for spec in DEFAULT_PROFILES.values() for arn in spec["policies"]}


class TrackingExecutor(ThreadPoolExecutor):
    """Bolt's listener executor, counting unfinished work so a caller can wait until the app is idle."""

    def __init__(self, max_workers: int = 16) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="listener")
        self._pending = 0
        self._lock = threading.Condition()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1
            self._lock.notify_all()

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self._pending} listener task(s) still running after {timeout}s")
                self._lock.wait(remaining)


class Sandbox:
    """Starts everything in `start()`, stops it in `stop()`; `driver` plays Slack users against it."""

    def __init__(
        self,
        database_url: str,
        *,
        admins: tuple[str, ...] = ("UADMIN1", "UADMIN2"),
        moto: bool = True,
        **settings_overrides: Any,
    ) -> None:
        self.database_url = database_url
        self.admins = admins
        self.use_moto = moto
        self.settings_overrides = settings_overrides
        self.standin = SlackStandIn()
        self._moto: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.executor = TrackingExecutor()

    def start(self) -> Sandbox:
        if self.use_moto:
            for key, value in FAKE_AWS_ENV.items():
                os.environ.setdefault(key, value)
            from moto import mock_aws

            from bot.devtools import strict_iam

            strict_iam.install()  # IAM's documented rules that moto lacks (case-insensitive names, DeleteConflict)
            self._moto = mock_aws()
            self._moto.start()
        self.standin.start()
        migrate(self.database_url)
        self.settings = self.make_settings()
        if self.use_moto:
            install_managed_policies(profile_policy_arns(self.settings))
        self.services = self.make_services(self.settings)
        self.outbox = OutboxSender(self.services, pacer=Pacer(self._paced_under_standin), poll_seconds=0.2).start()
        self.app = create_app(self.services, listener_executor=self.executor)
        from waitress.server import create_server

        self._server = create_server(
            make_wsgi_app(self.app, self.services.engine, signing_secret=SIGNING_SECRET),
            host="127.0.0.1",
            port=0,
            threads=16,
            ident="koding-iam",
            asyncore_loop_timeout=0.05,  # so stop() does not wait a full second for the loop to notice
        )
        self._thread = threading.Thread(target=self._server.run, name="waitress", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self.driver = SlackDriver(self.url + SLACK_PATH, SIGNING_SECRET, self.standin)
        return self

    def _paced_under_standin(self) -> dict[str, Rate]:
        """The sender paces itself a tenth under the stand-in's limits in force now (none where a test lifted
        them), as it does under Slack's documented tiers in production."""
        limits = self.standin.rate_limits
        return {
            method: Rate(
                per_minute=limit.per_minute * 0.9, burst=max(1, limit.burst // 2), per_channel=limit.per_channel
            )
            for method, limit in limits.items()
            if method in DEFAULT_RATES
        }

    def make_settings(self, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_app_token": "",
            "slack_api_url": self.standin.base_url,
            "database_url": self.database_url,
            "koding_iam_admins": ",".join(self.admins),
            "koding_iam_app_id": "AKODING",  # the stand-in's app: requests for other apps are refused
            **self.settings_overrides,
            **extra,
        }
        return load_settings(**values)

    def make_services(self, settings: Settings, **overrides: Any) -> Services:
        overrides.setdefault("gateway", IamGateway.from_environment(backoff=Backoff(sleep=lambda _: None)))
        overrides.setdefault("background", self.executor)  # so wait_idle() covers work after the ack too
        # A new key refused by the strict IAM layer (strict_iam.new_keys_refused_for) is asked about every 0.1 s.
        overrides.setdefault("key_check_pace", Pace(first_delay=0.1, max_delay=0.1))
        services = create_services(settings, **overrides)
        if hasattr(self, "outbox"):  # another "process" on the same database: this sender delivers for it too
            services.wake_outbox = self.outbox.wake
        return services

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the listeners, the work after ack and the outbox's deliveries have all finished."""
        deadline = time.monotonic() + timeout
        while True:
            self.executor.wait_idle(max(0.1, deadline - time.monotonic()))
            if not self.outbox.wait_idle(max(0.1, deadline - time.monotonic())) and self.executor.idle:
                return

    def stop(self) -> None:
        """Let in-flight work finish, then stop waitress, the stand-ins and moto."""
        with contextlib.suppress(AssertionError):
            self.executor.wait_idle(30)
        if hasattr(self, "outbox"):
            self.outbox.stop()
        if self._server is not None:
            self._stop_waitress()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if hasattr(self, "services"):
            self.services.engine.dispose()
        self.standin.stop()
        if self._moto is not None:
            self._moto.stop()

    def _stop_waitress(self) -> None:
        """waitress has no clean stop for a server run in a thread: finish its workers first, then close the
        socket; the loop thread may still die on the closed socket with an OSError, which is expected here."""
        self._server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        previous = threading.excepthook

        def quiet(args: threading.ExceptHookArgs) -> None:
            if not (args.thread is self._thread and issubclass(args.exc_type, OSError)):
                previous(args)

        threading.excepthook = quiet
        try:
            self._server.close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        finally:
            threading.excepthook = previous

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
