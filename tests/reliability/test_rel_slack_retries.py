"""Promise 7 — a request Slack sends again (X-Slack-Retry-Num / X-Slack-Retry-Reason, after a slow answer) does
no work twice; the same holds for a replay of the very same signed body (promise 4, replayed requests).

Each test captures the exact body the driver sent, sends it again with Slack's retry headers — with the same
timestamp and signature (a byte-for-byte replay) or freshly signed (as Slack signs a retry) — sequentially or
at the same moment as the original, and counts the work: audit events, IAM users and keys, Slack posts.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from reliability_support import FaultInjector, audit_count, db_counts, koding_users, posts_with

from bot.devtools.driver import Response
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, only_request, open_request_modal, refreshed, reveal_dm, submit_request

RETRY_HEADERS = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


class Capture:
    """Wraps the driver's transport: remembers each body it sent with the timestamp it was signed with."""

    def __init__(self, sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sb = sb
        self.sent: list[tuple[str, int]] = []
        self._post = sb.driver.post

        def post(body: str, **kwargs: Any) -> Response:
            kwargs.setdefault("timestamp", int(time.time()))
            self.sent.append((body, kwargs["timestamp"]))
            return self._post(body, **kwargs)

        monkeypatch.setattr(sb.driver, "post", post)

    def resend(self, *, same_signature: bool) -> Response:
        body, ts = self.sent[-1]
        timestamp = ts if same_signature else int(time.time()) + 1
        response = self._post(body, timestamp=timestamp, headers=RETRY_HEADERS)
        self.sb.wait_idle()
        return response


def ephemeral_texts(sb: Sandbox, user: str) -> list[str]:
    return [e["text"] for e in sb.standin.ephemerals(user)]


@pytest.mark.parametrize("mode", ["replay-same-signature", "retry-new-timestamp", "retry-while-original-runs"])
def test_resent_approve_click_does_no_work_twice(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    sb = sandbox
    submit_request(sb, "UBOB")
    approval = card(sb)
    capture = Capture(sb, monkeypatch)
    if mode == "retry-while-original-runs":
        # Slack retries after 3 s without an answer; the original may still be running when the retry lands.
        payload_ready = threading.Event()
        original: list[Response] = []

        def first() -> None:
            original.append(sb.driver.click("UADMIN1", ids.APPROVE, message=approval)[0])
            payload_ready.set()

        thread = threading.Thread(target=first)
        thread.start()
        while not capture.sent:
            time.sleep(0.001)
        body, ts = capture.sent[-1]
        again = capture._post(body, timestamp=ts, headers=RETRY_HEADERS)
        thread.join(10)
        sb.wait_idle()
        assert payload_ready.is_set() and original[0].status == 200
    else:
        sb.driver.click("UADMIN1", ids.APPROVE, message=approval)
        sb.wait_idle()
        again = capture.resend(same_signature=mode == "replay-same-signature")
    assert again.status == 200

    engine = sb.services.engine
    assert only_request(sb).status == "provisioned"
    assert audit_count(engine, "request.approved") == 1
    assert audit_count(engine, "provisioning.started") == 1
    assert db_counts(engine)["key_grants"] == 1
    assert koding_users(sb.services.gateway._client) == ["koding-ubob"]
    assert len(posts_with(sb.standin, "was approved by")) == 1
    assert len(posts_with(sb.standin, "Reveal my access keys")) == 1
    assert ephemeral_texts(sb, "UADMIN1") == [ephemeral_texts(sb, "UADMIN1")[0]]
    assert "already approved by <@UADMIN1>" in ephemeral_texts(sb, "UADMIN1")[0]
    assert "Done." in json.dumps(refreshed(sb, approval)["blocks"])


@pytest.mark.parametrize("same_signature", [True, False], ids=["replay", "retry"])
def test_resent_request_submission_stores_one_request(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, same_signature: bool
) -> None:
    sb = sandbox
    view = open_request_modal(sb, "UBOB")
    capture = Capture(sb, monkeypatch)
    assert sb.driver.submit("UBOB", view, {ids.PURPOSE_BLOCK: "Retry test"}).text == ""
    sb.wait_idle()
    again = capture.resend(same_signature=same_signature)
    # The resend is refused on the form (the first one went through), never stored twice.
    assert again.status == 200 and "You already have request #1" in again.json()["errors"][ids.USER_NAME_BLOCK]
    counts = db_counts(sb.services.engine)
    assert (counts["access_requests"], counts["approval_cards"]) == (1, 2)
    assert audit_count(sb.services.engine, "request.created") == 1
    assert len(posts_with(sb.standin, "received")) == 1
    assert len(posts_with(sb.standin, "IAM user request #1")) == 2  # one card per admin


def test_resent_deny_submission_denies_once(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    submit_request(sb, "UBOB")
    _, trigger = click(sb, "UADMIN2", ids.DENY, card(sb, "UADMIN2"))
    modal = sb.driver.view_opened_with(trigger)
    capture = Capture(sb, monkeypatch)
    assert sb.driver.submit("UADMIN2", modal, {ids.DENY_REASON_BLOCK: "Not now"}).text == ""
    sb.wait_idle()
    again = capture.resend(same_signature=False)
    assert again.status == 200 and "Already denied" in again.json()["errors"][ids.DENY_REASON_BLOCK]
    assert only_request(sb).status == "denied"
    assert audit_count(sb.services.engine, "request.denied") == 1
    assert len(posts_with(sb.standin, "was denied")) == 1


def test_resent_reveal_click_creates_one_key(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    submit_request(sb, "UBOB")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    dm = reveal_dm(sb, "UBOB")
    capture = Capture(sb, monkeypatch)
    sb.driver.click("UBOB", ids.REVEAL, message=dm)
    sb.wait_idle()
    again = capture.resend(same_signature=True)
    assert again.status == 200
    assert len(sb.services.gateway.list_access_keys("koding-ubob")) == 1
    assert len(posts_with(sb.standin, "Secret Access Key", method="views.update")) == 1
    assert audit_count(sb.services.engine, "reveal.succeeded") == 1
    assert "already revealed" in " ".join(ephemeral_texts(sb, "UBOB"))


def test_resent_retry_click_retries_once(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    fault = FaultInjector(sb.services.gateway._client, "CreateUser", "AccessDenied", None, level="call")
    try:
        submit_request(sb, "UBOB")
        approval = card(sb)
        click(sb, "UADMIN1", ids.APPROVE, approval)
    finally:
        fault.stop()
    assert only_request(sb).status == "failed"
    capture = Capture(sb, monkeypatch)
    sb.driver.click("UADMIN2", ids.RETRY, message=refreshed(sb, approval))
    sb.wait_idle()
    again = capture.resend(same_signature=False)
    assert again.status == 200
    assert only_request(sb).status == "provisioned"
    assert audit_count(sb.services.engine, "provisioning.retried") == 1
    assert audit_count(sb.services.engine, "provisioning.succeeded") == 1
    assert len(posts_with(sb.standin, "Reveal my access keys")) == 1
    assert "nothing to retry" in " ".join(ephemeral_texts(sb, "UADMIN2"))


def test_resent_slash_command_opens_one_modal(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    capture = Capture(sb, monkeypatch)
    response, _ = sb.driver.command("UCAROL", "request")
    sb.wait_idle()
    again = capture.resend(same_signature=True)
    assert response.status == 200 and again.status == 200
    opened = [c for c in sb.standin.calls_to("views.open") if not c.failed]
    assert len(opened) == 1  # the retry's trigger_id was already exchanged: Slack refuses a second modal
    assert sum(db_counts(sb.services.engine).values()) == 1  # alembic_version only: nothing stored
