"""Unit tests for bot/lifecycle.py: counting work in flight, the drain, the gate that answers while stopping,
and releasing exactly this process's leases (compare-and-set on ownership, never by age)."""

from __future__ import annotations

import gc
import http.client
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from bot import db
from bot.config import ConfigError, load_settings
from bot.core import leases
from bot.lifecycle import HttpServing, Lifecycle, Stopped, TrackedExecutor, Work, release_leases
from models import AccessRequest, RequestStatus, UserLease

# Wildcards of SQL LIKE in the process name: an unescaped prefix match would release the neighbour's leases.
ME = "host_1:42:ab%c"
NEIGHBOUR = "hostX1:42:abZc"  # matches ME as a LIKE pattern, is another process
LONGER = "host_1:42:ab%cd"  # ME is a prefix of its name


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(autouse=True)
def unfrozen_heap() -> Iterator[None]:
    """`Lifecycle.run` freezes the process's heap before serving; in a test that would set aside everything the
    suite made so far (and keep it from the collector) for the rest of the run, so each test gives it back."""
    yield
    gc.unfreeze()


# Counting work ---------------------------------------------------------------------------------------------
def test_a_tracked_pool_counts_queued_and_running_tasks_until_they_end() -> None:
    work = Work()
    gate = threading.Event()
    pool = TrackedExecutor(ThreadPoolExecutor(max_workers=1), work)
    futures = [pool.submit(gate.wait, 5) for _ in range(3)]  # one running, two queued
    assert work.in_flight == 3
    assert not work.wait_idle(0.1)
    gate.set()
    assert work.wait_idle(5)
    assert all(f.done() for f in futures) and work.in_flight == 0
    pool.shutdown()


def test_drain_waits_for_the_work_in_flight_and_returns_when_it_ends() -> None:
    life = Lifecycle()
    pool = life.executor("t", 2)
    pool.submit(time.sleep, 0.4)
    started = time.monotonic()
    assert life.drain(time.monotonic() + 5)
    assert 0.3 < time.monotonic() - started < 3
    pool.shutdown()


def test_drain_gives_up_at_the_deadline_and_at_a_second_signal() -> None:
    life = Lifecycle()
    stuck = threading.Event()
    pool = life.executor("t", 1)
    pool.submit(stuck.wait, 10)
    started = time.monotonic()
    assert not life.drain(time.monotonic() + 0.3)
    assert 0.25 < time.monotonic() - started < 2
    life._on_signal(15, None)
    life._on_signal(15, None)  # the second signal: stop waiting
    started = time.monotonic()
    assert not life.drain(time.monotonic() + 30)
    assert time.monotonic() - started < 1
    stuck.set()
    pool.shutdown()


# Releasing leases ------------------------------------------------------------------------------------------
@pytest.fixture
def factory(database_url: str) -> Iterator[Any]:
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    yield db.make_session_factory(engine)
    engine.dispose()


def add_run(factory: Any, number: int, owner: str | None, until: datetime | None) -> None:
    with db.session_scope(factory) as session:
        session.add(
            AccessRequest(
                requester_id=f"U{number}AAA",
                iam_user_name=f"koding-u{number}",
                iam_user_name_key=f"koding-u{number}",
                plan=[],
                purpose="test",
                status=RequestStatus.PROVISIONING,
                lease_owner=owner,
                lease_until=until,
            )
        )


def take_user_lease(factory: Any, name: str, process: str, *, seconds: int = 600) -> leases.Lease:
    lease = leases.try_acquire(
        factory, iam_user_name=name, owner=leases.new_owner(process), purpose="test", clock=now, seconds=seconds
    )
    assert lease is not None
    lease._stop.set()  # no heartbeat: the rows stay as written
    return lease


