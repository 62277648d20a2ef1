"""Prometheus metrics: how fast Slack is acknowledged, how provisioning and revoking end, how often Slack and AWS
make the app retry, how long the scheduled jobs take, and how old the access keys are.

Each app instance owns its own `CollectorRegistry` (not prometheus_client's global one), so several apps in one
process (the tests, the demo) never share or double-register a metric. `GET /metrics` renders it (bot/server.py).

Every label value comes from a fixed tuple below; anything else is counted as "other". A label never holds a
user name, a key id, a Slack id, an IAM name or anything a person typed: those would leak into a monitoring
system and, being unbounded, would multiply its series.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.core import outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from bot.config import Settings

log = logging.getLogger(__name__)

OTHER = "other"
SURFACES = ("slash_command", "block_action", "view_submission", "view_closed", "event", OTHER)
PROVISIONING_OUTCOMES = ("provisioned", "failed", "skipped")
REVOKE_OUTCOMES = ("revoked", "failed", "skipped")
SLACK_RETRY_REASONS = ("rate_limited", "server_error", "connection_error", OTHER)
# botocore: its own standard-mode retries (throttling, 5xx), read from each response's RetryAttempts;
# the other two are the gateway's backoff for IAM's ConcurrentModification and eventual consistency.
AWS_RETRY_REASONS = ("botocore", "concurrent_modification", "eventual_consistency", OTHER)
JOBS = ("resume-interrupted", "rotation-sweep", "request-expiry", "sync-scan", OTHER)
LOOPS = ("worker", "outbox")
KEY_STAGES = ("fresh", "upcoming", "due", "overdue", "deactivated")
OUTBOX_KINDS = (*outbox.KINDS, OTHER)
OUTBOX_RESULTS = ("delivered", "retry", "gone", OTHER)

# Slack wants an acknowledgement within 3 seconds (https://api.slack.com/interactivity/handling#acknowledgment_response),
# so the buckets are fine below 3 s and coarse above.
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def _enum(value: object, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else "other": a label can only ever hold a known word."""
    return value if isinstance(value, str) and value in allowed else OTHER


def surface_of(body: Any) -> str:
    """Which Slack surface a request body comes from (one of SURFACES)."""
    if not isinstance(body, dict):
        return OTHER
    if "command" in body:
        return "slash_command"
    kind = body.get("type")
    if kind == "event_callback":
        return "event"
    return {"block_actions": "block_action", "view_submission": "view_submission", "view_closed": "view_closed"}.get(
        kind if isinstance(kind, str) else "", OTHER
    )


class Metrics:
    """The metrics of one app instance, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ack_seconds = Histogram(
            "koding_iam_slack_ack_seconds",
            "Time from receiving a Slack request to acknowledging it, per surface.",
            ["surface"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.provisioning_runs = Counter(
            "koding_iam_provisioning_runs", "Provisioning runs by how they ended.", ["outcome"], registry=r
        )
        self.revoke_runs = Counter(
            "koding_iam_revoke_runs", "Offboarding (revoke) runs by how they ended.", ["outcome"], registry=r
        )
        self.slack_rate_limited = Counter(
            "koding_iam_slack_rate_limited", "HTTP 429 answers from the Slack Web API.", registry=r
        )
        self.slack_retries = Counter(
            "koding_iam_slack_retries", "Slack Web API calls retried, by reason.", ["reason"], registry=r
        )
        self.aws_retries = Counter(
            "koding_iam_aws_retries", "AWS IAM calls retried, by reason.", ["reason"], registry=r
        )
        self.outbox_deliveries = Counter(
            "koding_iam_outbox_deliveries",
            "Slack surfaces and messages the outbox's sender handled, by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "koding_iam_job_duration_seconds",
            "Duration of a scheduled job's run (the rotation sweep and the others).",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_failures = Counter(
            "koding_iam_job_failures", "Scheduled job runs that ended with an error.", ["job"], registry=r
        )
        self.looks = Counter(
            "koding_iam_looks",
            "Times a background loop looked in the database for work; a loop that stopped shows as a flat line.",
            ["loop"],
            registry=r,
        )
        # Every known label value is shown from the start (as 0), so a rate() or an alert has a series to read.
        for labels, values in (
            (self.ack_seconds, SURFACES),
            (self.provisioning_runs, PROVISIONING_OUTCOMES),
            (self.revoke_runs, REVOKE_OUTCOMES),
            (self.slack_retries, SLACK_RETRY_REASONS),
            (self.aws_retries, AWS_RETRY_REASONS),
            (self.job_seconds, JOBS),
            (self.job_failures, JOBS),
            (self.looks, LOOPS),
        ):
            for value in values:
                labels.labels(value)

    # Recording ----------------------------------------------------------------------------------------------
    def observe_ack(self, body: Any, seconds: float) -> None:
        self.ack_seconds.labels(surface_of(body)).observe(seconds)

    def provisioning_ended(self, outcome: str) -> None:
        self.provisioning_runs.labels(_enum(outcome, PROVISIONING_OUTCOMES)).inc()

    def revoke_ended(self, outcome: str) -> None:
        self.revoke_runs.labels(_enum(outcome, REVOKE_OUTCOMES)).inc()

    def aws_retried(self, reason: str, times: int = 1) -> None:
        if times > 0:
            self.aws_retries.labels(_enum(reason, AWS_RETRY_REASONS)).inc(times)

    @contextlib.contextmanager
    def timed_job(self, job: str) -> Iterator[None]:
        """Time a scheduled job's run; a run that raises is counted as a failure (and re-raised)."""
        label = _enum(job, JOBS)
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.job_failures.labels(label).inc()
            raise
        finally:
            self.job_seconds.labels(label).observe(time.perf_counter() - started)

    def slack_retry_handlers(self, handlers: Iterable[RetryHandler]) -> list[RetryHandler]:
        """`handlers` for slack_sdk's WebClient, each counting the retries it asks for, behind one that counts
        every 429 (retried or not)."""
        return [_RateLimitWatch(self), *(_CountingRetry(handler, self) for handler in handlers)]

    # Database-derived gauges ---------------------------------------------------------------------------------
    def watch_keys(
        self, session_factory: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        """Register the key and outbox gauges, computed from the database at each scrape (no Slack or AWS call)."""
        self.registry.register(_KeyCollector(session_factory, settings, clock))
        self.registry.register(_OutboxCollector(session_factory, clock))

    def looked(self, loop: str) -> None:
        self.looks.labels(_enum(loop, LOOPS)).inc()

    def outbox_delivered(self, kind: str, result: str) -> None:
        self.outbox_deliveries.labels(kind=_enum(kind, OUTBOX_KINDS), result=_enum(result, OUTBOX_RESULTS)).inc()

    # Exposition ---------------------------------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) in the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_SLACK_REASONS = {
    "RateLimitErrorRetryHandler": "rate_limited",
    "ServerErrorRetryHandler": "server_error",
    "ConnectionErrorRetryHandler": "connection_error",
}


