"""bot/core/key_verification.py and IamGateway.key_identity against moto held to IAM's eventual consistency for new
keys (bot/devtools/strict_iam.py), on a fake clock shared by the stand-in and the backoff, so every wait is exact.

Why: a new key shown before AWS accepts it fails in Koding for a few seconds; the reveal must ask with the key
itself, back off, give up at the limit, and never let the secret reach a log line (botocore's DEBUG included).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from moto import mock_aws

from bot.aws_iam import AccessDenied, IamGateway, NewAccessKey
from bot.core.key_verification import Pace, Verdict, until_accepted
from bot.devtools import strict_iam


class FakeTime:
    """Seconds since the test began: the backoff's clock and sleep, and the stand-in's view of the key's age."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.started = datetime.now(UTC)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def wall(self) -> datetime:
        return self.started + timedelta(seconds=self.now)


@pytest.fixture
def gateway() -> Iterator[IamGateway]:
    with mock_aws():
        gateway = IamGateway.from_environment()
        gateway.create_user("koding-alice", path="/koding/", tags={}, permissions_boundary=None)
        yield gateway


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def pace(fake: FakeTime) -> Pace:
    return Pace(first_delay=0.5, max_delay=2.0, sleep=fake.sleep, monotonic=fake.monotonic)


def test_a_key_aws_accepts_at_once_is_asked_about_once(gateway: IamGateway, fake: FakeTime) -> None:
    key = gateway.create_access_key("koding-alice")
    waiting: list[int] = []
    checked = until_accepted(gateway, key, limit_seconds=20, pace=pace(fake), on_waiting=lambda: waiting.append(1))
    assert (checked.verdict, checked.attempts, fake.sleeps, waiting) == (Verdict.ACCEPTED, 1, [], [])


def test_a_new_key_is_asked_about_with_backoff_until_aws_accepts_it(gateway: IamGateway, fake: FakeTime) -> None:
    key = gateway.create_access_key("koding-alice")
    waiting: list[float] = []
    with strict_iam.new_keys_refused_for(2, clock=fake.wall):
        with pytest.raises(AccessDenied) as refused:
            gateway.key_identity(key)
        assert refused.value.code == "InvalidClientTokenId"
        checked = until_accepted(
            gateway, key, limit_seconds=20, pace=pace(fake), on_waiting=lambda: waiting.append(fake.now)
        )
    # Tries at 0, 0.5, 1.5 (refused) and 3.5 s (accepted); the modal hears of the wait once, at the first refusal.
    assert fake.sleeps == [0.5, 1.0, 2.0]
    assert (checked.verdict, checked.attempts, checked.seconds, waiting) == (Verdict.ACCEPTED, 4, 3.5, [0.0])
    assert gateway.key_identity(key).endswith(":user/koding/koding-alice")


def test_a_key_never_accepted_within_the_limit_is_not_yet_and_the_last_try_falls_at_the_limit(
    gateway: IamGateway, fake: FakeTime
) -> None:
    key = gateway.create_access_key("koding-alice")
    with strict_iam.new_keys_refused_for(60, clock=fake.wall):
        checked = until_accepted(gateway, key, limit_seconds=5, pace=pace(fake))
    assert fake.sleeps == [0.5, 1.0, 2.0, 1.5]  # the last pause is cut to the limit
    assert (checked.verdict, checked.attempts, checked.seconds) == (Verdict.NOT_YET, 5, 5.0)
    assert checked.refusal == "InvalidClientTokenId" and not checked.accepted


def test_a_limit_of_0_turns_the_check_off(gateway: IamGateway, fake: FakeTime) -> None:
    calls: list[str] = []
    key = NewAccessKey("AKIANOTASKEDABOUT001", datetime.now(UTC), "x" * 40)
    gateway._key_sts_client = lambda *_: calls.append("built")  # type: ignore[assignment,return-value]
    checked = until_accepted(gateway, key, limit_seconds=0, pace=pace(fake))
    assert (checked.verdict, checked.attempts, calls) == (Verdict.UNCHECKED, 0, [])


def test_an_unexpected_failure_does_not_keep_the_key_from_being_shown(gateway: IamGateway, fake: FakeTime) -> None:
    key = gateway.create_access_key("koding-alice")

    def broken(*_: str) -> object:
        raise RuntimeError("no network stack")

    gateway._key_sts_client = broken  # type: ignore[assignment]
    checked = until_accepted(gateway, key, limit_seconds=1, pace=pace(fake))
    assert (checked.verdict, checked.refusal) == (Verdict.NOT_YET, "RuntimeError")


@pytest.fixture
def unredacted_records() -> Iterator[None]:
    """The plain record factory, so the test sees what botocore itself writes (the app's redaction masks
    anything shaped like a secret; this test is about what is written before that)."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def test_the_check_writes_the_secret_to_no_log_botocore_at_debug_included(
    gateway: IamGateway, fake: FakeTime, caplog: pytest.LogCaptureFixture, unredacted_records: None
) -> None:
    key = gateway.create_access_key("koding-alice")
    with caplog.at_level(logging.DEBUG), strict_iam.new_keys_refused_for(1, clock=fake.wall):
        names = ("botocore", "boto3", "urllib3", "bot")
        levels = {name: logging.getLogger(name).level for name in names}
        for name in names:
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            checked = until_accepted(gateway, key, limit_seconds=5, pace=pace(fake))
        finally:
            for name, level in levels.items():  # as they were: later tests in this process read these loggers
                logging.getLogger(name).setLevel(level)
    assert checked.verdict == Verdict.ACCEPTED and checked.attempts > 1
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "GetCallerIdentity" in text and key.access_key_id in text  # botocore's DEBUG lines were captured
    assert key.secret_access_key not in text
    assert key.secret_access_key not in repr(key) and key.secret_access_key not in str(key)
