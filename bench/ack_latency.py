"""Acknowledgement latency through the production HTTP server, against two floors measured in the same run.

Per concurrency level (1, 20, 100), three closed-loop runs:

1. the floor app: a bare Bolt app (bench.bare_bolt) answering the same four kinds of request with ack() only;
2. `koding-iam serve` answering a shuffled mix of the four surfaces plus GET /healthz (the second floor: same
   process, same waitress, no Bolt), N of each:
   - `/koding-iam help`;
   - `/koding-iam request`, half from people who already have an open request (answered with why not), half
     from new people (the modal opens after the ack);
   - an Approve click: each pending request gets a click from both admins, so half the clicks win (and start
     provisioning in the background, while the rest of the mix is measured) and half take the losing path;
   - a view_submission of the request modal from a new person (stores a pending request, posts the cards).
   The approve clicks target requests submitted before the level started (the previous level's submissions;
   before the first level, an unmeasured warm-up submits them).
3. after the mix, how long the app takes to finish its background work (the backlog the level left).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

from bench import background, loadgen
from bench.background import ProvisioningLoad
from bench.context import Context, Section
from bench.loadgen import SLACK_DEADLINE_S
from bench.payloads import check_healthz, check_help, check_request
from bench.processes import ADMINS, CpuMeter
from bot.devtools.sandbox import SIGNING_SECRET
from bot.server import SLACK_PATH
from bot.worker import INLINE_SLOTS

NAME = "ack_latency"
SURFACES = ("/koding-iam help", "/koding-iam request", "approve click", "view_submission")
SLASH = ("/koding-iam help", "/koding-iam request", "/koding-iam help, nothing in the background")
HEALTHZ = "GET /healthz"
QUIET = "/koding-iam help, nothing in the background"
ALL = "every acknowledgement"
LOADED_P99_FACTOR = 3.0  # ack p99 with provisionings running: at most 3 times bare Bolt's under that load
LOADED_FLOOR_S = {True: 10.0, False: 30.0}  # how long bare Bolt is measured under the load (quick, full)
LOADED_FLOOR_ITEMS = 1500  # per surface: more than bare Bolt answers in that time
LATE_ACKS_CONCURRENCY = 100  # no acknowledgement past Slack's 3 s at this concurrency
P99_TARGET_MS = 100.0
P99_TARGET_CONCURRENCY = 20
SLASH_P50_FACTOR = 2.0


def run(ctx: Context) -> list[Section]:
    options = ctx.options
    n = options.requests
    rng = random.Random(20260127)  # noqa: S311 - a shuffle, not a secret
    levels: list[dict[str, Any]] = []
    ctx.data[NAME] = {"requests_per_surface": n, "levels": levels}

    # Requests the first level's admins click on; later levels click on the previous level's submissions.
    pool = _pending_pool(ctx, ctx.create_pending(max(1, n // 2), concurrency=10, wait_cards=False))
    for concurrency in options.levels:
        ctx.wait_idle(slack=False)
        bare_samples, bare_wall, bare_cut = loadgen.run(
            ctx.bare.url,
            _bare_items(ctx, n, rng),
            concurrency=concurrency,
            signing_secret=SIGNING_SECRET,
            time_budget_s=options.phase_budget_s,
        )
        # The same server with nothing running in the background: help only.
        quiet_samples, _, _ = loadgen.run(
            ctx.served.url,
            _quiet_items(ctx, n, pool, rng),
            concurrency=concurrency,
            signing_secret=SIGNING_SECRET,
            time_budget_s=options.phase_budget_s,
        )
        items, submitted_users = _app_items(ctx, n, pool, rng)
        loaded: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            load = None
            if concurrency == options.load_concurrency:
                # The floor under the same background load as the app: provisionings running in koding-iam serve.
                load = stack.enter_context(ProvisioningLoad(ctx, options.background_provisionings))
                load.window()
                # For a fixed time rather than n requests: bare Bolt answers n in well under a second, too short
                # to see the load at its steady state.
                window_s = min(options.phase_budget_s, LOADED_FLOOR_S[options.quick])
                bare_loaded, bare_loaded_wall, _ = loadgen.run(
                    ctx.bare.url,
                    _bare_items(ctx, max(n, LOADED_FLOOR_ITEMS), rng),
                    concurrency=concurrency,
                    signing_secret=SIGNING_SECRET,
                    time_budget_s=window_s,
                )
                loaded["bare_bolt"] = {s: loadgen.summarise(bare_loaded, s).as_dict() for s in SURFACES}
                loaded["bare_bolt"][ALL] = _all_acks(bare_loaded)
                loaded["bare_bolt_wall_s"] = round(bare_loaded_wall, 2)
                loaded["background_during_bare"] = load.figures()
                load.window()
            provisioned_before = _count(ctx, "provisioned")
            meter = CpuMeter(
                {
                    "koding-iam serve": ctx.served.process.pid,
                    "Slack stand-in + moto": ctx.backends.process.pid,
                    "load generator": os.getpid(),
                },
                postgres=not ctx.database_url.startswith("sqlite"),
            ).start()
            app_samples, app_wall, app_cut = loadgen.run(
                ctx.served.url,
                items,
                concurrency=concurrency,
                signing_secret=SIGNING_SECRET,
                time_budget_s=options.phase_budget_s,
            )
            cpu = meter.stop()
            provisioned_during = _count(ctx, "provisioned") - provisioned_before
            if load is not None:
                loaded["background_during_app"] = load.figures()
        if loaded:
            background.settle(ctx)
            loaded["app"] = {s: loadgen.summarise(app_samples, s).as_dict() for s in SURFACES}
            loaded["app"][ALL] = _all_acks(app_samples)
        backlog_s = ctx.wait_idle(timeout=300, slack=False)
        provisioned_total = _count(ctx, "provisioned") - provisioned_before
        levels.append(
            {
                "concurrency": concurrency,
                "bare_bolt": {s: loadgen.summarise(bare_samples, s).as_dict() for s in SURFACES},
                "bare_bolt_wall_s": round(bare_wall, 2),
                "bare_bolt_truncated": bare_cut,
                "app_quiet": {QUIET: loadgen.summarise(quiet_samples, QUIET).as_dict()},
                "app": {s: loadgen.summarise(app_samples, s).as_dict() for s in (*SURFACES, HEALTHZ)},
                "cpu_percent_of_one_core": cpu,
                "app_wall_s": round(app_wall, 2),
                "app_requests_per_s": round(len(app_samples) / app_wall, 1) if app_wall else None,
                "app_truncated": app_cut,
                "provisioned_while_measuring": provisioned_during,
                "provisioned_after_backlog": provisioned_total,
                "backlog_drain_s": round(backlog_s, 2),
                "acks_past_deadline": sum(
                    1 for sample in app_samples if sample.surface != HEALTHZ and sample.latency > SLACK_DEADLINE_S
                ),
                "acks": sum(1 for sample in app_samples if sample.surface != HEALTHZ),
                "under_load": loaded or None,
            }
        )
        pool = _pending_pool(ctx, list(ctx.request_ids(submitted_users).values()))
    return [_section(ctx, levels), _load_section(ctx, levels)]


# Workload ----------------------------------------------------------------------------------------------------
def _pending_pool(ctx: Context, request_ids: list[int]) -> list[tuple[int, str]]:
    """(request id, requester) of pending requests, for approve clicks and blocked /koding-iam request."""
    if not request_ids:
        return []
    rows = ctx.rows(
        "SELECT id, requester_id FROM access_requests WHERE status = 'pending' AND id BETWEEN :low AND :high",
        low=min(request_ids),
        high=max(request_ids),
    )
    wanted = set(request_ids)
    return [(int(i), str(r)) for i, r in rows if int(i) in wanted]


def _app_items(
    ctx: Context, n: int, pool: list[tuple[int, str]], rng: random.Random
) -> tuple[list[loadgen.Item], list[str]]:
    p = ctx.payloads
    items: list[loadgen.Item] = []
    blocked = [requester for _, requester in pool] or ["UBENCHNOBODY"]
    for i in range(n):
        user = rng.choice(blocked)
        items.append(loadgen.Item("/koding-iam help", SLACK_PATH, p.command_body(user, "help"), check_help))
        if i % 2 == 0:
            asker = rng.choice(blocked)  # already has an open request: answered in the ack with why not
        else:
            asker, _ = ctx.new_user()  # the modal opens after the ack
        items.append(loadgen.Item("/koding-iam request", SLACK_PATH, p.command_body(asker, "request"), check_request))
        items.append(loadgen.Item(HEALTHZ, "/healthz", None, check_healthz))
    targets = pool[: max(1, (n + 1) // 2)]
    clicks = [ctx.approval(admin, request_id) for request_id, _ in targets for admin in ADMINS]
    while len(clicks) < n:  # a small pool: more clicks on decided requests (the losing path)
        clicks.append(ctx.approval(rng.choice(ADMINS), rng.choice(targets)[0]))
    items.extend(clicks[:n])
    submitted = []
    for _ in range(n):
        user, name = ctx.new_user()
        submitted.append(user)
        items.append(ctx.submission(user, name))
    rng.shuffle(items)
    return items, submitted


def _quiet_items(ctx: Context, n: int, pool: list[tuple[int, str]], rng: random.Random) -> list[loadgen.Item]:
    users = [requester for _, requester in pool] or ["UBENCHNOBODY"]
    return [
        loadgen.Item(QUIET, SLACK_PATH, ctx.payloads.command_body(rng.choice(users), "help"), check_help)
        for _ in range(n)
    ]


def _bare_items(ctx: Context, n: int, rng: random.Random) -> list[loadgen.Item]:
    """The same four kinds of body for the bare Bolt app; its answers are only checked for status 200."""
    p = ctx.payloads
    items = []
    for i in range(n):
        user, name = ctx.new_user()
        items.append(loadgen.Item("/koding-iam help", SLACK_PATH, p.command_body(user, "help")))
        items.append(loadgen.Item("/koding-iam request", SLACK_PATH, p.command_body(user, "request")))
        admin = ADMINS[i % len(ADMINS)]
        body = p.approve_body(admin, ctx.cards[admin], 1 + i)
        items.append(loadgen.Item("approve click", SLACK_PATH, body))
        submit = p.submit_body(user, ctx.modal, iam_user_name=name, purpose="Benchmark stack")
        items.append(loadgen.Item("view_submission", SLACK_PATH, submit))
    rng.shuffle(items)
    return items


def _all_acks(samples: list[loadgen.Sample]) -> dict[str, Any]:
    """The four surfaces' acknowledgements together (GET /healthz is no acknowledgement)."""
    acks = [loadgen.Sample(ALL, s.latency, s.error, s.started) for s in samples if s.surface in SURFACES]
    return loadgen.summarise(acks, ALL).as_dict()


