"""The plans of the database queries koding-iam runs before it acknowledges a request, on the tables the load
left behind: each statement is captured from the app's own code (bot.core.intake) and explained, so the check
follows the code as it changes.

`/koding-iam request` and a view_submission both run these before ack(); a sequential scan there grows with
every request ever made.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.context import Context, Section
from bench.processes import ADMINS, BOT_TOKEN
from bot.devtools.sandbox import SIGNING_SECRET

NAME = "queries"


def capture(ctx: Context) -> list[tuple[str, str, Any]]:
    """(what, statement, parameters) of each SELECT the ack path of a submission runs, in order."""
    from bot.config import load_settings
    from bot.core import intake

    settings = load_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        database_url=ctx.database_url,
        koding_iam_admins=",".join(ADMINS),
    )
    captured: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    user, name = ctx.new_user()
    event.listen(ctx.engine, "before_cursor_execute", listener)
    try:
        with Session(ctx.engine) as session:
            form = intake.RequestForm(iam_user_name=name, profiles=["ec2"], purpose="query plans")
            intake.submit_request(session, settings=settings, requester_id=user, team_id="T0", form=form)
            session.rollback()  # nothing is kept
    finally:
        event.remove(ctx.engine, "before_cursor_execute", listener)
    labels = ["open request of this person", "IAM user name taken"]
    return [(labels[i] if i < len(labels) else f"query {i + 1}", s, p) for i, (s, p) in enumerate(captured)]


def run(ctx: Context) -> list[Section]:
    rows_in_table = int(ctx.scalar("SELECT count(*) FROM access_requests") or 0)
    section = Section(
        NAME,
        "Database queries before the acknowledgement (view_submission, /koding-iam request)",
        ["query", "plan", "time (ms)", "target", "result"],
    )
    section.measured_with = "the database only (no Slack or AWS call, so no added latency applies)"
    results = []
    postgres = not ctx.database_url.startswith("sqlite")
    for label, statement, parameters in capture(ctx):
        plan, took, forced = _explain(ctx, statement, parameters, postgres)
        uses_index = _uses_index(forced, postgres)
        results.append(
            {
                "query": label,
                "sql": _one_line(statement),
                "plan": plan,
                "plan_without_seqscan": forced,
                "ms": took,
                "index_available": uses_index,
            }
        )
        shown = _short(plan) if forced == plan else f"{_short(plan)}; with seq scans off: {_short(forced)}"
        section.rows.append(
            [
                label,
                shown,
                "—" if took is None else f"{took:.2f}",
                "an index lookup on the searched column",
                "PASS" if uses_index else "FAIL",
            ]
        )
    ctx.data[NAME] = {"access_requests_rows": rows_in_table, "queries": results}
    section.notes.append(
        f"Plans on the benchmark's database after the load: {rows_in_table} rows in access_requests "
        f"({'PostgreSQL' if postgres else 'SQLite'}). The statements are the ones bot.core.intake.submit_request sends."
    )
    return [section]


def _explain(
    ctx: Context, statement: str, parameters: Any, postgres: bool
) -> tuple[list[str], float | None, list[str]]:
    """(the plan chosen, execution ms, the plan with sequential scans disabled). On a small table PostgreSQL
    rightly prefers a sequential scan; with them disabled, a Seq Scan left in the plan means no index fits."""
    raw = ctx.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if postgres:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            document = cursor.fetchone()[0]
            plan = document[0] if isinstance(document, list) else document
            chosen, took = _nodes(plan["Plan"]), float(plan.get("Execution Time", 0.0))
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            document = cursor.fetchone()[0]
            forced = _nodes((document[0] if isinstance(document, list) else document)["Plan"])
            raw.rollback()
            return chosen, took, forced
        started = time.perf_counter()
        cursor.execute(statement, parameters)
        cursor.fetchall()
        took = (time.perf_counter() - started) * 1000
        cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        plan = [str(row[-1]) for row in cursor.fetchall()]
        return plan, took, plan
    finally:
        raw.close()


def _nodes(node: dict[str, Any]) -> list[str]:
    name = node.get("Node Type", "?")
    if node.get("Index Name"):
        name += f" using {node['Index Name']}"
        # An index read without an Index Cond walks the whole index (here: every open request).
        name += f" ({node['Index Cond']})" if node.get("Index Cond") else " (whole index, no condition)"
    if node.get("Relation Name") and not node.get("Index Name"):
        name += f" on {node['Relation Name']}"
    out = [name]
    for child in node.get("Plans", []):
        out.extend(_nodes(child))
    return out


def _uses_index(plan: list[str], postgres: bool) -> bool:
    text = " | ".join(plan)
    if postgres:
        return "Seq Scan" not in text and "Index" in text and "whole index" not in text
    return "USING" in text.upper() and not re.search(r"\bSCAN access_requests\b(?! USING)", text)


def _short(plan: list[str]) -> str:
    return " → ".join(plan)[:160]


def _one_line(statement: str) -> str:
    return " ".join(statement.split())
