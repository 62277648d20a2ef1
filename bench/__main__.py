"""`python -m bench [--quick] [--out docs/PERFORMANCE.md]`: run the benchmark suite, write the JSON results and
the markdown report. Exits 0 when the suite ran (targets missed show as FAIL rows; `--strict` makes them exit
1), 2 when it could not run."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.context import LATENCY_MODES, Options


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 100 requests per surface instead of 1,000")
    parser.add_argument("--out", type=Path, default=Path("docs/PERFORMANCE.md"), help="markdown report to update")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"), help="JSON results file")
    parser.add_argument(
        "--database", help='a database URL, or "sqlite"; default: PostgreSQL at 127.0.0.1:5432/test when it answers'
    )
    parser.add_argument("--requests", type=int, help="requests per surface and concurrency level")
    parser.add_argument("--levels", help="comma-separated concurrency levels (default 1,20,100)")
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=20,
        help="the level (of --levels) measured with provisionings running, beside bare Bolt under the same load",
    )
    parser.add_argument(
        "--background-provisionings", type=int, default=20, help="provisionings kept running at that level"
    )
    parser.add_argument("--approvals-at-once", type=int, help="approvals clicked at once (default 50)")
    parser.add_argument("--startups", type=int, help="start-ups to time (default 3, quick 1)")
    parser.add_argument("--phase-budget", type=float, help="seconds one load phase may take (default 150, quick 60)")
    parser.add_argument(
        "--latency",
        choices=sorted(LATENCY_MODES),
        default="realistic",
        help="delay the stand-ins add per call: realistic (Slack 100 ms, AWS 50 ms; the default) or zero",
    )
    parser.add_argument("--slack-latency-ms", type=float, help="delay the Slack stand-in adds per call (overrides)")
    parser.add_argument("--aws-latency-ms", type=float, help="delay the moto server adds per call (overrides)")
    parser.add_argument("--only", help="comma-separated modules to run (e.g. provisioning,startup)")
    parser.add_argument(
        "--serve-command", help='command line run instead of "python -m bot.cli serve" (e.g. to measure a change)'
    )
    parser.add_argument(
        "--rotation-keys", help="comma-separated key counts for the rotation selection (default 10000,100000)"
    )
    parser.add_argument("--rotation-owners", type=int, help="owners the DM sweep reaches (default 2000, quick 200)")
    parser.add_argument("--rotation-overdue", type=int, help="of them, overdue keys (default 20, quick 5)")
    parser.add_argument(
        "--post-limit", type=int, default=20, help="chat.postMessage per second before the stand-in answers 429"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick,
        out=args.out,
        json_path=args.json,
        database=args.database,
        requests=args.requests or (100 if args.quick else 1000),
        levels=tuple(int(x) for x in args.levels.split(",")) if args.levels else (1, 20, 100),
        load_concurrency=args.load_concurrency,
        background_provisionings=args.background_provisionings,
        approvals_at_once=args.approvals_at_once or 50,
        startups=args.startups or (1 if args.quick else 3),
        phase_budget_s=args.phase_budget or (60.0 if args.quick else 150.0),
        latency=args.latency,
        slack_latency_ms=LATENCY_MODES[args.latency][0] if args.slack_latency_ms is None else args.slack_latency_ms,
        aws_latency_ms=LATENCY_MODES[args.latency][1] if args.aws_latency_ms is None else args.aws_latency_ms,
        only=tuple(x.strip() for x in args.only.split(",")) if args.only else (),
        strict=args.strict,
        serve_command=tuple(shlex.split(args.serve_command)) if args.serve_command else (),
        rotation_keys=tuple(sorted(int(x) for x in args.rotation_keys.split(",")))
        if args.rotation_keys
        else ((2_000, 5_000) if args.quick else (10_000, 100_000)),
        rotation_owners=args.rotation_owners or (200 if args.quick else 2000),
        rotation_overdue=args.rotation_overdue if args.rotation_overdue is not None else (5 if args.quick else 20),
        post_limit=args.post_limit,
    )
    return options


def main(argv: list[str] | None = None) -> int:
    from bench import suite

    options = parse(argv)
    try:
        result = suite.run(options)
    except KeyboardInterrupt:
        return 130
    suite.write(result, options)
    failed = suite.failures(result)
    print(f"bench: wrote {options.out} and {options.json_path}; {len(failed)} figure(s) miss their target")
    for line in failed:
        print(f"  FAIL {line}")
    refused = suite.block_kit_violations(result)
    if refused:
        print(f"bench: ERROR: Slack would refuse {len(refused)} body part(s) the bot sent, e.g.:", file=sys.stderr)
        for line in refused[:10]:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 1 if failed and options.strict else 0


if __name__ == "__main__":
    sys.exit(main())
