"""Promise 2 — crash-safe with a real SIGKILL.

`koding-iam serve` runs as a child process against a moto server. A small proxy in front of moto (or of the
Slack stand-in) holds one chosen call, so the SIGKILL lands exactly there: before a provisioning step reaches
AWS, after AWS did a step but before the app heard back, after CreateAccessKey made a key nobody has seen, and
after a request was stored but before any admin saw it. A second `koding-iam serve` (lease 1 s, scheduler every
1 s) must then finish the work or cleanly undo it: no duplicate IAM user, no lost request, no orphan key.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from reliability_support import (
    ALL_STEPS,
    audit_count,
    hanging_proxy,
    iam_action,
    koding_users,
    messages_with,
    posts_with,
    record_figure,
    slack_call,
    wait_for,
)
from sqlalchemy import func, select

from bot import db
from bot.devtools.slack_standin import SlackStandIn
from bot.slack import ids
from models import AccessRequest, ApprovalCard, KeyGrant, ProvisioningStep
from tests.e2e.served import Served, free_port, moto_server, serve, serve_env

pytestmark = pytest.mark.slow


class Db:
    """Reads and writes the database the served processes share (SQLite file, WAL)."""

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)

    def request(self) -> AccessRequest:
        with db.session_scope(db.make_session_factory(self.engine)) as session:
            found = session.scalars(select(AccessRequest)).all()
            assert len(found) == 1, [(r.id, r.status) for r in found]
            return found[0]

    def grant(self) -> KeyGrant:
        with db.session_scope(db.make_session_factory(self.engine)) as session:
            return session.scalars(select(KeyGrant)).one()

    def steps(self) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.scalars(select(ProvisioningStep.step)))

    def cards(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(ApprovalCard)) or 0)

    def run(self, statement: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(statement)


def iam_client(endpoint: str) -> Any:
    return boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint)


def sigkill(app: Served) -> None:
    os.kill(app.process.pid, signal.SIGKILL)
    assert app.process.wait(10) == -signal.SIGKILL


def request_form(app: Served, user: str = "UALICE", handle: str = "alice") -> None:
    response, trigger = app.driver.command(user, "request", user_name=handle)
    assert response.status == 200, response.text
    submitted = app.driver.submit(user, app.driver.view_opened_with(trigger), {ids.PURPOSE_BLOCK: "Crash test"})
    assert (submitted.status, submitted.text) == (200, "")


def approve(app: Served, slack: SlackStandIn) -> None:
    card = wait_for(lambda: messages_with(slack, "UADMIN1", "IAM user request #1"), what="approval card")[-1]
    response, _ = app.driver.click("UADMIN1", ids.APPROVE, message=card)
    assert response.status == 200


def reveal_dms(slack: SlackStandIn, user: str = "UALICE") -> list[dict[str, Any]]:
    return messages_with(slack, user, "Reveal my access keys")


def reveal(app: Served, slack: SlackStandIn, dm: dict[str, Any]) -> None:
    before = len(posts_with(slack, "Secret Access Key", method="views.update"))
    response, _ = app.driver.click("UALICE", ids.REVEAL, message=dm)
    assert response.status == 200
    wait_for(lambda: len(posts_with(slack, "Secret Access Key", method="views.update")) == before + 1, what="key")


def envs(
    url: str, slack_url: str, slack: SlackStandIn, aws: str, **extra: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(first process, restarted process). The first never runs its resume job after start-up, so the kill
    lands on exactly one run in flight; the restarted one has a 1 s lease and resumes every second."""
    first = serve_env(
        database_url=url,
        slack=slack,
        aws_endpoint=aws,
        port=free_port(),
        KODING_IAM_LEASE_SECONDS="1",
        KODING_IAM_RESUME_INTERVAL_SECONDS="3600",
        SLACK_API_URL=slack_url,
        **extra,
    )
    restarted = {**first, "PORT": str(free_port()), "KODING_IAM_RESUME_INTERVAL_SECONDS": "1"}
    return first, restarted


