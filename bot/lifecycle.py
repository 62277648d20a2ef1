"""Graceful stop for `koding-iam serve` and `koding-iam worker`.

On SIGTERM or SIGINT the process stops taking new work (GET /healthz answers 503 at once, so a load balancer or
Kubernetes stops routing to it; the worker takes no new run and the scheduler starts no new job; Socket Mode
disconnects), lets what is in flight finish for up to KODING_IAM_DRAIN_SECONDS (requests, the work Bolt runs
after each acknowledgement, the worker's runs, scheduled jobs), then releases every lease it holds and exits 0.

Releasing is why this exists: a process that simply died leaves its leases until they lapse
(KODING_IAM_LEASE_SECONDS), and nobody resumes its work before then. The release is a compare-and-set on
ownership: only rows naming this process change, whatever their age. Work still running when the drain ends is
left resumable exactly as after a crash (its steps are recorded, its claims name its owner), and with its
leases released another process's resume tick takes it over at once; this process exits right after releasing,
so it does not race the taker. A second signal cuts the drain short.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.core import outbox
from bot.core.leases import process_prefix
from bot.db import make_engine, make_session_factory, session_scope
from bot.server import SLACK_PATH, StartResponse, answer, create_http_server
from models import AccessRequest, UserLease

log = logging.getLogger(__name__)
SIGNAL_CHECK_SECONDS = 0.2  # how soon the main thread notices a stop signal another thread received

WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Work:
    """Counts units of work in flight (tasks on the tracked pools, HTTP requests inside the app), so the stop
    knows when nothing is left to wait for."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def begin(self) -> None:
        with self._changed:
            self._count += 1

    def end(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is in flight; False when `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count <= 0, timeout=max(0.0, timeout))


class TrackedExecutor(Executor):
    """An executor whose tasks count as work from submission (queued ones included) until they end."""

    def __init__(self, inner: Executor, work: Work) -> None:
        self.inner = inner
        self.work = work

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.work.begin()
        try:
            future = self.inner.submit(fn, *args, **kwargs)
        except BaseException:
            self.work.end()
            raise
        future.add_done_callback(lambda _: self.work.end())
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


@dataclass(frozen=True)
class Released:
    runs: int  # access_requests whose run lease (provisioning, revoking) this process held
    users: int  # user_leases this process held
    surfaces: int = 0  # outbox surfaces this process's sender had claimed


def release_leases(factory: sessionmaker[Session], process_owner: str) -> Released:
    """Give up every lease `process_owner` holds, so another process resumes the work now instead of after
    the lease lapses. Compare-and-set on ownership: rows owned by anyone else are untouched, however old."""
    holding_prefix = process_prefix(process_owner)  # every holding of this process
    with session_scope(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            # A stuck transaction of this process could hold a lease row's lock; never wait past the drain for it.
            session.execute(text("SET LOCAL lock_timeout = '3s'"))
        runs = session.execute(
            update(AccessRequest)
            .where(AccessRequest.lease_owner == process_owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        users = session.execute(
            update(UserLease)
            .where(UserLease.owner.startswith(holding_prefix, autoescape=True))
            .values(owner=None, purpose=None, until=None)
            .execution_options(synchronize_session=False)
        )
        surfaces = outbox.release(session, owner=process_owner)
        return Released(runs=runs.rowcount, users=users.rowcount, surfaces=surfaces)


class Stopped(SQLAlchemyError):
    """Raised for any statement of a process whose unfinished work was handed over (its leases released)."""


def fence(engine: Engine) -> None:
    """No statement runs on `engine` from now on. Threads still running unfinished work could otherwise take a
    released run lease back (a run renews its lease where the owner is empty) in the moment before the process
    exits; a write already under way commits first, and the release, made on another engine, then sees it."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(*_: Any) -> None:
        raise Stopped("this process is stopping and has handed its work over")


def release_after_fencing(engine: Engine, process_owner: str) -> Released:
    """Fence `engine`, then release `process_owner`'s leases through an engine of its own."""
    fence(engine)
    releaser = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        return release_leases(make_session_factory(releaser), process_owner)
    finally:
        releaser.dispose()


class HttpServing:
    """waitress on its own thread, behind a gate that knows the process is stopping.

    While stopping: /healthz answers 503; a Slack request on a connection that was open when the stop began is
    in flight and is served; one on a connection opened later is new work and gets 503 with Retry-After (Slack
    retries events; a click is served by another process); other paths are served; every answer closes its
    connection.
    """

    def __init__(self, wsgi: WsgiApp, *, port: int, work: Work, host: str = "0.0.0.0", **overrides: Any) -> None:  # noqa: S104
        self.wsgi = wsgi
        self.work = work
        self.admitted: frozenset[tuple[str, str]] | None = None  # None until the stop begins
        self.server = create_http_server(self.gate, port=port, host=host, **overrides)
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def start(self) -> None:
        """Serve from now on (once; later calls do nothing)."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def gate(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        admitted = self.admitted
        if admitted is None:
            with self.work.unit():
                return self.wsgi(environ, start_response)
        _close_after_answer(environ)
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            body = json.dumps({"ok": False, "stopping": True}).encode()
            return answer(start_response, 503, body, "application/json")
        if path == SLACK_PATH and (str(environ.get("REMOTE_ADDR")), str(environ.get("REMOTE_PORT"))) not in admitted:
            return answer(start_response, 503, b"stopping; try again", headers=(("Retry-After", "1"),))
        with self.work.unit():
            return self.wsgi(environ, start_response)

    def begin_stop(self) -> None:
        """From now on the gate answers as stopping; connections open now count as in flight, and those with
        a request being served close after answering it."""
        channels = _channels(self.server)
        self.admitted = frozenset(
            (str(channel.addr[0]), str(channel.addr[1]))
            for channel in channels
            if isinstance(getattr(channel, "addr", None), tuple)
        )
        for channel in channels:
            for request in list(getattr(channel, "requests", None) or []):
                with contextlib.suppress(Exception):
                    request.headers["CONNECTION"] = "close"

    def busy(self) -> bool:
        """A request is being received, queued, served or its answer is not yet sent."""
        return any(
            getattr(channel, "request", None) is not None
            or getattr(channel, "requests", None)
            or getattr(channel, "total_outbufs_len", 0)
            for channel in _channels(self.server)
        )


def _channels(server: Any) -> list[Any]:
    for _ in range(5):  # the serving thread may add or drop a connection while this copies them
        with contextlib.suppress(RuntimeError):
            return list(getattr(server, "active_channels", {}).values())
    return []


def _close_after_answer(environ: dict[str, Any]) -> None:
    """Have waitress close the connection after this answer, so a client's next request opens a new one (and
    is refused as new work). PEP 3333 forbids an app's own Connection header; waitress decides from the
    request's, so this marks the request (best effort: another server simply keeps the connection)."""
    with contextlib.suppress(Exception):
        channel = environ["waitress.client_disconnected"].__self__
        channel.requests[0].headers["CONNECTION"] = "close"


def freeze_startup_heap() -> int:
    """Set start-up's objects (imported modules, botocore's service models, the app) aside from the cyclic garbage
    collector. They live as long as the process, and each full collection walked all of them while holding the
    interpreter lock: 60-80 ms per collection in `serve`, every few seconds under load, against 5-20 ms once they
    are set aside (docs/PERFORMANCE.md)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class Lifecycle:
    """One process's stop: the signal handlers, the tracked pools, and the drain-release-exit sequence."""

    def __init__(self) -> None:
        self.work = Work()
        self.stop_requested = threading.Event()
        self.hurry = threading.Event()  # a second signal: stop waiting for work
        self.exit: Callable[[int], Any] = os._exit  # tests replace it

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_requested.is_set():
            self.hurry.set()
        self.stop_requested.set()

    def executor(self, name: str, threads: int) -> Executor:
        """A thread pool whose tasks the stop waits for."""
        return TrackedExecutor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name), self.work)

    def drain(self, deadline: float, *, http: HttpServing | None = None) -> bool:
        """Wait until no work is in flight (and no request is on the wire); False at `deadline` or on `hurry`."""
        while not self.hurry.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.work.wait_idle(min(remaining, 0.05)) and not (http is not None and http.busy()):
                # Twice, a moment apart: a request answered just now may hand work to a pool right after.
                time.sleep(0.05)
                if self.work.in_flight <= 0 and not (http is not None and http.busy()):
                    return True
        return False

    def run(
        self,
        services: Any,
        *,
        scheduler: Any = None,
        http: HttpServing | None = None,
        close_transport: Callable[[], object] | None = None,
        outbox: Any = None,
        worker: Any = None,
    ) -> int:
        """Serve until SIGTERM/SIGINT, then stop gracefully; returns the exit code (0)."""
        drain_seconds = services.settings.koding_iam_drain_seconds
        log.info("set %s start-up objects aside from garbage collection", freeze_startup_heap())
        if http is not None:
            http.start()
        # In slices: the kernel may hand SIGTERM to any thread, Python runs the handler only in the main thread,
        # and a main thread asleep in an untimed wait would not run it until something else woke it.
        while not self.stop_requested.wait(SIGNAL_CHECK_SECONDS):
            pass
        started = time.monotonic()
        # Leave a moment of the drain for releasing the leases and exiting.
        deadline = started + max(0.0, drain_seconds - min(1.0, drain_seconds / 4))
        log.info("stopping: taking no new work; waiting up to %ss for work in flight", drain_seconds)
        if http is not None:
            http.begin_stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if worker is not None:  # takes no new run; those on its pool are work in flight
            worker.stop(timeout=1.0)
        if close_transport is not None:  # Socket Mode: waits for envelopes being dispatched, within the drain
            closer = threading.Thread(target=close_transport, name="close-transport", daemon=True)
            closer.start()
            closer.join(max(0.0, deadline - time.monotonic()))
        drained = self.drain(deadline, http=http)
        if outbox is not None:  # the surfaces marked by the work just finished go out now, within the drain
            # On a thread: a paced batch can outlast the drain, and stopping the sender ends its pacing waits.
            remaining = max(0.0, deadline - time.monotonic())
            sending = threading.Thread(
                target=outbox.wait_idle, args=(remaining,), kwargs={"quietly": True}, daemon=True
            )
            sending.start()
            sending.join(remaining)
            outbox.stop(timeout=1.0)
            sending.join(1.0)
        try:
            if drained:
                released = release_leases(services.session_factory, services.owner)
            else:
                released = release_after_fencing(services.engine, services.owner)
        except Exception as exc:  # the database is away: the leases lapse on their own, as after a crash
            log.error("could not release this process's leases: %s: %s", type(exc).__name__, exc)
            released = None
        if drained:
            log.info("stopped after %.1fs: all work finished", time.monotonic() - started)
        else:
            log.warning(
                "stopped after %.1fs with %d unit(s) of work unfinished; they are resumed by another process",
                time.monotonic() - started,
                self.work.in_flight,
            )
        if released is not None and (released.runs or released.users or released.surfaces):
            log.info(
                "released %d run lease(s), %d user lease(s) and %d outbox surface(s)",
                released.runs,
                released.users,
                released.surfaces,
            )
        _flush()
        if not drained:
            # Threads still run unfinished work; their leases are gone, so end them now rather than wait.
            self.exit(0)
        with contextlib.suppress(Exception):
            services.engine.dispose()
        # A normal exit waits for every non-daemon thread; should one linger, still exit 0 within the drain.
        watchdog = threading.Timer(max(0.5, started + drain_seconds - time.monotonic()), self.exit, (0,))
        watchdog.daemon = True
        watchdog.start()
        return 0


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
