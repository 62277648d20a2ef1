"""Key rotation at scale: how fast the sweep finds the keys that need something, and whether a real sweep that
DMs thousands of owners stays inside Slack's limits for chat.postMessage.

Selection. For each size (10,000 and 100,000 tracked keys; `--quick` 2,000 and 5,000) and each backend (SQLite,
and PostgreSQL when it answers), a fresh database is migrated with `bot.db.upgrade` and filled with AccessKey
rows by bulk insert: created_at spread evenly over 0-200 days, 90% active (half of those already told about
their current stage), 6% inactive, 4% deleted. `rotation_policy.plan(factory, policy, now)` is iterated to the
end, dry (nothing is sent or changed): its time (median of three after one warm-up), the candidates it read against
the keys in the table, the rows the database examined for them, its peak memory (tracemalloc, a separate run:
tracing slows Python down), and the plan of the candidate query (EXPLAIN / EXPLAIN QUERY PLAN of the statement
the app really sent). The peak of a dry-run `rotation_flows.sweep` is measured the same way, since that is what
the scheduler runs.

DM sweep. `rotation_flows.sweep(services, now=...)` for real, against a Slack stand-in that answers HTTP 429 with
Retry-After like Slack does (`RateLimitedStandIn`: more than `--post-limit` chat.postMessage calls in any second
for the workspace, or more than one per second in one channel; Slack documents "1 per second per channel" and a
workspace-wide limit of "several hundred per minute"). GetAccessKeyLastUsed is answered by the suite's counting
moto server, where every owner's IAM user and key are created first. The client is the app's own
(`bot.app.make_slack_client`, with its RateLimitErrorRetryHandler). The oldest keys (lowest ids, as in a real
table) are overdue, so the admins are told too.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import re
import statistics
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from bench.context import Context, Section
from bench.processes import ADMINS, BOT_TOKEN, DEFAULT_POSTGRES, database, postgres_reachable
from bot.devtools.sandbox import FAKE_AWS_ENV, SIGNING_SECRET
from bot.devtools.slack_standin import SlackStandIn, _Answer, _parse_args

NAME = "rotation_sweep"
TARGET_S = 1.0  # selection over 100,000 keys
TARGET_KEYS = 100_000
TIME_FACTOR = 1.1  # DM sweep: total time at most this times messages divided by the sender's configured rate
FLAT = 1.5  # "flat": the peak at the largest size is at most this many times the peak at the smallest


# Selection ---------------------------------------------------------------------------------------------------
@dataclass
class Selection:
    backend: str
    keys: int
    seconds: float = 0.0
    runs: list[float] = field(default_factory=list)
    candidates: int = 0
    batches: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    peak_mb: float = 0.0
    sweep_peak_mb: float = 0.0
    rows_examined: int | None = None
    batch_ms: list[float] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    # SQLite only: the same after ANALYZE (nothing in the app runs it; PostgreSQL's autovacuum does)
    analyzed_seconds: float | None = None
    analyzed_plan: list[str] = field(default_factory=list)


def _settings(database_url: str, slack_api_url: str = "http://127.0.0.1:9/api/", **extra: Any) -> Any:
    from bot.config import load_settings

    return load_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token="",
        slack_api_url=slack_api_url,
        database_url=database_url,
        koding_iam_admins=",".join(ADMINS),
        **extra,
    )


def _fill(engine: Engine, count: int, now: datetime, *, seed: int) -> None:
    """`count` keys as a table that has been tracking them for a while; bulk inserts, 5,000 rows a statement."""
    from bot.core.rotation_policy import KeyState, Policy, stage_of
    from models import AccessKey, Exemption

    policy = Policy.from_settings(_settings("sqlite://"))
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    users = max(1, count // 2)  # most IAM users hold one key, some two (a rotation in progress)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows:
            with engine.begin() as connection:
                connection.execute(insert(AccessKey), rows)
            rows.clear()

    for i in range(count):
        r = rng.random()
        created = now - timedelta(seconds=rng.uniform(0, 200 * 86400))
        user = i % users
        row: dict[str, Any] = {
            "access_key_id": f"AKIABENCH{seed:02d}{i:09d}",
            "iam_user_name": f"bench-user-{user}",
            "owner_id": f"UBENCHOWN{user:07d}",
            "status": "active",
            "created_at": created,
            "revealed_at": created,
            "reminder_stage": "fresh",
            "reminded_at": None,
            "deactivated_at": None,
            "deactivated_by": None,
            "deleted_at": None,
        }
        if r < 0.90:
            if rng.random() < 0.5:  # told about its current stage on an earlier sweep
                state = KeyState(0, "", "", "", "active", created, "fresh", None, None)
                row["reminder_stage"] = str(stage_of(state, policy, now))
                row["reminded_at"] = now - timedelta(hours=rng.uniform(1, 96))
        elif r < 0.96:
            row.update(status="inactive", deactivated_at=now - timedelta(days=rng.uniform(0, 14)), deactivated_by="U1")
            row["reminder_stage"] = "deactivated" if rng.random() < 0.5 else "overdue"
        else:
            row.update(status="deleted", deleted_at=now - timedelta(days=rng.uniform(0, 30)))
            row["reminder_stage"] = "deleted" if rng.random() < 0.5 else "deactivated"
        rows.append(row)
        if len(rows) >= 5000:
            flush()
    flush()
    exemptions = [
        {
            "iam_user_name": f"bench-user-{rng.randrange(users)}",
            "until": now + timedelta(days=30),
            "reason": "benchmark",
            "created_by": ADMINS[0],
            "created_at": now - timedelta(days=1),
        }
        for _ in range(20)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Exemption), exemptions)
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE access_keys"))
            connection.execute(text("ANALYZE rotation_exemptions"))
        # SQLite: no ANALYZE, as in production (nothing runs it there).


def _count_plan(factory: sessionmaker[Session], policy: Any, now: datetime) -> Counter[str]:
    from bot.core import rotation_policy

    kinds: Counter[str] = Counter()
    for action in rotation_policy.plan(factory, policy, now):
        kinds[str(action.kind)] += 1
        kinds["checksum"] ^= _fingerprint(action)
    return kinds


def _fingerprint(action: Any) -> int:
    """Which key, what and why: two plans that agree on every action have the same XOR of these."""
    return hash((action.key.id, str(action.kind), str(action.stage), action.tell_admins, action.repeat))


def _timed(action: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    runs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs, result


def _peak_mb(action: Callable[[], Any]) -> float:
    """Peak Python memory allocated while `action` ran, above what was allocated when it started."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base) / 1024 / 1024