def _count(ctx: Context, status: str) -> int:
    return int(ctx.scalar("SELECT count(*) FROM access_requests WHERE status = :s", s=status) or 0)


# Report ------------------------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def judge(surface: str, concurrency: int, app: dict[str, Any], bare: dict[str, Any]) -> tuple[str, bool]:
    """(the targets that apply, whether all are met)."""
    targets, ok = [], True
    if concurrency == P99_TARGET_CONCURRENCY:
        targets.append(f"p99 < {P99_TARGET_MS:.0f} ms")
        ok &= app["p99_ms"] is not None and app["p99_ms"] < P99_TARGET_MS
    if surface in SLASH and bare.get("p50_ms") is not None:
        limit = SLASH_P50_FACTOR * bare["p50_ms"]
        targets.append(f"p50 ≤ {_ms(limit)} ms (2× bare)")
        ok &= app["p50_ms"] is not None and app["p50_ms"] <= limit
    targets.append("0 errors")
    ok &= app["errors"] == 0 and app["count"] > 0
    return "; ".join(targets), ok


def _section(ctx: Context, levels: list[dict[str, Any]]) -> Section:
    n = ctx.options.requests
    section = Section(
        NAME,
        "Acknowledgement latency (ms) through waitress, with floors from the same run",
        [
            "surface",
            "concurrency",
            "requests",
            "p50",
            "p95",
            "p99",
            "errors",
            "floor: bare Bolt p50 / p99",
            "floor: /healthz p50 / p99",
            "target",
            "result",
        ],
    )
    for level in levels:
        c = level["concurrency"]
        health = level["app"][HEALTHZ]
        for surface in (*SURFACES, QUIET):
            if surface == QUIET:
                app, bare = level["app_quiet"][QUIET], level["bare_bolt"]["/koding-iam help"]
            else:
                app, bare = level["app"][surface], level["bare_bolt"][surface]
            target, ok = judge(surface, c, app, bare)
            errors = str(app["errors"])
            if app["error_kinds"]:
                errors += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(app["error_kinds"].items())) + ")"
            section.rows.append(
                [
                    surface,
                    str(c),
                    str(app["count"]),
                    _ms(app["p50_ms"]),
                    _ms(app["p95_ms"]),
                    _ms(app["p99_ms"]),
                    errors,
                    f"{_ms(bare['p50_ms'])} / {_ms(bare['p99_ms'])}",
                    f"{_ms(health['p50_ms'])} / {_ms(health['p99_ms'])}",
                    target,
                    "PASS" if ok else "FAIL",
                ]
            )
    for level in levels:
        cut = " (stopped at the phase time limit)" if level["app_truncated"] else ""
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in level["cpu_percent_of_one_core"].items() if v is not None)
        section.notes.append(
            f"Concurrency {level['concurrency']}: the mix took {level['app_wall_s']} s "
            f"({level['app_requests_per_s']} requests/s){cut}; {level['provisioned_while_measuring']} "
            f"provisionings finished while it ran and {level['provisioned_after_backlog']} in all; the app needed "
            f"{level['backlog_drain_s']} s more to finish its background work. CPU while it ran (100% = one core): "
            f"{cpu}."
        )
    section.notes.append(
        f"{n} requests per surface and level (fewer if a phase hit its time limit). Errors: a status other "
        "than 200, an answer Slack would not accept, or an answer after Slack's 3-second deadline."
    )
    return section


