"""What every benchmark module gets: the running processes, a read-only view of the database, payload
templates taken from what the bot really posted, and helpers to create requests and wait for quiet."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench import loadgen
from bench.payloads import PayloadBuilder, check_empty
from bench.processes import ADMINS, BareBolt, Served
from bench.processes import Backends as BackendsProcess
from bot.devtools.sandbox import SIGNING_SECRET
from bot.devtools.waiting import WaitTimeout, wait_for
from bot.server import SLACK_PATH

# Added delay per call (Slack ms, AWS ms). "realistic": a Slack Web API call answers in about 100 ms and an IAM call
# in about 50 ms from a typical host, so work that waits on them holds threads and connections as it would in
# production; "zero": the stand-ins answer at once (the app's own CPU cost alone).
LATENCY_MODES: dict[str, tuple[float, float]] = {"realistic": (100.0, 50.0), "zero": (0.0, 0.0)}


@dataclass
class Options:
    quick: bool = False
    out: Path = Path("docs/PERFORMANCE.md")
    json_path: Path = Path("bench/results/latest.json")
    database: str | None = None  # a URL, "sqlite", or None (PostgreSQL when it answers, else SQLite)
    requests: int = 1000  # per surface and concurrency level
    levels: tuple[int, ...] = (1, 20, 100)
    load_concurrency: int = 20  # the level measured with provisionings running, against bare Bolt under that load
    background_provisionings: int = 20  # provisionings kept running meanwhile
    approvals_at_once: int = 50
    startups: int = 3
    phase_budget_s: float = 120.0  # per load phase; a server slower than this is reported as truncated
    latency: str = "realistic"  # a key of LATENCY_MODES; the two figures below may override it
    slack_latency_ms: float = 100.0
    aws_latency_ms: float = 50.0
    only: tuple[str, ...] = ()
    strict: bool = False  # exit 1 when a figure misses its target
    serve_command: tuple[str, ...] = ()  # instead of `python -m bot.cli serve`, e.g. to try a change
    rotation_keys: tuple[int, ...] = (10_000, 100_000)  # tracked keys for the sweep's selection, smallest first
    rotation_owners: int = 2000  # owners the real DM sweep must reach
    rotation_overdue: int = 20  # of them, the oldest keys: overdue, so each admin gets a notice too
    post_limit: int = 20  # chat.postMessage calls per second the rate-limited Slack stand-in accepts

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def latency_label(self) -> str:
        """How the figures that talk to the stand-ins were measured, e.g. "realistic latency (Slack +100 ms,
        AWS +50 ms per call)"; "custom" when the per-call overrides do not match the named mode."""
        named = LATENCY_MODES.get(self.latency)
        name = self.latency if named == (self.slack_latency_ms, self.aws_latency_ms) else "custom"
        return f"{name} latency (Slack +{self.slack_latency_ms:g} ms, AWS +{self.aws_latency_ms:g} ms per call)"


