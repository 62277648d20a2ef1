"""The request thread learns of ack() at once instead of polling for it.

Bolt (process_before_response off) runs the listener on its executor and has the request thread poll
`ack.response` every 10 ms (slack_bolt/listener/thread_runner.py: `while ack.response is None …: time.sleep(0.01)`).
Each waiting request wakes a hundred times a second to take the interpreter lock and look, which, with twenty
requests in flight beside provisioning, is two thousand wake-ups a second competing with the threads doing the
work, and an ack waits up to 10 ms more to be seen.

Here every request gets a `SignalingAck`, whose `response` sets an event whatever sets it (ack(), or Bolt's error
path assigning it directly), and the runner module's `time` is a clock whose `sleep` waits on the current request's
event (at most `LONGEST_WAIT`, so the loop still checks Bolt's ack timeout). Other callers of that module's clock,
and any thread without a request, get plain `time`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt.context.ack import Ack
from slack_bolt.listener import thread_runner

LONGEST_WAIT = 0.25  # seconds one sleep of the poll may last: the loop re-checks Bolt's ack timeout after it
_waiting = threading.local()


class SignalingAck(Ack):
    """Bolt's Ack, setting `answered` as soon as it holds a response."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        super().__init__()

    @property  # type: ignore[override]
    def response(self) -> Any:
        return self.__dict__.get("_response")

    @response.setter
    def response(self, value: Any) -> None:
        self.__dict__["_response"] = value
        if value is not None:
            self.answered.set()


class _AckClock:
    """`time` for slack_bolt's thread runner: `sleep` returns when the current request's ack has a response."""

    time = staticmethod(time.time)

    @staticmethod
    def sleep(seconds: float) -> bool:
        ack: SignalingAck | None = getattr(_waiting, "ack", None)
        if ack is None:
            time.sleep(seconds)
            return False
        return ack.answered.wait(LONGEST_WAIT)


def install() -> None:
    """Point the runner's clock at `_AckClock` (idempotent). Fails loudly if Bolt no longer polls this way."""
    current = getattr(thread_runner, "time", None)
    if current is _AckClock:
        return
    if current is not time:
        raise RuntimeError("slack_bolt's thread runner no longer polls with the `time` module this patch replaces")
    thread_runner.time = _AckClock  # type: ignore[assignment]


def installed() -> bool:
    return thread_runner.time is _AckClock  # type: ignore[comparison-overlap]


@contextmanager
def waiting_for(context: dict[str, Any]) -> Iterator[SignalingAck]:
    """While dispatching one request on this thread: its context holds a SignalingAck the clock waits on."""
    ack = SignalingAck()
    context["ack"] = ack
    _waiting.ack = ack
    try:
        yield ack
    finally:
        _waiting.ack = None
