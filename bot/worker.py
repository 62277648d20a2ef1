"""The worker: the one home of after-ack work. It takes provisioning and offboarding runs from the database, runs the
scheduled jobs (sweeps, recovery, sync) and the outbox sender.

Handlers only record work and commit; the run itself is found in the database, so it is done once whichever
process records it and however many workers run. A worker claims a run by compare-and-set on the request's run
lease, in this process's name (so a graceful stop releases it by ownership, bot/lifecycle.py); on PostgreSQL the
pick is `SELECT … FOR UPDATE SKIP LOCKED`, so many workers never wait on each other's rows. A claim whose holder
died lapses after KODING_IAM_LEASE_SECONDS and another worker takes it then, never before.

Inside `serve` (KODING_IAM_WORKER=inline, the default) a handler wakes the worker at once after commit, so the run
starts within the same moment and keeps the Slack request's log fields; `koding-iam worker` runs it alone and looks
every KODING_IAM_WORKER_POLL_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import request_context
from bot.config import Settings
from bot.db import session_scope
from bot.flows import offboarding
from bot.flows import provisioning as provisioning_flow
from bot.services import Services
from models import AccessRequest, RequestStatus

log = logging.getLogger(__name__)

# The statuses a worker takes runs in: approved and not provisioned yet, revoke recorded and not finished.
RUNS = (RequestStatus.PROVISIONING, RequestStatus.REVOKING)
# A run skipped because another operation holds its IAM user (a reveal, a rotation) is given back, and this worker
# looks at it again after this.
SKIPPED_BACKOFF_SECONDS = 2.0
ORIGINS_KEPT = 1000
# Runs at once when KODING_IAM_WORKER_THREADS is unset. Inside `serve` the runs share one interpreter lock with the
# acknowledgements: with 16 runs at once an ack waited behind them for the lock at every database round trip (ack
# p99 past Slack's 3 s under 20 provisionings, docs/PERFORMANCE.md); 4 keep acks fast and still provision several a
# second. A `koding-iam worker` process answers no acknowledgement and takes more.
INLINE_SLOTS = 4
EXTERNAL_SLOTS = 16


@dataclass(frozen=True)
class Run:
    request_id: int
    status: str


def pick_query(*, now: datetime, limit: int, skip: Collection[int], postgres: bool) -> Select[Any]:
    """Runs no live lease holds, oldest first; on PostgreSQL rows another worker is claiming are passed over."""
    query = (
        select(AccessRequest.id, AccessRequest.status)
        .where(
            AccessRequest.status.in_(RUNS),
            or_(AccessRequest.lease_until.is_(None), AccessRequest.lease_until < now),
        )
        .order_by(AccessRequest.id)
        .limit(limit)
    )
    if skip:
        query = query.where(AccessRequest.id.not_in(list(skip)))
    if postgres:
        query = query.with_for_update(skip_locked=True)
    return query


def claim_runs(
    factory: sessionmaker[Session], *, owner: str, now: datetime, seconds: int, limit: int, skip: Collection[int] = ()
) -> list[Run]:
    """Claim up to `limit` free runs for `owner` with one compare-and-set in one transaction: the pick (on
    PostgreSQL locking what it returns and skipping what others locked) feeds an UPDATE that checks each row is
    still in its status and still free (no lease, or a lapsed one), and returns what it claimed."""
    with session_scope(factory) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        # A materialized CTE: the pick runs once. As a plain IN (subquery), PostgreSQL may run the LIMIT … SKIP
        # LOCKED subquery again while updating and claim more runs than `limit`.
        picked = (
            pick_query(now=now, limit=limit, skip=skip, postgres=postgres)
            .with_only_columns(AccessRequest.id)
            .cte("picked")
            .prefix_with("MATERIALIZED")
        )
        claimed = session.execute(
            update(AccessRequest)
            .where(
                AccessRequest.id.in_(select(picked.c.id)),
                AccessRequest.status.in_(RUNS),
                or_(AccessRequest.lease_until.is_(None), AccessRequest.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
            .returning(AccessRequest.id, AccessRequest.status)
            .execution_options(synchronize_session=False)
        ).all()
    return [Run(int(i), str(s)) for i, s in sorted(claimed)]


def give_back(factory: sessionmaker[Session], run: Run, *, owner: str) -> None:
    """Release a skipped run's claim (only if this process still holds it): anyone may take it at once."""
    with session_scope(factory) as session:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == run.request_id, AccessRequest.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


