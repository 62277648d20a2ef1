"""A notice's subject names its template, ids and (for an admin's copy) its target, and fits outbox.subject."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core import outbox
from bot.slack.outbox_notices import TEMPLATES, Ref


class NoSession:
    """Stands in for a session: the subject is refused before anything is written."""

    def execute(self, *_: object) -> object:  # pragma: no cover - never reached
        raise AssertionError("a refused subject must not reach the database")


def test_every_notice_has_a_template() -> None:
    assert set(TEMPLATES) == {str(notice) for notice in outbox.Notice}


@pytest.mark.parametrize(
    ("subject", "parts"),
    [
        ("failed:12", ("failed", "12", "", "failed:12", None)),
        ("ended:7:owner", ("ended", "7", "owner", "ended:7:owner", None)),
        ("ext-card:3@UADMIN1", ("ext-card", "3", "", "ext-card:3", "UADMIN1")),
        ("ended:7:date@C0123ABCD", ("ended", "7", "date", "ended:7:date", "C0123ABCD")),
    ],
)
def test_subject_is_taken_apart(subject: str, parts: tuple[str, str, str, str, str | None]) -> None:
    ref = Ref.parse(subject)
    assert (ref.template, ref.ident, ref.variant, ref.base, ref.target) == parts


def test_a_subject_without_room_for_a_target_is_refused() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="too long"):
        outbox.notice(NoSession(), outbox.Notice.ENDED, "9" * 20, "x" * 10, now=now)  # type: ignore[arg-type]
