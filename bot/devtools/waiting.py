"""Waiting for something another thread or process does: poll a check until it holds, with a deadline that
names what was awaited. One helper for the benchmark and the end-to-end drivers, so none keeps its own copy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time (an AssertionError, so a test reports it as a failure)."""


def wait_for(check: Callable[[], Any], *, timeout: float, what: str = "condition", every: float = 0.05) -> Any:
    """Call `check` every `every` seconds until it returns something truthy, and return that; WaitTimeout naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
