"""Logging set-up: level and format from the environment, chatty libraries pinned, and redaction of every record.

slack_sdk logs full request bodies at DEBUG (the reveal modal's body holds a secret access key) and botocore
logs full response bodies at DEBUG (CreateAccessKey's holds the same secret), so those loggers are pinned at
INFO whatever the root level is. Behind that, a log-record factory masks anything shaped like an AWS secret
key or a Slack token in every record as it is created, before any handler or filter sees it; the JSON formatter
masks its output once more.

waitress warns "Task queue depth is N" for every request that finds no idle thread; in a burst that is thousands
of lines a minute, burying everything else, so one such line passes per QUEUE_DIGEST_SECONDS and, when the window
ends, one more says how many were held back and the deepest queue among them.

`LOG_FORMAT=json` writes one JSON object per line (time, level, logger, message and the Slack request's fields
from bot/request_context.py); `text`, the default, is for a terminal. `LOG_LEVEL` and `LOG_LEVEL_THIRD_PARTY`
(APScheduler and Alembic, WARNING by default: they report every tick and every migration at INFO) take DEBUG,
INFO, WARNING or ERROR; anything else stops start-up with one line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bot import request_context
from bot.config import ConfigError

PINNED_LOGGERS = ("slack_sdk", "slack_bolt", "botocore", "boto3", "urllib3")
THIRD_PARTY_LOGGERS = ("apscheduler", "alembic")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
_SECRET_PATTERNS = (
    # AWS secret access keys: 40 characters of the base64 alphabet, standing alone; "/" may arrive escaped as
    # "\/" (JSON) or "%2F" (form bodies), "+" as "%2B", and the key may follow an escaped newline or tab.
    re.compile(r"(?:(?<![A-Za-z0-9/+])|(?<=\\[nrt]))(?:\\/|%2[FfBb]|[A-Za-z0-9/+]){40}(?![A-Za-z0-9/+]|\\/|%2[FfBb])"),
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
)
QUEUE_LOGGER = "waitress.queue"  # waitress.utilities.queue_logger: "Task queue depth is %d", one per request queued
QUEUE_DIGEST_SECONDS = 10.0
_DEPTH = re.compile(r"depth is (\d+)")
_installed = False


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not lose the record
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        rendered = logging.Formatter().formatException(record.exc_info)
        masked = redact(rendered)
        if masked != rendered:
            record.exc_text, record.exc_info = masked, None
    return record


class RedactingFilter(logging.Filter):
    """The same redaction as a handler filter, for handlers that receive records made before installation."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def install_redaction() -> None:
    """Wrap the log-record factory once, so every record in the process is redacted when created."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True


def pin_chatty_loggers() -> None:
    """Slack's and AWS's loggers never below INFO (their DEBUG output holds request and response bodies), and
    never more talkative than the root logger."""
    floor = max(logging.INFO, logging.getLogger().getEffectiveLevel())
    for name in PINNED_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < floor:
            logger.setLevel(floor)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the Slack request's fields, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(getattr(record, "slack", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """The terminal's format, with the Slack request's fields at the end of a line made while handling one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "slack", None)
        if not fields:
            return line
        first, _, rest = line.partition("\n")
        tail = " ".join(f"{key}={fields[key]}" for key in request_context.FIELDS if key in fields)
        return f"{first} [{tail}]" + (f"\n{rest}" if rest else "")


class RequestFields(logging.Filter):
    """Stamps each record with the Slack request it was made for (`record.slack`), read where it is made."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "slack"):
            record.slack = request_context.current()
        return True


def _later(seconds: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


class QueueDepthDigest(logging.Filter):
    """The first waitress queue warning of a window passes; the rest are counted, and when the window ends one line
    says how many were held back and the deepest queue they reported, so a burst's size is never lost."""

    def __init__(
        self,
        seconds: float = QUEUE_DIGEST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], None] = _later,
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self.later = later
        self._lock = threading.Lock()
        self._quiet_until = float("-inf")
        self._held = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "queue_digest", False):  # this filter's own summary
            return True
        depth = int(found.group(1)) if (found := _DEPTH.search(record.getMessage())) else 0
        now = self.clock()
        with self._lock:
            if now >= self._quiet_until:
                self._quiet_until = now + self.seconds
                return True
            self._held += 1
            self._deepest = max(self._deepest, depth)
            first_held, wait = self._held == 1, self._quiet_until - now
        if first_held:
            self.later(wait, self.flush)
        return False

    def flush(self) -> None:
        with self._lock:
            held, deepest = self._held, self._deepest
            self._held = self._deepest = 0
        if held:
            logging.getLogger(QUEUE_LOGGER).warning(
                "Task queue depth reached %d: %d more such warnings held back in the last %g s",
                deepest,
                held,
                self.seconds,
                extra={"queue_digest": True},
            )


def _choice(environ: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    value = raw.lower() if allowed == FORMATS else raw.upper()
    if value not in allowed:
        raise ConfigError(f"{name} is malformed: {raw!r} is not one of {', '.join(allowed)}")
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """(LOG_LEVEL, LOG_FORMAT, LOG_LEVEL_THIRD_PARTY), refusing unknown values with a ConfigError."""
    env = os.environ if environ is None else environ
    return (
        _choice(env, "LOG_LEVEL", "INFO", LEVELS),
        _choice(env, "LOG_FORMAT", "text", FORMATS),
        _choice(env, "LOG_LEVEL_THIRD_PARTY", "WARNING", LEVELS),
    )


def json_enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("LOG_FORMAT", "").strip().lower() == "json"


def error_line(logger: str, message: str) -> str:
    """A start-up failure as the configured format writes it: one JSON object, or the plain line."""
    if json_enabled():
        return JsonFormatter().format(logging.LogRecord(logger, logging.ERROR, "", 0, message, None, None))
    return f"koding-iam: {redact(message)}"


def configure(
    level: str | None = None, *, fmt: str | None = None, third_party: str | None = None, stream: Any = None
) -> None:
    """Process-wide logging for `koding-iam serve` and friends; unset arguments come from the environment."""
    env_level, env_fmt, env_third = settings_from_env()
    level, fmt, third_party = (level or env_level).upper(), fmt or env_fmt, third_party or env_third
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(third_party)
    pin_chatty_loggers()
    queue = logging.getLogger(QUEUE_LOGGER)
    for old in [f for f in queue.filters if isinstance(f, QueueDepthDigest)]:
        queue.removeFilter(old)
    queue.addFilter(QueueDepthDigest())
    install_redaction()
    logging.captureWarnings(fmt == "json")  # a Python warning would otherwise be a plain line among the JSON
