"""AWS API calls per provisioning and per reveal, against a moto server with every IAM call counted, and
50 approvals clicked at once.

The counts come from bench.backends, which sees every HTTP request the app's boto3 clients send, botocore's
own retries included (the `amz-sdk-request: attempt=N` header), so nothing the app does is hidden from them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from bench import loadgen
from bench.context import Context, Section
from bench.processes import ADMINS
from bot.devtools.sandbox import SIGNING_SECRET
from bot.devtools.waiting import WaitTimeout
from bot.server import SLACK_PATH
from bot.slack import ids

NAME = "provisioning"
MIN_FRESH = {"CreateGroup": 1, "AttachGroupPolicy": 2, "CreateUser": 1, "AddUserToGroup": 1}
# The group exists: the app still tries CreateGroup first (answered EntityAlreadyExists), then the rest.
MIN_EXISTING = dict(MIN_FRESH)
MIN_REVEAL = {"CreateAccessKey": 1}
MIN_SUBMISSION = {"GetUser": 1}  # the form's "is this name free in AWS" check
# Error answers the flow expects: a free name's GetUser, and CreateGroup for a group that already exists.
EXPECTED_ERRORS = {"GetUser:NoSuchEntity", "CreateGroup:EntityAlreadyExists"}
BURST_ACK_DEADLINE_MS = 3000.0
SLACK_CALLS_PER_APPROVAL = 8  # Slack calls per approval with two admin cards


def run(ctx: Context) -> list[Section]:
    data: dict[str, Any] = {}
    ctx.data[NAME] = data
    section = Section(
        NAME,
        "Provisioning: AWS calls against a counting moto server",
        ["measure", "value", "minimum / target", "result", "detail"],
    )

    ctx.wait_idle()
    before = ctx.backends.stats()
    first = ctx.create_pending(1)[0]
    ctx.wait_idle()
    submission = _diff(before, ctx.backends.stats())
    data["submission"] = submission
    _calls_row(section, "AWS calls per request submitted (name check)", submission, MIN_SUBMISSION)

    fresh = _provision_one(ctx, first)
    data["fresh_group"] = fresh
    _calls_row(section, "AWS calls per provisioning, fresh group (EC2 profile)", fresh, MIN_FRESH)

    second = ctx.create_pending(1)[0]
    existing = _provision_one(ctx, second)
    data["existing_group"] = existing
    _calls_row(section, "AWS calls per provisioning, existing group", existing, MIN_EXISTING)

    reveal = _reveal(ctx, first)
    data["reveal"] = reveal
    _calls_row(section, "AWS calls per reveal", reveal, MIN_REVEAL)

    slack = existing["slack"]
    section.rows.append(
        [
            "Slack Web API calls per approval (existing group, 2 admin cards)",
            str(slack["total"]),
            f"≤ {SLACK_CALLS_PER_APPROVAL}",
            _result(slack["total"] <= SLACK_CALLS_PER_APPROVAL),
            _methods(slack["calls"]) + " (counted until the app's outbox had delivered everything)",
        ]
    )
    home = _home_renders(ctx, first)
    data["app_home"] = home
    section.rows.append(
        [
            "App Home render: AWS calls (the requester, with a key, and an admin)",
            str(home["aws_total"]),
            "0",
            _result(home["aws_total"] == 0 and home["published"] >= 2),
            f"{_methods(home['aws_calls'])}; views.publish {home['published']}",
        ]
    )
    burst = _burst(ctx, ctx.options.approvals_at_once)
    data["burst"] = burst
    _burst_rows(section, burst)
    section.notes.append(
        "Minimum for an existing group: the app tries CreateGroup first (EntityAlreadyExists), so the same five "
        "calls as a fresh group. Retries = botocore attempts after the first + IAM answers that make the app's "
        "gateway call again (throttling, ConcurrentModification, NoSuchEntity on a brand-new entity). moto never "
        "throttles, so a throttling storm against real IAM would show here only as a call count far above the "
        "minimum."
    )
    return [section]


def _provision_one(ctx: Context, request_id: int) -> dict[str, Any]:
    ctx.wait_idle()
    before = ctx.backends.stats()
    ctx.send([ctx.approval(ADMINS[0], request_id)])
    ctx.wait_for(lambda: _reveal_dm_posted(ctx, [request_id]) == 1, timeout=60, what="provisioning to finish")
    status, reason = ctx.rows("SELECT status, failure_reason FROM access_requests WHERE id = :r", r=request_id)[0]
    if status != "provisioned":
        raise RuntimeError(f"request {request_id} ended {status}: {reason}")
    ctx.wait_idle(outbox=True)
    return _diff(before, ctx.backends.stats())


def _home_renders(ctx: Context, request_id: int) -> dict[str, Any]:
    """Open the App Home of the request's requester (who holds a key by now) and of an admin; AWS calls made."""
    requester = str(ctx.scalar("SELECT requester_id FROM access_requests WHERE id = :r", r=request_id))
    ctx.wait_idle(outbox=True)
    before = ctx.backends.stats()
    ctx.send(
        [
            loadgen.Item("app_home_opened", SLACK_PATH, ctx.payloads.home_opened_body(user), None, "application/json")
            for user in (requester, ADMINS[0])
        ]
    )
    published = before["slack"]["calls"].get("views.publish", 0) + 2
    ctx.wait_for(
        lambda: ctx.backends.stats()["slack"]["calls"].get("views.publish", 0) >= published,
        timeout=60,
        what="both App Homes to be published",
    )
    ctx.wait_idle(outbox=True)
    diff = _diff(before, ctx.backends.stats())
    return {**diff, "published": diff["slack"]["calls"].get("views.publish", 0)}


