"""GET /metrics after a real request → approve → provision → reveal flow, on SQLite and PostgreSQL: the values
match what the test did, and no label carries a name, a key id or typed text."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.metrics import KEY_STAGES
from bot.scheduler import add_jobs
from bot.slack import ids
from models import AccessKey
from tests.e2e.flow_steps import card, click, reveal_dm, submit_request

PURPOSE = "Metrics-canary staging stack"


def scrape(sb: Sandbox) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """(content type, {(sample name, labels): value}) of the app's /metrics."""
    with urllib.request.urlopen(sb.url + "/metrics", timeout=10) as answer:  # noqa: S310
        content_type = answer.headers["Content-Type"]
        text = answer.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_follow_a_provisioning_flow(sandbox: Sandbox) -> None:
    sb = sandbox
    content_type, before = scrape(sb)
    assert content_type.startswith("text/plain; version=")  # the Prometheus text format
    assert value(before, "koding_iam_provisioning_runs_total", outcome="provisioned") == 0
    assert value(before, "koding_iam_access_keys", stage="fresh") == 0
    assert value(before, "koding_iam_oldest_active_key_age_seconds") == 0

    # Two Slack requests: the command that opens the modal, and its submission.
    assert submit_request(sb, "UALICE", handle="alice", purpose=PURPOSE).status == 200
    # The first chat.postMessage after this is answered 429; slack_sdk waits Retry-After and tries again.
    sb.standin.fail_next("chat.postMessage", retry_after=1)
    click(sb, "UADMIN1", ids.APPROVE, card(sb))  # a block action
    click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))  # another
    assert sb.driver.event({"type": "app_home_opened", "user": "UALICE", "tab": "home"}).status == 200
    sb.wait_idle()

    (key,) = sb.services.gateway.list_access_keys("koding-alice")
    _, samples = scrape(sb)
    assert value(samples, "koding_iam_provisioning_runs_total", outcome="provisioned") == 1
    assert value(samples, "koding_iam_provisioning_runs_total", outcome="failed") == 0
    assert value(samples, "koding_iam_revoke_runs_total", outcome="revoked") == 0
    acks = {
        surface: value(samples, "koding_iam_slack_ack_seconds_count", surface=surface)
        for surface in ("slash_command", "view_submission", "block_action", "event", "view_closed", "other")
    }
    assert acks == {
        "slash_command": 1,
        "view_submission": 1,
        "block_action": 2,
        "event": 1,
        "view_closed": 0,
        "other": 0,
    }
    # Every acknowledgement within Slack's 3 seconds: the 3 s bucket holds them all.
    for surface, count in acks.items():
        assert value(samples, "koding_iam_slack_ack_seconds_bucket", surface=surface, le="3.0") == count
    assert value(samples, "koding_iam_slack_rate_limited_total") == 1
    assert value(samples, "koding_iam_slack_retries_total", reason="rate_limited") == 1
    assert value(samples, "koding_iam_slack_retries_total", reason="server_error") == 0
    assert value(samples, "koding_iam_access_keys", stage="fresh") == 1
    for stage in ("upcoming", "due", "overdue", "deactivated"):
        assert value(samples, "koding_iam_access_keys", stage=stage) == 0
    assert 0 <= value(samples, "koding_iam_oldest_active_key_age_seconds") < 600
    assert value(samples, "koding_iam_key_metrics_up") == 1

    # Labels hold fixed words only: never the member, the IAM user, the key id or the typed purpose.
    labels = {v for (_, pairs) in samples for _, v in pairs}
    for secret_ish in ("alice", "ualice", "koding-alice", key.access_key_id.lower(), "canary", "uadmin1"):
        assert not any(secret_ish in label.lower() for label in labels), secret_ish

    # The key ages: 100 days old is overdue under the default policy (rotate at 90 days, 3 days' grace).
    born = datetime.now(UTC) - timedelta(days=100)
    with session_scope(sb.services.session_factory) as session:
        session.execute(update(AccessKey).values(created_at=born))
    _, aged = scrape(sb)
    assert value(aged, "koding_iam_access_keys", stage="overdue") == 1
    assert value(aged, "koding_iam_access_keys", stage="fresh") == 0
    assert abs(value(aged, "koding_iam_oldest_active_key_age_seconds") - 100 * 86400) < 600

    # A scheduled rotation sweep (the job as the scheduler runs it) is timed.
    scheduler = BackgroundScheduler(timezone=UTC)
    add_jobs(scheduler, sb.services)
    job = scheduler.get_job("rotation-sweep")
    job.func(*job.args)
    sb.wait_idle()
    _, swept = scrape(sb)
    assert value(swept, "koding_iam_job_duration_seconds_count", job="rotation-sweep") == 1
    assert value(swept, "koding_iam_job_failures_total", job="rotation-sweep") == 0
    assert value(swept, "koding_iam_job_duration_seconds_count", job="sync-scan") == 0

    # An admin revokes the user: one revoke run, and no key left to count.
    _, trigger = sb.driver.command("UADMIN1", "revoke <@UALICE|alice>")
    sb.wait_idle()
    assert sb.driver.submit("UADMIN1", sb.driver.view_opened_with(trigger), {}).status == 200
    sb.wait_idle()
    _, revoked = scrape(sb)
    assert value(revoked, "koding_iam_revoke_runs_total", outcome="revoked") == 1
    assert value(revoked, "koding_iam_revoke_runs_total", outcome="failed") == 0
    assert sum(value(revoked, "koding_iam_access_keys", stage=stage) for stage in KEY_STAGES) == 0
    assert value(revoked, "koding_iam_oldest_active_key_age_seconds") == 0
    assert value(revoked, "koding_iam_slack_ack_seconds_count", surface="slash_command") == 2
    assert value(revoked, "koding_iam_slack_ack_seconds_count", surface="view_submission") == 2


def test_each_app_has_its_own_registry(sqlite_sandbox: Sandbox) -> None:
    """Two apps in one process: one's counts never show in the other's /metrics."""
    with Sandbox(sqlite_sandbox.database_url.replace(".db", "-other.db")) as other:
        submit_request(sqlite_sandbox, "UALICE")
        _, mine = scrape(sqlite_sandbox)
        _, theirs = scrape(other)
    assert value(mine, "koding_iam_slack_ack_seconds_count", surface="slash_command") == 1
    assert value(theirs, "koding_iam_slack_ack_seconds_count", surface="slash_command") == 0