def _load_section(ctx: Context, levels: list[dict[str, Any]]) -> Section:
    """Ack p99 at the loaded level against bare Bolt's p99 under the same background load; late acks at 100."""
    options = ctx.options
    section = Section(
        "ack_under_load",
        f"Acknowledgement p99 (ms) with {options.background_provisionings} provisionings running, against bare "
        "Bolt under the same load",
        ["surface", "concurrency", "requests", "p99", "bare Bolt p99, same load", "target", "result"],
    )
    for level in levels:
        loaded = level.get("under_load")
        if not loaded:
            continue
        for surface in (*SURFACES, ALL):
            app, bare = loaded["app"][surface], loaded["bare_bolt"][surface]
            ok = app["p99_ms"] is not None and bare["p99_ms"] is not None
            ok = ok and app["p99_ms"] <= LOADED_P99_FACTOR * bare["p99_ms"]
            limit = "—" if bare["p99_ms"] is None else _ms(LOADED_P99_FACTOR * bare["p99_ms"])
            section.rows.append(
                [
                    surface,
                    str(level["concurrency"]),
                    str(app["count"]),
                    _ms(app["p99_ms"]),
                    _ms(bare["p99_ms"]),
                    f"p99 ≤ {LOADED_P99_FACTOR:g}× bare = {limit} ms",
                    "PASS" if ok else "FAIL",
                ]
            )
        during = (loaded["background_during_bare"], loaded["background_during_app"])
        section.notes.append(
            f"Concurrency {level['concurrency']}: provisionings approved and not finished in koding-iam serve while "
            f"bare Bolt was measured ({loaded['bare_bolt'][ALL]['count']} requests over "
            f"{loaded['bare_bolt_wall_s']} s): mean {during[0]['in_flight_mean']}, min {during[0]['in_flight_min']}, "
            f"of them run at once by the worker: mean {during[0].get('running_mean')}, max "
            f"{during[0].get('running_max')}; while koding-iam was measured: mean {during[1]['in_flight_mean']}, min "
            f"{during[1]['in_flight_min']}, run at once: mean {during[1].get('running_mean')}, max "
            f"{during[1].get('running_max')} (target {options.background_provisionings}; the worker inside serve "
            f"runs {INLINE_SLOTS} at once by default, bot/worker.py INLINE_SLOTS, and the rest wait their turn; the "
            "load approved "
            f"{during[1]['approved']} and submitted {during[1]['submitted']} requests in all, {during[1]['errors']} "
            "of them answered with an error)."
        )
    late = [level for level in levels if level["concurrency"] == LATE_ACKS_CONCURRENCY] or levels[-1:]
    for level in late:
        section.rows.append(
            [
                f"acknowledgements past Slack's 3 s deadline (the mix at concurrency {level['concurrency']})",
                str(level["concurrency"]),
                str(level["acks"]),
                f"{level['acks_past_deadline']} late",
                "—",
                "0 late"
                + ("" if level["concurrency"] == LATE_ACKS_CONCURRENCY else f" (wanted at {LATE_ACKS_CONCURRENCY})"),
                "PASS" if level["acks_past_deadline"] == 0 and level["acks"] else "FAIL",
            ]
        )
    section.notes.append(
        "The bare Bolt app (bench/bare_bolt.py, listeners that only ack) is measured while koding-iam serve, beside "
        "it on the same machine, runs the background load: a driver keeps the configured number of provisionings "
        "running by approving pending requests as earlier ones finish, and submits new requests to approve "
        "(about one per provisioning). koding-iam is then measured with the same driver running (its mix's own "
        "approvals count toward the provisionings running). Both with the latency named above."
    )
    return section
