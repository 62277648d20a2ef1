"""A sweep acts on its keys window by window as their last uses are recorded: the first owners are told before
the last keys are read (each told with its own key's reading), every key lands in exactly one window, and a
rotation's two keys are held back until every reading is in."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from bot.core import key_usage_record
from bot.core.key_windows import KeyWindow
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from models import AccessKey

DAY = timedelta(days=1)
KEYS = 12


def unread_keys_in_iam(sb: Sandbox, now: datetime) -> list[str]:
    """KEYS owners, each with a real (moto) key overdue for rotation whose last use was never read."""
    gateway, path = sb.services.gateway, sb.settings.koding_iam_path
    rows = []
    for i in range(KEYS):
        name = f"koding-window{i:02d}"
        gateway.create_user(name, path=path, tags={}, permissions_boundary=None)
        key = gateway.create_access_key(name)
        rows.append(
            {
                "access_key_id": key.access_key_id,
                "iam_user_name": name,
                "owner_id": f"UWINDOW{i:02d}",
                "status": "active",
                "created_at": now - 100 * DAY,
                "revealed_at": now - 100 * DAY,
                "reminder_stage": "fresh",
            }
        )
    with session_scope(sb.services.session_factory) as session:
        session.execute(insert(AccessKey), rows)
    return [row["access_key_id"] for row in rows]


def test_the_first_owners_are_told_before_the_last_keys_are_read(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    unread_keys_in_iam(sb, now)
    monkeypatch.setattr(key_usage_record, "READ_BATCH", 5)  # windows of five keys
    monkeypatch.setattr(key_usage_record, "READERS", 1)  # four calls in flight ahead of the one written

    reads = 0
    lock = threading.Lock()
    real_read = sb.services.gateway.access_key_last_used

    def counted_read(access_key_id: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        with lock:
            reads += 1
        return real_read(access_key_id)

    monkeypatch.setattr(sb.services.gateway, "access_key_last_used", counted_read)
    told: list[tuple[int, int, datetime | None]] = []  # (key row id, reads made by then, its reading's time)
    real_notify = rotation_flows._notify

    def noted_notify(services, action, policy, when):  # type: ignore[no-untyped-def]
        with session_scope(services.session_factory) as session:
            read_at = session.scalar(select(AccessKey.last_used_read_at).where(AccessKey.id == action.key.id))
        told.append((action.key.id, reads, read_at))
        return real_notify(services, action, policy, when)

    monkeypatch.setattr(rotation_flows, "_notify", noted_notify)
    report = rotation_flows.sweep(sb.services, now=now)

    assert (report.sent, report.usage.last_used_reads, reads) == (KEYS, KEYS, KEYS)
    assert [key_id for key_id, _, _ in told] == sorted(key_id for key_id, _, _ in told)  # each key once, in order
    reads_by_then = told[0][1]
    assert 5 <= reads_by_then < KEYS  # its window was read, the last keys not yet
    assert all(read_at == now for _, _, read_at in told)  # every owner is told with their key's reading in


def test_windows_cover_every_key_exactly_once_with_a_rotations_keys_held_to_the_end(sandbox: Sandbox) -> None:
    sb = sandbox
    now = sb.services.clock()
    unread_keys_in_iam(sb, now)
    with session_scope(sb.services.session_factory) as session:
        ids = list(session.scalars(select(AccessKey.id).order_by(AccessKey.id)))
    held = frozenset({ids[2], ids[9]})
    windows = [
        KeyWindow(0, ids[4], held),
        KeyWindow(ids[4], ids[7], held),
        KeyWindow(ids[7], None, held),
        KeyWindow(only=held),
    ]
    seen: list[list[int]] = []
    with session_scope(sb.services.session_factory) as session:
        for window in windows:
            seen.append(list(session.scalars(select(AccessKey.id).where(window.clause(AccessKey.id)))))
    assert sorted(key_id for part in seen for key_id in part) == ids  # every key once
    assert sorted(seen[-1]) == sorted(held) and not held & {*seen[0], *seen[1], *seen[2]}
    assert seen[0] == [ids[0], ids[1], ids[3], ids[4]]
    with session_scope(sb.services.session_factory) as session:
        assert list(session.scalars(select(AccessKey.id).where(KeyWindow(only=frozenset()).clause(AccessKey.id)))) == []