class _NoAws:
    """The dry-run sweep must not call AWS; anything it tries fails loudly."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a dry-run sweep called the IAM gateway ({name})")


def _capture_candidate_statements(engine: Engine, action: Callable[[], Any]) -> list[tuple[str, Any]]:
    captured: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        flat = " ".join(statement.split())
        if flat.upper().startswith("SELECT") and "FROM access_keys" in flat and "LIMIT" in flat.upper():
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return captured


def _explain(engine: Engine, statements: list[tuple[str, Any]], keys: int) -> dict[str, Any]:
    """The first batch's plan, the rows the database examined over all batches (when known) and the time each
    batch's statement took in the database (PostgreSQL: EXPLAIN ANALYZE; SQLite: the statement run again)."""
    out: dict[str, Any] = {"plan": ["no candidate query was sent"], "examined": None, "batch_ms": []}
    if not statements:
        return out
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            examined = 0
            for index, (statement, parameters) in enumerate(statements):
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                document = cursor.fetchone()[0]
                plan = document[0] if isinstance(document, list) else document
                out["batch_ms"].append(float(plan.get("Execution Time", 0.0)))
                examined += _rows_examined(plan["Plan"])
                if index == 0:
                    out["plan"] = _pg_nodes(plan["Plan"])
            raw.rollback()
            out["examined"] = examined
            return out
        statement, parameters = statements[0]
        cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        out["plan"] = [str(row[-1]) for row in cursor.fetchall()]
        for statement, parameters in statements:
            started = time.perf_counter()
            cursor.execute(statement, parameters)
            cursor.fetchall()
            out["batch_ms"].append((time.perf_counter() - started) * 1000)
        if len(out["plan"]) == 1 and "INTEGER PRIMARY KEY" in out["plan"][0]:
            out["examined"] = keys  # a rowid range scan with a filter visits each row once over the sweep
        return out
    finally:
        raw.close()


def _rows_examined(node: dict[str, Any]) -> int:
    """Rows the scan nodes of a plan read: returned plus removed by their filter."""
    own = 0
    if "Scan" in node.get("Node Type", ""):
        loops = int(node.get("Actual Loops", 1) or 1)
        own = (int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))) * loops
    return own + sum(_rows_examined(child) for child in node.get("Plans", []))


