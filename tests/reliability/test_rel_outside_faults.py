"""Promise 3 — faults outside the app.

Slack: 429 with Retry-After, 500, 503 and dropped connections on every Web API method the flow uses (two faults
in a row on each); the WebClient's retry handlers ride them out and the flow completes with nothing posted twice.

AWS: Throttling, ServiceFailure, ConcurrentModification and eventual-consistency NoSuchEntity for the first N
calls of an IAM operation; provisioning (and the reveal) completes. When the fault persists the request is
'failed', the requester and the admins are told in plain words, and an admin's Retry finishes it once the fault
has cleared.

AWS faults are injected on the gateway's own botocore client in two ways (see reliability_support.FaultInjector):
`send` answers at the HTTP layer, so botocore's standard retry policy (Throttling, 5xx) applies as it would to a
real answer; `call` short-circuits the whole call like tests/e2e/test_resilience.py, so only the gateway's own
retries (ConcurrentModification, NoSuchEntity on a brand-new entity) apply.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from reliability_support import FaultInjector, audit_count, koding_users, posts_with, record_figure

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import actions_in, card, click, only_request, refreshed, reveal_dm, submit_request

FLOW_METHODS = ("views.open", "chat.postMessage", "chat.update", "views.update")
SLACK_FAULTS = {
    "429-retry-after-1s": ({"retry_after": 1}, 429),
    "500": ({"status": 500}, 500),
    "503": ({"status": 503}, 503),
    "dropped-connection": ({"drop_connection": True}, 0),
}


def whole_flow(sb: Sandbox) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Request, approve, reveal; returns (card, reveal DM, trigger of the reveal modal)."""
    response = submit_request(sb, "UALICE")
    assert (response.status, response.text) == (200, "")
    approval = card(sb)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    dm = reveal_dm(sb, "UALICE")
    _, trigger = click(sb, "UALICE", ids.REVEAL, dm)
    return approval, dm, trigger


def assert_completed_once(sb: Sandbox, approval: dict[str, Any], trigger: str) -> None:
    assert only_request(sb).status == "provisioned"
    keys = sb.services.gateway.list_access_keys("koding-ualice")
    assert len(keys) == 1
    modal = sb.driver.view_opened_with(trigger)
    assert keys[0].access_key_id in json.dumps(modal) and "Secret Access Key" in json.dumps(modal)
    for admin in ("UADMIN1", "UADMIN2"):
        current = refreshed(sb, card(sb, admin))
        assert actions_in(current) == [] and "Done." in json.dumps(current["blocks"])
    assert len(posts_with(sb.standin, "Reveal my access keys")) == 1
    assert len(posts_with(sb.standin, "Secret Access Key", method="views.update")) == 1
    # received DM + two cards + reveal DM (naming the approver; the held "approved" DM had nothing left to say):
    # four posts, none duplicated by a retry
    assert len([c for c in sb.standin.calls_to("chat.postMessage") if not c.failed]) == 4
    assert audit_count(sb.services.engine, "reveal.succeeded") == 1


# Two flows cover every (method, fault) pair: each flow's first call of a method meets two different faults in a
# row (its first try and its first retry both fail), so the retry handlers also have to compose. slack_sdk counts
# attempts across handlers; the budgets (429: 3 retries, 5xx: 2, connection: 2) all allow a second retry.
SLACK_SCHEDULES = {
    "flow-a": {
        "views.open": ("429-retry-after-1s", "dropped-connection"),
        "chat.postMessage": ("500", "503"),
        "chat.update": ("dropped-connection", "500"),
        "views.update": ("503", "429-retry-after-1s"),
    },
    "flow-b": {
        "views.open": ("500", "503"),
        "chat.postMessage": ("dropped-connection", "429-retry-after-1s"),
        "chat.update": ("503", "429-retry-after-1s"),
        "views.update": ("dropped-connection", "500"),
    },
}


