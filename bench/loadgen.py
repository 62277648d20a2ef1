"""A closed-loop HTTP load generator: N threads, one keep-alive connection each, every Slack request signed the
moment it is sent (so a long run never trips the 5-minute timestamp window), latencies from perf_counter.

A request counts as an error when the answer is not what Slack would accept: another status than 200, a body
the surface does not expect (a check function says which), no answer at all, or an answer after Slack's own
3-second deadline (Slack has already shown the person an error by then).
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.signature import SignatureVerifier

SLACK_DEADLINE_S = 3.0

Check = Callable[[int, bytes], str | None]


@dataclass(frozen=True)
class Item:
    """One request to send: GET when `body` is None, else a signed POST of a form body."""

    surface: str
    path: str
    body: str | None = None
    check: Check | None = None
    content_type: str = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Sample:
    surface: str
    latency: float
    error: str | None
    started: float


@dataclass
class Summary:
    surface: str
    count: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values (p99 of 100 samples is the 99th smallest)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-fraction * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def summarise(samples: Sequence[Sample], surface: str) -> Summary:
    mine = [s for s in samples if s.surface == surface]
    latencies = sorted(s.latency * 1000 for s in mine)
    kinds = Counter(s.error for s in mine if s.error)

    def pct(fraction: float) -> float | None:
        value = percentile(latencies, fraction)
        return None if value is None else round(value, 2)

    return Summary(
        surface=surface,
        count=len(mine),
        errors=sum(kinds.values()),
        p50_ms=pct(0.50),
        p95_ms=pct(0.95),
        p99_ms=pct(0.99),
        max_ms=round(latencies[-1], 2) if latencies else None,
        mean_ms=round(sum(latencies) / len(latencies), 2) if latencies else None,
        error_kinds=dict(kinds),
    )


def run(
    base_url: str,
    items: Sequence[Item],
    *,
    concurrency: int,
    signing_secret: str,
    time_budget_s: float | None = None,
    timeout_s: float = 30.0,
) -> tuple[list[Sample], float, bool]:
    """Send every item (in order, by `concurrency` threads); returns (samples, wall seconds, truncated).

    With `time_budget_s`, threads stop taking new items once the budget is spent (truncated is then True), so
    a server that has slowed to Slack's 3-second timeout cannot stretch a run past its limit.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    signer = SignatureVerifier(signing_secret)
    next_index = itertools.count()
    samples: list[Sample] = []
    lock = threading.Lock()
    started = time.perf_counter()
    stop_at = started + time_budget_s if time_budget_s else None
    truncated = threading.Event()

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        local: list[Sample] = []
        while True:
            index = next(next_index)
            if index >= len(items):
                break
            if stop_at is not None and time.perf_counter() > stop_at:
                truncated.set()
                break
            item = items[index]
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
            headers = {"Connection": "keep-alive"}
            payload = None
            method = "GET"
            if item.body is not None:
                method = "POST"
                payload = item.body.encode()
                timestamp = str(int(time.time()))
                headers.update(
                    {
                        "Content-Type": item.content_type,
                        "X-Slack-Request-Timestamp": timestamp,
                        "X-Slack-Signature": signer.generate_signature(timestamp=timestamp, body=item.body),
                    }
                )
            begin = time.perf_counter()
            error: str | None
            try:
                connection.request(method, item.path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
                latency = time.perf_counter() - begin
                if response.status != 200:
                    error = f"HTTP {response.status}"
                else:
                    error = item.check(response.status, data) if item.check else None
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                latency = time.perf_counter() - begin
                error = type(exc).__name__
                connection.close()
                connection = None
            if error is None and latency > SLACK_DEADLINE_S:
                error = "over Slack's 3 s deadline"
            local.append(Sample(item.surface, latency, error, begin - started))
        if connection is not None:
            connection.close()
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started, truncated.is_set()
