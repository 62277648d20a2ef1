"""Logging set-up: INFO by default, chatty libraries pinned at INFO, and redaction of every record as a second fence.

slack_sdk logs full request bodies at DEBUG (the reveal modal's body holds a secret access key) and botocore
logs full response bodies at DEBUG (CreateAccessKey's holds the same secret), so those loggers are pinned at
INFO whatever the root level is. Behind that, a log-record factory masks anything shaped like an AWS secret
key or a Slack token in every record as it is created, before any handler or filter sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

PINNED_LOGGERS = ("slack_sdk", "slack_bolt", "botocore", "boto3", "urllib3")
_SECRET_PATTERNS = (
    # AWS secret access keys: 40 characters of the base64 alphabet, standing alone; "/" may arrive escaped as
    # "\/" (JSON) or "%2F" (form bodies), "+" as "%2B", and the key may follow an escaped newline or tab.
    re.compile(r"(?:(?<![A-Za-z0-9/+])|(?<=\\[nrt]))(?:\\/|%2[FfBb]|[A-Za-z0-9/+]){40}(?![A-Za-z0-9/+]|\\/|%2[FfBb])"),
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
)
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


def configure(level: str = "INFO") -> None:
    """Process-wide logging for `koding-iam serve` and friends."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in ("INFO", "WARNING", "ERROR") else "INFO")
    pin_chatty_loggers()
    install_redaction()
