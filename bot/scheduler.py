"""Scheduled work inside the serving process (APScheduler 3.x). Each job is a thin call into bot.flows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from bot import flows
from bot.services import Services

log = logging.getLogger(__name__)


def _resume(services: Services) -> None:
    try:
        flows.resume_interrupted(services)
    except Exception as exc:  # a failed tick must not kill the scheduler; the next tick tries again
        log.error("resuming interrupted work failed: %s: %s", type(exc).__name__, exc)


def start_scheduler(services: Services) -> BackgroundScheduler:
    """Resume interrupted provisioning and reveals now, then every KODING_IAM_RESUME_INTERVAL_SECONDS."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        _resume,
        "interval",
        seconds=services.settings.koding_iam_resume_interval_seconds,
        args=[services],
        id="resume-interrupted",
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
