"""Pace outgoing Slack calls by each method's rate tier, so Slack never has to answer 429 in normal operation.

Slack's tiers are per workspace and method, "with occasional bursts" allowed
(https://api.slack.com/apis/rate-limits): Tier 3 is about 50 calls a minute (chat.update), Tier 4 about 100
(views.publish). chat.postMessage is limited to about one message a second per channel
(https://api.slack.com/methods/chat.postMessage#rate_limiting), and a workspace may post "several hundred messages
per minute" in all (https://api.slack.com/apis/rate-limits#rate-limits__limits-when-posting-messages), a figure
Slack does not publish exactly: KODING_IAM_SLACK_POSTS_PER_MINUTE says how many the sender allows itself. The
sender spends a token bucket per method (per channel where the limit is per channel, and the workspace's bucket
beside it) a little under each limit, and waits for a token instead of calling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    per_minute: float
    burst: float  # tokens a bucket holds: calls that may go at once after a quiet spell
    per_channel: bool = False
    workspace: Rate | None = None  # a per-channel method's limit for the whole workspace, spent beside it


# A tenth under each documented limit, with small bursts: other calls (trigger-bound modals, clicks' ephemerals)
# spend the same workspace budget outside the outbox.
DEFAULT_RATES: dict[str, Rate] = {
    "chat.update": Rate(per_minute=45, burst=10),  # Tier 3
    # About 1 per second per channel; the workspace's share is set by KODING_IAM_SLACK_POSTS_PER_MINUTE.
    "chat.postMessage": Rate(per_minute=54, burst=3, per_channel=True, workspace=Rate(per_minute=300, burst=1)),
    "views.publish": Rate(per_minute=90, burst=20),  # Tier 4
}


WORKSPACE_POST_SLACK = 1.5


def rates_for(posts_per_minute: float) -> dict[str, Rate]:
    """The default rates with the workspace's chat.postMessage budget as configured."""
    rates = dict(DEFAULT_RATES)
    post = rates["chat.postMessage"]
    rates["chat.postMessage"] = Rate(
        post.per_minute,
        post.burst,
        per_channel=True,
        # Half a token of slack, no burst: a waiter woken a few milliseconds late loses no slot (the sender keeps
        # its configured rate), and a workspace limit counted over any one second is never passed (a tenth under
        # it, rate + 1.5 ≤ the limit).
        workspace=Rate(per_minute=posts_per_minute, burst=WORKSPACE_POST_SLACK),
    )
    return rates


class Pacer:
    """Token buckets per (method, channel or workspace); `wait` blocks until a call may go out."""

    def __init__(
        self,
        rates: dict[str, Rate] | Callable[[], dict[str, Rate]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        # A callable is asked at each call: the limits may change while the sender runs (a test lifting them).
        self._rates = rates if callable(rates) else dict(DEFAULT_RATES if rates is None else rates)
        self._clock = clock
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def stop(self) -> None:
        """Wake every waiting caller at once (a graceful stop): they go ahead or give up, never sleep on."""
        self._stopping.set()

    def wait(self, method: str, channel: str = "") -> None:
        """Take one token for `method` (in `channel` where the limit is per channel), waiting for it if needed."""
        rates = self._rates() if callable(self._rates) else self._rates
        rate = rates.get(method)
        if rate is None:
            return
        if rate.per_channel and rate.workspace is not None:
            self._take(rate.workspace, (method, ""))
        self._take(rate, (method, channel if rate.per_channel else ""))

    def _take(self, rate: Rate, key: tuple[str, str]) -> None:
        while True:
            with self._lock:
                now = self._clock()
                tokens, last = self._buckets.get(key, (float(rate.burst), now))
                tokens = min(float(rate.burst), tokens + (now - last) * rate.per_minute / 60.0)
                if tokens >= 1.0 - 1e-9:  # a wait of exactly the computed delay is enough, float rounding aside
                    self._buckets[key] = (tokens - 1.0, now)
                    return
                self._buckets[key] = (tokens, now)
                delay = (1.0 - tokens) * 60.0 / rate.per_minute
            if self._stopping.is_set():
                return
            self._sleep(delay)
