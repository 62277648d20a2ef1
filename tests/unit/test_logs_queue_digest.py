"""bot/logs.py's QueueDepthDigest: waitress's per-request queue warning reaches the log once per window, and the
next line says how many were held back and how deep the queue got. Driven through waitress's own dispatcher."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from waitress.task import ThreadedTaskDispatcher

from bot import logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.pending: list[tuple[float, Callable[[], None]]] = []  # (delay, action) the digest asked to run later

    def __call__(self) -> float:
        return self.now

    def later(self, delay: float, action: Callable[[], None]) -> None:
        self.pending.append((delay, action))

    def run_pending(self) -> None:
        pending, self.pending = self.pending, []
        for delay, action in pending:
            self.now += delay
            action()


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """logs.configure's handler on a buffer, with the root logger and the queue logger's filters given back."""
    root, queue = logging.getLogger(), logging.getLogger(logs.QUEUE_LOGGER)
    saved = (root.handlers[:], root.level, queue.filters[:])
    buffer = io.StringIO()
    logs.configure("INFO", fmt="text", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], queue.filters[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def _use_clock(clock: Clock) -> None:
    queue = logging.getLogger(logs.QUEUE_LOGGER)
    (digest,) = [f for f in queue.filters if isinstance(f, logs.QueueDepthDigest)]
    digest.clock, digest.later = clock, clock.later


def _queue_tasks(dispatcher: ThreadedTaskDispatcher, count: int) -> None:
    """Tasks added to a dispatcher with no threads: each finds the queue one deeper and waitress warns."""
    for _ in range(count):
        dispatcher.add_task(object())


def _queue_lines(buffer: io.StringIO) -> list[str]:
    return [line.split(": ", 1)[1] for line in buffer.getvalue().splitlines() if "Task queue depth" in line]


def test_a_burst_writes_its_first_warning_and_at_the_window_end_how_many_were_held_back(stream: io.StringIO) -> None:
    clock = Clock()
    _use_clock(clock)
    dispatcher = ThreadedTaskDispatcher()
    _queue_tasks(dispatcher, 500)
    assert len(dispatcher.queue) == 500  # waitress really warned 500 times (no idle thread for any of them)
    assert _queue_lines(stream) == ["Task queue depth is 1"]
    assert [delay for delay, _ in clock.pending] == [logs.QUEUE_DIGEST_SECONDS]  # one flush, at the window's end

    clock.run_pending()  # the burst is over: nothing else would ever report it
    assert _queue_lines(stream) == [
        "Task queue depth is 1",
        "Task queue depth reached 500: 499 more such warnings held back in the last 10 s",
    ]


def test_the_next_window_starts_with_a_plain_line_and_a_quiet_window_writes_no_summary(stream: io.StringIO) -> None:
    clock = Clock()
    _use_clock(clock)
    dispatcher = ThreadedTaskDispatcher()
    _queue_tasks(dispatcher, 1)
    clock.now += logs.QUEUE_DIGEST_SECONDS - 0.001
    _queue_tasks(dispatcher, 3)
    assert len(_queue_lines(stream)) == 1
    assert [round(delay, 3) for delay, _ in clock.pending] == [0.001]
    clock.run_pending()
    _queue_tasks(dispatcher, 1)
    assert _queue_lines(stream)[1:] == [
        "Task queue depth reached 4: 3 more such warnings held back in the last 10 s",
        "Task queue depth is 5",
    ]
    clock.run_pending()  # nothing was held back in this window: no timer, no summary
    clock.now += logs.QUEUE_DIGEST_SECONDS
    _queue_tasks(dispatcher, 1)
    assert _queue_lines(stream)[-2:] == ["Task queue depth is 5", "Task queue depth is 6"]


def test_other_warnings_are_not_held_back_and_configuring_twice_keeps_one_digest(stream: io.StringIO) -> None:
    logs.configure("INFO", fmt="text", stream=stream)
    queue = logging.getLogger(logs.QUEUE_LOGGER)
    assert len([f for f in queue.filters if isinstance(f, logs.QueueDepthDigest)]) == 1
    other = logging.getLogger("waitress")
    for n in range(5):
        other.warning("client disconnected %d", n)
    assert sum("client disconnected" in line for line in stream.getvalue().splitlines()) == 5


def test_the_summary_comes_on_its_own_after_the_window_with_the_real_timer(stream: io.StringIO) -> None:
    queue = logging.getLogger(logs.QUEUE_LOGGER)
    (digest,) = [f for f in queue.filters if isinstance(f, logs.QueueDepthDigest)]
    digest.seconds = 0.05
    dispatcher = ThreadedTaskDispatcher()
    _queue_tasks(dispatcher, 20)
    deadline = time.monotonic() + 5
    while len(_queue_lines(stream)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _queue_lines(stream) == [
        "Task queue depth is 1",
        "Task queue depth reached 20: 19 more such warnings held back in the last 0.05 s",
    ]