class _RateLimitWatch(RetryHandler):
    """Never retries; sees every answer first (slack_sdk asks each handler in turn) and counts the 429s."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self.metrics.slack_rate_limited.inc()
        return False


class _CountingRetry(RetryHandler):
    """Wraps one of slack_sdk's retry handlers: same decisions, and each retry it asks for is counted."""

    def __init__(self, inner: RetryHandler, metrics: Metrics) -> None:
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self.inner = inner
        self.reason = _SLACK_REASONS.get(type(inner).__name__, OTHER)
        self.metrics = metrics

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return self.inner.can_retry(state=state, request=request, response=response, error=error)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self.metrics.slack_retries.labels(self.reason).inc()
        self.inner.prepare_for_next_attempt(state=state, request=request, response=response, error=error)


class _OutboxCollector(Collector):
    """How far Slack is behind the database: surfaces marked changed and not yet delivered, and for how long the
    oldest has waited, read at scrape time in one short query."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.session_factory = session_factory
        self.clock = clock

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        behind = GaugeMetricFamily("koding_iam_outbox_behind", "Slack surfaces marked changed and not delivered yet.")
        age = GaugeMetricFamily(
            "koding_iam_outbox_oldest_seconds", "How long the oldest undelivered surface has been due (0: none)."
        )
        session = self.session_factory()
        try:
            found = outbox.depth(session)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("could not read the outbox metrics: %s", type(exc).__name__)
            return
        finally:
            session.rollback()
            session.close()
        behind.add_metric([], found.behind)
        oldest = found.oldest_due
        if oldest is not None and oldest.tzinfo is None:  # min() bypasses the column type's UTC conversion
            oldest = oldest.replace(tzinfo=UTC)
        age.add_metric([], max(0.0, (self.clock() - oldest).total_seconds()) if oldest else 0.0)
        yield from (behind, age)


class _KeyCollector(Collector):
    """Access keys by rotation stage, and the age of the oldest active key, read at scrape time.

    One short read-only session per scrape; the stages follow bot/core/rotation_policy.py's `stage_of` with the
    configured policy, counted in SQL so a scrape stays cheap however many keys there are.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock

    def describe(self) -> list[Any]:
        return []  # the families are only known at collect(); an empty describe keeps registration from querying

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stages = GaugeMetricFamily(
            "koding_iam_access_keys", "Access keys koding-iam tracks, by rotation stage.", labels=["stage"]
        )
        oldest = GaugeMetricFamily(
            "koding_iam_oldest_active_key_age_seconds", "Age of the oldest active access key (0 when there is none)."
        )
        up = GaugeMetricFamily("koding_iam_key_metrics_up", "1 when the key gauges could be read from the database.")
        try:
            counts, oldest_created, now = self._read()
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("could not read the key metrics: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        for stage in KEY_STAGES:
            stages.add_metric([stage], counts.get(stage, 0))
        oldest.add_metric([], max(0.0, (now - oldest_created).total_seconds()) if oldest_created else 0.0)
        up.add_metric([], 1)
        yield from (stages, oldest, up)

    def _read(self) -> tuple[dict[str, int], datetime | None, datetime]:
        from sqlalchemy import case, func, select

        from bot.core.rotation_policy import Policy
        from models import AccessKey, KeyStatus

        policy = Policy.from_settings(self.settings)
        now = self.clock()
        created = AccessKey.created_at
        stage = case(
            (AccessKey.status == KeyStatus.INACTIVE, "deactivated"),
            (created > now - (policy.rotate_after - policy.remind_before), "fresh"),
            (created > now - policy.rotate_after, "upcoming"),
            (created > now - (policy.rotate_after + policy.grace), "due"),
            else_="overdue",
        )
        session = self.session_factory()
        try:
            live = select(stage.label("stage")).where(AccessKey.status.in_([KeyStatus.ACTIVE, KeyStatus.INACTIVE]))
            by_stage = live.subquery()
            rows = session.execute(select(by_stage.c.stage, func.count()).group_by(by_stage.c.stage)).all()
            oldest = session.scalar(select(func.min(created)).where(AccessKey.status == KeyStatus.ACTIVE))
        finally:
            session.rollback()  # read-only: nothing to commit
            session.close()
        if oldest is not None and oldest.tzinfo is None:  # min() bypasses the column type's UTC conversion
            oldest = oldest.replace(tzinfo=UTC)
        return {str(name): int(count) for name, count in rows}, oldest, now
