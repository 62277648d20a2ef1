"""Reconnects a Socket Mode client whose websocket died without a closing handshake.

Why: slack_sdk's built-in Socket Mode client reconnects when Slack sends `disconnect` or closes the socket
properly, but when the connection just drops (a network failure, a load balancer cutting it) its session stays
"connected": reads return nothing, its pings fail, and it only gives up after four ping intervals without a
pong or five failed pings (40-50 seconds at Bolt's default 10-second interval), while commands go unanswered.
Measured against the Socket Mode stand-in (tests/e2e/test_socket_mode.py).

The watchdog reads the session's last pong (the client pings every `ping_interval` seconds and records each
pong's time) and, when none came for `stale_after` seconds, asks the client for a new connection, which goes
through apps.connections.open like any reconnection. It works alike on ws:// and wss:// (it never touches the
socket itself).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

PING_INTERVAL = 3.0  # seconds between the client's pings; a pong answers each on a live connection
STALE_AFTER = 3 * PING_INTERVAL  # no pong for this long: the connection is dead


class SocketWatchdog:
    """A daemon thread watching one slack_sdk built-in SocketModeClient until the client is closed."""

    def __init__(self, socket_client: Any, *, stale_after: float = STALE_AFTER, check_every: float = 1.0) -> None:
        self.socket_client = socket_client
        self.stale_after = stale_after
        self.check_every = check_every
        self.reconnects = 0
        self._first_seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="socket-watchdog", daemon=True)

    def start(self) -> SocketWatchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not getattr(self.socket_client, "closed", False):
            time.sleep(self.check_every)
            try:
                self.check(time.time())
            except Exception as exc:  # the watchdog must outlive any one failed check or reconnection
                log.warning("socket watchdog: %s: %s", type(exc).__name__, exc)

    def check(self, now: float) -> bool:
        """Reconnect when the current session had no pong for `stale_after` seconds; True when it did."""
        session = getattr(self.socket_client, "current_session", None)
        if session is None or getattr(self.socket_client, "closed", False):
            return False
        since = self._first_seen.setdefault(session.session_id, now)
        last_pong = session.last_ping_pong_time or since
        if now - max(last_pong, since) < self.stale_after:
            return False
        log.warning("Socket Mode connection silent for %.0fs; connecting again", now - max(last_pong, since))
        self.reconnects += 1
        self.socket_client.connect_to_new_endpoint(force=True)
        return True
