"""Key rotation end to end: reminders by stage, escalation, the guided rotate → deactivate → delete flow."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.devtools.strict_iam import set_access_key_last_used
from bot.errors import DomainError
from bot.flows import rotation as rotation_flows
from bot.slack import ids
from models import AccessKey, AuditEvent, OutboxEntry
from tests.e2e.flow_steps import actions_in, click, refreshed, reveal_first_key

DAY = timedelta(days=1)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def dms(sb: Sandbox, user: str, containing: str) -> list[dict[str, Any]]:
    return [m for m in sb.standin.messages(sb.standin.dm_channel(user)) if containing in dumps(m)]


def key_row(sb: Sandbox, access_key_id: str) -> AccessKey:
    with session_scope(sb.services.session_factory) as session:
        return session.scalars(select(AccessKey).where(AccessKey.access_key_id == access_key_id)).one()


def in_use(access_key_id: str, at: datetime) -> None:
    """Mark the key used at `at`, so a test about rotation does not also see it flagged unused
    (tests/e2e/test_key_usage.py)."""
    set_access_key_last_used(access_key_id, used_at=at, service="ec2", region="us-east-1")


def sweep(sb: Sandbox, when: Any, **kwargs: Any) -> rotation_flows.SweepReport:
    """One sweep, then its messages delivered by the outbox sender."""
    report = rotation_flows.sweep(sb.services, now=when, **kwargs)
    sb.wait_idle()
    return report


def test_reminders_escalation_and_the_guided_rotation(sandbox: Sandbox) -> None:
    sb = sandbox
    old_key = reveal_first_key(sb)
    born = key_row(sb, old_key).created_at

    # 85 days: one DM naming the key, with a Rotate button; running again sends nothing new.
    report = sweep(sb, born + 85 * DAY)
    assert (len(report.actions), report.sent) == (1, 1)
    reminders = dms(sb, "UALICE", "due for rotation in")
    # Its only use is the reveal's own check (GetCallerIdentity with the key), which AWS records as a use by sts.
    assert len(reminders) == 1 and old_key in dumps(reminders[0]) and "(sts, us-east-1)" in dumps(reminders[0])
    assert actions_in(reminders[0]) == [ids.ROTATE]
    assert sweep(sb, born + 85 * DAY).actions == []
    assert len(dms(sb, "UALICE", "for rotation")) == 1

    # 95 days: overdue; the admins are told too, with Deactivate now.
    sweep(sb, born + 95 * DAY)
    for admin in ("UADMIN1", "UADMIN2"):
        overdue = dms(sb, admin, "Overdue key")
        assert len(overdue) == 1 and actions_in(overdue[0]) == [ids.ADMIN_DEACTIVATE]
    assert len(dms(sb, "UALICE", "overdue for rotation")) == 1

    # Rotate now → the new key in the one-time modal → guidance → Deactivate old key.
    latest = dms(sb, "UALICE", "overdue for rotation")[0]
    _, trigger = click(sb, "UALICE", ids.ROTATE, latest)
    modal = dumps(sb.driver.view_opened_with(trigger))
    keys = {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys("koding-ualice")}
    new_key = next(k for k in keys if k != old_key)
    assert keys == {old_key: "Active", new_key: "Active"} and new_key in modal
    assert "Rotated" in dumps(refreshed(sb, latest)) or "rotated" in dumps(refreshed(sb, latest))
    guide = dms(sb, "UALICE", "Deactivate old key")
    assert len(guide) == 1 and new_key in dumps(guide[0]) and old_key in dumps(guide[0])

    click(sb, "UALICE", ids.DEACTIVATE_OLD, guide[0])
    keys = {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys("koding-ualice")}
    assert keys == {old_key: "Inactive", new_key: "Active"}
    assert actions_in(refreshed(sb, guide[0])) == [ids.REACTIVATE]

    # The record follows the new key: its 90-day clock starts now, the old key is deleted after the window.
    new_row = key_row(sb, new_key)
    assert new_row.status == "active" and new_row.reminder_stage == "fresh"
    report = sweep(sb, sb.services.clock() + 8 * DAY)
    assert [a.kind for a in report.actions] == ["delete"]
    assert [k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")] == [new_key]
    assert len(dms(sb, "UALICE", "was deleted")) == 1
    assert key_row(sb, old_key).status == "deleted"
    assert sweep(sb, sb.services.clock() + 9 * DAY).actions == []


def test_thirty_day_outage_gives_one_message_per_key(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    born = key_row(sb, key).created_at
    in_use(key, born + 124 * DAY)
    before = len(sb.standin.calls_to("chat.postMessage"))
    sweep(sb, born + 125 * DAY)  # the scheduler was down from day 80 to day 125
    sweep(sb, born + 125 * DAY + timedelta(minutes=5))
    posted = sb.standin.calls_to("chat.postMessage")[before:]
    assert [c.body["channel"] for c in posted] == ["UALICE", "UADMIN1", "UADMIN2"]


def test_concurrent_sweeps_send_each_stage_once(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    when = key_row(sb, key).created_at + 95 * DAY
    in_use(key, when - DAY)
    before = len(sb.standin.calls_to("chat.postMessage"))
    others = [sb.make_services(sb.settings) for _ in range(4)]  # separate engines, like separate processes
    barrier = threading.Barrier(len(others))

    def run(services: Any) -> None:
        barrier.wait()
        rotation_flows.sweep(services, now=when)

    threads = [threading.Thread(target=run, args=(services,)) for services in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sb.wait_idle()
    posted = sb.standin.calls_to("chat.postMessage")[before:]
    assert sorted(c.body["channel"] for c in posted) == ["UADMIN1", "UADMIN2", "UALICE"]
    with session_scope(sb.services.session_factory) as session:
        told = session.scalars(select(AuditEvent).where(AuditEvent.action == "rotation.overdue")).all()
        assert len(told) == 1


def test_failed_send_is_retried_by_the_sender_after_its_back_off(sandbox: Sandbox) -> None:
    """Slack refuses the reminder once: the stage stays recorded (a second sweep sends nothing new) and the
    outbox sender sends it again after its back-off, once."""
    sb = sandbox
    key = reveal_first_key(sb)
    row = key_row(sb, key)
    when = row.created_at + 91 * DAY
    in_use(key, when - DAY)
    sb.standin.fail_next("chat.postMessage", error="fatal_error")
    report = sweep(sb, when)
    assert report.sent == 1 and dms(sb, "UALICE", "due for rotation") == []
    subject = f"{row.id}:due"
    with session_scope(sb.services.session_factory) as session:
        entry = session.get(OutboxEntry, (outbox.ROTATION, subject))
        assert entry is not None and entry.attempts == 1 and entry.delivered_version == 0
        entry.due_at = sb.services.clock() - timedelta(seconds=1)  # its back-off is over
    assert sweep(sb, when + timedelta(minutes=5)).sent == 0
    assert len(dms(sb, "UALICE", "due for rotation")) == 1


def test_dry_run_sends_and_changes_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    row = key_row(sb, key)
    before_calls = len(sb.standin.calls)
    report = sweep(sb, row.created_at + 120 * DAY, dry_run=True)
    assert [(a.kind, a.stage, a.tell_admins) for a in report.actions] == [("remind", "overdue", True)]
    assert len(sb.standin.calls) == before_calls
    after = key_row(sb, key)
    assert (after.reminder_stage, after.reminded_at) == ("fresh", None)
    assert [k.status for k in sb.services.gateway.list_access_keys("koding-ualice")] == ["Active"]


def test_rotate_double_click_makes_one_key(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    sweep(sb, key_row(sb, key).created_at + 91 * DAY)
    reminder = dms(sb, "UALICE", "due for rotation")[0]
    threads = [
        threading.Thread(target=sb.driver.click, args=("UALICE", ids.ROTATE), kwargs={"message": reminder})
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    sb.wait_idle()
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 2
    assert len(dms(sb, "UALICE", "Deactivate old key")) == 1


def test_two_key_limit_offers_to_delete_the_inactive_key(sandbox: Sandbox) -> None:
    sb = sandbox
    first = reveal_first_key(sb)
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    guide = dms(sb, "UALICE", "Deactivate old key")[0]
    click(sb, "UALICE", ids.DEACTIVATE_OLD, guide)
    second = next(
        k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice") if k.access_key_id != first
    )

    # Rotating the second key while the first still exists (inactive): IAM allows two keys.
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    offer = [e for e in sb.standin.ephemerals("UALICE") if "two access keys" in dumps(e)]
    assert len(offer) == 1 and ids.DELETE_INACTIVE in dumps(offer[0])
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 2
    button = {"channel": offer[0]["channel"], "ts": "1.0", "blocks": offer[0]["blocks"]}
    sb.driver.click("UALICE", ids.DELETE_INACTIVE, message=button)
    sb.wait_idle()
    assert [k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")] == [second]
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 2


def test_reactivate_inside_the_window_only(sandbox: Sandbox) -> None:
    sb = sandbox
    first = reveal_first_key(sb)
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    guide = dms(sb, "UALICE", "Deactivate old key")[0]
    click(sb, "UALICE", ids.DEACTIVATE_OLD, guide)
    click(sb, "UALICE", ids.REACTIVATE, refreshed(sb, guide))
    statuses = {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys("koding-ualice")}
    assert statuses[first] == "Active" and key_row(sb, first).status == "active"

    # Deactivated again, then the window passes: Reactivate is refused and changes nothing.
    sb.driver.click("UALICE", ids.DEACTIVATE_OLD, message=guide)
    sb.wait_idle()
    late = sb.make_services(sb.settings, clock=lambda: sb.services.clock() + 8 * DAY)
    with pytest.raises(DomainError, match="can no longer be reactivated"):  # bot/app.py's error handler says it
        rotation_flows.reactivate(late, key_row_id=key_row(sb, first).id, user_id="UALICE")
    assert key_row(sb, first).status == "inactive"
    statuses = {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys("koding-ualice")}
    assert statuses[first] == "Inactive"


def test_admin_deactivate_now_and_non_admins(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    in_use(key, key_row(sb, key).created_at + 94 * DAY)
    sweep(sb, key_row(sb, key).created_at + 95 * DAY)
    card = dms(sb, "UADMIN1", "Overdue key")[0]
    click(sb, "UALICE", ids.ADMIN_DEACTIVATE, card)  # the owner is not an admin
    assert key_row(sb, key).status == "active"
    assert "Only koding-iam admins" in dumps(sb.standin.ephemerals("UALICE"))
    click(sb, "UADMIN1", ids.ADMIN_DEACTIVATE, card)
    assert key_row(sb, key).status == "inactive"
    assert [k.status for k in sb.services.gateway.list_access_keys("koding-ualice")] == ["Inactive"]
    assert len(dms(sb, "UALICE", "was deactivated by <@UADMIN1>")) == 1
    assert "Deactivated on" in dumps(refreshed(sb, card))
    # The sweep does not tell the owner a second time.
    before = len(sb.standin.calls_to("chat.postMessage"))
    sweep(sb, sb.services.clock() + DAY)
    assert len(sb.standin.calls_to("chat.postMessage")) == before


def test_exemption_pauses_reminders(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    until = f"{sb.services.clock() + 200 * DAY:%Y-%m-%d}"  # an exemption ends at most a year ahead
    response, _ = sb.driver.command("UALICE", f"exempt koding-ualice {until} migrating stacks")
    assert "`exempt` is for koding-iam admins" in json.dumps(response.json())
    response, _ = sb.driver.command("UADMIN1", f"exempt koding-ualice {until} migrating stacks")
    assert "exempt from rotation reminders" in response.json()["text"]
    assert sweep(sb, key_row(sb, key).created_at + 120 * DAY).actions == []


def test_secret_of_the_rotated_key_appears_only_in_its_modal(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    updates = [c for c in sb.standin.calls_to("views.update") if "Secret Access Key" in dumps(c.body)]
    assert len(updates) == 2
    secret = updates[1].body["view"]["blocks"][2]["text"]["text"].split("`")[1]
    assert len(secret) == 40
    carrying = [c.method for c in sb.standin.calls if secret in c.raw]
    assert carrying == ["views.update"]


def test_restart_in_the_middle_of_a_rotation(sandbox: Sandbox) -> None:
    """The process dies while the new key is on its way to Slack: the owner may have seen it, so recovery keeps
    it, records it as theirs beside the old key, and tells them to rotate again if they did not copy it."""
    from bot.flows import recovery
    from tests.e2e.test_resilience import Crash

    sb = sandbox
    first = reveal_first_key(sb)
    real = sb.services.notifier.update_modal

    def crash(*_: Any) -> None:
        raise Crash("views.update")

    sb.services.notifier.update_modal = crash  # type: ignore[method-assign]
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    sb.services.notifier.update_modal = real  # type: ignore[method-assign]
    in_iam = {k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")}
    assert len(in_iam) == 2 and first in in_iam
    (new,) = in_iam - {first}

    later = sb.services.clock() + timedelta(minutes=6)
    recovery.resume_interrupted(sb.make_services(sb.settings, clock=lambda: later))
    sb.wait_idle()  # what recovery marked, delivered by the outbox sender
    assert {k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")} == {first, new}
    with session_scope(sb.services.session_factory) as session:
        recorded = {k.access_key_id: (k.owner_id, k.status) for k in session.scalars(select(AccessKey))}
    assert recorded == {first: ("UALICE", "active"), new: ("UALICE", "active")}
    assert len(dms(sb, "UALICE", "was interrupted")) == 1


def test_sweep_command_dry_run_and_real(sandbox: Sandbox, monkeypatch: Any, capsys: Any) -> None:
    """`koding-iam sweep --as-of … --dry-run` prints the plan and changes nothing; without --dry-run it sends."""
    from sqlalchemy import MetaData

    from bot import cli

    sb = sandbox
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the command configures logging for itself
    monkeypatch.setattr(root, "level", root.level)
    key = reveal_first_key(sb)
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-sandbox-token",
        "SLACK_SIGNING_SECRET": "x",
        "SLACK_API_URL": sb.standin.base_url,
        "DATABASE_URL": sb.database_url,
        "KODING_IAM_ADMINS": "UADMIN1,UADMIN2",
    }.items():
        monkeypatch.setenv(name, value)
    as_of = (key_row(sb, key).created_at + 95 * DAY).isoformat()

    def snapshot() -> tuple[list[str], list[tuple[str, str]]]:
        metadata = MetaData()
        metadata.reflect(bind=sb.services.engine)
        with sb.services.engine.connect() as connection:
            rows = [repr(tuple(r)) for t in metadata.sorted_tables for r in connection.execute(t.select())]
        iam = [(k.access_key_id, k.status) for k in sb.services.gateway.list_access_keys("koding-ualice")]
        return rows, iam

    before, calls = snapshot(), len(sb.standin.calls)
    assert cli.main(["sweep", "--as-of", as_of, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and key in out and "DM owner + admins" in out and "overdue" in out
    assert snapshot() == before and len(sb.standin.calls) == calls

    assert cli.main(["sweep", "--as-of", as_of]) == 0
    assert "sent 1" in capsys.readouterr().out
    sb.wait_idle()  # the command's own sender or the sandbox's (another process on the database) delivered it
    assert len(dms(sb, "UALICE", "overdue for rotation")) == 1
    assert cli.main(["sweep", "--as-of", as_of]) == 0
    assert "nothing to do" in capsys.readouterr().out