def _pg_nodes(node: dict[str, Any]) -> list[str]:
    name = node.get("Node Type", "?")
    if node.get("Index Name"):
        name += f" using {node['Index Name']}"
    elif node.get("Relation Name"):
        name += f" on {node['Relation Name']}"
    details = []
    if node.get("Index Cond"):
        details.append(f"Index Cond {node['Index Cond']}")
    if node.get("Filter"):
        columns = sorted(set(_filter_columns(str(node["Filter"]))))
        details.append(f"Filter on {', '.join(columns)}")
    if "Rows Removed by Filter" in node:
        details.append(f"{node.get('Actual Rows', '?')} rows kept, {node['Rows Removed by Filter']} removed by filter")
    out = [name + (f" ({'; '.join(details)})" if details else "")]
    for child in node.get("Plans", []):
        out.extend(_pg_nodes(child))
    return out


def _filter_columns(condition: str) -> Iterator[str]:
    for column in ("status", "created_at", "reminder_stage", "id"):
        if re.search(rf"\b{column}\b", condition):
            yield column


def measure_selection(url: str, backend: str, keys: int, *, repeat: int, seed: int) -> Selection:
    from bot.app import create_services
    from bot.core import rotation_policy
    from bot.db import make_engine, make_session_factory
    from bot.flows import rotation as rotation_flows

    now = datetime.now(UTC).replace(microsecond=0)
    engine = make_engine(url)  # the app's engine, with its pool and pings
    result = Selection(backend, keys)
    try:
        _fill(engine, keys, now, seed=seed)
        factory = make_session_factory(engine)
        settings = _settings(url)
        policy = rotation_policy.Policy.from_settings(settings)
        for batch in rotation_policy.candidates(factory, policy, now):  # warm-up, and the candidates read
            result.candidates += len(batch)
            result.batches += 1
        result.seconds, result.runs, planned = _timed(lambda: _count_plan(factory, policy, now), repeat)
        result.actions = Counter({k: v for k, v in planned.items() if k != "checksum"})
        result.peak_mb = _peak_mb(lambda: _count_plan(factory, policy, now))
        services = create_services(settings, engine=engine, gateway=_NoAws())  # type: ignore[arg-type]
        result.sweep_peak_mb = _peak_mb(lambda: rotation_flows.sweep(services, now=now, dry_run=True))
        statements = _capture_candidate_statements(engine, lambda: _count_plan(factory, policy, now))
        explained = _explain(engine, statements, keys)
        result.plan, result.rows_examined, result.batch_ms = (
            explained["plan"],
            explained["examined"],
            [round(ms, 2) for ms in explained["batch_ms"]],
        )
        if engine.dialect.name == "sqlite":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
            engine.dispose()  # new connections read the statistics
            result.analyzed_seconds = _timed(lambda: _count_plan(factory, policy, now), repeat)[0]
            statements = _capture_candidate_statements(engine, lambda: _count_plan(factory, policy, now))
            result.analyzed_plan = _explain(engine, statements[:1], keys)["plan"]
    finally:
        engine.dispose()
    return result


def _postgres_base(ctx: Context) -> str | None:
    """A PostgreSQL server to make schemas on: the suite's own, else the default address when it answers."""
    if ctx.database_url.startswith("postgresql"):
        return ctx.database_url.split("?", 1)[0]
    if postgres_reachable(DEFAULT_POSTGRES):
        return DEFAULT_POSTGRES
    return None


@contextlib.contextmanager
def _fresh_database(ctx: Context, backend: str, name: str) -> Iterator[str]:
    if backend == "SQLite":
        path = ctx.workdir / f"{name}.db"
        with database(f"sqlite:///{path}", ctx.workdir) as url:
            yield url
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    base = _postgres_base(ctx)
    assert base is not None
    with database(base, ctx.workdir) as url:
        yield url


