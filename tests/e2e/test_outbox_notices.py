"""Notices a state change causes go through the outbox: marked in that change's transaction, drawn from the database
at their turn (dropped when the state moved on), retried after Slack refused them, each delivered once. The autouse
guard in tests/conftest.py fails any of these tests that calls Slack inside an open transaction."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
from sqlalchemy import select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import requesting
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import OutboxEntry
from tests.e2e.flow_steps import card, click, only_request, submit_request

FAILED_DM = "failed on koding-iam's side"


def texts_to(sb: Sandbox, user: str, containing: str) -> list[str]:
    channel = sb.standin.dm_channel(user)
    found = [json.dumps(m) for m in sb.standin.messages() if m["channel"] == channel]
    return [text for text in found if containing in text]


def notice_row(sb: Sandbox, subject: str) -> OutboxEntry:
    with session_scope(sb.services.session_factory) as session:
        return session.scalars(
            select(OutboxEntry).where(OutboxEntry.kind == outbox.NOTICE, OutboxEntry.subject == subject)
        ).one()


def failing_request(sb: Sandbox) -> dict:
    """A request whose provisioning fails (a group made by hand outside koding-iam's path); its card."""
    boto3.client("iam", region_name="us-east-1").create_group(GroupName="Developers", Path="/")
    submit_request(sb, "UALICE")
    return card(sb)


def test_failure_dm_that_slack_refused_is_delivered_later_once(sandbox: Sandbox) -> None:
    sb = sandbox
    approval = failing_request(sb)
    sb.standin.fail_next("chat.postMessage", error="fatal_error")  # the failure DM (the "approved" one is held)
    click(sb, "UADMIN1", ids.APPROVE, approval)
    request = only_request(sb)
    assert request.status == "failed"
    assert texts_to(sb, "UALICE", FAILED_DM) == []
    row = notice_row(sb, f"failed:{request.id}")
    assert row.delivered_version < row.version and row.attempts == 1 and row.last_error == "fatal_error"

    later = sb.services.clock() + timedelta(minutes=3)  # past the outbox's back-off
    for _ in range(2):
        OutboxSender(sb.make_services(sb.settings, clock=lambda: later), pacer=Pacer({})).wait_idle()
    assert len(texts_to(sb, "UALICE", FAILED_DM)) == 1
    assert texts_to(sb, "UALICE", "was approved by") == []  # the held "approved" notice was dropped


def test_failure_dm_is_dropped_when_a_retry_provisioned_the_request_before_its_turn(sandbox: Sandbox) -> None:
    sb = sandbox
    approval = failing_request(sb)
    sb.outbox.pause()
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert only_request(sb).status == "failed"
    boto3.client("iam", region_name="us-east-1").delete_group(GroupName="Developers")
    requesting.retry(sb.services, request_id=only_request(sb).id, admin_id="UADMIN2", channel=None)  # Retry
    sb.wait_idle()
    assert only_request(sb).status == "provisioned"
    assert texts_to(sb, "UALICE", FAILED_DM) == []  # marked, not sent inline

    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    assert texts_to(sb, "UALICE", FAILED_DM) == []  # the state moved on: dropped
    assert len(texts_to(sb, "UALICE", "Reveal my access keys")) == 1
    row = notice_row(sb, f"failed:{only_request(sb).id}")
    assert row.delivered_version == row.version
