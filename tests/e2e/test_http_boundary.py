"""The HTTP edge: only correctly signed, fresh requests reach the app; /healthz tells the database's state."""

from __future__ import annotations

import json
import time
import urllib.request
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.db import make_engine
from bot.devtools.sandbox import Sandbox
from bot.server import make_wsgi_app
from tests.e2e.flow_steps import requests

COMMAND = urlencode(
    {
        "command": "/koding-iam",
        "text": "request",
        "user_id": "UALICE",
        "team_id": "T0KODING",
        "trigger_id": "1.2.3",
        "channel_id": "C1",
        "response_url": "http://127.0.0.1:9/x",
    }
)


def state(sb: Sandbox) -> tuple[int, list[str]]:
    """Stored requests and Slack calls that act (auth.test, which Bolt makes once to learn its identity, does not)."""
    return len(requests(sb)), [c.method for c in sb.standin.calls if c.method != "auth.test"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"sign": False}, "no signature headers"),
        ({"signature": "v0=" + "0" * 64}, "forged signature"),
        ({"signature": "v1=abc"}, "unknown signature version"),
        ({"timestamp_offset": -6 * 60}, "stale timestamp"),
        ({"timestamp_offset": +6 * 60}, "timestamp from the future"),
        ({"headers": {"X-Slack-Request-Timestamp": "yesterday"}}, "timestamp that is not a number"),
    ],
)
def test_unverifiable_requests_get_401_and_change_nothing(
    sqlite_sandbox: Sandbox, kwargs: dict[str, Any], why: str
) -> None:
    sb = sqlite_sandbox
    before = state(sb)
    if "timestamp_offset" in kwargs:  # relative to now, not to when the test was collected
        kwargs = {"timestamp": int(time.time()) + kwargs["timestamp_offset"]}
    response = sb.driver.post(COMMAND, **kwargs)
    sb.wait_idle()
    assert response.status == 401, why
    assert state(sb) == before


def test_signature_over_a_different_body_is_refused(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    ts = int(time.time())
    signature = sb.driver.signer.generate_signature(timestamp=str(ts), body=COMMAND)
    response = sb.driver.post(COMMAND.replace("request", "help"), timestamp=ts, signature=signature)
    assert response.status == 401


def test_malformed_signed_payload_changes_nothing(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    before = state(sb)
    for body in ("payload=%7Bnot-json", "payload=" + json.dumps({"type": "block_actions"}), "garbage"):
        response = sb.driver.post(body)
        assert response.status in (200, 400, 404), (body, response.status)
    sb.wait_idle()
    assert state(sb) == before


def test_healthz_and_unknown_paths(sqlite_sandbox: Sandbox) -> None:
    with urllib.request.urlopen(sqlite_sandbox.url + "/healthz", timeout=5) as answer:  # noqa: S310
        assert answer.status == 200 and json.loads(answer.read()) == {"ok": True, "database": "reachable"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(sqlite_sandbox.url + "/slack/events", timeout=5)  # noqa: S310 - GET is not served
    assert missing.value.code == 404


def test_oversized_body_is_refused_before_parsing(sqlite_sandbox: Sandbox) -> None:
    response = sqlite_sandbox.driver.post("text=" + "x" * 1_100_000)
    assert response.status == 413


def test_healthz_reports_an_unreachable_database(sqlite_sandbox: Sandbox, tmp_path: Any) -> None:
    broken = make_engine(f"sqlite:///{tmp_path}/missing-dir/none.db")
    wsgi = make_wsgi_app(sqlite_sandbox.app, broken, signing_secret="unused")
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(wsgi({"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET", "wsgi.input": BytesIO()}, start_response))
    assert seen["status"].startswith("503") and json.loads(body)["ok"] is False
