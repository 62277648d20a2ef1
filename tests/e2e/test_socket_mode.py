"""`koding-iam serve` in Socket Mode as a real child process: the whole flow over the websocket (command → modal
→ approve → provisioning → reveal), /healthz and /metrics on $PORT, and reconnection after the socket drops or
Slack asks for a refresh. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.driver import SocketDriver
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.socket_standin import SocketStandIn
from bot.slack import ids
from tests.e2e.served import cli, free_port, moto_server, serve, serve_env
from tests.e2e.test_served_process import _message_with, iam_client, wait_for

pytestmark = pytest.mark.slow

APP_TOKEN = "xapp-1-AKODING-1-socketmode"


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
        return answer.status, answer.read().decode()


def ack_counts(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["surface"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "koding_iam_slack_ack_seconds_count"
    }


def test_serve_over_socket_mode_runs_the_whole_flow_and_reconnects(database_url: str, tmp_path: Path) -> None:
    with SlackStandIn() as slack, SocketStandIn(slack) as socket, moto_server() as aws:
        env = serve_env(database_url=database_url, slack=slack, aws_endpoint=aws, port=free_port())
        env["SLACK_APP_TOKEN"] = APP_TOKEN
        assert cli("db", "upgrade", env=env).returncode == 0
        with serve(env, slack, str(tmp_path / "serve.log")) as app:  # waits for /healthz on $PORT
            socket.wait_connected()
            driver = SocketDriver(socket, slack)

            response, trigger = driver.command("UALICE", "request", user_name="alice")
            assert (response.status, response.text) == (200, "")
            modal = driver.view_opened_with(trigger)
            submitted = driver.submit("UALICE", modal, {ids.PURPOSE_BLOCK: "Socket staging"})
            assert (submitted.status, submitted.text) == (200, "")
            card = driver.latest_message("UADMIN1", containing="IAM user request #1")
            driver.click("UADMIN1", ids.APPROVE, message=card)
            dm = wait_for(lambda: _message_with(slack, "UALICE", "Reveal my access keys"))
            _, trigger = driver.click("UALICE", ids.REVEAL, message=dm)
            revealed = wait_for(lambda: _message_with(slack, "UALICE", "were revealed"))

            keys = iam_client(aws).list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]
            assert len(keys) == 1 and keys[0]["AccessKeyId"] in json.dumps(revealed["blocks"])
            modal_text = json.dumps(driver.view_opened_with(trigger))
            assert keys[0]["AccessKeyId"] in modal_text and "Secret Access Key" in modal_text

            # The websocket URL came from apps.connections.open, called with the app-level token only.
            opened = slack.calls_to("apps.connections.open")
            assert opened and all(c.headers.get("Authorization") == f"Bearer {APP_TOKEN}" for c in opened)
            assert not any(APP_TOKEN in c.headers.get("Authorization", "") for c in slack.calls if c not in opened)

            # /healthz and /metrics answer on $PORT; every envelope was acknowledged and counted by surface.
            assert get(app.url + "/healthz") == (200, '{"ok": true, "database": "reachable"}')
            status, text = get(app.url + "/metrics")
            assert status == 200
            acks = ack_counts(text)
            assert (acks["slash_command"], acks["view_submission"], acks["block_action"]) == (1, 1, 2)

            # The network drops the socket: the app connects again (a new apps.connections.open) and is served.
            socket.drop()
            socket.wait_connected(connects=2, timeout=40)
            assert len(slack.calls_to("apps.connections.open")) >= 2
            _help(driver, slack)

            # Slack asks for a refresh: the app moves to a new connection and closes the old one. (slack_sdk's
            # client reads the new connection only once the old one's pending read ends: about 3 s here.)
            socket.disconnect()
            socket.wait_connected(connects=3, timeout=40)
            wait_for(lambda: socket.open_connections() == 1, timeout=10)
            _help(driver, slack)
            assert socket.refused == 0
            assert "Traceback" not in app.output()


def _help(driver: SocketDriver, slack: SlackStandIn) -> Any:
    """`/koding-iam help` is acknowledged within Slack's 3 seconds, the help text in the ack's payload."""
    ack = driver.socket.deliver("slash_commands", _command_form(driver, "help"))
    assert ack.seconds < 3
    assert ack.payload is not None and "/koding-iam request" in json.dumps(ack.payload)
    return ack


def _command_form(driver: SocketDriver, text: str) -> dict[str, str]:
    return {
        "token": "unused",
        "team_id": driver.team_id,
        "team_domain": "koding-test",
        "channel_id": "C0GENERAL",
        "channel_name": "general",
        "user_id": "UALICE",
        "user_name": "alice",
        "command": "/koding-iam",
        "text": text,
        "api_app_id": driver.app_id,
        "response_url": driver.standin.new_response_url(user="UALICE"),
        "trigger_id": driver.new_trigger(),
    }