def selection(ctx: Context, section: Section, data: dict[str, Any]) -> None:
    from bot.flows.rotation import KEPT_ACTIONS

    sizes = ctx.options.rotation_keys
    repeat = 1 if ctx.options.quick else 3
    backends = ["SQLite", "PostgreSQL"]
    measured: dict[str, list[Selection]] = {}
    for backend in backends:
        if backend == "PostgreSQL" and _postgres_base(ctx) is None:
            for keys in sizes:
                section.rows.append(
                    [
                        f"rotation selection, {backend}, {keys:,} keys (s)",
                        "skipped: PostgreSQL not reachable",
                        "—",
                        "SKIP",
                    ]
                )
            continue
        for index, keys in enumerate(sizes):
            with _fresh_database(ctx, backend, f"rotation-{keys}") as url:
                measured.setdefault(backend, []).append(
                    measure_selection(url, backend, keys, repeat=repeat, seed=index + 1)
                )
    data["selection"] = {b: [s.__dict__ | {"actions": dict(s.actions)} for s in r] for b, r in measured.items()}

    for backend, results in measured.items():
        for s in results:
            at_target = s.keys >= TARGET_KEYS
            due = sum(s.actions.values())
            section.rows.append(
                [
                    f"rotation selection, {backend}, {s.keys:,} keys (s)",
                    f"{s.seconds:.2f} ({s.candidates:,} candidates read in {s.batches} batches, {due:,} actions: "
                    f"{_kinds(s.actions)})",
                    f"< {TARGET_S:g} s at {TARGET_KEYS:,} keys" if at_target else "— (target at 100,000 keys)",
                    ("PASS" if s.seconds < TARGET_S else "FAIL") if at_target else "INFO",
                ]
            )
        largest = results[-1]
        section.rows.append(
            [
                f"rotation selection, {backend}: rows read, {largest.keys:,} keys",
                _rows_read(largest),
                "each row at most once per sweep (keyset batches)",
                "PASS"
                if largest.rows_examined is not None and largest.rows_examined <= largest.keys
                else ("FAIL" if _rereads(largest) else "INFO"),
            ]
        )
        if len(results) > 1:
            small = results[0]
            flat = largest.peak_mb <= max(small.peak_mb * FLAT, small.peak_mb + 1.0)
            section.rows.append(
                [
                    f"rotation selection, {backend}: peak memory, {small.keys:,} → {largest.keys:,} keys (MB)",
                    f"{small.peak_mb:.1f} → {largest.peak_mb:.1f} (rotation_policy.plan iterated, tracemalloc)",
                    f"flat (≤ {FLAT:g}× the smaller)",
                    "PASS" if flat else "FAIL",
                ]
            )
            sweep_flat = largest.sweep_peak_mb <= max(small.sweep_peak_mb * FLAT, small.sweep_peak_mb + 1.0)
            section.rows.append(
                [
                    f"dry-run sweep, {backend}: peak memory, {small.keys:,} → {largest.keys:,} keys (MB)",
                    f"{small.sweep_peak_mb:.1f} → {largest.sweep_peak_mb:.1f} (rotation_flows.sweep(dry_run=True): "
                    f"{sum(small.actions.values()):,} → {sum(largest.actions.values()):,} actions, its report "
                    f"listing the first {KEPT_ACTIONS:,})",
                    f"flat (≤ {FLAT:g}× the smaller)",
                    "PASS" if sweep_flat else "FAIL",
                ]
            )
        section.rows.append(
            [
                f"rotation candidate query plan, {backend}",
                " → ".join(largest.plan)[:300].replace("|", "/"),
                "a keyset range per batch, no sort (the brief expected ix_access_keys_status_created_at)",
                "INFO",
            ]
        )
        if largest.analyzed_seconds is not None:
            section.rows.append(
                [
                    f"rotation selection, {backend}, {largest.keys:,} keys, after ANALYZE (s)",
                    f"{largest.analyzed_seconds:.2f} (the app's code once the table has statistics; plan: "
                    f"{' → '.join(largest.analyzed_plan)[:120]})",
                    f"< {TARGET_S:g} s" if largest.keys >= TARGET_KEYS else "—",
                    "INFO",
                ]
            )
    section.notes.append(
        "Selection: `rotation_policy.plan` iterated to the end with nothing sent, on a fresh database per size and "
        "backend (created_at spread over 0–200 days; 90% active, half of them already told about their stage; "
        f"6% inactive; 4% deleted; 20 exemptions); median of {repeat} after a warm-up. Peak memory: tracemalloc, "
        "in a separate run. "
        "Rows examined: PostgreSQL, summed from EXPLAIN ANALYZE of every batch's statement as the app sent it; "
        "SQLite, a rowid range scan visits each row once."
    )


def _rereads(s: Selection) -> bool:
    """Each batch costs the database about as much as the first, however far the keyset has moved: every batch
    reads all the remaining candidates again (then sorts them) instead of continuing where the last stopped."""
    return len(s.batch_ms) >= 4 and statistics.median(s.batch_ms[1:-1]) >= 0.5 * s.batch_ms[0] > 5.0


