"""Scheduled work (APScheduler 3.x): resume interrupted work, the key-rotation sweep, and a daily sync scan.

Part of the worker (bot/worker.py): inside `koding-iam serve`, or in its own `koding-iam worker` process. Each job
is a thin call into the flows; the database claims make two schedulers safe anyway. Provisioning and offboarding
runs are not resumed here: the worker takes them from the database. Both commands stop gracefully
(bot/lifecycle.py): no new job starts, running ones get the drain time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from bot.core import sync
from bot.flows import offboarding as admin_flows
from bot.flows import recovery
from bot.flows import rotation as rotation_flows
from bot.flows import timebound as timebound_flows
from bot.services import Services

log = logging.getLogger(__name__)


def _guarded(job_id: str, name: str, job: Callable[[Services], object]) -> Callable[[Services], None]:
    """The job, timed in the metrics (koding_iam_job_duration_seconds), its failures logged and counted."""

    def run(services: Services) -> None:
        try:
            with services.metrics.timed_job(job_id):
                job(services)
        except Exception as exc:  # a failed tick must not kill the scheduler; the next tick tries again
            log.error("%s failed: %s: %s", name, type(exc).__name__, exc)

    return run


def _sweep(services: Services) -> None:
    """The rotation sweep, then the end dates of time-bound users (reminders, expiry) as of the same time."""
    now = services.clock()
    report = rotation_flows.sweep(services, now=now)
    if report.total:
        log.info(
            "rotation sweep: %d actions, %d sent, %d skipped, %d failed",
            report.total,
            report.sent,
            report.skipped,
            report.failed,
        )
    usage = report.usage
    if usage.total or usage.last_used_reads:
        log.info(
            "key usage: %d last use(s) read, %d action(s), %d sent, %d skipped, %d failed",
            usage.last_used_reads,
            usage.total,
            usage.sent,
            usage.skipped,
            usage.failed,
        )
    ends = timebound_flows.sweep(services, now=now)
    if ends.actions:
        log.info(
            "end-date sweep: %d reminders sent, %d accesses ended, %d skipped, %d failed",
            ends.sent,
            ends.ended,
            ends.skipped,
            ends.failed,
        )


def resume_side_work(services: Services) -> None:
    """Recovery apart from provisioning and offboarding runs, which the worker takes from the database itself."""
    recovery.resume_interrupted(services, runs=False)


def _sync(services: Services) -> None:
    """The daily scan: imports unknown users' keys and refreshes the findings; fixes nothing."""
    report = sync.scan(services.session_factory, services.gateway, services.settings, services.clock())
    if report.imported or report.findings:
        log.info(
            "sync: imported %d key(s) of %d user(s); %d finding(s), %d fixable with `koding-iam sync --fix`",
            len(report.imported_keys),
            len(report.imported),
            len(report.findings),
            len(report.fixable),
        )


def add_jobs(scheduler: BaseScheduler, services: Services) -> None:
    settings = services.settings
    now = datetime.now(UTC)
    every_sweep = {"minutes": settings.koding_iam_sweep_interval_minutes}
    jobs: list[tuple[str, str, Callable[[Services], object], dict[str, int], datetime]] = [
        (
            "resume-interrupted",
            "resuming interrupted work",
            resume_side_work,
            {"seconds": settings.koding_iam_resume_interval_seconds},
            now,
        ),
        ("rotation-sweep", "rotation sweep", _sweep, every_sweep, now),
        ("request-expiry", "expiring pending requests", admin_flows.expire_requests, every_sweep, now),
    ]
    if settings.koding_iam_sync_scan_hours:
        every_scan = {"hours": settings.koding_iam_sync_scan_hours}
        jobs.append(("sync-scan", "sync scan", _sync, every_scan, now + timedelta(minutes=10)))
    for job_id, name, job, interval, first_run in jobs:
        scheduler.add_job(
            _guarded(job_id, name, job),
            "interval",
            **interval,
            args=[services],
            id=job_id,
            next_run_time=first_run,
            max_instances=1,
            coalesce=True,
        )


class _PoolExecutor(BasePoolExecutor):
    """APScheduler's thread-pool executor, on a pool given to it."""

    def __init__(self, pool: Executor) -> None:
        super().__init__(pool)


def start_scheduler(services: Services, *, pool: Executor | None = None) -> BackgroundScheduler:
    """Jobs on a background thread, run on `pool` when given (bot/lifecycle.py waits for it when stopping)."""
    executors = {"default": _PoolExecutor(pool)} if pool is not None else {}
    scheduler = BackgroundScheduler(timezone=UTC, executors=executors)
    add_jobs(scheduler, services)
    scheduler.start()
    return scheduler
