"""One lifecycle per IAM user (docs/LIFECYCLE.md): each test is one way revoke, reveal, rotation and recovery
used to interleave, replayed against the real app on SQLite and PostgreSQL.

Where a row is a race, a second app instance plays the other process: its own engine, its own IAM client and
its own lease-owner name, on the same database and the same IAM account. Slow or failing outside calls are
made at the edges (a botocore hook, a held Slack call, a refused SQL statement), never inside the rules.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from reliability_support import FaultInjector, record_figure, wait_for
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import recovery
from bot.flows import rotation as rotation_flows
from bot.flows.offboarding import resume_revokes
from bot.services import Services
from bot.slack import ids
from models import AccessKey, KeyGrant, UserLease
from tests.e2e.flow_steps import click, provision_for, refreshed, requests, reveal_first_key


class Crash(BaseException):
    """Stands in for the process dying mid-call: not an Exception, so nothing in the app catches it."""


# Helpers ---------------------------------------------------------------------------------------------------
def revoke(sb: Sandbox, name: str) -> None:
    _, trigger = sb.driver.command("UADMIN1", f"revoke {name}")
    sb.wait_idle()
    modal = sb.driver.view_opened_with(trigger)
    assert sb.driver.submit("UADMIN1", modal, {}).text == ""
    sb.wait_idle()


def confirm_revoke_only(sb: Sandbox, name: str) -> None:
    """The admin confirms; the run itself is left to whoever holds the lease next."""
    _, trigger = sb.driver.command("UADMIN1", f"revoke {name}")
    opened = sb.driver.view_opened_with(trigger)
    modal = wait_for(
        lambda: (v := sb.standin.view(opened["id"])) and "request_id" in (v.get("private_metadata") or "") and v,
        what="the revoke confirmation",
    )
    assert sb.driver.submit("UADMIN1", modal, {}).text == ""


def press_reveal_buttons(sb: Sandbox, user: str, message: dict[str, Any], *, clicks: int = 3) -> None:
    """Press whatever Reveal or fresh-window button the DM shows, as a person would, a few times."""
    current = message
    for _ in range(clicks):
        actions = [
            el["action_id"]
            for block in current.get("blocks", [])
            if block.get("type") == "actions"
            for el in block.get("elements", [])
        ]
        chosen = next((a for a in (ids.RENEW_REVEAL, ids.REVEAL) if a in actions), None)
        if chosen is None:
            return
        sb.driver.click(user, chosen, message=current)
        sb.wait_idle()
        current = refreshed(sb, current)


def secrets_shown(sb: Sandbox) -> list[str]:
    """The secret of every key a reveal modal showed, read from the views.update bodies Slack received."""
    shown = []
    for call in sb.standin.calls_to("views.update"):
        for block in (call.body.get("view") or {}).get("blocks", []):
            text = (block.get("text") or {}).get("text", "")
            if text.startswith("*Secret Access Key*"):
                shown.append(text.split("`")[1])
    return shown


def key_ids_shown(sb: Sandbox) -> list[str]:
    shown = []
    for call in sb.standin.calls_to("views.update"):
        for block in (call.body.get("view") or {}).get("blocks", []):
            text = (block.get("text") or {}).get("text", "")
            if text.startswith("*Access Key ID*"):
                shown.append(text.split("`")[1])
    return shown


def iam_keys(sb: Sandbox, user: str) -> dict[str, str]:
    try:
        return {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys(user)}
    except Exception:
        return {}


def key_rows(sb: Sandbox, user: str) -> dict[str, str]:
    with session_scope(sb.services.session_factory) as session:
        rows = session.scalars(select(AccessKey).where(AccessKey.iam_user_name == user))
        return {row.access_key_id: row.status for row in rows}


def second_process(sb: Sandbox, **overrides: Any) -> Services:
    """Another app instance on the same database and IAM account: its own engine, client and owner name."""
    return sb.make_services(sb.settings, **overrides)


class HeldCall:
    """Holds one call at the edge until released: `entered` is set when the call is waiting."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def wait(self) -> None:
        self.entered.set()
        assert self.release.wait(60), "held call never released"


@contextmanager
def held_modal_update(services: Services) -> Iterator[HeldCall]:
    """views.update of this process stalls (Slack answering 429 for minutes) until released."""
    held = HeldCall()
    real = services.notifier.update_modal

    def slow(view_id: str, view: dict[str, Any]) -> Any:
        if "Secret Access Key" in json.dumps(view):
            held.wait()
        return real(view_id, view)

    services.notifier.update_modal = slow  # type: ignore[method-assign]
    try:
        yield held
    finally:
        held.release.set()
        services.notifier.update_modal = real  # type: ignore[method-assign]


def shifted_clock(offset: list[timedelta]) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset[0]