def _rows_read(s: Selection) -> str:
    text = f"{s.candidates:,} candidates of {s.keys:,} keys; "
    if s.rows_examined is not None:
        text += f"the database examined {s.rows_examined:,} rows; "
    elif _rereads(s):
        text += "each batch re-reads every remaining candidate through the index and sorts them; "
    if s.batch_ms:
        how = "EXPLAIN ANALYZE" if s.backend == "PostgreSQL" else "each statement run again"
        text += (
            f"{sum(s.batch_ms):.0f} ms in the database over {len(s.batch_ms)} statements (first batch "
            f"{s.batch_ms[0]:.1f} ms, median {statistics.median(s.batch_ms):.1f} ms; {how})"
        )
    return text


def _kinds(kinds: Counter[str]) -> str:
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items())) or "none"


# DM sweep ----------------------------------------------------------------------------------------------------
class RateLimiter:
    """Sliding one-second windows: at most `per_second` accepted calls for the workspace and `per_channel` in one
    channel. Rejected calls do not count. `take` answers the Retry-After to send (whole seconds), or 0."""

    def __init__(self, per_second: int, per_channel: int = 1) -> None:
        self.per_second = per_second
        self.per_channel = per_channel
        self.lock = threading.Lock()
        self.workspace: deque[float] = deque()
        self.channels: dict[str, deque[float]] = {}
        self.accepted: list[tuple[float, str]] = []
        self.rejected: list[tuple[float, str, str]] = []  # (time, channel, "workspace" or "channel")

    def take(self, channel: str) -> int:
        with self.lock:
            now = time.monotonic()
            mine = self.channels.setdefault(channel, deque())
            for window in (self.workspace, mine):
                while window and window[0] <= now - 1.0:
                    window.popleft()
            for window, limit, reason in (
                (self.workspace, self.per_second, "workspace"),
                (mine, self.per_channel, "channel"),
            ):
                if len(window) >= limit:
                    self.rejected.append((now, channel, reason))
                    return max(1, math.ceil(window[0] + 1.0 - now))
            self.workspace.append(now)
            mine.append(now)
            self.accepted.append((now, channel))
            return 0


class RateLimitedStandIn(SlackStandIn):
    """The Slack stand-in, answering chat.postMessage with HTTP 429 and Retry-After over the limiter's limits."""

    def __init__(
        self, limiter: RateLimiter, methods: tuple[str, ...] = ("chat.postMessage",), *, latency: float = 0.0
    ) -> None:
        super().__init__(rate_limits={})  # the limiter below is this benchmark's model of Slack's limits
        self.limiter = limiter
        self.limited = methods
        self.latency = latency  # seconds added to every call, as the suite's own stand-in does

    def _serve(self, h: Any) -> None:
        if self.latency:
            time.sleep(self.latency)
        super()._serve(h)

    def _api(self, method: str, query: str, content_type: str, raw: bytes, h: Any) -> tuple[dict[str, Any], Any]:
        if method in self.limited:
            try:
                args = _parse_args(query, content_type, raw)
            except Exception:
                args = {}
            channel = self._resolve_channel(str(args.get("channel") or ""))
            retry_after = self.limiter.take(channel)
            if retry_after:
                return args, _Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
        return super()._api(method, query, content_type, raw, h)


def _iam_client(ctx: Context) -> Any:
    import boto3

    from bot.aws_iam import standard_retries

    return boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=ctx.backends.aws,
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=standard_retries(),
    )


def _create_iam_keys(ctx: Context, count: int) -> list[tuple[str, str]]:
    """(IAM user, access key id) for `count` owners, made on the suite's moto server. Each key then signs one
    call, so moto records it as used (as AWS would): keys in use, not also flagged unused by the sweep."""
    import boto3

    client = _iam_client(ctx)

    def one(i: int) -> tuple[str, str]:
        user = f"bench-rotation-{i:05d}"
        client.create_user(UserName=user, Path="/koding-iam/")
        key = client.create_access_key(UserName=user)["AccessKey"]
        boto3.client(
            "iam",
            region_name="us-east-1",
            endpoint_url=ctx.backends.aws,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        ).get_user(UserName=user)
        return user, key["AccessKeyId"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(count)))