def test_release_frees_exactly_this_processs_run_and_user_leases(factory: Any) -> None:
    future = now() + timedelta(seconds=600)
    add_run(factory, 1, ME, future)
    add_run(factory, 2, NEIGHBOUR, future)
    add_run(factory, 3, LONGER, future)
    add_run(factory, 4, ME, now() - timedelta(days=3))  # lapsed long ago, still ours: released too
    mine = take_user_lease(factory, "koding-a", ME)
    take_user_lease(factory, "koding-b", ME)
    take_user_lease(factory, "koding-c", NEIGHBOUR)
    take_user_lease(factory, "koding-d", LONGER)

    released = release_leases(factory, ME)

    assert (released.runs, released.users) == (2, 2)
    with db.session_scope(factory) as session:
        runs = dict(session.execute(select(AccessRequest.iam_user_name, AccessRequest.lease_owner)).all())
        users = dict(session.execute(select(UserLease.name_key, UserLease.owner)).all())
    assert runs == {"koding-u1": None, "koding-u2": NEIGHBOUR, "koding-u3": LONGER, "koding-u4": None}
    assert users["koding-a"] is None and users["koding-b"] is None
    assert users["koding-c"].startswith(NEIGHBOUR + "/") and users["koding-d"].startswith(LONGER + "/")
    # Another process takes a released user lease at once; the releasing holder's final writes see it is gone.
    assert take_user_lease(factory, "koding-a", NEIGHBOUR) is not None
    with db.session_scope(factory) as session:
        assert not mine.still_ours(session)
    assert release_leases(factory, ME) == type(released)(runs=0, users=0)