def _reveal(ctx: Context, request_id: int) -> dict[str, Any]:
    grant_id, requester = ctx.rows("SELECT id, requester_id FROM key_grants WHERE request_id = :r", r=request_id)[0]
    dm = ctx.wait_for(
        lambda: ctx.backends.message(str(requester), "Reveal my access keys"), timeout=30, what="the reveal DM"
    )
    ctx.wait_idle()
    before = ctx.backends.stats()
    body = ctx.payloads.reveal_body(str(requester), dm, int(grant_id))
    ctx.send([loadgen.Item("reveal click", SLACK_PATH, body)])
    ctx.wait_for(
        lambda: ctx.scalar("SELECT status FROM key_grants WHERE id = :g", g=grant_id) == "revealed",
        timeout=30,
        what="the key to be revealed",
    )
    ctx.wait_idle()
    return _diff(before, ctx.backends.stats())


def _burst(ctx: Context, count: int) -> dict[str, Any]:
    """`count` pending requests, one Approve click each, all sent at once; then wait for every provisioning."""
    request_ids = ctx.create_pending(count, concurrency=10)
    ctx.wait_idle(outbox=True, timeout=300)
    ctx.backends.slack_tiers(True)  # from here Slack's tiers hold: a call past one is answered 429
    try:
        before = ctx.backends.stats()
        started = time.perf_counter()
        samples, _, _ = loadgen.run(
            ctx.served.url,
            [ctx.approval(ADMINS[i % 2], rid) for i, rid in enumerate(request_ids)],
            concurrency=count,
            signing_secret=SIGNING_SECRET,
        )
        ack = loadgen.summarise(samples, "approve click").as_dict()
        finished = cards_done = None
        try:
            ctx.wait_for(
                lambda: _settled(ctx, request_ids) == count, timeout=120 + 2 * count, what="every provisioning to end"
            )
            finished = time.perf_counter() - started
            # Slack's chat.update tier is about 50 a minute: every copy of every card may take a while to catch up.
            ctx.wait_for(
                lambda: _cards_correct(ctx, request_ids)[0] == _cards_correct(ctx, request_ids)[1],
                timeout=120 + 6 * count,
                what="every card to show its request's outcome",
                every=1.0,
            )
            cards_done = time.perf_counter() - started
        except WaitTimeout:
            pass  # reported as "did not finish" / the cards still wrong
        ctx.wait_idle(timeout=300, outbox=True)
        after = ctx.backends.stats()
    finally:
        ctx.backends.slack_tiers(False)
    correct, cards, wrong = _cards_correct(ctx, request_ids)
    diff = _diff(before, after)
    limited = {
        k: v - before["slack"]["rate_limited_by_method"].get(k, 0)
        for k, v in after["slack"]["rate_limited_by_method"].items()
        if v > before["slack"]["rate_limited_by_method"].get(k, 0)
    }
    states = Counter(
        str(s)
        for (s,) in ctx.rows(
            "SELECT status FROM access_requests WHERE id BETWEEN :low AND :high",
            low=min(request_ids),
            high=max(request_ids),
        )
    )
    return {
        "approvals": count,
        "ack": ack,
        "all_provisioned_s": round(finished, 2) if finished is not None else None,
        "cards_correct_s": round(cards_done, 2) if cards_done is not None else None,
        "cards_correct": correct,
        "cards": cards,
        "cards_wrong_examples": wrong[:3],
        "http_429": sum(limited.values()),
        "http_429_by_method": limited,
        "states": dict(states),
        **diff,
    }


