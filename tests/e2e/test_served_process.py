"""The Done-when of the core flow: `koding-iam serve` in HTTP mode, against a Slack stand-in and a moto server,
driven only by what the bot posts. Also two serving processes deciding the same request on one PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.devtools.slack_standin import SlackStandIn
from bot.slack import ids
from tests.e2e.served import cli, free_port, moto_server, serve, serve_env

pytestmark = pytest.mark.slow


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def iam_client(endpoint: str) -> Any:
    return boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint)


def test_serve_over_http_runs_the_whole_flow(database_url: str, tmp_path: Path) -> None:
    with SlackStandIn() as slack, moto_server() as aws:
        env = serve_env(database_url=database_url, slack=slack, aws_endpoint=aws, port=free_port())
        # A database that is behind is refused with the command that fixes it.
        refused = cli("serve", env=env)
        assert refused.returncode == 3 and "koding-iam db upgrade" in refused.stderr
        assert cli("db", "upgrade", env=env).returncode == 0

        with serve(env, slack, str(tmp_path / "serve.log")) as app:
            driver = app.driver
            response, trigger = driver.command("UALICE", "request", user_name="alice")
            assert response.status == 200
            modal = driver.view_opened_with(trigger)
            submitted = driver.submit("UALICE", modal, {ids.PURPOSE_BLOCK: "Web staging"})
            assert (submitted.status, submitted.text) == (200, "")
            card = driver.latest_message("UADMIN1", containing="IAM user request #1")
            driver.click("UADMIN1", ids.APPROVE, message=card)
            dm = wait_for(lambda: _message_with(slack, "UALICE", "Reveal my access keys"))
            _, trigger = driver.click("UALICE", ids.REVEAL, message=dm)
            wait_for(lambda: slack.calls_to("views.update"))
            revealed = wait_for(lambda: _message_with(slack, "UALICE", "were revealed"))

            iam = iam_client(aws)
            user = iam.get_user(UserName="koding-alice")["User"]
            assert user["Path"] == "/koding/"
            assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="koding-alice")["Groups"]] == [
                "Developers"
            ]
            keys = iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]
            assert len(keys) == 1 and keys[0]["AccessKeyId"] in json.dumps(revealed["blocks"])
            modal_text = json.dumps(driver.view_opened_with(trigger))
            assert keys[0]["AccessKeyId"] in modal_text and "Secret Access Key" in modal_text
            # After the flow, both background loops still look for work (GET /metrics, koding_iam_looks_total).
            app.wait_for_looks()
            assert "Traceback" not in app.output()


def test_two_processes_deciding_one_request_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    with SlackStandIn() as slack, moto_server() as aws:
        env_a = serve_env(database_url=postgres_url, slack=slack, aws_endpoint=aws, port=free_port())
        env_b = {**env_a, "PORT": str(free_port())}
        assert cli("db", "upgrade", env=env_a).returncode == 0
        with serve(env_a, slack, str(tmp_path / "a.log")) as a, serve(env_b, slack, str(tmp_path / "b.log")) as b:
            _, trigger = a.driver.command("UALICE", "request", user_name="alice")
            a.driver.submit("UALICE", a.driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Two processes"})
            cards = {
                admin: a.driver.latest_message(admin, containing="IAM user request #1")
                for admin in ("UADMIN1", "UADMIN2")
            }
            clicks = [(process, admin) for process in (a, b) for admin in ("UADMIN1", "UADMIN2")] * 5
            with ThreadPoolExecutor(max_workers=20) as pool:
                responses = list(
                    pool.map(lambda pair: pair[0].driver.click(pair[1], ids.APPROVE, message=cards[pair[1]])[0], clicks)
                )
            assert {r.status for r in responses} == {200}
            wait_for(lambda: _message_with(slack, "UALICE", "Reveal my access keys"))
            # 19 losers are told who decided; one DM with a reveal button; one IAM user.
            wait_for(lambda: len(slack.ephemerals("UADMIN1")) + len(slack.ephemerals("UADMIN2")) == 19)
            reveal_dms = [m for m in slack.messages(slack.dm_channel("UALICE")) if "Reveal my" in json.dumps(m)]
            assert len(reveal_dms) == 1
            iam = iam_client(aws)
            users = iam.list_users(PathPrefix="/koding/")["Users"]
            assert [u["UserName"] for u in users] == ["koding-alice"]
            approvals = [
                c
                for c in slack.calls_to("chat.postMessage")
                if "was approved by" in json.dumps(c.body) and c.body.get("channel") == "UALICE"
            ]
            assert len(approvals) == 1


def _message_with(slack: SlackStandIn, user: str, text: str) -> dict[str, Any] | None:
    for message in reversed(slack.messages(slack.dm_channel(user))):
        if text in json.dumps(message.get("blocks")) + message.get("text", ""):
            return message
    return None


def test_sweep_command_beside_a_serving_process(sqlite_url: str, tmp_path: Path) -> None:
    """Rotation's Done-when: with the app serving, `koding-iam sweep --as-of` reminds once, escalates at 95
    days, and Rotate → reveal → Deactivate leaves two keys, the old one inactive, later only the new one."""
    with SlackStandIn() as slack, moto_server() as aws:
        env = serve_env(
            database_url=sqlite_url, slack=slack, aws_endpoint=aws, port=free_port(), KODING_IAM_RUN_SCHEDULER="false"
        )
        assert cli("db", "upgrade", env=env).returncode == 0
        with serve(env, slack, str(tmp_path / "serve.log")) as app:
            driver = app.driver
            _, trigger = driver.command("UALICE", "request", user_name="alice")
            driver.submit("UALICE", driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Rotation"})
            driver.click("UADMIN1", ids.APPROVE, message=driver.latest_message("UADMIN1", containing="request #1"))
            dm = wait_for(lambda: _message_with(slack, "UALICE", "Reveal my access keys"))
            driver.click("UALICE", ids.REVEAL, message=dm)
            wait_for(lambda: _message_with(slack, "UALICE", "were revealed"))
            iam = iam_client(aws)
            old = iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"][0]
            born = old["CreateDate"]

            def sweep(days: int) -> subprocess.CompletedProcess[str]:
                result = cli("sweep", "--as-of", (born + timedelta(days=days)).isoformat(), env=env)
                assert result.returncode == 0, result.stderr
                return result

            assert "sent 1" in sweep(85).stdout
            reminder = _message_with(slack, "UALICE", "due for rotation")
            assert reminder is not None and old["AccessKeyId"] in json.dumps(reminder)
            assert "nothing to do" in sweep(85).stdout
            assert "sent 1" in sweep(95).stdout
            assert _message_with(slack, "UADMIN1", "Overdue key") and _message_with(slack, "UADMIN2", "Overdue key")

            driver.click("UALICE", ids.ROTATE, message=reminder)
            guide = wait_for(lambda: _message_with(slack, "UALICE", "Deactivate old key"))
            driver.click("UALICE", ids.DEACTIVATE_OLD, message=guide)
            wait_for(lambda: "Reactivate" in json.dumps(slack.message(guide["channel"], guide["ts"])))
            keys = {
                k["AccessKeyId"]: k["Status"]
                for k in iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]
            }
            assert len(keys) == 2 and keys[old["AccessKeyId"]] == "Inactive"

            later = cli("sweep", "--as-of", (datetime.now(UTC) + timedelta(days=8)).isoformat(), env=env)
            assert "delete key" in later.stdout
            remaining = iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]
            assert [k["AccessKeyId"] for k in remaining] == [k for k in keys if k != old["AccessKeyId"]]
