"""Does AWS accept a brand-new access key yet? Asked before the key is shown, so the member hears whether the key
they copy works now or in a moment.

IAM is eventually consistent (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency):
a key CreateAccessKey just returned can be refused for several seconds. `until_accepted` calls
sts:GetCallerIdentity signed with the new key (it needs no permission) with a growing pause between tries, up to
a limit (KODING_IAM_KEY_VERIFY_SECONDS). It never raises: a key that is not accepted in time is still shown, with
that said plainly. The secret is used for the signature alone and appears in no log line. No Slack, no database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.aws_iam import AwsError, IamGateway, NewAccessKey

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # AWS answered GetCallerIdentity signed with the key
    NOT_YET = "not_yet"  # AWS still refused it when the limit ran out; it will work shortly
    UNCHECKED = "unchecked"  # verification is turned off (KODING_IAM_KEY_VERIFY_SECONDS=0)


@dataclass(frozen=True)
class KeyCheck:
    verdict: Verdict
    attempts: int = 0
    seconds: float = 0.0
    refusal: str | None = None  # AWS's error code (or the failure's name) at the last refused try

    @property
    def accepted(self) -> bool:
        return self.verdict == Verdict.ACCEPTED


UNCHECKED = KeyCheck(Verdict.UNCHECKED)


@dataclass(frozen=True)
class Pace:
    """The pause after the first refusal, doubling up to `max_delay`; sleep and clock injectable for tests."""

    first_delay: float = 0.5
    max_delay: float = 3.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def until_accepted(
    gateway: IamGateway,
    key: NewAccessKey,
    *,
    limit_seconds: float,
    pace: Pace,
    on_waiting: Callable[[], None] = lambda: None,
) -> KeyCheck:
    """Ask STS with the key until it answers or `limit_seconds` have passed; `on_waiting` runs once, at the first
    refusal (the modal then says the key is being checked). The last try falls at the limit."""
    if limit_seconds <= 0:
        return UNCHECKED
    started = pace.monotonic()
    deadline = started + limit_seconds
    delay, attempts = pace.first_delay, 0
    while True:
        attempts += 1
        try:
            gateway.key_identity(key)
        except AwsError as exc:
            refusal = exc.code
        except Exception as exc:  # an unexpected failure must not keep the member from their key
            refusal = type(exc).__name__
            log.warning("checking new key %s failed: %s", key.access_key_id, refusal)
        else:
            return KeyCheck(Verdict.ACCEPTED, attempts, pace.monotonic() - started)
        if attempts == 1:
            on_waiting()
        remaining = deadline - pace.monotonic()
        if remaining <= 0:
            waited = pace.monotonic() - started
            log.info("AWS has not accepted new key %s after %s tries (%s)", key.access_key_id, attempts, refusal)
            return KeyCheck(Verdict.NOT_YET, attempts, waited, refusal)
        pace.sleep(min(delay, remaining))
        delay = min(delay * 2, pace.max_delay)
