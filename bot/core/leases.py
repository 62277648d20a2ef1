"""One lease per IAM user: every IAM mutation on a user (provisioning, reveal, rotation, key status changes,
offboarding, recovery) runs while its caller holds the user's lease, so two of them never interleave, across
threads and processes.

The lease is a database row claimed by compare-and-set. Its holder keeps it alive with a heartbeat thread, so
a slow holder (Slack answering 429 for minutes) keeps it and only a holder that stopped beating (crashed, hung,
or lost its database) loses it. Recovery therefore judges a claim by its owner's lease, never by its age. No
Slack here, and no AWS call is made while a transaction is open: each claim, beat and release is its own short
transaction.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.db import session_scope, upsert_insert
from bot.errors import DomainError
from models import UserLease

log = logging.getLogger(__name__)


class UserBusy(DomainError):
    """Another operation holds the user's lease; the person is asked to try again in a moment."""


class LeaseLost(Exception):
    """The lease lapsed while this holder still ran (its heartbeat failed); its final writes must not happen."""


class Lease:
    """A held lease: `owner` is unique to this holding; `held` turns False once a heartbeat finds it taken."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        name_key: str,
        owner: str,
        seconds: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.factory = factory
        self.name_key = name_key
        self.owner = owner
        self.seconds = seconds
        self.clock = clock
        self.held = True
        self.released = False
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, name=f"lease:{name_key}", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        interval = max(0.2, self.seconds / 3)
        while not self._stop.wait(interval):
            try:
                with session_scope(self.factory) as session:
                    renewed = _renew(session, self.name_key, self.owner, self.clock(), self.seconds)
            except SQLAlchemyError as exc:  # the database is away: keep trying until the lease lapses
                log.warning("could not renew the lease on %s: %s", self.name_key, type(exc).__name__)
                continue
            if not renewed:
                if self._stop.is_set():
                    return  # let go meanwhile (`release_in`): not a takeover
                self.held = False
                log.warning("the lease on %s was taken over; this holder stops", self.name_key)
                return
            self.beats += 1

    def still_ours(self, session: Session) -> bool:
        """Inside the transaction of a final write: lock the lease row and check it is still ours, so a
        takeover waits for this transaction (PostgreSQL row lock; SQLite has one writer anyway)."""
        owner = session.scalars(
            select(UserLease.owner).where(UserLease.name_key == self.name_key).with_for_update()
        ).first()
        return owner == self.owner

    def require(self, session: Session) -> None:
        if not self.still_ours(session):
            raise LeaseLost(self.name_key)

    def release(self) -> None:
        """Let go in a transaction of its own (a no-op when `release_in`'s transaction already committed)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self.released:
            return
        with contextlib.suppress(SQLAlchemyError), session_scope(self.factory) as session:
            self.release_in(session)
        self.released = True
        self.held = False

    def release_in(self, session: Session) -> None:
        """Let go in the caller's transaction (a run's outcome): the holder calls `released_with_commit()` once
        that transaction committed, and `release()` does nothing more; if it rolled back, `release()` lets go."""
        self._stop.set()  # no beat after this: the holder is done
        session.execute(
            update(UserLease)
            .where(UserLease.name_key == self.name_key, UserLease.owner == self.owner)
            .values(owner=None, purpose=None, until=None)
            .execution_options(synchronize_session=False)
        )

    def released_with_commit(self) -> None:
        self._stop.set()
        self.released = True
        self.held = False


def name_key(iam_user_name: str) -> str:
    return iam_user_name.lower()


def process_prefix(process_owner: str) -> str:
    """What every holder name of one process starts with (see `new_owner`)."""
    return f"{process_owner[:140]}/"


def new_owner(process_owner: str) -> str:
    """A holder name unique to one holding: the process (host:pid:random) and a random part."""
    return f"{process_prefix(process_owner)}{uuid.uuid4().hex[:12]}"


def claim(session: Session, *, iam_user_name: str, owner: str, purpose: str, now: datetime, seconds: int) -> bool:
    """Claim the user's lease in the caller's transaction, with one statement: the row is inserted if the name
    has none yet, taken if it is free (no holder, or a lapsed one); False when a live holder has it. A caller
    that claims with its run's first write holds both or neither."""
    key = name_key(iam_user_name)
    values = {"owner": owner, "purpose": purpose[:40], "until": now + timedelta(seconds=seconds), "acquired_at": now}
    lease = UserLease.__table__.c
    result = session.execute(
        upsert_insert(session)(UserLease)
        .values(name_key=key, **values)
        .on_conflict_do_update(
            index_elements=[lease.name_key],
            set_=values,
            where=or_(lease.owner.is_(None), lease.until.is_(None), lease.until < now),
        )
        .returning(lease.name_key)  # a row back: inserted or taken (the driver's rowcount is not reliable here)
    )
    return result.first() is not None


def try_acquire(
    factory: sessionmaker[Session],
    *,
    iam_user_name: str,
    owner: str,
    purpose: str,
    clock: Callable[[], datetime],
    seconds: int,
) -> Lease | None:
    """Claim the user's lease once, in a transaction of its own; None when a live holder has it."""
    now = clock()
    with session_scope(factory) as session:
        taken = claim(session, iam_user_name=iam_user_name, owner=owner, purpose=purpose, now=now, seconds=seconds)
    if not taken:
        return None
    return Lease(factory, name_key=name_key(iam_user_name), owner=owner, seconds=seconds, clock=clock)


def acquire(
    factory: sessionmaker[Session],
    *,
    iam_user_name: str,
    owner: str,
    purpose: str,
    clock: Callable[[], datetime],
    seconds: int,
    wait: float = 0.0,
) -> Lease:
    """Claim the user's lease, waiting up to `wait` seconds for a live holder to finish; UserBusy otherwise."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        lease = try_acquire(
            factory, iam_user_name=iam_user_name, owner=owner, purpose=purpose, clock=clock, seconds=seconds
        )
        if lease is not None:
            return lease
        if time.monotonic() >= deadline:
            raise UserBusy(
                f"Something else is changing {iam_user_name} right now ({holder_purpose(factory, iam_user_name)}). "
                "Nothing was changed: try again in a minute."
            )
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.5)


@contextlib.contextmanager
def holding(
    factory: sessionmaker[Session],
    *,
    iam_user_name: str,
    owner: str,
    purpose: str,
    clock: Callable[[], datetime],
    seconds: int,
    wait: float = 0.0,
) -> Iterator[Lease]:
    lease = acquire(
        factory, iam_user_name=iam_user_name, owner=owner, purpose=purpose, clock=clock, seconds=seconds, wait=wait
    )
    try:
        yield lease
    finally:
        lease.release()


def holder_purpose(factory: sessionmaker[Session], iam_user_name: str) -> str:
    with session_scope(factory) as session:
        purpose = session.scalars(
            select(UserLease.purpose).where(UserLease.name_key == name_key(iam_user_name))
        ).first()
    return purpose or "another operation"


def is_live(session: Session, *, owner: str | None, now: datetime) -> bool:
    """Whether `owner` still holds a lease that has not lapsed: the test recovery applies to a claim."""
    if owner is None:
        return False
    until = session.scalars(select(UserLease.until).where(UserLease.owner == owner)).first()
    return until is not None and until >= now


def _renew(session: Session, key: str, owner: str, now: datetime, seconds: int) -> bool:
    result = session.execute(
        update(UserLease)
        .where(UserLease.name_key == key, UserLease.owner == owner)
        .values(until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


class Leaser:
    """What a caller needs to take user leases: the database, this process's name, its clock and lease length."""

    def __init__(
        self, factory: sessionmaker[Session], *, process_owner: str, clock: Callable[[], datetime], seconds: int
    ) -> None:
        self.factory = factory
        self.process_owner = process_owner
        self.clock = clock
        self.seconds = seconds

    def hold(self, iam_user_name: str, *, purpose: str, wait: float = 0.0) -> contextlib.AbstractContextManager[Lease]:
        return holding(
            self.factory,
            iam_user_name=iam_user_name,
            owner=new_owner(self.process_owner),
            purpose=purpose,
            clock=self.clock,
            seconds=self.seconds,
            wait=wait,
        )

    def try_acquire(self, iam_user_name: str, *, purpose: str) -> Lease | None:
        return try_acquire(
            self.factory,
            iam_user_name=iam_user_name,
            owner=new_owner(self.process_owner),
            purpose=purpose,
            clock=self.clock,
            seconds=self.seconds,
        )

    def claim(self, session: Session, iam_user_name: str, *, purpose: str) -> str | None:
        """Claim the user's lease in the caller's transaction: the new holder's name, None when a live holder has
        it. Once that transaction commits, `held()` starts the holding's heartbeat."""
        owner = new_owner(self.process_owner)
        taken = claim(
            session, iam_user_name=iam_user_name, owner=owner, purpose=purpose, now=self.clock(), seconds=self.seconds
        )
        return owner if taken else None

    def held(self, iam_user_name: str, owner: str) -> Lease:
        return Lease(
            self.factory, name_key=name_key(iam_user_name), owner=owner, seconds=self.seconds, clock=self.clock
        )
