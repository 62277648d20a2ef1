"""A local websocket server that plays Slack's Socket Mode side (https://api.slack.com/apis/connections/socket).

Why: in Socket Mode the app opens a websocket to Slack (at the URL apps.connections.open returns) and receives
commands, interactions and events over it, acknowledging each envelope on the same socket. Tests run the real
`koding-iam serve` against this server, attached to the Web API stand-in (``SlackStandIn.socket_mode``), so
the whole path is exercised: the app-level token, the connection, the envelopes, the acks and reconnection.

What it does, after Slack's documentation of the protocol:
- a connection needs a ticket minted by apps.connections.open (`new_url`); others are refused (HTTP 403);
- on connecting it sends ``{"type": "hello", ...}``;
- it delivers envelopes ``{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload",
  "accepts_response_payload"}`` and waits for the ack ``{"envelope_id", "payload"?}`` (any other key, or an ack
  for no outstanding envelope, is a violation; an ack's payload is held to the Block Kit rules of an ack);
- it can ask the app to reconnect (``{"type": "disconnect", "reason": "refresh_requested"}``) or drop the socket
  without a closing handshake, as a network failure would.
Payloads are never printed or logged.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from bot.devtools import blockkit_rules
from bot.devtools.slack_standin import SlackStandIn

# Envelope types and whether Slack lets the ack carry a response payload for them
# (https://api.slack.com/apis/connections/socket#acknowledge).
ENVELOPE_TYPES = {"slash_commands": True, "interactive": True, "events_api": False}


@dataclass(frozen=True)
class Ack:
    """The app's acknowledgement of one envelope."""

    envelope_id: str
    type: str
    payload: dict[str, Any] | None
    seconds: float  # from sending the envelope to receiving the ack (Slack wants it within 3 s)


class SocketStandIn:
    """Serves Socket Mode on ws://127.0.0.1:<port>/link/; start() before use, stop() after (or use `with`)."""

    def __init__(self, slack: SlackStandIn, *, app_id: str = "AKODING") -> None:
        self.slack = slack
        self.app_id = app_id
        self._lock = threading.Condition()
        self._tickets: set[str] = set()
        self._live: list[ServerConnection] = []
        self._sent: dict[str, tuple[str, float]] = {}  # envelope_id -> (type, sent at)
        self._acks: dict[str, Ack] = {}
        self.connects = 0  # connections accepted so far
        self.refused = 0  # connection attempts without a valid ticket
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> SocketStandIn:
        self._server = serve(self._serve, "127.0.0.1", 0, process_request=self._admit, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-standin", daemon=True)
        self._thread.start()
        self.slack.socket_mode = self
        return self

    def stop(self) -> None:
        self.slack.socket_mode = None
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SocketStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "SocketStandIn is not started"
        return int(self._server.socket.getsockname()[1])

    def new_url(self) -> str:
        """A URL with a fresh ticket, as apps.connections.open answers (`wss://wss-primary.slack.com/link/?ticket=
        ...&app_id=...` at Slack; ws:// here, on this machine)."""
        ticket = secrets.token_urlsafe(16)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # What a test does -----------------------------------------------------------------------------------------
    def wait_connected(self, connects: int = 1, timeout: float = 30.0) -> None:
        """Until `connects` connections have been accepted in all and one is open."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not (self.connects >= connects and self._live):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.connects} connection(s) accepted, {connects} awaited")
                self._lock.wait(remaining)

    def deliver(self, kind: str, payload: dict[str, Any], *, timeout: float = 10.0) -> Ack:
        """Send one envelope on the newest open connection and wait for its ack."""
        accepts = ENVELOPE_TYPES[kind]
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts,
        }
        if kind == "events_api":
            envelope.update(retry_attempt=0, retry_reason="")
        with self._lock:
            if not self._live:
                raise AssertionError("no Socket Mode connection is open")
            connection = self._live[-1]
            self._sent[envelope_id] = (kind, time.monotonic())
        connection.send(json.dumps(envelope))
        deadline = time.monotonic() + timeout
        with self._lock:
            while envelope_id not in self._acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no ack for a {kind} envelope within {timeout}s")
                self._lock.wait(remaining)
            return self._acks[envelope_id]

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every open connection to reconnect, as Slack does before it recycles a server."""
        message = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}})
        for connection in self._open():
            with contextlib.suppress(ConnectionClosed):
                connection.send(message)

    def drop(self) -> None:
        """Cut every open connection without a closing handshake, as a network failure would."""
        for connection in self._open():
            with contextlib.suppress(OSError):
                connection.socket.shutdown(socket.SHUT_RDWR)

    def open_connections(self) -> int:
        return len(self._open())

    # Serving ------------------------------------------------------------------------------------------------
    def _open(self) -> list[ServerConnection]:
        with self._lock:
            return list(self._live)

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a connection whose ticket apps.connections.open did not hand out."""
        url = urlsplit(request.path)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._lock:
            known = url.path.rstrip("/") == "/link" and ticket in self._tickets
            if not known:
                self.refused += 1
        return None if known else connection.respond(403, "invalid ticket\n")

    def _serve(self, connection: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-standin", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        with self._lock:
            self._live.append(connection)
            self.connects += 1
            self._lock.notify_all()
        try:
            connection.send(json.dumps(hello))
            for message in connection:
                self._receive(message)
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                if connection in self._live:
                    self._live.remove(connection)
                self._lock.notify_all()

    def _receive(self, message: str | bytes) -> None:
        """An ack from the app: {"envelope_id", "payload"?}; anything else is recorded as a violation."""
        try:
            ack = json.loads(message)
        except ValueError:
            ack = None
        if not isinstance(ack, dict) or not set(ack) <= {"envelope_id", "payload"}:
            self._violation("/", "an ack is {envelope_id, payload?}")
            return
        envelope_id = ack.get("envelope_id")
        with self._lock:
            sent = self._sent.pop(str(envelope_id), None)
        if sent is None:
            self._violation("/envelope_id", "acknowledges no outstanding envelope")
            return
        kind, at = sent
        payload = ack.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self._violation("/payload", "must be an object")
            payload = None
        if payload:
            self.slack.record_violations("ack", blockkit_rules.check_ack(payload))
        with self._lock:
            self._acks[str(envelope_id)] = Ack(str(envelope_id), kind, payload, time.monotonic() - at)
            self._lock.notify_all()

    def _violation(self, path: str, message: str) -> None:
        self.slack.record_violations("socket_mode", [blockkit_rules.Violation(path, message)])
