"""AWS API calls per provisioning and per reveal, against a moto server with every IAM call counted, and
50 approvals clicked at once.

The counts come from bench.backends, which sees every HTTP request the app's boto3 clients send, botocore's
own retries included (the `amz-sdk-request: attempt=N` header), so nothing the app does is hidden from them.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench import loadgen
from bench.context import Context, Section
from bench.processes import ADMINS
from bot.devtools.sandbox import SIGNING_SECRET
from bot.devtools.waiting import WaitTimeout
from bot.server import SLACK_PATH

NAME = "provisioning"
MIN_FRESH = {"CreateGroup": 1, "AttachGroupPolicy": 2, "CreateUser": 1, "AddUserToGroup": 1}
# The group exists: the app still tries CreateGroup first (answered EntityAlreadyExists), then the rest.
MIN_EXISTING = dict(MIN_FRESH)
MIN_REVEAL = {"CreateAccessKey": 1}
MIN_SUBMISSION = {"GetUser": 1}  # the form's "is this name free in AWS" check
# Error answers the flow expects: a free name's GetUser, and CreateGroup for a group that already exists.
EXPECTED_ERRORS = {"GetUser:NoSuchEntity", "CreateGroup:EntityAlreadyExists"}
BURST_ACK_DEADLINE_MS = 3000.0


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
            "—",
            "INFO",
            _methods(slack["calls"]),
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
    ctx.wait_idle()
    return _diff(before, ctx.backends.stats())


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
    ctx.wait_idle()
    before = ctx.backends.stats()
    started = time.perf_counter()
    samples, _, _ = loadgen.run(
        ctx.served.url,
        [ctx.approval(ADMINS[i % 2], rid) for i, rid in enumerate(request_ids)],
        concurrency=count,
        signing_secret=SIGNING_SECRET,
    )
    ack = loadgen.summarise(samples, "approve click").as_dict()
    finished = None
    try:
        ctx.wait_for(
            lambda: _settled(ctx, request_ids) == count, timeout=120 + 2 * count, what="every provisioning to end"
        )
        finished = time.perf_counter() - started
    except WaitTimeout:
        pass  # reported as "did not finish"
    ctx.wait_idle(timeout=300)
    diff = _diff(before, ctx.backends.stats())
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
        "states": dict(states),
        **diff,
    }


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
    window = burst["all_provisioned_s"]
    rate = f"; {updates / window * 60:.0f} chat.update per minute" if window else ""
    section.rows.append(
        [
            f"{n} approvals at once: Slack Web API calls",
            str(burst["slack"]["total"]),
            "—",
            "INFO",
            _methods(burst["slack"]["calls"]) + rate + " (Slack's chat.update tier: 50+ per minute per workspace)",
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