def test_the_two_schedules_cover_every_method_and_fault() -> None:
    covered = {(m, f) for schedule in SLACK_SCHEDULES.values() for m, faults in schedule.items() for f in faults}
    assert covered == {(m, f) for m in FLOW_METHODS for f in SLACK_FAULTS}


@pytest.mark.slow  # Retry-After and the retry handlers' backoff make each flow take 5-8 s
@pytest.mark.parametrize("schedule", list(SLACK_SCHEDULES))
def test_slack_faults_on_every_flow_method_are_retried(sqlite_sandbox: Sandbox, schedule: str) -> None:
    sb = sqlite_sandbox
    for method, faults in SLACK_SCHEDULES[schedule].items():
        for fault in faults:
            sb.standin.fail_next(method, **SLACK_FAULTS[fault][0])
    started = time.monotonic()
    approval, _, trigger = whole_flow(sb)
    elapsed = time.monotonic() - started

    for method, faults in SLACK_SCHEDULES[schedule].items():
        statuses = [c.status for c in sb.standin.calls_to(method)]
        # the first call of the method failed twice, then its second retry went through
        assert statuses[:3] == [SLACK_FAULTS[f][1] for f in faults] + [200], (method, statuses)
        assert [c for c in sb.standin.calls_to(method)[3:] if c.failed] == []
    assert_completed_once(sb, approval, trigger)
    record_figure(f"slack-faults-{schedule}", injected=8, flow_seconds=round(elapsed, 2))


TRANSIENT = [
    # (code, operation, first N calls fail, level)
    ("Throttling", "CreateUser", 1, "send"),  # botocore's throttling backoff is up to 1 s, then 2 s: keep it short
    ("ServiceFailure", "CreateGroup", 3, "send"),
    ("ConcurrentModification", "AttachGroupPolicy", 3, "call"),
    ("ConcurrentModification", "AddUserToGroup", 2, "send"),
    ("NoSuchEntity", "AddUserToGroup", 3, "call"),  # the brand-new user is not visible yet
    ("NoSuchEntity", "CreateAccessKey", 2, "call"),  # during the reveal, same reason
]


# How often the whole flow calls each operation when nothing fails (the default plan attaches two policies).
CALLS_IN_FLOW = {"CreateGroup": 1, "AttachGroupPolicy": 2, "CreateUser": 1, "AddUserToGroup": 1, "CreateAccessKey": 1}


@pytest.mark.parametrize(("code", "operation", "times", "level"), TRANSIENT)
def test_transient_aws_faults_are_ridden_out(
    sqlite_sandbox: Sandbox, code: str, operation: str, times: int, level: str
) -> None:
    sb = sqlite_sandbox
    fault = FaultInjector(sb.services.gateway._client, operation, code, times, level=level)
    try:
        started = time.monotonic()
        approval, _, trigger = whole_flow(sb)
        elapsed = time.monotonic() - started
    finally:
        fault.stop()
    assert (fault.injected, fault.attempts) == (times, times + CALLS_IN_FLOW[operation])
    assert audit_count(sb.services.engine, "provisioning.failed") == 0
    assert_completed_once(sb, approval, trigger)
    record_figure(
        f"aws-{code}-{operation}", failed_calls=times, attempts=fault.attempts, flow_seconds=round(elapsed, 2)
    )


PERSISTENT = [
    # (code, operation, level, attempts made before giving up, reason shown)
    (
        "ServiceFailure",
        "AddUserToGroup",
        "send",
        6,
        "AWS kept failing AddUserToGroup (ServiceFailure) after several tries",
    ),
    ("Throttling", "CreateUser", "call", 1, "AWS kept failing CreateUser (Throttling) after several tries"),
    ("ConcurrentModification", "AttachGroupPolicy", "call", 6, "AWS kept failing AttachGroupPolicy"),
    ("NoSuchEntity", "AddUserToGroup", "call", 6, "AWS could not find something AddUserToGroup needs"),
]


