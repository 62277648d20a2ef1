"""A deactivation's stamp names its owner notice: one per deactivation, the same from an aware or a naive UTC time
(SQLite hands naive ones back), and short enough for an outbox subject with the largest key ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from bot.core import outbox
from bot.core.rotation import stamp


def test_each_deactivation_has_its_own_stamp_whatever_the_time_zone() -> None:
    at = datetime(2026, 12, 5, 2, 20, 4, 742797, tzinfo=UTC)
    assert stamp(at) == stamp(at.replace(tzinfo=None)) == stamp(at.astimezone(timezone(timedelta(hours=-5))))
    assert stamp(at) != stamp(at + timedelta(microseconds=1))
    assert int(stamp(at), 36) == 1_796_437_204_742_797


def test_a_stamped_notice_fits_an_outbox_subject() -> None:
    subject = f"{outbox.Notice.KEY_OFF}:{2**31 - 1}:{stamp(datetime(2999, 12, 31, tzinfo=UTC))}"
    assert len(subject) + 1 + 32 <= outbox.SUBJECT_LENGTH, subject