class Worker:
    """Takes runs from the database onto `pool`, at most `slots` at once; one picking thread per process."""

    def __init__(self, services: Services, *, pool: Executor, slots: int = 16, poll_seconds: float = 1.0) -> None:
        self.services = services
        self.pool = pool
        self.slots = slots
        self.poll_seconds = poll_seconds
        self.picks = 0  # pick rounds done (a visible tick for tests)
        self._running: set[int] = set()
        # Revokes that failed stay `revoking` (resumable) with no claim: this worker tries each again only after
        # KODING_IAM_RESUME_INTERVAL_SECONDS, as the resume tick did, so a refusal is not retried in a tight loop.
        self._retry_at: dict[int, float] = {}
        self._origins: dict[int, dict[str, Any]] = {}  # the Slack request that recorded a run, in this process
        self._changed = threading.Condition()
        self._picking = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Worker:
        self.services.hand_off = self.hand_off
        self._thread = threading.Thread(target=self._loop, name="worker", daemon=True)
        self._thread.start()
        return self

    def hand_off(self, request_id: int, **origin: Any) -> None:
        """Called after the commit that recorded a run: keep who asked (for the log lines of the run), wake."""
        with self._changed:
            self._origins[request_id] = {"context": request_context.current(), **origin}
            while len(self._origins) > ORIGINS_KEPT:  # runs another process took: their origin is never asked for
                self._origins.pop(next(iter(self._origins)))
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Start no run until `resume()` (tests that run a flow's steps themselves)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Take no new run; runs already on the pool finish (the caller's drain waits for them)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.pick()
            except SQLAlchemyError as exc:  # the database is away: look again at the next tick
                log.warning("worker: could not look for work: %s", type(exc).__name__)
            except Exception:  # a claimed run not started lapses and is taken again; the loop must live on
                log.exception("worker: looking for work failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def pick(self) -> int:
        """Claim free runs up to the free slots and start them; returns how many were started."""
        with self._picking:
            if self._stop.is_set() or self._paused.is_set():
                return 0
            with self._changed:
                now = time.monotonic()
                self._retry_at = {rid: at for rid, at in self._retry_at.items() if at > now}
                free, running = self.slots - len(self._running), set(self._running) | set(self._retry_at)
            claimed = []
            if free > 0:
                services = self.services
                claimed = claim_runs(
                    services.session_factory,
                    owner=services.owner,
                    now=services.clock(),
                    seconds=services.settings.koding_iam_lease_seconds,
                    limit=free,
                    skip=running,
                )
            for run in claimed:
                log.info("worker: took the %s run of request %s", run.status, run.request_id)
                with self._changed:
                    self._running.add(run.request_id)
                    origin = self._origins.pop(run.request_id, {})
                self.pool.submit(self._run, run, origin)
            with self._changed:
                self.picks += 1
                self._changed.notify_all()
            self.services.metrics.looked("worker")
            return len(claimed)

    def _run(self, run: Run, origin: dict[str, Any]) -> None:
        services = self.services
        context = origin.pop("context", None) or {}
        try:
            with request_context.bind(**context):
                if run.status == RequestStatus.PROVISIONING:
                    outcome = provisioning_flow.provision(services, run.request_id)
                else:
                    outcome = offboarding.run_revoke(services, run.request_id)
            delay = None
            if outcome.status == "skipped":
                give_back(services.session_factory, run, owner=services.owner)
                delay = SKIPPED_BACKOFF_SECONDS
            elif outcome.status == "failed" and run.status == RequestStatus.REVOKING:
                delay = float(services.settings.koding_iam_resume_interval_seconds)
            if delay is not None:
                with self._changed:
                    self._retry_at[run.request_id] = time.monotonic() + delay
        except Exception as exc:  # its claim lapses and a worker resumes it, as after a crash
            log.error("worker: request %s (%s) stopped: %s: %s", run.request_id, run.status, type(exc).__name__, exc)
        finally:
            with self._changed:
                self._running.discard(run.request_id)
                self._changed.notify_all()
            self._wake.set()

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._running)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once a pick finds nothing to start and no run of this worker is running; False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(SQLAlchemyError):
                if self.pick() == 0 and self.running == 0:
                    return True
            with self._changed:
                self._changed.wait_for(
                    lambda: not self._running, timeout=max(0.0, min(0.2, deadline - time.monotonic()))
                )
        return False


@dataclass
class WorkerThreads:
    """The worker as it runs in one process: the run taker, the outbox sender and (optionally) the scheduler."""

    worker: Worker
    outbox: Any  # bot.outbox_sender.OutboxSender
    scheduler: Any  # an APScheduler scheduler, or None when this process runs no scheduled jobs


def worker_slots(settings: Settings, *, inline: bool) -> int:
    """How many runs one process takes at once: KODING_IAM_WORKER_THREADS, else fewer beside the acks (inline)."""
    configured = settings.koding_iam_worker_threads
    return configured if configured is not None else INLINE_SLOTS if inline else EXTERNAL_SLOTS


def start_threads(
    services: Services, *, pool: Executor, jobs_pool: Executor | None, slots: int, jobs: bool = True
) -> WorkerThreads:
    """Start the worker's threads in this process: `pool` runs provisioning and offboarding, at most `slots` at
    once (worker_slots), `jobs_pool` the scheduled jobs (both tracked by the caller's graceful stop)."""
    from bot.scheduler import start_scheduler
    from bot.slack.outbox_sender import start_outbox

    settings = services.settings
    outbox = start_outbox(services)  # Slack surfaces marked changed are delivered after commit, paced
    worker = Worker(
        services,
        pool=pool,
        slots=slots,
        poll_seconds=settings.koding_iam_worker_poll_seconds,
    ).start()
    scheduler = start_scheduler(services, pool=jobs_pool) if jobs else None
    return WorkerThreads(worker=worker, outbox=outbox, scheduler=scheduler)
