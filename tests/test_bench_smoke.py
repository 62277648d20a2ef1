"""The benchmark suite runs end to end: `python -m bench --quick` with tiny counts exits 0 and writes the JSON and
a markdown table with every expected row. Never a timed assertion: the figures are for people, not for CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import render, write_markdown

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = [
    *(f"| {surface} | {level} |" for surface in ("/koding-iam help", "/koding-iam request") for level in (1, 2)),
    *(f"| {surface} | {level} |" for surface in ("approve click", "view_submission") for level in (1, 2)),
    "| AWS calls per request submitted (name check) |",
    "| AWS calls per provisioning, fresh group (EC2 profile) |",
    "| AWS calls per provisioning, existing group |",
    "| AWS calls per reveal |",
    "| 3 approvals at once: provisioned |",
    "| 3 approvals at once: retries / unexpected AWS errors |",
    "| `koding-iam serve` to first 200 from /healthz",
    "| resident memory, idle (MB) |",
    "| resident memory after the load above (MB) |",
    # Key rotation (bench/rotation_sweep.py), at the tiny sizes passed below
    *(f"| rotation selection, SQLite, {keys} keys (s) |" for keys in (300, 600)),
    "| rotation selection, SQLite: rows read, 600 keys |",
    "| rotation selection, SQLite: peak memory, 300 → 600 keys (MB) |",
    "| dry-run sweep, SQLite: peak memory, 300 → 600 keys (MB) |",
    "| rotation candidate query plan, SQLite |",
    "| rotation selection, SQLite, 600 keys, after ANALYZE (s) |",
    "| rotation selection, SQLite, 600 keys, with the suggested fix (s) |",
    "| rotation selection, PostgreSQL, 600 keys (s) |",  # measured, or "skipped" without PostgreSQL
    "| DM sweep to 30 owners: time until the outbox drained (s) |",
    "| DM sweep to 30 owners: owner DMs delivered exactly once |",
    "| DM sweep to 30 owners: admin digests for 2 overdue keys |",
    "| DM sweep to 30 owners: HTTP 429 answers |",
    "| DM sweep to 30 owners: GetAccessKeyLastUsed calls per key |",
]


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    out, results = tmp_path / "PERFORMANCE.md", tmp_path / "latest.json"
    out.write_text("# Performance\n\nWritten by hand, kept.\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        f"--out={out}",
        f"--json={results}",
        "--requests=4",
        "--levels=1,2",
        "--approvals-at-once=3",
        "--startups=1",
        "--rotation-keys=300,600",
        "--rotation-owners=30",
        "--rotation-overdue=2",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]

    report = out.read_text(encoding="utf-8")
    assert report.startswith("# Performance\n\nWritten by hand, kept.\n")
    missing = [row for row in EXPECTED_ROWS if row not in report]
    assert not missing, f"rows missing from the report: {missing}\n{report}"
    surfaces = ("/koding-iam help", "/koding-iam request", "approve click", "view_submission")
    latency_rows = [line for line in report.splitlines() if line.startswith(tuple(f"| {s} | " for s in surfaces))]
    assert len(latency_rows) == 8 and all(line.endswith(("| PASS |", "| FAIL |")) for line in latency_rows)

    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["meta"]["mode"] == "quick"
    assert {"ack_latency", "provisioning", "startup"} <= set(data["results"])
    # The counting proxy saw the reveal's key being created (how many calls it took is a figure, not a check).
    assert data["results"]["provisioning"]["reveal"]["aws_calls"].get("CreateAccessKey") == 1
    assert "pending: rotation sweep lands with key rotation" not in report
    rotation = data["results"]["rotation_sweep"]
    assert [s["keys"] for s in rotation["selection"]["SQLite"]] == [300, 600]
    if "PostgreSQL" in rotation["selection"]:
        assert "| rotation candidate query plan, PostgreSQL |" in report
    # The sweep really ran against the rate-limited stand-in: every owner is accounted for.
    sweep = rotation["dm_sweep"]
    assert sweep["owners"] == 30 and sweep["posted"] >= 1
    assert sweep["owner_dms_delivered"] + sweep["lost"] + sweep["duplicated"] == 30

    # Writing again replaces the generated block only, and keeps what was written around it.
    out.write_text(report + "\n## Notes written by hand\n", encoding="utf-8")
    write_markdown(out, render(data))
    again = out.read_text(encoding="utf-8")
    assert again.count("<!-- bench:begin") == 1 and again.count("<!-- bench:end -->") == 1
    assert again.startswith("# Performance\n\nWritten by hand, kept.\n") and "## Notes written by hand" in again