def assert_provisioned_once(store: Db, slack: SlackStandIn, iam: Any, url: str) -> None:
    request = store.request()
    assert (request.status, request.lease_owner) == ("provisioned", None)
    assert store.steps() == ALL_STEPS
    assert koding_users(iam) == ["koding-alice"]  # no duplicate, no stray user
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="koding-alice")["Groups"]] == ["Developers"]
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName="koding-alice")["Tags"]}
    assert tags == {"koding-iam:slack-user-id": "UALICE", "koding-iam:request-id": str(request.id)}
    assert audit_count(store.engine, "provisioning.succeeded") == 1
    assert audit_count(store.engine, "request.approved") == 1
    assert len(reveal_dms(slack)) == 1
    assert len(posts_with(slack, "Reveal my access keys")) == 1  # posted once, not once per process
    for admin in ("UADMIN1", "UADMIN2"):
        card = messages_with(slack, admin, "IAM user request #1")[-1]
        text = json.dumps(card["blocks"], ensure_ascii=False)
        assert "Done." in text and "✓ AddUserToGroup koding-alice to Developers" in text


@pytest.mark.parametrize(
    ("hang", "operation", "reached_aws"),
    [
        ("before", "AddUserToGroup", False),  # killed while the step is in flight, before AWS saw it
        ("after", "CreateUser", True),  # AWS created the user; the app died before recording the step
    ],
)
def test_sigkill_mid_provisioning_is_finished_by_the_restarted_process(
    tmp_path: Path, hang: str, operation: str, reached_aws: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'koding-iam.db'}"
    db.upgrade(url)
    store = Db(url)
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        iam = iam_client(aws)
        first, restarted = envs(url, slack.base_url, slack, proxy.url)
        (proxy.hang_before if hang == "before" else proxy.hang_after).add(operation)
        with serve(first, slack, str(tmp_path / "first.log")) as app:
            request_form(app)
            approve(app, slack)
            proxy.wait_hung(operation)
            sigkill(app)

        # The kill landed mid-run: approved, leased by the dead process, the held step not recorded.
        killed = store.request()
        assert killed.status == "provisioning" and killed.lease_owner is not None
        # Steps are recorded per stage: the groups, policies and user together once the user exists.
        held_step = "user" if operation == "CreateUser" else "membership:Developers"
        assert held_step not in store.steps()
        assert store.steps() == (set() if held_step == "user" else ALL_STEPS - {held_step})
        # CreateUser either reached AWS (held after forwarding) or ran before the held AddUserToGroup.
        assert koding_users(iam) == ["koding-alice"]
        # With CreateUser held after forwarding, AWS has the user but the database does not know it yet.
        assert ("user" in store.steps()) is not reached_aws
        assert iam.list_groups_for_user(UserName="koding-alice")["Groups"] == []
        assert not reveal_dms(slack)

        proxy.pass_everything()
        started = time.monotonic()
        with serve(restarted, slack, str(tmp_path / "restarted.log")) as app:
            wait_for(lambda: store.request().status == "provisioned", what="provisioned after restart")
            wait_for(lambda: reveal_dms(slack), what="reveal DM after restart")
            recovered_in = time.monotonic() - started
            app.wait_for_ticks("resume-interrupted", more=2)  # the resume job looked again: nothing done twice
            assert_provisioned_once(store, slack, iam, url)
            assert audit_count(store.engine, "provisioning.started") == 2  # the killed run and the resumed one
            reveal(app, slack, reveal_dms(slack)[-1])
            assert len(iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]) == 1
            assert "Traceback" not in app.output()
        record_figure(
            f"sigkill-{hang}-{operation}",
            restart_to_provisioned_seconds=round(recovered_in, 2),
            iam_users=len(koding_users(iam)),
            operation_calls_seen=proxy.count(operation),  # the held call and the resumed one
        )