@dataclass
class Section:
    """One table of the report: a title, column names, rows of cells, and notes printed under it."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # How its figures were measured: Options.latency_label, or why latency does not apply (e.g. database only).
    measured_with: str = ""


@dataclass
class Context:
    options: Options
    workdir: Path
    database_url: str
    backends: BackendsProcess
    served: Served
    bare: BareBolt
    payloads: PayloadBuilder = field(default_factory=PayloadBuilder)
    data: dict[str, Any] = field(default_factory=dict)  # the JSON results, filled by each module
    modal: dict[str, Any] = field(default_factory=dict)  # the request modal as views.open showed it
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # an approval card in each admin's DM
    _engine: Engine | None = None
    _users: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # Database (read-only) ------------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            connect_args = {"check_same_thread": False} if self.database_url.startswith("sqlite") else {}
            self._engine = create_engine(self.database_url, connect_args=connect_args, pool_size=2)
        return self._engine

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())

    # Sending -------------------------------------------------------------------------------------------------
    def send(
        self, items: Sequence[loadgen.Item], *, concurrency: int = 1, url: str | None = None
    ) -> list[loadgen.Sample]:
        samples, _, _ = loadgen.run(
            url or self.served.url, items, concurrency=concurrency, signing_secret=SIGNING_SECRET
        )
        failed = [s for s in samples if s.error]
        if failed:
            raise RuntimeError(f"{len(failed)} set-up request(s) failed, e.g. {failed[0].error}")
        return samples

    def new_user(self) -> tuple[str, str]:
        """A Slack member id nobody used yet and the IAM user name they ask for."""
        n = next(self._users)
        return f"UBENCH{n:06d}", f"koding-bench-{n}"

    def submission(self, user_id: str, iam_user_name: str) -> loadgen.Item:
        body = self.payloads.submit_body(user_id, self.modal, iam_user_name=iam_user_name, purpose="Benchmark stack")
        return loadgen.Item("view_submission", SLACK_PATH, body, check_empty)

    def approval(self, admin_id: str, request_id: int) -> loadgen.Item:
        return loadgen.Item(
            "approve click",
            SLACK_PATH,
            self.payloads.approve_body(admin_id, self.cards[admin_id], request_id),
            check_empty,
        )

    def request_ids(self, user_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(user_ids), 500):
            chunk = list(user_ids[start : start + 500])
            names = ", ".join(f":u{i}" for i in range(len(chunk)))
            params = {f"u{i}": user for i, user in enumerate(chunk)}
            for request_id, requester in self.rows(
                f"SELECT id, requester_id FROM access_requests WHERE requester_id IN ({names})",  # noqa: S608
                **params,
            ):
                found[str(requester)] = int(request_id)
        return found

    def create_pending(self, count: int, *, concurrency: int = 10, wait_cards: bool = True) -> list[int]:
        """Submit `count` requests from new people and (with `wait_cards`) wait until their approval cards are
        posted. A click does not need its card posted first: a module that only clicks passes False, since the
        cards of a thousand submissions take Slack's one message a second per channel to post."""
        users = [self.new_user() for _ in range(count)]
        self.send([self.submission(user, name) for user, name in users], concurrency=concurrency)
        ids = list(self.request_ids([user for user, _ in users]).values())
        if len(ids) != count:
            raise RuntimeError(f"{count} requests submitted but {len(ids)} stored")
        if not wait_cards:
            return ids
        # Slack takes one message a second per channel, so each admin's DM gets its cards at that pace: these wait
        # behind every card the earlier phases queued (the outbox posts the oldest first).
        backlog = self.announcements_behind()
        self.wait_for(
            lambda: self.cards_posted(ids) >= len(ids) * len(ADMINS),
            timeout=60 + 1.2 * backlog,
            what=f"approval cards posted ({backlog} request(s) were waiting for their cards)",
        )
        return ids

    def announcements_behind(self) -> int:
        """Requests whose approval cards the outbox has not posted yet."""
        rows = self.rows("SELECT count(*) FROM outbox WHERE kind = 'announce' AND delivered_version < version")
        return int(rows[0][0]) if rows else 0

    def cards_posted(self, request_ids: Sequence[int]) -> int:
        if not request_ids:
            return 0
        low, high = min(request_ids), max(request_ids)
        wanted = set(request_ids)
        rows = self.rows(
            "SELECT request_id, count(*) FROM approval_cards WHERE request_id BETWEEN :low AND :high "
            "GROUP BY request_id",
            low=low,
            high=high,
        )
        return sum(int(n) for request_id, n in rows if int(request_id) in wanted)

    # Waiting -------------------------------------------------------------------------------------------------
    wait_for = staticmethod(wait_for)

    def outbox_behind(self) -> int:
        """Slack surfaces the app has changed but its outbox has not delivered yet (0 without an outbox)."""
        try:
            return int(self.scalar("SELECT count(*) FROM outbox WHERE delivered_version < version") or 0)
        except Exception:  # an app without the outbox table
            return 0

    def wait_idle(
        self, *, quiet_s: float = 0.5, timeout: float = 180.0, outbox: bool = False, slack: bool = True
    ) -> float:
        """Wait until the app stops calling Slack and AWS for `quiet_s` with nothing left provisioning (and, with
        `outbox`, nothing left for its paced outbox to deliver); returns how long that took (the background backlog
        left by the previous phase). With `slack=False` only AWS calls count: the outbox may still be posting
        cards at Slack's pace, a light load that a module with thousands of submissions cannot wait out."""
        started = time.monotonic()
        last = None
        quiet_since = time.monotonic()
        while time.monotonic() - started < timeout:
            stats = self.backends.stats()
            now = (stats["aws"]["total"], stats["slack"]["total"] if slack else 0)
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                busy = self.scalar("SELECT count(*) FROM access_requests WHERE status = 'provisioning'")
                if not busy and not (outbox and self.outbox_behind()):
                    return time.monotonic() - started - quiet_s
            time.sleep(0.05)
        raise WaitTimeout(f"the app was still busy after {timeout:.0f}s")
