"""Start-up (`koding-iam serve` to its first 200 from /healthz) and resident memory, idle and after the load.

Runs last, so "after load" is the long-lived server after every other benchmark; start-ups are extra
`koding-iam serve` processes on the same (migrated) database, and the floor is the bare Bolt app's start-up.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.context import Context, Section
from bench.processes import bare_bolt, free_port, serve

NAME = "startup"
# Targets: a restart or deploy should be over before Slack's 3-second ack deadline matters much for more
# than one click; memory is judged against the smallest common container size (512 MB, e.g. a Heroku 1X dyno,
# which the Procfile suggests), leaving half of it for growth when idle.
STARTUP_TARGET_S = 5.0
RSS_IDLE_TARGET_MB = 256.0
RSS_LOADED_TARGET_MB = 512.0


def measure_idle(ctx: Context) -> None:
    """Called by the suite right after start-up, before any request: the idle figures."""
    ctx.data[NAME] = {
        "first_startup_s": round(ctx.served.startup_s, 3),
        "rss_idle_mb": _round(ctx.served.rss_mb()),
        "bare_bolt_rss_mb": _round(ctx.bare.rss_mb()),
        "bare_bolt_startup_s": round(ctx.bare.startup_s, 3),
    }


def run(ctx: Context) -> list[Section]:
    data: dict[str, Any] = ctx.data.setdefault(NAME, {})
    data["rss_after_load_mb"] = _round(ctx.served.rss_mb())
    starts = [ctx.served.startup_s]
    floors = [ctx.bare.startup_s]
    problems = []
    if ctx.options.startups > 1:
        try:  # the code may have gained a migration while the benchmark ran; serve refuses a database behind
            from bot import db

            db.upgrade(ctx.database_url)
        except Exception as exc:
            problems.append(f"upgrading the database failed: {type(exc).__name__}: {exc}")
    for n in range(max(0, ctx.options.startups - 1)):
        env = {**ctx.served.env, "PORT": str(free_port())}
        try:
            with serve(env, ctx.workdir / f"startup-{n}.log", ctx.served.command) as extra:
                starts.append(extra.startup_s)
        except RuntimeError as exc:
            problems.append(str(exc))
        with bare_bolt(ctx.backends.slack) as floor:
            floors.append(floor.startup_s)
    data["problems"] = problems
    data["startups_s"] = [round(s, 3) for s in starts]
    data["bare_bolt_startups_s"] = [round(s, 3) for s in floors]
    startup, floor = statistics.median(starts), statistics.median(floors)

    section = Section(NAME, "Start-up and memory", ["measure", "value", "floor", "target", "result"])
    section.rows.append(
        [
            f"`koding-iam serve` to first 200 from /healthz (ms, median of {len(starts)})",
            f"{startup * 1000:.0f}",
            f"{floor * 1000:.0f} (bare Bolt app)",
            f"< {STARTUP_TARGET_S * 1000:.0f}",
            _result(startup < STARTUP_TARGET_S),
        ]
    )
    idle, loaded, bare = data.get("rss_idle_mb"), data.get("rss_after_load_mb"), data.get("bare_bolt_rss_mb")
    section.rows.append(
        ["resident memory, idle (MB)", _mb(idle), f"{_mb(bare)} (bare Bolt app)", f"< {RSS_IDLE_TARGET_MB:.0f}",
         _result(idle is not None and idle < RSS_IDLE_TARGET_MB)]
    )  # fmt: skip
    section.rows.append(
        ["resident memory after the load above (MB)", _mb(loaded), f"{_mb(idle)} (idle)",
         f"< {RSS_LOADED_TARGET_MB:.0f}", _result(loaded is not None and loaded < RSS_LOADED_TARGET_MB)]
    )  # fmt: skip
    for problem in problems:
        section.notes.append(f"An extra start-up failed: {problem}")
    section.notes.append(
        "Start-up includes the interpreter, imports, the migration check against the database and the first "
        "scheduler tick; the floor is a Python process serving a bare Bolt app with the same waitress settings."
    )
    return [section]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _result(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