def test_sigkill_after_create_access_key_leaves_no_orphan_key_once_recovery_ran(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'koding-iam.db'}"
    db.upgrade(url)
    store = Db(url)
    with SlackStandIn() as slack, moto_server() as aws, hanging_proxy(aws, iam_action) as proxy:
        iam = iam_client(aws)
        first, restarted = envs(url, slack.base_url, slack, proxy.url)
        with serve(first, slack, str(tmp_path / "first.log")) as app:
            request_form(app)
            approve(app, slack)
            dm = wait_for(lambda: reveal_dms(slack), what="reveal DM")[-1]
            proxy.hang_after.add("CreateAccessKey")
            response, _ = app.driver.click("UALICE", ids.REVEAL, message=dm)
            assert response.status == 200
            proxy.wait_hung("CreateAccessKey")
            sigkill(app)

        # AWS made a key; the app never learned its id, and nobody saw its secret.
        orphan = iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]
        assert len(orphan) == 1
        grant = store.grant()
        assert (grant.status, grant.access_key_id) == ("revealing", None)
        assert not posts_with(slack, "Secret Access Key", method="views.update")

        proxy.pass_everything()
        with serve(restarted, slack, str(tmp_path / "restarted.log")) as app:
            # The claim's lease (1 s here) lapsed with the killed process: recovery acts on that, not on age.
            # It never learned which key the claim made, so it deletes nothing (the key could be someone
            # else's) and tells the admins which key appeared; the grant is re-armed for the requester.
            started = time.monotonic()
            wait_for(lambda: store.grant().status == "available", what="grant re-armed by recovery")
            rearmed_in = time.monotonic() - started
            assert store.grant().access_key_id is None
            assert audit_count(store.engine, "reveal.recovered.rearmed") == 1
            orphan_id = orphan[0]["AccessKeyId"]
            # One notice per admin, posted one after the other: wait for both before comparing.
            notice = wait_for(
                lambda: (
                    found
                    if len(found := [c for c in slack.calls_to("chat.postMessage") if orphan_id in json.dumps(c.body)])
                    >= 2
                    else None
                ),
                what="the admin notice naming the unrecorded key, in both admins' DMs",
            )
            assert sorted(c.body["channel"] for c in notice) == ["UADMIN1", "UADMIN2"]
            assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]] == [
                orphan_id
            ]
            current = slack.message(dm["channel"], dm["ts"])
            assert current is not None and "Reveal my access keys" in json.dumps(current["blocks"])

            # The requester presses Reveal again: the new key is shown once; the unrecorded one is the admins'.
            reveal(app, slack, current)
            keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName="koding-alice")["AccessKeyMetadata"]}
            new_keys = keys - {orphan_id}
            assert len(new_keys) == 1
            shown = posts_with(slack, "Secret Access Key", method="views.update")
            assert len(shown) == 1 and next(iter(new_keys)) in json.dumps(shown[0].body)
            # The grant is marked revealed just after the modal shows the key: wait for that write.
            wait_for(lambda: store.grant().status == "revealed", what="the grant marked revealed")
        record_figure(
            "sigkill-after-CreateAccessKey",
            rearmed_after_lease_lapsed_seconds=round(rearmed_in, 2),
            unrecorded_keys_reported=1,
            keys_after_second_reveal=len(keys),
        )


def test_sigkill_before_any_admin_saw_the_request_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'koding-iam.db'}"
    db.upgrade(url)
    store = Db(url)
    with SlackStandIn() as slack, moto_server() as aws:
        upstream = slack.base_url.removesuffix("/api/")
        with hanging_proxy(upstream, slack_call) as slack_proxy:
            first, restarted = envs(url, slack_proxy.url + "/api/", slack, aws)
            slack_proxy.hang_before.add("chat.postMessage:UADMIN1")  # the first approval card
            with serve(first, slack, str(tmp_path / "first.log")) as app:
                request_form(app)
                slack_proxy.wait_hung("chat.postMessage:UADMIN1")
                sigkill(app)

            request = store.request()
            assert (request.status, store.cards()) == ("pending", 0)
            assert not messages_with(slack, "UADMIN1", "IAM user request #") and not messages_with(
                slack, "UADMIN2", "IAM user request #"
            )

            slack_proxy.pass_everything()
            with serve(restarted, slack, str(tmp_path / "restarted.log")) as app:
                # The killed process owned the announcement until its (1 s) lease ran out; then this one takes it.
                started = time.monotonic()
                wait_for(lambda: store.cards() == 2, what="approval cards posted after restart")
                reposted_in = time.monotonic() - started
                app.wait_for_looks()  # the outbox looked twice more: a second set of cards would be posted by now
                assert store.cards() == 2
                for admin in ("UADMIN1", "UADMIN2"):
                    assert len(messages_with(slack, admin, "IAM user request #1")) == 1
                assert len(messages_with(slack, "UALICE", "received")) == 1
                approve(app, slack)
                wait_for(lambda: store.request().status == "provisioned", what="provisioned")
                wait_for(lambda: reveal_dms(slack), what="reveal DM")
                assert koding_users(iam_client(aws)) == ["koding-alice"]
        record_figure(
            "sigkill-before-cards", cards_after_recovery=2, repost_after_restart_seconds=round(reposted_in, 2)
        )
