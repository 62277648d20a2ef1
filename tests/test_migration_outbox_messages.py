"""Upgrading to the outbox's one-shot messages keeps what was in flight meaningful: a request no admin was shown yet
and a Reveal button never posted become outbox messages; the old send-once claims go, and a key whose stage claim
was cut off keeps its old stage, so the next sweep sends that stage (once, through the outbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, inspect, text

from bot import db


def test_in_flight_messages_become_outbox_rows_and_the_claims_go(database_url: str) -> None:
    db.upgrade(database_url, "0011")
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    old = now - timedelta(hours=1)
    request = (
        "INSERT INTO access_requests (id, requester_id, iam_user_name, iam_user_name_key, plan, purpose, status, "
        "approvals_required, approvals_count, end_stage, created_at, updated_at, announced_at) "
        "VALUES (:id, :who, :name, :name, '[]', 'Staging', :status, 1, 0, 'none', :at, :at, :at)"
    )
    with engine.begin() as connection:
        # 1: pending, its announcer died before any card; 2: pending with its cards; 3: provisioned.
        for request_id, status in ((1, "pending"), (2, "pending"), (3, "provisioned")):
            connection.execute(
                text(request),
                {
                    "id": request_id,
                    "who": f"U{request_id}",
                    "name": f"koding-u{request_id}",
                    "status": status,
                    "at": old,
                },
            )
        connection.execute(text("INSERT INTO approval_cards (request_id, channel, ts) VALUES (2, 'DADMIN1', '1.1')"))
        grant = (
            "INSERT INTO key_grants (id, request_id, requester_id, iam_user_name, status, expires_at, dm_ts, "
            "dm_claimed_at, created_at) VALUES (:id, 3, 'U3', 'koding-u3', :status, :until, :ts, :at, :at)"
        )
        for grant_id, status, ts in ((7, "available", None), (8, "available", "2.2"), (9, "ended", None)):
            connection.execute(
                text(grant), {"id": grant_id, "status": status, "ts": ts, "until": now + timedelta(days=1), "at": old}
            )
        connection.execute(
            text(
                "INSERT INTO access_keys (id, access_key_id, iam_user_name, owner_id, status, created_at, "
                "reminder_stage, claim_stage, claimed_at, usage_stage) "
                "VALUES (5, 'AKIAMIGRATED00000005', 'koding-u3', 'U3', 'active', :born, 'upcoming', 'due', :at, '')"
            ),
            {"born": now - timedelta(days=91), "at": old},
        )

    db.upgrade(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT kind, subject, version, delivered_version FROM outbox")).all()
        key = connection.execute(text("SELECT reminder_stage FROM access_keys WHERE id = 5")).scalar()
    assert sorted(tuple(r) for r in rows) == [("announce", "1", 1, 0), ("reveal", "7", 1, 0)]
    assert key == "upcoming"  # the cut-off claim never recorded "due": the next sweep sends it
    columns = {
        table: {c["name"] for c in inspect(engine).get_columns(table)}
        for table in ("access_keys", "access_requests", "key_grants")
    }
    assert not {"claim_stage", "claimed_at"} & columns["access_keys"]
    assert not {"announced_at", "end_claim_stage", "end_claimed_at"} & columns["access_requests"]
    assert "end_told_at" in columns["access_requests"] and "dm_claimed_at" not in columns["key_grants"]
    engine.dispose()
