"""Who is due: a pure function of the key's record and `now`, checked at every stage boundary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.rotation_policy import ActionKind, KeyState, Policy, Stage, decide, stage_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy(
    rotate_after=timedelta(days=90),
    remind_before=timedelta(days=7),
    remind_every=timedelta(days=3),
    grace=timedelta(days=3),
    auto_deactivate_after=None,
    delete_after=timedelta(days=7),
)
KEY = KeyState(
    id=1,
    access_key_id="AKIAEXAMPLE",
    iam_user_name="koding-alice",
    owner_id="UALICE",
    status="active",
    created_at=T0,
    reminder_stage="fresh",
    reminded_at=None,
    deactivated_at=None,
)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


@pytest.mark.parametrize(
    ("days", "stage"),
    [
        (0, Stage.FRESH),
        (82.99, Stage.FRESH),
        (83, Stage.UPCOMING),
        (89.99, Stage.UPCOMING),
        (90, Stage.DUE),
        (92.99, Stage.DUE),
        (93, Stage.OVERDUE),
        (400, Stage.OVERDUE),
    ],
)
def test_stage_boundaries(days: float, stage: Stage) -> None:
    assert stage_of(KEY, POLICY, at(days)) == stage


@pytest.mark.parametrize(
    ("days", "stage", "admins"),
    [(83, Stage.UPCOMING, False), (90, Stage.DUE, False), (93, Stage.OVERDUE, True)],
)
def test_entering_a_stage_sends_one_reminder(days: float, stage: Stage, admins: bool) -> None:
    action = decide(KEY, POLICY, at(days))
    assert action is not None
    assert (action.kind, action.stage, action.tell_admins, action.repeat) == (ActionKind.REMIND, stage, admins, False)


def test_fresh_key_needs_nothing() -> None:
    assert decide(KEY, POLICY, at(82.9)) is None


def test_after_downtime_only_the_current_stage_is_sent() -> None:
    """A key last told 'fresh' and swept 30 days past due gets the overdue message only, admins included."""
    action = decide(KEY, POLICY, at(120))
    assert action is not None and (action.stage, action.tell_admins) == (Stage.OVERDUE, True)


def test_a_told_stage_repeats_every_few_days_while_due() -> None:
    told = replace(KEY, reminder_stage="due", reminded_at=at(90))
    assert decide(told, POLICY, at(92.9)) is None
    again = decide(told, POLICY, at(93.5))  # overdue is a new stage: admins hear of it now
    assert again is not None and (again.stage, again.repeat, again.tell_admins) == (Stage.OVERDUE, False, True)
    told_overdue = replace(KEY, reminder_stage="overdue", reminded_at=at(93))
    assert decide(told_overdue, POLICY, at(95.9)) is None
    repeat = decide(told_overdue, POLICY, at(96))
    assert repeat is not None and (repeat.stage, repeat.repeat, repeat.tell_admins) == (Stage.OVERDUE, True, False)


def test_upcoming_does_not_repeat() -> None:
    told = replace(KEY, reminder_stage="upcoming", reminded_at=at(83))
    assert decide(told, POLICY, at(89.9)) is None


def test_exempt_user_gets_nothing() -> None:
    assert decide(KEY, POLICY, at(120), exempt=True) is None


def test_automatic_deactivation_when_configured() -> None:
    policy = replace(POLICY, auto_deactivate_after=timedelta(days=14))
    assert decide(KEY, policy, at(103.9)) is not None and decide(KEY, policy, at(103.9)).kind == ActionKind.REMIND
    action = decide(KEY, policy, at(104))
    assert action is not None and (action.kind, action.tell_admins) == (ActionKind.DEACTIVATE, True)


def test_deactivated_key_is_told_then_deleted_after_the_window() -> None:
    inactive = replace(KEY, status="inactive", reminder_stage="overdue", deactivated_at=at(100))
    told = decide(inactive, POLICY, at(100))
    assert told is not None and (told.kind, told.stage) == (ActionKind.REMIND, Stage.DEACTIVATED)
    quiet = replace(inactive, reminder_stage="deactivated")
    assert decide(quiet, POLICY, at(106.9)) is None
    deletion = decide(quiet, POLICY, at(107))
    assert deletion is not None and deletion.kind == ActionKind.DELETE


def test_deleted_key_is_told_once() -> None:
    deleted = replace(KEY, status="deleted", reminder_stage="deactivated")
    action = decide(deleted, POLICY, at(200))
    assert action is not None and action.stage == Stage.DELETED
    assert decide(replace(deleted, reminder_stage="deleted"), POLICY, at(300)) is None


def test_reminder_dm_names_the_key_its_age_and_last_use() -> None:
    from bot.aws_iam import KeyLastUsed
    from bot.slack import ids, views

    used = KeyLastUsed(used_at=at(80), service="ec2", region="eu-west-1")
    text, blocks = views.key_reminder_dm(
        key_row_id=7,
        access_key_id="AKIAEXAMPLE",
        iam_user_name="koding-alice",
        created_at=T0,
        stage="upcoming",
        last_used=used,
        due_at=at(90),
        now=at(85),
    )
    rendered = str(blocks)
    assert "AKIAEXAMPLE" in rendered and "85 days" in rendered and "5 days" in rendered
    assert "(ec2, eu-west-1)" in rendered and "2026-03-22" in rendered
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(ids.ROTATE, "7")]
    assert "upcoming" in text
    assert views.last_used_text(KeyLastUsed(None, None, None)) == "never used"
    assert views.last_used_text(None).startswith("unknown")