def _cards_correct(ctx: Context, request_ids: list[int]) -> tuple[int, int, list[str]]:
    """(copies of the approval cards that show their request's state now, copies posted, a few that do not):
    a card is correct when it names its request and its current state and offers no Approve button."""
    low, high = min(request_ids), max(request_ids)
    rows = ctx.rows(
        "SELECT c.request_id, c.channel, c.ts, r.status FROM approval_cards c JOIN access_requests r "
        "ON r.id = c.request_id WHERE c.request_id BETWEEN :low AND :high",
        low=low,
        high=high,
    )
    wanted, correct, wrong = set(request_ids), 0, []
    mine = [row for row in rows if int(row[0]) in wanted]
    for request_id, channel, ts, status in mine:
        message = ctx.backends.card(str(channel), str(ts)) or {}
        shown = str(message.get("text", "")) + json.dumps(message.get("blocks", []))
        if f"#{request_id}" in shown and str(status) in shown.lower() and ids.APPROVE not in shown:
            correct += 1
        else:
            wrong.append(f"#{request_id} ({status}): {str(message.get('text', 'no message'))[:80]}")
    return correct, len(mine), wrong


def _reveal_dm_posted(ctx: Context, request_ids: list[int]) -> int:
    return _settled(ctx, request_ids)


def _settled(ctx: Context, request_ids: list[int]) -> int:
    """Requests whose run ended: provisioned with the reveal DM posted, or failed."""
    low, high = min(request_ids), max(request_ids)
    done = ctx.scalar(
        "SELECT count(*) FROM access_requests r WHERE r.id BETWEEN :low AND :high AND (r.status = 'failed' OR "
        "EXISTS (SELECT 1 FROM key_grants g WHERE g.request_id = r.id AND g.dm_ts IS NOT NULL))",
        low=low,
        high=high,
    )
    return int(done or 0)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}

    aws_calls = sub(before["aws"]["calls"], after["aws"]["calls"])
    errors = sub(before["aws"]["errors"], after["aws"]["errors"])
    return {
        "aws_calls": aws_calls,
        "aws_total": sum(aws_calls.values()),
        "aws_errors": errors,
        "unexpected_errors": {k: v for k, v in errors.items() if k not in EXPECTED_ERRORS},
        "retries": (after["aws"]["botocore_retries"] - before["aws"]["botocore_retries"])
        + (after["aws"]["retryable_errors"] - before["aws"]["retryable_errors"]),
        "slack": {
            "calls": sub(before["slack"]["calls"], after["slack"]["calls"]),
            "total": after["slack"]["total"] - before["slack"]["total"],
        },
    }


def _methods(calls: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(calls.items())) or "none"


def _calls_row(section: Section, label: str, diff: dict[str, Any], minimum: dict[str, int]) -> None:
    expected = sum(minimum.values())
    ok = diff["aws_total"] <= expected and not diff["unexpected_errors"] and diff["retries"] == 0
    detail = _methods(diff["aws_calls"])
    extra = {k: v - minimum.get(k, 0) for k, v in diff["aws_calls"].items() if v > minimum.get(k, 0)}
    if extra:
        detail += "; above the minimum: " + _methods(extra)
    if diff["retries"]:
        detail += f"; {diff['retries']} retries"
    if diff["unexpected_errors"]:
        detail += "; errors: " + _methods(diff["unexpected_errors"])
    section.rows.append([label, str(diff["aws_total"]), f"{expected} ({_methods(minimum)})", _result(ok), detail])