def dm_sweep(ctx: Context, section: Section, data: dict[str, Any]) -> None:
    from bot.app import create_services
    from bot.aws_iam import Backoff, IamGateway
    from bot.db import make_engine
    from bot.flows import rotation as rotation_flows
    from bot.slack.outbox_sender import start_outbox
    from models import AccessKey

    owners, overdue, limit = ctx.options.rotation_owners, ctx.options.rotation_overdue, ctx.options.post_limit
    overdue = min(overdue, owners)
    now = datetime.now(UTC).replace(microsecond=0)
    limiter = RateLimiter(per_second=limit, per_channel=1)
    standin = RateLimitedStandIn(limiter, latency=ctx.options.slack_latency_ms / 1000).start()
    backend = "PostgreSQL" if ctx.database_url.startswith("postgresql") else "SQLite"
    aws_before: dict[str, int] = {}
    try:
        keys = _create_iam_keys(ctx, owners)
        rng = random.Random(7)  # noqa: S311 - test data
        with _fresh_database(ctx, backend, "rotation-dm") as url:
            engine = make_engine(url)
            rows = []
            for i, (user, access_key_id) in enumerate(keys):
                # Lowest ids are the oldest keys: overdue (the admins are told too); the rest upcoming or due.
                age = rng.uniform(100, 150) if i < overdue else rng.uniform(84, 92.5)
                created = now - timedelta(days=age)
                rows.append(
                    {
                        "access_key_id": access_key_id,
                        "iam_user_name": user,
                        "owner_id": f"UROTOWNER{i:06d}",
                        "status": "active",
                        "created_at": created,
                        "revealed_at": created,
                        "reminder_stage": "fresh",
                    }
                )
            with engine.begin() as connection:
                connection.execute(insert(AccessKey), rows)
            # The sender allows itself a tenth under the stand-in's workspace limit (KODING_IAM_SLACK_POSTS_PER_MINUTE).
            settings = _settings(url, standin.base_url, koding_iam_slack_posts_per_minute=int(limit * 60 * 0.9))
            gateway = IamGateway(_iam_client(ctx), backoff=Backoff(sleep=lambda _: None))
            services = create_services(settings, engine=engine, gateway=gateway)
            sender = start_outbox(services)  # as in `serve`: it delivers while the sweep marks
            aws_before = ctx.backends.stats()["aws"]["calls"]
            started, started_mono = time.perf_counter(), time.monotonic()
            report = rotation_flows.sweep(services, now=now)
            swept = time.perf_counter() - started
            # What the sweep left for the outbox, for at most twice the time the target allows the whole sweep: a
            # drain past that fails the target anyway, and the rows left are reported.
            configured = _configured_post_rate(settings.koding_iam_slack_posts_per_minute, limit)[0]
            budget = max(60.0, 2 * TIME_FACTOR * owners / configured)
            drained = sender.wait_idle(timeout=budget, quietly=True)
            duration = time.perf_counter() - started
            aws_after = ctx.backends.stats()["aws"]["calls"]
            with engine.connect() as connection:
                left = int(
                    connection.execute(text("SELECT count(*) FROM outbox WHERE delivered_version < version")).scalar()
                    or 0
                )
            # The next sweep, inside the last-use refresh interval: it reads no key again.
            rotation_flows.sweep(services, now=now + timedelta(minutes=5))
            sender.wait_idle()
            sender.stop()
            aws_next = ctx.backends.stats()["aws"]["calls"]
            with engine.connect() as connection:
                told = int(
                    connection.execute(
                        text("SELECT count(*) FROM access_keys WHERE reminder_stage <> 'fresh'")
                    ).scalar()
                    or 0
                )
            engine.dispose()
        messages = standin.messages()
        refused = [str(v) for v in standin.violations]
    finally:
        standin.stop()
        with contextlib.suppress(Exception):
            ctx.backends.reset_aws()  # leave moto as the other modules expect it (empty, with the policies)

    per_channel = Counter(m["channel"] for m in messages)
    owner_channels = [standin.dm_channel(f"UROTOWNER{i:06d}") for i in range(owners)]
    delivered = [per_channel.get(channel, 0) for channel in owner_channels]
    lost, duplicated = sum(1 for n in delivered if n == 0), sum(1 for n in delivered if n > 1)
    admin_channels = [standin.dm_channel(admin) for admin in ADMINS]
    admin_delivered = sum(per_channel.get(channel, 0) for channel in admin_channels)
    per_admin = [per_channel.get(channel, 0) for channel in admin_channels]
    overdue_users = [user for user, _ in keys[:overdue]]
    admin_text = [
        " ".join(str(m.get("text", "")) + json.dumps(m.get("blocks", [])) for m in messages if m["channel"] == channel)
        for channel in admin_channels
    ]
    named = min((sum(1 for user in overdue_users if user in text) for text in admin_text), default=0)
    rate, rate_source = _configured_post_rate(settings.koding_iam_slack_posts_per_minute, limit)
    posted = len(limiter.accepted)
    reasons = Counter(reason for _, _, reason in limiter.rejected)
    slept, most_attempts = _retry_waits(limiter)
    sending = max(duration - slept, 1e-9)
    get_last_used = aws_after.get("GetAccessKeyLastUsed", 0) - aws_before.get("GetAccessKeyLastUsed", 0)
    next_last_used = aws_next.get("GetAccessKeyLastUsed", 0) - aws_after.get("GetAccessKeyLastUsed", 0)
    peak_window = _peak_per_second(limiter.accepted)
    posted_at = sorted(at for at, _ in limiter.accepted)
    first_post = posted_at[0] - started_mono if posted_at else 0.0
    sending_rate = (len(posted_at) - 1) / (posted_at[-1] - posted_at[0]) if len(posted_at) > 1 else 0.0
    paced = posted / rate

    data["dm_sweep"] = {
        "owners": owners,
        "overdue": overdue,
        "limit_per_second": limit,
        "limit_per_channel_per_second": 1,
        "backend": backend,
        "duration_s": round(duration, 2),
        "configured_posts_per_s": round(rate, 2),
        "messages_over_rate_s": round(paced, 2),
        "duration_over_paced": round(duration / max(paced, 1e-9), 3),
        "posted": posted,
        "rate_per_s": round(posted / duration, 1),
        "rate_between_pauses_per_s": round(posted / sending, 1),
        "slept_s": round(slept, 1),
        "http_429": len(limiter.rejected),
        "block_kit_violations": refused,
        "http_429_by_limit": dict(reasons),
        "most_attempts_for_one_message": most_attempts,
        "owner_dms_delivered": sum(1 for n in delivered if n == 1),
        "lost": lost,
        "duplicated": duplicated,
        "admin_notices": admin_delivered,
        "admin_messages_per_admin": per_admin,
        "overdue_keys_named_per_admin": named,
        "sweep_s": round(swept, 2),
        "first_post_after_s": round(first_post, 2),
        "rate_from_first_to_last_post_per_s": round(sending_rate, 1),
        "outbox_surfaces_drawn_after": drained,
        "outbox_surfaces_left": left,
        "configured_rate_per_s": round(rate, 3),
        "configured_rate_source": rate_source,
        "time_target_s": round(TIME_FACTOR * paced, 1),
        "report": {
            "actions": len(report.actions),
            "sent": report.sent,
            "skipped": report.skipped,
            "failed": report.failed,
        },
        "keys_confirmed": told,
        "get_access_key_last_used": get_last_used,
        "get_access_key_last_used_per_key": round(get_last_used / max(owners, 1), 3),
        "get_access_key_last_used_next_sweep": next_last_used,
        "busiest_second": peak_window,
        "gateway": "moto server (counting proxy)",
    }
    label = f"DM sweep to {owners:,} owners"
    section.rows += [
        [
            f"{label} (s)",
            f"{duration:.1f} (the sweep {swept:.1f}, then its outbox: {drained} surfaces drawn, {left} left; "
            f"the first DM {first_post:.1f} s after the start, then {sending_rate:.1f}/s to the last; "
            f"{posted:,} chat.postMessage accepted, "
            f"{posted / duration:.1f}/s achieved; {posted / sending:.0f}/s between rate-limit pauses; {slept:.0f} s "
            "asleep in RateLimitErrorRetryHandler)",
            f"≤ {TIME_FACTOR:g} × ({posted:,} messages ÷ {rate:g}/s) = {TIME_FACTOR * paced:.0f} s ({rate_source})",
            "PASS" if duration <= TIME_FACTOR * paced and posted and not left else "FAIL",
        ],
        [
            f"{label}: owner DMs delivered exactly once",
            f"{sum(1 for n in delivered if n == 1):,}/{owners:,} ({lost} lost, {duplicated} duplicated; sweep: "
            f"{report.sent} sent, {report.skipped} skipped, {report.failed} failed)",
            f"{owners:,}/{owners:,}",
            "PASS" if lost == 0 and duplicated == 0 and report.failed == 0 else "FAIL",
        ],
        [
            f"{label}: admin messages for {overdue} overdue keys",
            f"{' and '.join(str(n) for n in per_admin)} (one line per admin); overdue keys named in each admin's "
            f"messages: {named}/{overdue}",
            f"1 digest per admin per sweep, naming all {overdue}",
            "PASS" if overdue and all(n == 1 for n in per_admin) and named == overdue else "FAIL",
        ],
        [
            f"{label}: HTTP 429 answers",
            f"{len(limiter.rejected)} (workspace limit {reasons['workspace']}, one-per-second-per-channel limit "
            f"{reasons['channel']}); at most {most_attempts} attempts for one message; busiest second "
            f"{peak_window} accepted",
            f"0 (stand-in limits: {limit} chat.postMessage/s for the workspace, 1/s per channel)",
            "PASS" if not limiter.rejected else "FAIL",
        ],
        [
            f"{label}: GetAccessKeyLastUsed calls per key",
            f"{get_last_used / max(owners, 1):.2f} ({get_last_used} for {owners:,} keys: each key's last use is read "
            f"once and recorded, the DMs read the record; the next sweep 5 minutes later: {next_last_used})",
            "≤ 1.00 per key per KODING_IAM_LAST_USED_REFRESH_MINUTES (60); 0 within it",
            "PASS" if get_last_used <= owners and next_last_used == 0 else "FAIL",
        ],
    ]
    section.notes.append(
        f"DM sweep: `rotation_flows.sweep` for real on {backend}, {owners:,} keys with one owner each, the "
        f"{overdue} oldest overdue (their owner is DMed and each admin gets one digest listing them), the rest "
        "upcoming or due. The app's outbox sender runs beside the sweep, as in `serve`, paced a tenth under the "
        "stand-in's workspace limit (KODING_IAM_SLACK_POSTS_PER_MINUTE); the time runs from the sweep's start until "
        "the outbox has drained. "
        "Slack is a stand-in that answers HTTP 429 with Retry-After past "
        f"{limit} chat.postMessage calls in any second (a generous reading of Slack's workspace-wide 'several "
        "hundred per minute') or past one per second in one channel (Slack's documented limit); the client is "
        "the app's own (`make_slack_client`: RateLimitErrorRetryHandler, 3 retries, each sleeping Retry-After plus "
        "up to 1 s). GetAccessKeyLastUsed is answered by the suite's moto server (each owner's user and key are "
        "created there first, and the key signs one call so moto records it as used, as AWS would: keys in use are "
        "not also flagged unused). The sweep reads each key's last use once and records it; its DMs read the "
        "record; a second sweep 5 minutes later (inside KODING_IAM_LAST_USED_REFRESH_MINUTES) must read none. "
        "Between pauses: messages over the drain time minus its time asleep after 429s."
    )


