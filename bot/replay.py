"""The replay guard: a signed request Slack delivered once does nothing when the same bytes arrive again.

Slack signs `v0:<timestamp>:<body>`; anyone who captured a request (a proxy log, a browser extension on the
admin's machine) can resend it unchanged for the 5 minutes the timestamp stays valid, and the signature still
checks out. So each delivery's (timestamp, signature) is recorded with an insert that either wins or conflicts on
its primary key: the database decides, across threads and processes.

Slack's own retries of Events API deliveries (X-Slack-Retry-Num 1-3, https://api.slack.com/apis/events-api#retries)
are separate deliveries and keep their existing handling; any other retry number is ignored, so a forged header
cannot turn one capture into unlimited replays. Socket Mode has no signature and no HTTP: it never comes here.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from models import SeenRequest
from models.base import utcnow

SIGNATURE_WINDOW = 300  # slack_sdk's SignatureVerifier refuses timestamps more than 5 minutes from now
MARGIN = 60  # clocks differ a little; rows are kept this much longer than the window
PRUNE_EVERY = 60.0  # seconds between prunes in one process: one indexed DELETE a minute, whatever the traffic
SLACK_RETRY_NUMBERS = {"1", "2", "3"}


def digest(timestamp: str, signature: str, retry_num: str | None = None) -> str:
    retry = retry_num if retry_num in SLACK_RETRY_NUMBERS else ""
    return hashlib.sha256(f"{timestamp}\n{signature}\n{retry}".encode()).hexdigest()


class ReplayGuard:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._lock = threading.Lock()
        self._next_prune = 0.0
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        # Built once, with the values as parameters: building it per request cost as much CPU as running it.
        self._record = (
            dialect.insert(SeenRequest)
            .values(digest=bindparam("digest"), request_ts=bindparam("request_ts"), seen_at=bindparam("seen_at"))
            .on_conflict_do_nothing(index_elements=["digest"])
            .returning(SeenRequest.digest)
        )

    def first_delivery(self, *, timestamp: str, signature: str, retry_num: str | None = None) -> bool:
        """Record this delivery; False when it was recorded before (a replay). Raises if the database is down."""
        values = {"digest": digest(timestamp, signature, retry_num), "request_ts": int(timestamp), "seen_at": utcnow()}
        # One statement, committed by itself: no BEGIN and COMMIT round trips before every acknowledgement.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            first = connection.execute(self._record, values).first() is not None
        self._maybe_prune()
        return first

    def _maybe_prune(self) -> None:
        now = self.clock()
        with self._lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY
        self.prune(now)

    def prune(self, now: float) -> int:
        """Forget deliveries whose timestamp no signature check would accept any more."""
        oldest = int(now) - SIGNATURE_WINDOW - MARGIN
        with self.engine.begin() as connection:
            return connection.execute(delete(SeenRequest).where(SeenRequest.request_ts < oldest)).rowcount
