"""The worker's claim on a run (bot/worker.py), on SQLite and PostgreSQL: many workers take each run exactly once,
a claim is taken over only once it has lapsed, and on PostgreSQL the pick passes over rows another worker holds
locked (`FOR UPDATE SKIP LOCKED`) instead of waiting for them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite

from bot import db
from bot.config import load_settings
from bot.db import session_scope
from bot.metrics import Metrics
from bot.worker import Worker, claim_runs, pick_query, worker_slots
from models import AccessRequest, RequestStatus

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def add_runs(engine: Engine, count: int, status: str = RequestStatus.PROVISIONING) -> list[int]:
    with session_scope(db.make_session_factory(engine)) as session:
        rows = [
            AccessRequest(
                requester_id=f"U{n:08d}",
                iam_user_name=f"koding-u{n}",
                iam_user_name_key=f"koding-u{n}",
                plan=[],
                purpose="claims",
                status=status,
            )
            for n in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_the_pick_skips_locked_rows_on_postgresql_and_is_a_plain_select_on_sqlite() -> None:
    query = pick_query(now=NOW, limit=5, skip=[7], postgres=True)
    assert "FOR UPDATE SKIP LOCKED" in str(query.compile(dialect=postgresql.dialect()))
    plain = str(pick_query(now=NOW, limit=5, skip=[], postgres=False).compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE" not in plain


def test_workers_claiming_at_once_take_each_run_exactly_once(engine: Engine, database_url: str) -> None:
    ids = add_runs(engine, 12) + add_runs_revoking(engine)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(owner: str) -> None:
        own = db.make_engine(database_url)
        factory = db.make_session_factory(own)
        mine: list[int] = []
        barrier.wait()
        while runs := claim_runs(factory, owner=owner, now=NOW, seconds=60, limit=3):
            mine += [run.request_id for run in runs]
        claimed[owner] = mine
        own.dispose()

    threads = [threading.Thread(target=worker, args=(f"host:{n}:worker",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    taken = [request_id for mine in claimed.values() for request_id in mine]
    assert sorted(taken) == sorted(ids)  # every run once: none missed, none twice
    with session_scope(db.make_session_factory(engine)) as session:
        owners = dict(session.execute(select(AccessRequest.id, AccessRequest.lease_owner)).all())
    for owner, mine in claimed.items():
        assert all(owners[request_id] == owner for request_id in mine)


def add_runs_revoking(engine: Engine) -> list[int]:
    with session_scope(db.make_session_factory(engine)) as session:
        row = AccessRequest(
            requester_id="UREVOKE01",
            iam_user_name="koding-leaving",
            iam_user_name_key="koding-leaving",
            plan=[],
            purpose="claims",
            status=RequestStatus.REVOKING,
        )
        session.add(row)
        session.flush()
        return [row.id]


def test_a_claim_is_taken_over_once_it_lapsed_and_not_before(engine: Engine) -> None:
    (request_id,) = add_runs(engine, 1)
    factory = db.make_session_factory(engine)
    assert [r.request_id for r in claim_runs(factory, owner="a", now=NOW, seconds=60, limit=5)] == [request_id]
    assert claim_runs(factory, owner="b", now=NOW + timedelta(seconds=59), limit=5, seconds=60) == []
    assert claim_runs(factory, owner="b", now=NOW + timedelta(seconds=60), limit=5, seconds=60) == []
    taken = claim_runs(factory, owner="b", now=NOW + timedelta(seconds=61), limit=5, seconds=60)
    assert [r.request_id for r in taken] == [request_id]
    with session_scope(factory) as session:
        assert session.get(AccessRequest, request_id).lease_owner == "b"  # type: ignore[union-attr]


def test_runs_in_other_states_are_never_claimed(engine: Engine) -> None:
    for status in (RequestStatus.PENDING, RequestStatus.PROVISIONED, RequestStatus.FAILED, RequestStatus.DENIED):
        add_runs_with(engine, status)
    assert claim_runs(db.make_session_factory(engine), owner="a", now=NOW, seconds=60, limit=10) == []


def add_runs_with(engine: Engine, status: str) -> None:
    with session_scope(db.make_session_factory(engine)) as session:
        session.add(
            AccessRequest(
                requester_id=f"U{status.upper()[:8]}",
                iam_user_name=f"koding-{status}",
                iam_user_name_key=f"koding-{status}",
                plan=[],
                purpose="claims",
                status=status,
            )
        )


def test_on_postgresql_a_row_another_worker_holds_locked_is_passed_over_not_waited_for(postgres_url: str) -> None:
    db.upgrade(postgres_url)
    engine = db.make_engine(postgres_url)
    first, second, third = add_runs(engine, 3)
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    holder = db.make_engine(postgres_url)
    with holder.connect() as connection:
        connection.execute(text("SELECT id FROM access_requests WHERE id = :id FOR UPDATE"), {"id": first})
        result: list[int] = []
        picker = threading.Thread(
            target=lambda: result.extend(
                r.request_id
                for r in claim_runs(db.make_session_factory(engine), owner="b", now=NOW, seconds=60, limit=5)
            )
        )
        picker.start()
        picker.join(10)
        alive = picker.is_alive()
        connection.rollback()  # lets a waiting picker go, so a failure below does not hang the test
    picker.join(10)
    assert not alive, "the pick waited for the row another worker holds locked"
    assert result == [second, third]
    assert any("FOR UPDATE SKIP LOCKED" in statement for statement in statements)
    holder.dispose()
    engine.dispose()


class HeldPool(Executor):
    """Keeps what it is given without running it: the runs stay in flight for as long as the test looks."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.held.append((fn, args))
        return Future()


SETTINGS = {"slack_bot_token": "xoxb-1-2-x", "slack_signing_secret": "s", "koding_iam_admins": "U1AAA"}


def test_inside_serve_the_worker_takes_fewer_runs_at_once_than_a_worker_process(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs inside `serve` share the interpreter with the acknowledgements: unless configured, it takes fewer at
    once than a `koding-iam worker` process, and no more than that however many runs are waiting."""
    monkeypatch.delenv("KODING_IAM_WORKER_THREADS", raising=False)
    settings = load_settings(**SETTINGS)
    inline, external = worker_slots(settings, inline=True), worker_slots(settings, inline=False)
    assert inline < external
    configured = load_settings(**SETTINGS, koding_iam_worker_threads=7)
    assert worker_slots(configured, inline=True) == worker_slots(configured, inline=False) == 7

    add_runs(engine, inline + 5)
    services = SimpleNamespace(
        settings=settings,
        session_factory=db.make_session_factory(engine),
        owner="serve",
        clock=lambda: NOW,
        metrics=Metrics(),
    )
    pool = HeldPool()
    worker = Worker(services, pool=pool, slots=inline)  # type: ignore[arg-type]
    assert worker.pick() == inline
    assert worker.pick() == 0  # every slot is taken until a run ends
    assert len(pool.held) == inline == worker.running