# The gate while stopping -----------------------------------------------------------------------------------
class SlowApp:
    """A WSGI app that holds each Slack request until `go` is set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.entered = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slack/events":
            self.entered.set()
            self.go.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


def call(port: int, method: str, path: str, connection: http.client.HTTPConnection | None = None) -> Any:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=b"{}" if method == "POST" else None)
    answer = connection.getresponse()
    return answer.status, dict(answer.getheaders()), answer.read()


@pytest.fixture
def served() -> Iterator[tuple[HttpServing, SlowApp]]:
    app = SlowApp()
    serving = HttpServing(app, port=0, host="127.0.0.1", work=Work())
    serving.start()
    yield serving, app
    app.go.set()
    serving.server.close()


def test_stopping_answers_healthz_503_serves_requests_in_flight_and_refuses_new_ones(
    served: tuple[HttpServing, SlowApp],
) -> None:
    serving, app = served
    port = serving.port
    assert call(port, "GET", "/healthz")[0] == 200
    kept_open = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    assert call(port, "GET", "/healthz", kept_open)[0] == 200  # a keep-alive connection, open when the stop begins
    in_flight: list[Any] = []
    sender = threading.Thread(target=lambda: in_flight.append(call(port, "POST", "/slack/events")))
    sender.start()
    assert app.entered.wait(5)
    assert serving.busy() and serving.work.in_flight == 1

    serving.begin_stop()
    status, headers, body = call(port, "GET", "/healthz")
    assert status == 503 and b"stopping" in body
    status, headers, _ = call(port, "POST", "/slack/events")  # a connection opened after the stop: new work
    assert (status, headers.get("Retry-After")) == (503, "1")
    assert call(port, "GET", "/other")[0] == 200  # not Slack work: answered as usual

    app.go.set()
    sender.join(10)
    assert in_flight and in_flight[0][0] == 200 and in_flight[0][1].get("Connection") == "close"
    status, headers, _ = call(port, "POST", "/slack/events", kept_open)  # in flight: it was open at the stop
    assert (status, headers.get("Connection")) == (200, "close")
    deadline = time.monotonic() + 5
    while serving.busy() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not serving.busy() and serving.work.in_flight == 0


# The whole stop --------------------------------------------------------------------------------------------
def fake_services(factory: Any, drain: int) -> Any:
    engine = factory.kw["bind"]
    return SimpleNamespace(
        settings=SimpleNamespace(koding_iam_drain_seconds=drain), session_factory=factory, owner=ME, engine=engine
    )


class FakeScheduler:
    stopped = False

    def shutdown(self, wait: bool = True) -> None:
        self.stopped = True


def test_run_drains_finished_work_then_releases_and_returns_0(factory: Any) -> None:
    life = Lifecycle()
    exits: list[int] = []
    life.exit = exits.append
    pool = life.executor("t", 1)
    take_user_lease(factory, "koding-a", ME)
    pool.submit(time.sleep, 0.3)
    scheduler = FakeScheduler()
    closed: list[str] = []  # Socket Mode: the client is closed so no new envelope arrives
    life.stop_requested.set()
    started = time.monotonic()
    assert life.run(fake_services(factory, 10), scheduler=scheduler, close_transport=lambda: closed.append("x")) == 0
    assert 0.25 < time.monotonic() - started < 5
    assert scheduler.stopped and closed == ["x"] and exits == []  # finished: a normal return
    with db.session_scope(factory) as session:
        assert session.scalars(select(UserLease.owner)).one() is None


def test_run_sets_the_start_up_heap_aside_from_garbage_collection(factory: Any) -> None:
    """A full collection walks every tracked object with the interpreter lock held; what start-up made lives as
    long as the process, so `run` freezes it before serving and full collections walk only what came after."""
    gc.unfreeze()
    life = Lifecycle()
    life.exit = lambda code: None
    life.stop_requested.set()
    assert gc.get_freeze_count() == 0
    assert life.run(fake_services(factory, 1)) == 0
    assert gc.get_freeze_count() > 10_000  # this test process's modules, pytest's and the app's
    assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()


def test_a_sigterm_taken_by_another_thread_still_stops_the_process_at_once(factory: Any) -> None:
    """The kernel may hand a process's SIGTERM to any thread; Python runs the handler only in the main thread, and
    a main thread asleep in an untimed wait never looks. `run` waits in slices, so it notices within one."""
    life = Lifecycle()
    life.exit = lambda code: None
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    life.install_signal_handlers()
    try:
        # Delivered to this helper thread, not to the main thread (pthread_kill names the thread).
        helper = threading.Thread(target=lambda: (time.sleep(0.2), signal.pthread_kill(threading.get_ident(), 15)))
        rescue = threading.Timer(10.0, life.stop_requested.set)  # the old wait would sleep until this
        rescue.start()
        helper.start()
        started = time.monotonic()
        assert life.run(fake_services(factory, 1)) == 0
        assert time.monotonic() - started < 2.0
        rescue.cancel()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_run_releases_and_exits_0_at_the_drain_deadline_when_work_is_stuck(factory: Any) -> None:
    life = Lifecycle()
    exits: list[int] = []
    life.exit = exits.append
    stuck = threading.Event()
    pool = life.executor("t", 1)
    add_run(factory, 1, ME, now() + timedelta(seconds=600))
    pool.submit(stuck.wait, 30)
    life.stop_requested.set()
    started = time.monotonic()
    life.run(fake_services(factory, 2), scheduler=FakeScheduler())
    assert 1.0 < time.monotonic() - started < 2.5  # within the drain, a moment kept for the release
    assert exits == [0]
    # Released through an engine of its own; the app's engine is fenced, so no thread left running can take
    # the released lease back before the process is gone.
    with pytest.raises(Stopped), db.session_scope(factory) as session:
        session.execute(update(AccessRequest).values(lease_owner=ME, lease_until=now() + timedelta(seconds=600)))
    reader = db.make_engine(factory.kw["bind"].url.render_as_string(hide_password=False))
    with reader.connect() as connection:
        assert connection.scalars(select(AccessRequest.lease_owner)).one() is None
    reader.dispose()
    stuck.set()
    pool.shutdown()


# Settings --------------------------------------------------------------------------------------------------
BASE = {"slack_bot_token": "xoxb-1-2-x", "slack_signing_secret": "s", "koding_iam_admins": "U1AAA"}


def test_drain_seconds_default_to_25_and_are_validated_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KODING_IAM_DRAIN_SECONDS", raising=False)
    assert load_settings(**BASE).koding_iam_drain_seconds == 25
    monkeypatch.setenv("KODING_IAM_DRAIN_SECONDS", "5")
    assert load_settings(**BASE).koding_iam_drain_seconds == 5
    for bad in ("-1", "3601", "soon"):
        monkeypatch.setenv("KODING_IAM_DRAIN_SECONDS", bad)
        with pytest.raises(ConfigError, match="KODING_IAM_DRAIN_SECONDS is malformed"):
            load_settings(**BASE)