# Row 1 -----------------------------------------------------------------------------------------------------
def test_row1_a_revoked_members_old_reveal_never_reaches_the_next_owner_of_the_name(sandbox: Sandbox) -> None:
    sb = sandbox
    _, alice_dm = provision_for(sb, "UALICE", name="koding-shared")
    revoke(sb, "koding-shared")
    assert requests(sb)[0].status == "revoked"
    provision_for(sb, "UBOB", name="koding-shared")  # the freed name goes to Bob
    assert requests(sb)[1].status == "provisioned"

    press_reveal_buttons(sb, "UALICE", alice_dm)  # the button as it was before the revoke
    press_reveal_buttons(sb, "UALICE", refreshed(sb, alice_dm))  # and whatever the DM shows now

    assert iam_keys(sb, "koding-shared") == {}  # nothing was made on Bob's user
    assert secrets_shown(sb) == []
    told = json.dumps(sb.standin.ephemerals("UALICE")) + json.dumps(
        sb.standin.messages(sb.standin.dm_channel("UALICE"))
    )
    assert "has ended" in told or "no longer works" in told
    with session_scope(sb.services.session_factory) as session:
        alice_grant = session.scalars(select(KeyGrant).where(KeyGrant.requester_id == "UALICE")).one()
        assert alice_grant.status == "ended"
    record_figure("lifecycle-row1", keys_on_next_owner=0, secrets_shown=0)