def _configured_post_rate(per_minute: int | None, standin_limit: int) -> tuple[float, str]:
    """(chat.postMessage per second the app's outbox sender is configured to send, where that figure comes from).
    A rate it only keeps per channel bounds no sweep across thousands of DM channels: the stand-in's workspace
    limit is then the rate a sender that paces itself would keep."""
    if per_minute:
        return per_minute / 60, "KODING_IAM_SLACK_POSTS_PER_MINUTE, the outbox sender's workspace rate"
    return float(standin_limit), "no workspace rate is configured for chat.postMessage: the stand-in's limit"


def _retry_waits(limiter: RateLimiter) -> tuple[float, int]:
    """(seconds between each 429 and the next attempt in the same channel, most attempts one message took)."""
    attempts: dict[str, list[tuple[float, bool]]] = {}
    for at, channel in limiter.accepted:
        attempts.setdefault(channel, []).append((at, True))
    for at, channel, _ in limiter.rejected:
        attempts.setdefault(channel, []).append((at, False))
    slept, most = 0.0, 1 if limiter.accepted else 0
    for events in attempts.values():
        events.sort()
        streak = 0
        for (at, ok), following in zip(events, [*events[1:], None], strict=True):
            if ok:
                most = max(most, streak + 1)
                streak = 0
                continue
            streak += 1
            if following is not None:
                slept += following[0] - at
        most = max(most, streak)
    return slept, most


def _peak_per_second(accepted: list[tuple[float, str]]) -> int:
    times = sorted(at for at, _ in accepted)
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(ctx: Context) -> list[Section]:
    section = Section(NAME, "Key rotation", ["measure", "value", "floor / target", "result"])
    section.measured_with = (
        f"{ctx.options.latency_label} in the DM sweep (Slack's 429s come from its own rate-limited stand-in); "
        "the selection and memory rows read the database only, no latency applies"
    )
    data: dict[str, Any] = {}
    ctx.data[NAME] = data
    selection(ctx, section, data)
    dm_sweep(ctx, section, data)
    return [section]
