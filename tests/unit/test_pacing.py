"""The pacer's workspace bucket for chat.postMessage: a waiter woken late loses no slot, and no one-second window
holds more than the rate plus the bucket's slack (checked against a fake clock, so the test is exact)."""

from __future__ import annotations

from bot.slack.pacing import WORKSPACE_POST_SLACK, Pacer, rates_for


class LateClock:
    """Time that moves only when the pacer sleeps, and each sleep overshoots (a thread woken late)."""

    def __init__(self, overshoot: float) -> None:
        self.now = 0.0
        self.overshoot = overshoot

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.overshoot


def paced_times(calls: int, *, per_minute: float, overshoot: float) -> list[float]:
    clock = LateClock(overshoot)
    pacer = Pacer(rates_for(per_minute), clock=lambda: clock.now, sleep=clock.sleep)
    times = []
    for index in range(calls):
        pacer.wait("chat.postMessage", f"D{index:04d}")  # a new channel each time: only the workspace bucket binds
        times.append(clock.now)
    return times


def test_a_sender_woken_late_each_time_keeps_the_configured_rate() -> None:
    times = paced_times(1000, per_minute=18 * 60, overshoot=0.004)
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 18 * 0.99, achieved  # a bucket of one token would give 1 / (1/18 + 0.004) = 16.8/s


def test_no_second_holds_more_than_the_rate_plus_the_slack() -> None:
    for overshoot in (0.0, 0.004, 0.03):
        times = paced_times(400, per_minute=18 * 60, overshoot=overshoot)
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert busiest <= 18 + WORKSPACE_POST_SLACK, (overshoot, busiest)