# Row 2 -----------------------------------------------------------------------------------------------------
def test_row2_a_stopped_revoke_cannot_be_raced_by_a_reveal_and_resumes_to_a_clean_delete(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    fault = FaultInjector(sb.services.gateway._client, "DeleteLoginProfile", "AccessDenied", None, level="call")
    try:
        revoke(sb, "koding-ualice")
        request = requests(sb)[0]
        assert request.status == "revoking" and request.failure_reason
        press_reveal_buttons(sb, "UALICE", dm)  # the member tries while the revoke is stopped
        assert secrets_shown(sb) == []
        assert iam_keys(sb, "koding-ualice") == {}
    finally:
        fault.stop()
    resume_revokes(sb.services)
    sb.wait_idle()
    assert requests(sb)[0].status == "revoked"
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert {s for s in key_rows(sb, "koding-ualice").values()} <= {"deleted"}
    record_figure("lifecycle-row2", keys_made_during_stopped_revoke=0)


# Row 3 -----------------------------------------------------------------------------------------------------
def test_row3_a_reveal_racing_a_revoke_leaves_no_key_and_no_live_row(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    other = second_process(sb)
    with held_modal_update(sb.services) as held:
        sb.driver.click("UALICE", ids.REVEAL, message=dm)
        assert held.entered.wait(20), "the reveal never reached Slack"
        # Meanwhile, in the other process, an admin confirms the revoke and it runs.
        confirm_revoke_only(sb, "koding-ualice")
        resume_revokes(other)
        held.release.set()
        sb.wait_idle()
    for _ in range(3):  # whoever holds the lease next finishes the revoke
        resume_revokes(other)
        sb.wait_idle()
    assert requests(sb)[0].status == "revoked"
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert set(key_rows(sb, "koding-ualice").values()) <= {"deleted"}
    record_figure("lifecycle-row3", live_rows_for_deleted_user=0)


def test_a_click_that_waits_out_another_reveal_hears_about_its_keys_not_try_again(sandbox: Sandbox) -> None:
    """A reveal held up by Slack keeps the user's lease past the other clicks' wait: they are told their keys are
    being shown in another window, as when the claim itself loses, never "something else is changing"."""
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    with held_modal_update(sb.services) as held:
        sb.driver.click("UALICE", ids.REVEAL, message=dm)
        assert held.entered.wait(20), "the reveal never reached Slack"
        sb.driver.click("UALICE", ids.REVEAL, message=dm)
        told = wait_for(lambda: sb.standin.ephemerals("UALICE"), what="the second click told")
        held.release.set()
        sb.wait_idle()
    assert [e["text"] for e in told] == [
        "Your keys are being generated in another window; they are shown only once."
    ], told
    assert len(iam_keys(sb, "koding-ualice")) == 1


# Row 4 -----------------------------------------------------------------------------------------------------
def test_row4_a_slow_slack_does_not_make_recovery_delete_the_key_being_shown(database_url: str) -> None:
    offset = [timedelta(0)]
    clock = shifted_clock(offset)
    with Sandbox(database_url, koding_iam_lease_seconds=3) as sb:
        sb.services.clock = clock
        _, dm = provision_for(sb, "UALICE")
        other = second_process(sb, clock=clock)
        with held_modal_update(sb.services) as held:
            sb.driver.click("UALICE", ids.REVEAL, message=dm)
            assert held.entered.wait(20)
            offset[0] = timedelta(minutes=6)  # Slack keeps answering 429 for six minutes
            # The holder is alive: its heartbeat moves the lease past the new "now".
            wait_for(lambda: lease_until(sb) > clock(), what="a heartbeat after the clock moved")
            recovery.resume_interrupted(other)  # recovery in the other process
            made = list(iam_keys(sb, "koding-ualice"))
            assert len(made) == 1, "recovery deleted the key being shown"
            held.release.set()
            sb.wait_idle()
        assert iam_keys(sb, "koding-ualice") == {made[0]: "Active"}
        assert key_rows(sb, "koding-ualice") == {made[0]: "active"}
        assert key_ids_shown(sb) == made
        with session_scope(sb.services.session_factory) as session:
            grant = session.scalars(select(KeyGrant)).one()
            assert (grant.status, grant.access_key_id) == ("revealed", made[0])
    record_figure("lifecycle-row4", stalled_minutes=6, keys_deleted_by_recovery=0)


def lease_until(sb: Sandbox) -> datetime:
    with session_scope(sb.services.session_factory) as session:
        until = session.scalars(select(UserLease.until).where(UserLease.name_key == "koding-ualice")).first()
    return until or datetime.min.replace(tzinfo=UTC)


# Row 5 -----------------------------------------------------------------------------------------------------
@contextmanager
def refused_statements(services: Services, needle: str) -> Iterator[list[int]]:
    """The database refuses every statement containing `needle` (a full disk, a dropped connection)."""
    refused = [0]

    def refuse(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if needle in statement:
            refused[0] += 1
            raise OperationalError(statement[:40], {}, Exception("database refused the write"))

    event.listen(services.engine, "before_cursor_execute", refuse)
    try:
        yield refused
    finally:
        event.remove(services.engine, "before_cursor_execute", refuse)


def test_row5_a_refused_final_write_keeps_the_key_the_member_saw(database_url: str) -> None:
    with Sandbox(database_url) as sb:
        _, dm = provision_for(sb, "UALICE")
        with refused_statements(sb.services, "INSERT INTO access_keys") as refused:
            click(sb, "UALICE", ids.REVEAL, dm)
        assert refused[0] >= 1
        made = list(iam_keys(sb, "koding-ualice"))
        assert len(made) == 1
        # The modal still shows the key (nothing replaced it with a false "deleted again").
        last = sb.standin.calls_to("views.update")[-1]
        assert made[0] in json.dumps(last.body) and "Secret Access Key" in json.dumps(last.body)
        # Recovery later, from another process, records it as the member's instead of deleting it.
        later = sb.services.clock() + timedelta(minutes=6)
        recovery.resume_interrupted(second_process(sb, clock=lambda: later))
        assert iam_keys(sb, "koding-ualice") == {made[0]: "Active"}
        assert key_rows(sb, "koding-ualice") == {made[0]: "active"}
        record_figure("lifecycle-row5", refused_writes=refused[0], key_kept=True)


# Row 6 -----------------------------------------------------------------------------------------------------
def test_row6_recovery_never_deletes_a_key_someone_else_made(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb, "UALICE")
    real = sb.services.notifier.update_modal

    def crash(*_: Any) -> None:
        raise Crash("views.update")

    sb.services.notifier.update_modal = crash  # type: ignore[method-assign]
    sb.driver.click("UALICE", ids.REVEAL, message=dm)
    sb.wait_idle()
    sb.services.notifier.update_modal = real  # type: ignore[method-assign]
    (revealed,) = iam_keys(sb, "koding-ualice")
    by_hand = boto3.client("iam").create_access_key(UserName="koding-ualice")["AccessKey"]["AccessKeyId"]

    later = sb.services.clock() + timedelta(minutes=6)
    recovery.resume_interrupted(second_process(sb, clock=lambda: later))
    assert by_hand in iam_keys(sb, "koding-ualice"), "recovery deleted the admin's hand-made key"
    assert set(iam_keys(sb, "koding-ualice")) == {revealed, by_hand}
    record_figure("lifecycle-row6", hand_made_keys_deleted=0)


# Row 7 -----------------------------------------------------------------------------------------------------
def test_row7_reactivate_racing_deactivate_leaves_the_row_and_iam_agreeing(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    with session_scope(sb.services.session_factory) as session:
        key_row_id = session.scalars(select(AccessKey.id)).one()
    rotation_flows.deactivate_old(sb.services, key_row_id=key_row_id, user_id="UADMIN1", by_admin=True)
    a, b = second_process(sb), second_process(sb)
    held = HeldCall()

    def hold(**_: Any) -> None:
        held.wait()

    a.gateway._client.meta.events.register("before-call.iam.UpdateAccessKey", hold)
    owner = threading.Thread(
        target=rotation_flows.reactivate,
        kwargs={"services": a, "key_row_id": key_row_id, "user_id": "UALICE"},
    )
    owner.start()
    assert held.entered.wait(20), "Reactivate never reached IAM"
    admin = threading.Thread(
        target=rotation_flows.deactivate_old,
        kwargs={
            "services": b,
            "key_row_id": key_row_id,
            "user_id": "UADMIN2",
            "by_admin": True,
        },
    )
    admin.start()
    time.sleep(0.5)  # the admin's click is now waiting behind (or, unordered, racing) the owner's
    held.release.set()
    owner.join(30)
    admin.join(30)
    a.gateway._client.meta.events.unregister("before-call.iam.UpdateAccessKey", hold)
    sb.wait_idle()
    ((key_id, iam_status),) = iam_keys(sb, "koding-ualice").items()
    row_status = key_rows(sb, "koding-ualice")[key_id]
    assert {"Active": "active", "Inactive": "inactive"}[iam_status] == row_status
    record_figure("lifecycle-row7", row=row_status, iam=iam_status)
