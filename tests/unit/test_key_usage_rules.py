"""Unit tests for bot/core/key_usage.py's pure rules and the key-usage settings: the retirement verdict allows for
AWS's 15-minute recording span both ways, unused keys are judged as of their reading, and the settings refuse
malformed values with one line naming the variable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.key_usage import (
    Retirement,
    UsageKey,
    UsageKind,
    UsagePolicy,
    decide_pair,
    decide_unused,
    is_unused,
    retirement,
)
from bot.core.key_usage_record import first_use_candidate
from tests.unit.test_config_loading import config_error, load

T0 = datetime(2027, 1, 1, tzinfo=UTC)
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
POLICY = UsagePolicy(
    refresh=HOUR,
    retire_automatically=False,
    unused_after=45 * DAY,
    unused_auto_deactivate_after=None,
    delete_after=7 * DAY,
)


def key(**values: object) -> UsageKey:
    base: dict[str, object] = {
        "id": 1,
        "access_key_id": "AKIAOLD0000000000000",
        "iam_user_name": "koding-alice",
        "owner_id": "UALICE",
        "status": "active",
        "created_at": T0,
        "usage_stage": "",
        "usage_told_at": None,
        "last_used_at": None,
        "last_used_service": None,
        "last_used_region": None,
        "last_used_read_at": T0 + 10 * HOUR,
        "first_used_at": None,
    }
    return UsageKey(**{**base, **values})  # type: ignore[arg-type]


NEW = key(id=2, access_key_id="AKIANEW0000000000000", first_used_at=T0 + 2 * HOUR, last_used_at=T0 + 3 * HOUR)


@pytest.mark.parametrize(
    ("old_last_used", "verdict"),
    [
        (None, Retirement.QUIET),  # never used at all
        (T0 + 2 * HOUR - 15 * MIN, Retirement.QUIET),  # its last span ended by the new key's first use
        (T0 + 2 * HOUR - 14 * MIN, Retirement.WAIT),  # it may have been used up to 1 minute after: cannot tell
        (T0 + 2 * HOUR, Retirement.WAIT),  # the same moment: cannot tell
        (T0 + 2 * HOUR + MIN, Retirement.STILL_USED),  # recorded after the new key's first use: certain
    ],
)
def test_retirement_allows_for_the_recording_span(old_last_used: datetime | None, verdict: Retirement) -> None:
    assert retirement(key(last_used_at=old_last_used), NEW) == verdict


def test_retirement_waits_for_a_reading_one_span_after_the_first_use_and_for_a_used_new_key() -> None:
    assert retirement(key(last_used_read_at=T0 + 2 * HOUR + 14 * MIN), NEW) == Retirement.WAIT
    assert retirement(key(last_used_read_at=T0 + 2 * HOUR + 15 * MIN), NEW) == Retirement.QUIET
    assert retirement(key(), replace(NEW, first_used_at=None)) == Retirement.WAIT
    assert retirement(key(last_used_read_at=None), NEW) == Retirement.WAIT


def test_the_new_keys_use_in_its_creation_span_is_not_its_first_use() -> None:
    """koding-iam's own check of a new key (sts:GetCallerIdentity signed with it) may be recorded as a use."""
    assert first_use_candidate(T0 + 14 * MIN, T0) is None
    assert first_use_candidate(T0 + 15 * MIN, T0) == T0 + 15 * MIN
    assert first_use_candidate(None, T0) is None


def test_pair_decisions_by_stage_and_setting() -> None:
    auto = replace(POLICY, retire_automatically=True)
    assert decide_pair(key(), NEW, POLICY).kind == UsageKind.OFFER_RETIRE  # type: ignore[union-attr]
    assert decide_pair(key(), NEW, auto).kind == UsageKind.RETIRE  # type: ignore[union-attr]
    assert decide_pair(key(usage_stage="retire-offered"), NEW, POLICY) is None  # told once
    still = key(last_used_at=T0 + 4 * HOUR)
    assert decide_pair(still, NEW, auto).kind == UsageKind.WARN_OLD_USED  # type: ignore[union-attr]
    assert decide_pair(replace(still, usage_stage="still-used"), NEW, auto) is None


def test_unused_is_judged_as_of_the_reading() -> None:
    never = key(last_used_read_at=T0 + 45 * DAY)
    assert is_unused(never, POLICY) and not is_unused(replace(never, last_used_read_at=T0 + 44 * DAY), POLICY)
    recent = key(last_used_at=T0 + DAY, first_used_at=T0 + DAY, last_used_read_at=T0 + 46 * DAY + 15 * MIN)
    assert is_unused(recent, POLICY) and not is_unused(replace(recent, last_used_read_at=T0 + 46 * DAY), POLICY)
    assert not is_unused(replace(never, status="inactive"), POLICY)


def test_unused_decisions_by_stage_and_grace() -> None:
    now = T0 + 50 * DAY
    never = key(last_used_read_at=T0 + 46 * DAY)
    grace = replace(POLICY, unused_auto_deactivate_after=7 * DAY)
    assert decide_unused(never, POLICY, now).kind == UsageKind.FLAG_UNUSED  # type: ignore[union-attr]
    told = replace(never, usage_stage="unused", usage_told_at=T0 + 46 * DAY)
    assert decide_unused(told, POLICY, now) is None
    assert decide_unused(told, grace, now) is None
    assert decide_unused(told, grace, T0 + 53 * DAY).kind == UsageKind.DEACTIVATE_UNUSED  # type: ignore[union-attr]
    assert decide_unused(replace(told, usage_stage="unused-kept"), grace, T0 + 90 * DAY) is None


def test_key_usage_settings() -> None:
    settings = load()
    assert settings.koding_iam_unused_after_days == 45
    assert settings.koding_iam_unused_auto_deactivate_days is None
    assert settings.koding_iam_retire_old_key_after_use is False
    assert settings.koding_iam_last_used_refresh_minutes == 60
    assert load(koding_iam_unused_auto_deactivate_days="off").koding_iam_unused_auto_deactivate_days is None
    assert load(koding_iam_unused_auto_deactivate_days="14").koding_iam_unused_auto_deactivate_days == 14
    assert load(koding_iam_retire_old_key_after_use="true").koding_iam_retire_old_key_after_use is True
    for field, value in (
        ("koding_iam_unused_after_days", 0),
        ("koding_iam_unused_after_days", "soon"),
        ("koding_iam_unused_auto_deactivate_days", -1),
        ("koding_iam_retire_old_key_after_use", "maybe"),
        ("koding_iam_last_used_refresh_minutes", 0),
    ):
        assert config_error(**{field: value}).startswith(f"{field.upper()} is malformed")
