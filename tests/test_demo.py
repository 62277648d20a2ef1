"""`koding-iam demo`: the offline walk-through runs the real flow, reads well, and shows the secret only in the
reveal modal."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bot.devtools import demo
from bot.devtools.demo import run_demo
from bot.devtools.terminal_render import mrkdwn_to_text

SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _section(output: str, number: int) -> str:
    """The text of one numbered section, from its header to the next one."""
    match = re.search(rf"^── {number}\. .*?(?=^── {number + 1}\. |\Z)", output, re.M | re.S)
    assert match, f"no section {number} in the demo output"
    return match.group(0)


def _demo_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("koding-iam-demo-*")}


@pytest.fixture
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each demo run makes its database in this test's own temporary directory, so a demo another test process
    runs meanwhile (pytest-xdist) is never mistaken for one left behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.slow
def test_demo_plays_the_whole_flow_and_shows_the_secret_only_in_the_reveal_modal(
    capsys: pytest.CaptureFixture[str], own_temp_dir: None
) -> None:
    before = _demo_dirs()

    assert run_demo(keep=False) == 0

    out, err = capsys.readouterr()
    assert err == ""
    assert "“koding-alice”" in _section(out, 1)  # the modal's prefilled user name
    assert "[✓] EC2 stacks" in _section(out, 1)
    assert "received" in _section(out, 2)
    card = _section(out, 3)
    assert "[ Approve ]  [ Deny ]" in card
    assert "<@" not in out and "<!date" not in out and "&lt;" not in out and "&amp;" not in out
    approved = _section(out, 4)
    for step in ("✓ CreateGroup Developers", "✓ CreateUser koding-alice", "✓ AddUserToGroup koding-alice"):
        assert step in approved
    assert "Done." in approved and "[ Reveal my access keys ]" in approved

    reveal = _section(out, 5)
    secrets = set(SECRET.findall(reveal))
    assert len(secrets) == 1, "the reveal modal shows exactly one secret access key"
    secret = secrets.pop()
    shown_in_modal = reveal.count(secret)
    assert shown_in_modal == 2  # the "Secret Access Key" field and the ready-to-paste snippet
    assert out.count(secret) == shown_in_modal, "the secret is printed outside the reveal modal"

    after = _section(out, 6)
    assert "revealed" in after and "AKIA" in after and "[ Reveal" not in after
    iam = _section(out, 7)
    assert "koding-alice" in iam and "/koding/" in iam
    assert "Group     Developers" in iam and "AmazonEC2FullAccess" in iam
    assert re.search(r"AKIA[A-Z0-9]{16}\s+Active", iam)
    summary = _section(out, 8)
    assert re.search("Slack calls: .*chat\\.postMessage \u00d7\\d+.*chat\\.update \u00d7\\d+", summary, re.S)
    assert _demo_dirs() == before, "the temporary database was not deleted"


@pytest.mark.slow
def test_demo_keep_leaves_the_database_and_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(keep=True) == 0
    out = capsys.readouterr().out
    match = re.search(r"Kept the demo database: (\S+)", out)
    assert match
    kept = Path(match.group(1))
    try:
        assert kept.is_file() and kept.stat().st_size > 0
    finally:
        shutil.rmtree(kept.parent, ignore_errors=True)


@pytest.mark.slow
def test_a_failing_step_prints_one_line_and_returns_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, own_temp_dir: None
) -> None:
    before = _demo_dirs()
    monkeypatch.setattr(demo, "PURPOSE", "")  # the form refuses an empty purpose

    assert run_demo(keep=False) == 1

    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("koding-iam demo failed at step 2")
    assert _demo_dirs() == before


@pytest.mark.slow
def test_koding_iam_demo_command_exits_0_with_no_aws_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("MOTO_")}
    script = shutil.which("koding-iam", path=str(Path(sys.executable).parent))
    command = [script, "demo"] if script else [sys.executable, "-m", "bot.cli", "demo"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "── 8. Summary" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("mrkdwn", "text"),
    [
        ("Approved by <@UADMIN1>", "Approved by @UADMIN1"),
        ("on <!date^1795811537^{date_short_pretty} at {time}|2026-11-27 20:32 UTC>.", "on 2026-11-27 20:32 UTC."),
        ("Team &lt;!channel&gt; &amp; co", "Team <!channel> & co"),
        ("*Purpose*\nStaging", "Purpose\nStaging"),
        (":tada: *Done.* `koding-alice`", "🎉 Done. `koding-alice`"),
        ("<https://example.com|the guide>", "the guide (https://example.com)"),
        ("```[koding]\nkey = 1```", "    [koding]\n    key = 1"),
        ("2 * 3 * 4", "2 * 3 * 4"),
    ],
)
def test_mrkdwn_is_shown_as_a_person_reads_it(mrkdwn: str, text: str) -> None:
    assert mrkdwn_to_text(mrkdwn) == text


def test_demo_fails_loudly_when_slack_would_refuse_a_body() -> None:
    from bot.devtools import blockkit_rules
    from bot.devtools.demo import DemoError, _check_block_kit
    from bot.devtools.slack_standin import SlackStandIn

    standin = SlackStandIn()
    _check_block_kit(standin)  # nothing recorded: passes
    standin.record_violations("chat.postMessage", [blockkit_rules.Violation("$.blocks[0].text", "3001 > 3000")])
    standin.expect_violations("3001")  # declared for the suite's guard; the demo still refuses it
    with pytest.raises(DemoError, match=r"chat.postMessage \$.blocks\[0\].text: 3001 > 3000"):
        _check_block_kit(standin)


@pytest.mark.slow
def test_demo_with_json_logs_writes_only_json_lines_naming_each_slack_request() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "LOG_"))}
    env["LOG_FORMAT"] = "json"
    script = shutil.which("koding-iam", path=str(Path(sys.executable).parent))
    command = [script, "demo"] if script else [sys.executable, "-m", "bot.cli", "demo"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "── 8. Summary" in done.stdout  # the story stays on stdout; the logs are on stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line: one JSON object
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    requests = [line for line in lines if line["logger"] == "bot.app"]
    assert [line["callback"] for line in requests][:3] == ["/koding-iam", "koding_iam.request", "koding_iam.approve"]
    for line in requests:
        assert line["team"] == "T0KODING" and line["user"] in (demo.REQUESTER, *demo.ADMINS) and line["request_id"]
    assert len({line["request_id"] for line in requests}) == len(requests)
    # Provisioning runs after the ack on the background pool, and still names the Approve click it came from.
    approve = next(line for line in requests if line["callback"] == "koding_iam.approve")
    provisioned = next(line for line in lines if line["message"] == "provisioning of request 1 ended: provisioned")
    assert {k: provisioned[k] for k in ("request_id", "user", "callback")} == {
        k: approve[k] for k in ("request_id", "user", "callback")
    }
    assert not SECRET.search(done.stderr)
