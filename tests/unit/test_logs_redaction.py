"""Unit tests for bot/logs.py: redaction of secrets and the Slack logger level pin."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from bot import logs
from bot.logs import RedactingFilter, redact

pin_loggers = logs.pin_chatty_loggers
PINNED = logs.PINNED_LOGGERS
SLACK_LOGGERS = ("slack_sdk", "slack_bolt")

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP_TOKEN = "xapp-1-A0123ABCD-1234567890-abcdef0123456789"


def test_fixture_shapes() -> None:
    assert len(AWS_SECRET) == 40
    assert len(KEY_ID) == 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (AWS_SECRET, "[redacted]"),
        (f"secret: {AWS_SECRET} done", "secret: [redacted] done"),
        (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_access_key = [redacted]"),
        (f"<SecretAccessKey>{AWS_SECRET}</SecretAccessKey>", "<SecretAccessKey>[redacted]</SecretAccessKey>"),
        (f'{{"aws_secret_access_key": "{AWS_SECRET}"}}', '{"aws_secret_access_key": "[redacted]"}'),
        (f"token {BOT_TOKEN} used", "token [redacted] used"),
        (f"app {APP_TOKEN}", "app [redacted]"),
        (f"{KEY_ID} {AWS_SECRET}", f"{KEY_ID} [redacted]"),
    ],
)
def test_redact_masks_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        KEY_ID,
        f"created key {KEY_ID} for koding-alice",
        "Request #42 approved by U0ADM; provisioning IAM user koding-alice",
        "arn:aws:iam::123456789012:user/koding/koding-alice",
        AWS_SECRET[:39],
        "",
    ],
)
def test_redact_leaves_ordinary_text(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("prefix", ["aws_secret_access_key=", "SecretAccessKey="])
def test_redact_masks_secret_after_equals_sign(prefix: str) -> None:
    assert redact(f"{prefix}{AWS_SECRET}") == f"{prefix}[redacted]"


def test_redact_does_not_mask_part_of_a_longer_token() -> None:
    longer = "A" * 41
    assert redact(longer) == longer


def _record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, msg, args or None, exc_info)  # type: ignore[arg-type]


def test_filter_rewrites_record_with_secret_in_args() -> None:
    record = _record("revealed key %s with secret %s", KEY_ID, AWS_SECRET)
    assert RedactingFilter().filter(record) is True
    message = record.getMessage()
    assert AWS_SECRET not in message
    assert message == f"revealed key {KEY_ID} with secret [redacted]"
    assert record.args is None


def test_filter_leaves_clean_record_untouched() -> None:
    record = _record("created %s", KEY_ID)
    assert RedactingFilter().filter(record) is True
    assert record.msg == "created %s"
    assert record.args == (KEY_ID,)
    assert record.getMessage() == f"created {KEY_ID}"


def test_filter_masks_secret_in_exception() -> None:
    try:
        raise RuntimeError(f"boom {BOT_TOKEN}")
    except RuntimeError:
        record = _record("failed", exc_info=sys.exc_info())
    assert RedactingFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert BOT_TOKEN not in formatted
    assert "boom [redacted]" in formatted


def test_filter_keeps_record_with_broken_format() -> None:
    record = _record("%d items", "not a number")
    assert RedactingFilter().filter(record) is True


def test_filter_through_a_handler() -> None:
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Capture()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("koding_iam.tests.redaction")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info("body=%s", {"token": BOT_TOKEN, "secret": AWS_SECRET})
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 1
    assert BOT_TOKEN not in seen[0]
    assert AWS_SECRET not in seen[0]
    assert "[redacted]" in seen[0]


@pytest.fixture
def slack_logger_levels() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in PINNED}
    root_level = logging.getLogger().level
    try:
        yield
    finally:
        logging.getLogger().setLevel(root_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("slack_logger_levels")
def test_pinned_loggers_are_raised_from_debug_to_info() -> None:
    assert set(SLACK_LOGGERS) <= set(PINNED)
    logging.getLogger().setLevel(logging.DEBUG)  # even when everything else logs at DEBUG
    for name in SLACK_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    pin_loggers()
    for name in SLACK_LOGGERS:
        assert logging.getLogger(name).level == logging.INFO
        assert not logging.getLogger(f"{name}.web.base_client").isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("slack_logger_levels")
def test_pinned_loggers_keep_higher_levels() -> None:
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    logging.getLogger("slack_bolt").setLevel(logging.ERROR)
    pin_loggers()
    assert logging.getLogger("slack_sdk").level == logging.WARNING
    assert logging.getLogger("slack_bolt").level == logging.ERROR


@pytest.mark.usefixtures("slack_logger_levels")
def test_pinned_loggers_are_no_more_talkative_than_root() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    pin_loggers()
    assert logging.getLogger("botocore").level == logging.WARNING
    assert not logging.getLogger("botocore.credentials").isEnabledFor(logging.INFO)
