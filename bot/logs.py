"""Logging set-up: INFO by default, Slack's loggers never below INFO, and a redaction filter as a second fence.

slack_sdk logs full request bodies at DEBUG, and the reveal modal's body holds a secret access key, so the
Slack loggers are pinned at INFO whatever the root level is. The filter masks anything shaped like an AWS
secret key or a Slack token in case some other library ever logs one.
"""

from __future__ import annotations

import logging
import re

SLACK_LOGGERS = ("slack_sdk", "slack_bolt")
_SECRET_PATTERNS = (
    # AWS secret access keys: 40 characters of base64 alphabet, standing alone.
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
)


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's rendered message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = redact(str(record.exc_info[1]))
            if text != str(record.exc_info[1]):
                record.exc_text = f"{type(record.exc_info[1]).__name__}: {text}"
                record.exc_info = None
        return True


def pin_slack_loggers() -> None:
    for name in SLACK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def configure(level: str = "INFO") -> None:
    """Process-wide logging for `koding-iam serve` and friends."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if level.upper() in ("INFO", "WARNING", "ERROR") else "INFO")
    pin_slack_loggers()
