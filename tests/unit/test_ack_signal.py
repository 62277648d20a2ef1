"""The request thread is woken by ack() instead of polling Bolt's ack every 10 ms (bot/ack_signal.py)."""

from __future__ import annotations

import threading

from slack_bolt.listener import thread_runner
from slack_bolt.response import BoltResponse

from bot import ack_signal


def test_the_runner_polls_with_the_signaling_clock_once_installed() -> None:
    ack_signal.install()
    ack_signal.install()  # idempotent
    assert ack_signal.installed() and thread_runner.time.sleep is ack_signal._AckClock.sleep


def test_a_sleep_of_the_poll_ends_when_the_listener_acks_on_another_thread() -> None:
    context: dict = {}
    with ack_signal.waiting_for(context) as ack:
        assert context["ack"] is ack
        timer = threading.Timer(0.05, ack)  # the listener acks 50 ms later, on its own thread
        timer.start()
        # Bolt asks for 10 ms; a plain sleep would return unanswered long before the ack.
        assert ack_signal._AckClock.sleep(0.01) is True
        assert isinstance(ack.response, BoltResponse) and ack.response.status == 200
        timer.join()


def test_bolts_error_path_assigning_the_response_wakes_the_poll_too() -> None:
    with ack_signal.waiting_for({}) as ack:
        assert not ack.answered.is_set()
        ack.response = BoltResponse(status=500)
        assert ack.answered.is_set() and ack_signal._AckClock.sleep(0.01) is True


def test_a_thread_with_no_request_sleeps_as_asked() -> None:
    assert ack_signal._AckClock.sleep(0.001) is False
    with ack_signal.waiting_for({}):
        pass
    assert ack_signal._AckClock.sleep(0.001) is False  # the request's ack is forgotten once it is dispatched