def _burst_rows(section: Section, burst: dict[str, Any]) -> None:
    n = burst["approvals"]
    provisioned = burst["states"].get("provisioned", 0)
    section.rows.append(
        [
            f"{n} approvals at once: provisioned",
            f"{provisioned}/{n}",
            f"{n}/{n}",
            _result(provisioned == n),
            "states: " + _methods(burst["states"]),
        ]
    )
    took = burst["all_provisioned_s"]
    section.rows.append(
        [
            f"{n} approvals at once: until the last reveal DM (s)",
            "did not finish" if took is None else f"{took:.1f}",
            "—",
            "INFO",
            f"{burst['aws_total'] / n:.1f} AWS calls and {burst['slack']['total'] / n:.1f} Slack calls per approval",
        ]
    )
    updates = burst["slack"]["calls"].get("chat.update", 0)
    window = burst["cards_correct_s"] or burst["all_provisioned_s"]  # until the outbox had caught up
    rate = f"; {updates / window * 60:.0f} chat.update per minute over {window:.0f} s" if window else ""
    section.rows.append(
        [
            f"{n} approvals at once: Slack Web API calls",
            str(burst["slack"]["total"]),
            "—",
            "INFO",
            _methods(burst["slack"]["calls"]) + rate + " (Slack's chat.update tier: 50+ per minute per workspace)",
        ]
    )
    limited = burst["http_429_by_method"]
    section.rows.append(
        [
            f"{n} approvals at once: HTTP 429 from the Slack stand-in enforcing Slack's tiers",
            str(burst["http_429"]),
            "0",
            _result(burst["http_429"] == 0),
            (_methods(limited) if limited else "no call past a tier")
            + " (bot.devtools.slack_wire.DEFAULT_RATE_LIMITS: chat.update 50/min, chat.postMessage 1/s per channel, …)",
        ]
    )
    took = burst["cards_correct_s"]
    section.rows.append(
        [
            f"{n} approvals at once: approval cards that end correct",
            f"{burst['cards_correct']}/{burst['cards']}",
            f"{burst['cards']}/{burst['cards']} (every copy names its request's final state, no Approve button)",
            _result(burst["cards"] > 0 and burst["cards_correct"] == burst["cards"]),
            ("all correct after " + f"{took:.1f} s" if took is not None else "not all correct in time")
            + ("; e.g. " + "; ".join(burst["cards_wrong_examples"]) if burst["cards_wrong_examples"] else ""),
        ]
    )
    minimum = n * sum(MIN_EXISTING.values())
    section.rows.append(
        [
            f"{n} approvals at once: AWS calls",
            str(burst["aws_total"]),
            f"{minimum} ({n} × {sum(MIN_EXISTING.values())})",
            _result(burst["aws_total"] <= minimum + n),  # the first may create the group; allow one per run
            _methods(burst["aws_calls"]),
        ]
    )
    section.rows.append(
        [
            f"{n} approvals at once: retries / unexpected AWS errors",
            f"{burst['retries']} / {sum(burst['unexpected_errors'].values())}",
            "0 / 0",
            _result(burst["retries"] == 0 and not burst["unexpected_errors"]),
            _methods(burst["unexpected_errors"]) if burst["unexpected_errors"] else "no throttling, no retries",
        ]
    )
    ack = burst["ack"]
    section.rows.append(
        [
            f"{n} approvals at once: click ack p50 / p99 (ms)",
            f"{ack['p50_ms']:.0f} / {ack['p99_ms']:.0f}" if ack["p99_ms"] is not None else "—",
            f"p99 < {BURST_ACK_DEADLINE_MS:.0f} (Slack's deadline), 0 errors",
            _result(ack["p99_ms"] is not None and ack["p99_ms"] < BURST_ACK_DEADLINE_MS and ack["errors"] == 0),
            f"{ack['errors']} errors" + (f" ({_methods(ack['error_kinds'])})" if ack["error_kinds"] else ""),
        ]
    )


def _result(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
