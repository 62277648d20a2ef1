"""Unit tests for bot/logs.py: redaction of secrets (text and JSON), the logger level pins, LOG_* validation."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator

import pytest

from bot import logs, request_context
from bot.config import ConfigError
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


# ------------------------------------------------------------------------------------------- JSON output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    names = (*PINNED, *logs.THIRD_PARTY_LOGGERS)
    saved = (root.handlers[:], root.level, {name: logging.getLogger(name).level for name in names})
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)


def _json_lines(monkeypatch: pytest.MonkeyPatch, emit: Callable[[], None], **env: str) -> list[dict[str, object]]:
    for name in ("LOG_LEVEL", "LOG_LEVEL_THIRD_PARTY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"LOG_FORMAT": "json", **env}.items():
        monkeypatch.setenv(name, value)
    stream = io.StringIO()
    logs.configure(stream=stream)
    emit()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_are_redacted_in_message_and_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def emit() -> None:
        log = logging.getLogger("koding_iam.tests.json")
        log.info("revealed %s with %s", KEY_ID, AWS_SECRET)
        try:
            raise RuntimeError(f"boom {BOT_TOKEN} {AWS_SECRET}")
        except RuntimeError:
            log.exception("failed")

    first, second = _json_lines(monkeypatch, emit)
    assert first["message"] == f"revealed {KEY_ID} with [redacted]"
    assert set(first) == {"time", "level", "logger", "message"} and first["level"] == "INFO"
    assert first["logger"] == "koding_iam.tests.json" and str(first["time"]).endswith("+00:00")
    assert second["level"] == "ERROR" and "boom [redacted] [redacted]" in str(second["exception"])
    assert AWS_SECRET not in json.dumps([first, second]) and BOT_TOKEN not in json.dumps([first, second])


@pytest.mark.usefixtures("restore_logging")
def test_json_redaction_also_holds_for_a_record_made_before_the_factory_was_installed() -> None:
    record = _record("secret %s", AWS_SECRET)  # a bare LogRecord: no factory, no filter ran
    line = logs.JsonFormatter().format(record)
    assert AWS_SECRET not in line and json.loads(line)["message"] == "secret [redacted]"


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_slack_request_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    def emit() -> None:
        log = logging.getLogger("koding_iam.tests.json")
        with request_context.bind(request_id="r1", team="T1", user="U1", kind="block_actions", callback="approve"):
            log.info("inside")
        log.info("outside")

    inside, outside = _json_lines(monkeypatch, emit)
    assert {k: inside[k] for k in request_context.FIELDS} == {
        "request_id": "r1",
        "team": "T1",
        "user": "U1",
        "kind": "block_actions",
        "callback": "approve",
    }
    assert "request_id" not in outside


@pytest.mark.parametrize(
    ("name", "value"), [("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "yaml"), ("LOG_LEVEL_THIRD_PARTY", "loud")]
)
def test_unknown_values_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        logs.settings_from_env()
    assert str(refused.value).startswith(f"{name} is malformed: {value!r} is not one of")
    assert "\n" not in str(refused.value)


@pytest.mark.usefixtures("restore_logging")
def test_debug_is_accepted_but_slack_and_aws_stay_at_info_and_third_parties_at_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def emit() -> None:
        logging.getLogger("koding_iam.tests.json").debug("ours")
        logging.getLogger("slack_sdk.web.base_client").debug("request body")
        logging.getLogger("botocore.endpoint").debug("response body")
        logging.getLogger("apscheduler.scheduler").info("tick")
        logging.getLogger("alembic.runtime.migration").info("Context impl")
        logging.getLogger("apscheduler.scheduler").warning("missed")

    lines = _json_lines(monkeypatch, emit, LOG_LEVEL="debug")
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("koding_iam.tests.json", "ours"),
        ("apscheduler.scheduler", "missed"),
    ]


@pytest.mark.usefixtures("restore_logging")
def test_third_party_loggers_speak_at_info_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _json_lines(
        monkeypatch,
        lambda: logging.getLogger("alembic.runtime.migration").info("Running upgrade"),
        LOG_LEVEL_THIRD_PARTY="INFO",
    )
    assert [line["message"] for line in lines] == ["Running upgrade"]


@pytest.mark.usefixtures("restore_logging")
def test_text_format_is_the_default_and_names_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    stream = io.StringIO()
    logs.configure(stream=stream)
    with request_context.bind(request_id="r1", user="U1"):
        logging.getLogger("koding_iam.tests.text").warning("refused")
    line = stream.getvalue().strip()
    assert line.endswith("WARNING koding_iam.tests.text: refused [request_id=r1 user=U1]")
