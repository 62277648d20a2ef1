"""The background load the acknowledgement floor is measured under: `koding-iam serve` kept busy with a steady
number of provisionings, whichever app (koding-iam or the bare Bolt floor) is being measured meanwhile.

One thread approves pending requests whenever fewer than `target` are provisioning (the database says how many,
counting those the measured mix started itself); another submits new requests as the pool of pending ones runs
low (about one submission per provisioning, part of the same load). Both are real signed requests to the served
app, so its provisioning, card posts and outbox work run exactly as they do for people.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import deque
from typing import Any

from bench import loadgen
from bench.context import Context
from bench.processes import ADMINS
from bot.devtools.sandbox import SIGNING_SECRET
from bot.devtools.waiting import WaitTimeout

TICK_S = 0.1


class ProvisioningLoad:
    """`with ProvisioningLoad(ctx, 20) as load:` … `load.window()` starts a measuring window, `load.figures()`
    says how many provisionings were in flight during it."""

    def __init__(self, ctx: Context, target: int) -> None:
        self.ctx = ctx
        self.target = max(1, target)
        self.pool: deque[int] = deque()
        self.approved = 0
        self.submitted = 0
        self.errors = 0
        self._samples: list[int] = []
        self._running: list[int] = []  # of them, taken by the worker (their run holds the request's lease)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> ProvisioningLoad:
        self.pool.extend(
            self.ctx.create_pending(2 * self.target, concurrency=min(10, 2 * self.target), wait_cards=False)
        )
        for name, loop in (("approver", self._approve_loop), ("feeder", self._feed_loop)):
            thread = threading.Thread(target=loop, name=f"bench-load-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        # Provisionings that finish faster than the driver starts them (no added latency) may never all run at
        # once: the figures then say how many ran on average.
        with contextlib.suppress(WaitTimeout):
            self.ctx.wait_for(lambda: self.in_flight() >= self.target, timeout=15, what="the provisionings to run")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    # Measuring -----------------------------------------------------------------------------------------------
    def in_flight(self) -> int:
        return int(self.ctx.scalar("SELECT count(*) FROM access_requests WHERE status = 'provisioning'") or 0)

    def running(self) -> int:
        """Provisionings a worker slot is running now (the rest of `in_flight` wait for one)."""
        query = "SELECT count(*) FROM access_requests WHERE status = 'provisioning' AND lease_owner IS NOT NULL"
        return int(self.ctx.scalar(query) or 0)

    def window(self) -> None:
        with self._lock:
            self._samples.clear()
            self._running.clear()

    def figures(self) -> dict[str, Any]:
        with self._lock:
            samples, running = list(self._samples), list(self._running)
        return {
            "target": self.target,
            "in_flight_mean": round(statistics.fmean(samples), 1) if samples else None,
            "in_flight_min": min(samples) if samples else None,
            "in_flight_samples": len(samples),
            "running_mean": round(statistics.fmean(running), 1) if running else None,
            "running_max": max(running) if running else None,
            "approved": self.approved,
            "submitted": self.submitted,
            "errors": self.errors,
        }

    # The two loops -------------------------------------------------------------------------------------------
    def _approve_loop(self) -> None:
        while not self._stop.is_set():
            in_flight, running = self.in_flight(), self.running()
            with self._lock:
                self._samples.append(in_flight)
                self._running.append(running)
            wanted = min(self.target - in_flight, len(self.pool))
            if wanted > 0:
                clicks = [self.ctx.approval(ADMINS[n % len(ADMINS)], self.pool.popleft()) for n in range(wanted)]
                self._send(clicks, concurrency=min(wanted, 5))
                self.approved += wanted
            self._stop.wait(TICK_S)

    def _feed_loop(self) -> None:
        while not self._stop.is_set():
            if len(self.pool) >= 2 * self.target:
                self._stop.wait(TICK_S)
                continue
            users = [self.ctx.new_user() for _ in range(self.target)]
            self._send([self.ctx.submission(user, name) for user, name in users], concurrency=5)
            self.submitted += len(users)
            found = self.ctx.request_ids([user for user, _ in users])
            self.pool.extend(found[user] for user, _ in users if user in found)

    def _send(self, items: list[loadgen.Item], *, concurrency: int) -> None:
        samples, _, _ = loadgen.run(
            self.ctx.served.url, items, concurrency=concurrency, signing_secret=SIGNING_SECRET, timeout_s=30.0
        )
        self.errors += sum(1 for sample in samples if sample.error)


def settle(ctx: Context) -> None:
    """Let the provisionings the load left finish before the next phase (they are not measured)."""
    started = time.monotonic()
    ctx.wait_for(
        lambda: not ctx.scalar("SELECT count(*) FROM access_requests WHERE status = 'provisioning'"),
        timeout=300,
        what="the background provisionings to finish",
        every=0.2,
    )
    ctx.data.setdefault("background", {})["settle_s"] = round(time.monotonic() - started, 1)