@pytest.mark.parametrize(("code", "operation", "level", "attempts", "reason"), PERSISTENT)
def test_persistent_aws_fault_fails_plainly_and_an_admin_retry_finishes_it(
    sqlite_sandbox: Sandbox, code: str, operation: str, level: str, attempts: int, reason: str
) -> None:
    sb = sqlite_sandbox
    fault = FaultInjector(sb.services.gateway._client, operation, code, None, level=level)
    try:
        submit_request(sb, "UALICE")
        approval = card(sb)
        click(sb, "UADMIN1", ids.APPROVE, approval)
    finally:
        fault.stop()
    # botocore retries 5xx and Throttling itself (standard mode; `max_attempts: 5` counts retries, so six calls);
    # the gateway retries ConcurrentModification and NoSuchEntity six times; a Throttling that outlived botocore's
    # retries is not retried again.
    assert fault.attempts == attempts

    request = only_request(sb)
    assert request.status == "failed" and reason in (request.failure_reason or "")
    assert audit_count(sb.services.engine, "provisioning.failed") == 1
    told = sb.driver.latest_message("UALICE", containing="failed")
    # The requester hears that the admins are on it; the reason and its fix are for the admins' card alone.
    assert reason not in json.dumps(told["blocks"]) and "The admins have been told" in json.dumps(told["blocks"])
    assert "docs/iam-policy.json" not in json.dumps(told["blocks"])
    for admin in ("UADMIN1", "UADMIN2"):
        failed_card = refreshed(sb, card(sb, admin))
        assert actions_in(failed_card) == [ids.RETRY]
        assert "Provisioning failed" in json.dumps(failed_card["blocks"]) and reason in json.dumps(
            failed_card["blocks"]
        )
    assert not posts_with(sb.standin, "Reveal my access keys")
    users_before = koding_users_in(sb)

    click(sb, "UADMIN2", ids.RETRY, refreshed(sb, card(sb, "UADMIN2")))  # the fault has cleared
    assert only_request(sb).status == "provisioned"
    assert audit_count(sb.services.engine, "provisioning.retried") == 1
    assert sb.services.gateway.list_groups_for_user("koding-ualice") == ["Developers"]
    assert koding_users_in(sb) == ["koding-ualice"] and set(users_before) <= {"koding-ualice"}
    dm = reveal_dm(sb, "UALICE")
    assert actions_in(dm) == [ids.REVEAL]
    _, trigger = click(sb, "UALICE", ids.REVEAL, dm)
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 1
    assert "Secret Access Key" in json.dumps(sb.driver.view_opened_with(trigger))


def koding_users_in(sb: Sandbox) -> list[str]:
    return koding_users(sb.services.gateway._client)


CONNECTION_LOST = (
    "bot/flows/requesting.py reveal_keys() handles only SlackApiError from the key modal's views.update. When the "
    "connection drops on every retry (http.client.RemoteDisconnected / URLError), the key is correctly deleted and the "
    "grant re-armed, but the modal is left on 'Generating your access key…' and the requester gets bot/app.py's generic"
    " 'Something went wrong … nothing was lost' DM instead of 'Slack could not show your key, so it was deleted again …"
    " press Reveal once more'."
)


@pytest.mark.slow  # the WebClient's retries run out first
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500}, id="server-error"),
        pytest.param(
            {"drop_connection": True},
            id="dropped-connection",
            marks=(),
        ),
    ],
)
def test_key_modal_unreachable_beyond_retries_deletes_the_key_and_says_so(
    sqlite_sandbox: Sandbox, fault: dict[str, Any]
) -> None:
    sb = sqlite_sandbox
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    sb.standin.fail_next("views.update", times=3, **fault)  # the first try and both retries
    _, trigger = click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
    assert sb.services.gateway.list_access_keys("koding-ualice") == []  # nobody saw it, so it is gone
    assert audit_count(sb.services.engine, "reveal.undone") == 1
    assert actions_in(refreshed(sb, reveal_dm(sb, "UALICE"))) == [ids.REVEAL]  # the button still works
    modal = json.dumps(sb.driver.view_opened_with(trigger), ensure_ascii=False)
    assert "could not show your key, so it was deleted again" in modal
