"""bot/socket_watchdog.py: a session silent past `stale_after` is replaced; a session answering pings is left."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.socket_watchdog import SocketWatchdog


@dataclass
class _Session:
    session_id: str
    last_ping_pong_time: float | None = None


@dataclass
class _Client:
    current_session: _Session
    closed: bool = False
    reconnects: list[bool] = field(default_factory=list)

    def connect_to_new_endpoint(self, force: bool = False) -> None:
        self.reconnects.append(force)
        self.current_session = _Session(f"s{len(self.reconnects) + 1}")


def test_a_silent_session_is_replaced_and_a_live_one_is_not() -> None:
    client = _Client(_Session("s1"))
    watchdog = SocketWatchdog(client, stale_after=9)
    assert not watchdog.check(100.0)  # first seen now
    client.current_session.last_ping_pong_time = 105.0
    assert not watchdog.check(113.0)  # a pong 8 s ago
    assert watchdog.check(114.5)  # none for 9.5 s: dropped
    assert client.reconnects == [True] and client.current_session.session_id == "s2"
    assert not watchdog.check(120.0)  # the new session's clock starts when it is first seen
    assert not watchdog.check(128.0) and watchdog.check(129.5)


def test_a_closed_client_is_left_alone() -> None:
    client = _Client(_Session("s1"), closed=True)
    watchdog = SocketWatchdog(client, stale_after=1)
    assert not watchdog.check(0.0) and not watchdog.check(100.0)
    assert client.reconnects == []
