"""Unit tests for bot/scheduler.add_jobs: which jobs a process schedules, and when the sync scan first runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.config import load_settings
from bot.scheduler import add_jobs


def jobs_for(monkeypatch: pytest.MonkeyPatch, **settings: object) -> dict[str, object]:
    monkeypatch.delenv("KODING_IAM_PROFILES", raising=False)
    monkeypatch.delenv("KODING_IAM_SYNC_SCAN_HOURS", raising=False)
    loaded = load_settings(
        slack_bot_token="xoxb-1-2-test",
        slack_signing_secret="signing-secret-value",
        koding_iam_admins="UADMIN",
        **settings,
    )
    scheduler = BackgroundScheduler(timezone=UTC)
    add_jobs(scheduler, SimpleNamespace(settings=loaded))  # type: ignore[arg-type]
    return {job.id: job for job in scheduler.get_jobs()}


def test_the_sync_scan_runs_daily_from_ten_minutes_after_start(monkeypatch: pytest.MonkeyPatch) -> None:
    started = datetime.now(UTC)
    jobs = jobs_for(monkeypatch)
    assert set(jobs) == {"resume-interrupted", "rotation-sweep", "request-expiry", "sync-scan"}
    scan = jobs["sync-scan"]
    assert scan.trigger.interval == timedelta(hours=24)  # type: ignore[attr-defined]
    first = scan.next_run_time - started  # type: ignore[attr-defined]
    assert timedelta(minutes=9) < first <= timedelta(minutes=10, seconds=5)


def test_sync_scan_hours_sets_the_interval_and_zero_schedules_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert jobs_for(monkeypatch, koding_iam_sync_scan_hours=6)["sync-scan"].trigger.interval == timedelta(hours=6)  # type: ignore[attr-defined]
    jobs = jobs_for(monkeypatch, koding_iam_sync_scan_hours=0)
    assert "sync-scan" not in jobs and "rotation-sweep" in jobs
