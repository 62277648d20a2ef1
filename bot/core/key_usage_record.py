"""Recording each key's last use: GetAccessKeyLastUsed for the keys due for a reading, answers written with the
time they were read. AWS is called with no transaction open (bot/devtools/transaction_guard.py fails a test that
does otherwise); the records are what the App Home, the reminders and bot/core/key_usage.py read instead of AWS.

AWS's answer (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccessKeyLastUsed.html): LastUsedDate,
ServiceName and Region; for a key never used there is no date and both names are "N/A" (bot/aws_iam.py maps
those to None, recorded as "never used").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.aws_iam import AwsError, IamGateway, KeyLastUsed
from bot.core.key_usage import RECORDING_SPAN
from bot.db import session_scope
from models import AccessKey, GrantStatus, KeyGrant, KeyStatus

READ_BATCH = 200
# GetAccessKeyLastUsed calls in flight at once: a 2,000-key sweep reads in a few seconds instead of one round trip
# after another (its reminders wait for the readings); IAM's throttling, if met, is retried by botocore and the
# gateway (bot/aws_iam.py).
READERS = 16
Item = tuple[int, str, datetime]  # a key due for reading: row id, access key id, created at
Answer = tuple[int, datetime, KeyLastUsed]  # row id, created at, AWS's answer


def keys_due_for_reading(session: Session, now: datetime, refresh: timedelta) -> list[Item]:
    """Keys whose last use should be read now: never read, read longer than `refresh` ago, or either key of a
    rotation whose old key is active and undecided (read at every sweep, so the new key's first use is seen
    early)."""
    stale = or_(AccessKey.last_used_read_at.is_(None), AccessKey.last_used_read_at <= now - refresh)
    rows = session.execute(
        select(AccessKey.id, AccessKey.access_key_id, AccessKey.created_at)
        .where(AccessKey.status != KeyStatus.DELETED, stale)
        .order_by(AccessKey.id)
    ).all()
    old, new = aliased(AccessKey), aliased(AccessKey)
    pairs = session.execute(
        select(old.id, old.access_key_id, old.created_at, new.id, new.access_key_id, new.created_at)
        .select_from(KeyGrant)
        .join(old, old.access_key_id == KeyGrant.replaces_access_key_id)
        .join(new, new.access_key_id == KeyGrant.access_key_id)
        .where(
            KeyGrant.status == GrantStatus.REVEALED,
            old.status == KeyStatus.ACTIVE,
            new.status == KeyStatus.ACTIVE,
            old.usage_stage == "",  # nothing decided yet; afterwards both follow the refresh interval
        )
    ).all()
    found = {int(row[0]): (int(row[0]), str(row[1]), row[2]) for row in rows}
    for pair in pairs:
        for key_row_id, access_key_id, created_at in (pair[:3], pair[3:]):
            found.setdefault(int(key_row_id), (int(key_row_id), str(access_key_id), created_at))
    return [found[key_row_id] for key_row_id in sorted(found)]


@dataclass(frozen=True)
class Recorded:
    """How far a sweep's reading has come: every key due with an id up to `through` is read and recorded."""

    through: int
    calls: int  # GetAccessKeyLastUsed calls made so far


def record_last_use(factory: sessionmaker[Session], gateway: IamGateway, *, now: datetime, refresh: timedelta) -> int:
    """Read and record the last use of every key due for it; returns the GetAccessKeyLastUsed calls made."""
    calls = 0
    for recorded in record_in_id_order(factory, gateway, now=now, refresh=refresh):
        calls = recorded.calls
    return calls


def record_in_id_order(
    factory: sessionmaker[Session], gateway: IamGateway, *, now: datetime, refresh: timedelta
) -> Iterator[Recorded]:
    """Read and record the last use of every key due for it, in id order, telling after each written batch how far
    it has come (the sweep acts on those keys meanwhile; four calls per reader stay in flight).

    AWS is called with no transaction open; each batch of answers is then written in one short transaction.
    A key AWS does not answer for keeps its previous record (its read time too, so it is tried again next sweep).
    """
    with session_scope(factory) as session:
        due = keys_due_for_reading(session, now, refresh)
    calls = 0

    def read(key: Item) -> Answer | None:
        try:
            return key[0], key[2], gateway.access_key_last_used(key[1])
        except AwsError:
            return None

    with ThreadPoolExecutor(READERS, thread_name_prefix="last-used") as readers:
        answers: list[Answer] = []
        for key, answer in zip(due, _streamed(readers, read, due), strict=True):
            calls += 1
            if answer is not None:
                answers.append(answer)
            if calls % READ_BATCH == 0:
                _write(factory, answers, now)  # the readers go on meanwhile
                answers = []
                yield Recorded(key[0], calls)
        _write(factory, answers, now)
    if calls % READ_BATCH:
        yield Recorded(due[-1][0], calls)


def _streamed(
    readers: ThreadPoolExecutor, read: Callable[[Item], Answer | None], due: list[Item]
) -> Iterator[Answer | None]:
    """Each key's answer, in order, with four calls per reader submitted ahead: the readers never wait for a batch's
    slowest call or for a batch's write (memory stays bounded however many keys are due)."""
    ahead: deque[Future[Answer | None]] = deque()
    keys = iter(due)
    for key in islice(keys, READERS * 4):
        ahead.append(readers.submit(read, key))
    while ahead:
        answer = ahead.popleft().result()
        key = next(keys, None)
        if key is not None:
            ahead.append(readers.submit(read, key))
        yield answer


def _write(factory: sessionmaker[Session], answers: list[Answer], now: datetime) -> None:
    """One batch of answers in one short transaction."""
    if answers:
        with session_scope(factory) as session:
            for key_row_id, created_at, answer in answers:
                first = first_use_candidate(answer.used_at, created_at)
                session.execute(
                    update(AccessKey)
                    .where(AccessKey.id == key_row_id)
                    .values(
                        last_used_at=answer.used_at,
                        last_used_service=answer.service,
                        last_used_region=answer.region,
                        last_used_read_at=now,
                        # The earliest use read (outside the creation span): readings only move forward.
                        first_used_at=AccessKey.first_used_at if first is None else _earliest(first),
                    )
                    .execution_options(synchronize_session=False)
                )


def first_use_candidate(used_at: datetime | None, created_at: datetime) -> datetime | None:
    """A recorded use that counts as the key's first use: not one in the recording span that starts at its
    creation, which may be koding-iam's own check of the new key (sts:GetCallerIdentity signed with it) rather
    than anything the owner set up. A use inside that span shows again as a later span if the key stays in use."""
    if used_at is None or used_at < created_at + RECORDING_SPAN:
        return None
    return used_at


def _earliest(used_at: datetime) -> object:
    return case(
        (or_(AccessKey.first_used_at.is_(None), AccessKey.first_used_at > used_at), used_at),
        else_=AccessKey.first_used_at,
    )
