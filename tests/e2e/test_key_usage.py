"""Key usage end to end: the sweep records each key's last use (the App Home shows the record, calling no AWS),
retires the old key after a Rotate only once the new key is in use and the old one quiet, warns when the old key is
still used, and flags unused keys once per stage. moto's IAM answers GetAccessKeyLastUsed as the test sets it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.devtools.strict_iam import set_access_key_last_used
from bot.flows import rotation as rotation_flows
from bot.services import Services
from bot.slack import ids
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import AuditEvent
from tests.e2e.flow_steps import actions_in, click, ephemeral_texts, refreshed, reveal_first_key
from tests.e2e.test_admin_lifecycle import home_of
from tests.e2e.test_rotation import dms, dumps, key_row

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def used(access_key_id: str, at: datetime | None, service: str = "ec2", region: str = "eu-west-1") -> None:
    set_access_key_last_used(access_key_id, used_at=at, service=service, region=region)


def sweep(sb: Sandbox, services: Services, when: datetime) -> rotation_flows.SweepReport:
    """One sweep, then its messages delivered by the outbox sender of the process that swept (its settings)."""
    if services is sb.services:
        report = rotation_flows.sweep(services, now=when)
        sb.wait_idle()
        return report
    sb.outbox.pause()
    try:
        report = rotation_flows.sweep(services, now=when)
        OutboxSender(services, pacer=Pacer({})).wait_idle()
    finally:
        sb.outbox.resume()
    sb.wait_idle()
    return report


def iam_status(sb: Sandbox) -> dict[str, str]:
    return {k.access_key_id: k.status for k in sb.services.gateway.list_access_keys("koding-ualice")}


def rotated(sb: Sandbox) -> tuple[str, str]:
    """Reveal a first key, rotate it; (old key, new key)."""
    old = reveal_first_key(sb)
    sb.driver.command("UALICE", "rotate")
    sb.wait_idle()
    (new,) = set(iam_status(sb)) - {old}
    return old, new


def usage_dms(sb: Sandbox) -> list[dict[str, Any]]:
    return [
        m
        for m in sb.standin.messages(sb.standin.dm_channel("UALICE"))
        if any(word in dumps(m) for word in ("is in use", "still uses", "deactivated your old key"))
    ]


def test_sweep_records_last_use_and_the_app_home_calls_no_aws(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    born = key_row(sb, key).created_at
    used(key, born + HOUR)

    report = sweep(sb, sb.services, born + 2 * HOUR)
    assert report.usage.last_used_reads == 1
    row = key_row(sb, key)
    assert (row.last_used_at, row.last_used_service, row.last_used_region) == (born + HOUR, "ec2", "eu-west-1")
    assert row.last_used_read_at == born + 2 * HOUR
    # Read again only after the refresh interval (60 minutes by default).
    assert sweep(sb, sb.services, born + 2 * HOUR + 5 * MINUTE).usage.last_used_reads == 0
    assert sweep(sb, sb.services, born + 3 * HOUR).usage.last_used_reads == 1

    before = sb.services.gateway.calls
    mine, admin = home_of(sb, "UALICE"), home_of(sb, "UADMIN1")
    assert sb.services.gateway.calls == before  # no GetAccessKeyLastUsed (nor any AWS call) per render
    assert "ec2, eu-west-1" in dumps(mine) or ("ec2" in dumps(mine) and "eu-west-1" in dumps(mine))
    assert "as of" in dumps(mine) and "Unused keys" in dumps(admin)


def test_retirement_is_offered_once_with_the_evidence(sandbox: Sandbox) -> None:
    sb = sandbox
    old, new = rotated(sb)
    born = key_row(sb, new).created_at
    used(old, born + 10 * MINUTE, "ec2", "us-east-1")

    sweep(sb, sb.services, born + 30 * MINUTE)  # the new key is not used yet
    assert usage_dms(sb) == []
    used(new, born + HOUR)
    sweep(sb, sb.services, born + HOUR + 5 * MINUTE)  # too soon after its first use to judge
    assert usage_dms(sb) == []

    sweep(sb, sb.services, born + 3 * HOUR)
    (offer,) = usage_dms(sb)
    text = dumps(offer)
    assert "was last used 2 h ago by ec2 in eu-west-1" in text and "has not been used since" in text
    assert old in text and new in text and actions_in(offer) == [ids.DEACTIVATE_OLD]
    assert iam_status(sb) == {old: "Active", new: "Active"}  # an offer only
    sweep(sb, sb.services, born + 4 * HOUR)
    assert len(usage_dms(sb)) == 1  # once per stage

    click(sb, "UALICE", ids.DEACTIVATE_OLD, offer)
    assert iam_status(sb) == {old: "Inactive", new: "Active"}
    assert actions_in(refreshed(sb, offer)) == [ids.REACTIVATE]


def test_retirement_by_the_sweep_when_configured(sandbox: Sandbox) -> None:
    sb = sandbox
    auto = sb.make_services(sb.make_settings(koding_iam_retire_old_key_after_use=True))
    old, new = rotated(sb)
    born = key_row(sb, new).created_at
    used(old, born - HOUR)
    sweep(sb, auto, born + 2 * HOUR)  # the new key unused: nothing is deactivated
    assert iam_status(sb) == {old: "Active", new: "Active"} and usage_dms(sb) == []

    used(new, born + 3 * HOUR, "ec2", "eu-west-1")
    sweep(sb, auto, born + 5 * HOUR)
    assert iam_status(sb) == {old: "Inactive", new: "Active"}
    (told,) = usage_dms(sb)
    assert "deactivated your old key" in dumps(told) and "2 h ago by ec2 in eu-west-1" in dumps(told)
    assert actions_in(told) == [ids.REACTIVATE]
    row = key_row(sb, old)
    assert (row.status, row.usage_stage, row.reminder_stage, row.deactivated_by) == (
        "inactive",
        "retired",
        "deactivated",
        "koding-iam",
    )
    posted = len(sb.standin.calls_to("chat.postMessage"))
    sweep(sb, auto, born + 6 * HOUR)
    assert len(sb.standin.calls_to("chat.postMessage")) == posted  # no second message, not even the rotation one
    # The rotation recovery window holds: deleted after KODING_IAM_DELETE_AFTER_DAYS unless reactivated.
    sweep(sb, auto, born + 5 * HOUR + 8 * DAY)
    assert iam_status(sb) == {new: "Active"}


def test_old_key_still_used_is_warned_and_never_deactivated(sandbox: Sandbox) -> None:
    sb = sandbox
    auto = sb.make_services(sb.make_settings(koding_iam_retire_old_key_after_use=True))
    old, new = rotated(sb)
    born = key_row(sb, new).created_at
    used(new, born + HOUR)
    used(old, born + 2 * HOUR, "s3", "us-west-2")  # after the new key's first use
    sweep(sb, auto, born + 3 * HOUR)
    (warning,) = usage_dms(sb)
    text = dumps(warning)
    assert "Something still uses your old key" in text and "s3" in text and "us-west-2" in text
    assert "Nothing was deactivated" in text and actions_in(warning) == []
    for later in (4 * HOUR, 2 * DAY, 20 * DAY):
        sweep(sb, auto, born + later)
    assert iam_status(sb) == {old: "Active", new: "Active"}
    assert len(usage_dms(sb)) == 1


def test_unused_key_flagged_once_then_kept_by_its_owner(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    born = key_row(sb, key).created_at
    sweep(sb, sb.services, born + 44 * DAY)
    assert dms(sb, "UALICE", "never been used") == []

    sweep(sb, sb.services, born + 45 * DAY + HOUR)
    (flag,) = dms(sb, "UALICE", "never been used")
    assert actions_in(flag) == [ids.KEEP_KEY, ids.DEACTIVATE_OLD] and key in dumps(flag)
    notices = [dms(sb, admin, "Unused key") for admin in ("UADMIN1", "UADMIN2")]
    assert [len(n) for n in notices] == [1, 1] and actions_in(notices[0][0]) == [ids.KEEP_KEY, ids.ADMIN_DEACTIVATE]
    sweep(sb, sb.services, born + 46 * DAY)
    assert len(dms(sb, "UALICE", "never been used")) == 1 and len(dms(sb, "UADMIN1", "Unused key")) == 1
    assert key in dumps(home_of(sb, "UADMIN1"))

    click(sb, "UBOB", ids.KEEP_KEY, flag)  # neither the owner nor an admin
    assert "Only the key's owner or a koding-iam admin" in ephemeral_texts(sb, "UBOB")
    assert key_row(sb, key).usage_stage == "unused"
    click(sb, "UALICE", ids.KEEP_KEY, flag)
    assert key_row(sb, key).usage_stage == "unused-kept"
    assert "kept by <@UALICE>" in dumps(refreshed(sb, flag)) and actions_in(refreshed(sb, flag)) == []
    assert actions_in(refreshed(sb, notices[0][0])) == []
    with session_scope(sb.services.session_factory) as session:
        kept = session.scalars(select(AuditEvent).where(AuditEvent.action == "key_usage.kept")).all()
        assert [(e.actor, e.detail["access_key_id"]) for e in kept] == [("UALICE", key)]
    posted = len(sb.standin.calls_to("chat.postMessage"))
    sweep(sb, sb.services, born + 60 * DAY)
    assert len(sb.standin.calls_to("chat.postMessage")) == posted
    assert iam_status(sb) == {key: "Active"}


def test_unused_key_deactivated_after_the_grace_period_and_recoverable(sandbox: Sandbox) -> None:
    sb = sandbox
    auto = sb.make_services(sb.make_settings(koding_iam_unused_auto_deactivate_days=7))
    key = reveal_first_key(sb)
    born = key_row(sb, key).created_at
    used(key, born + DAY, "sts", "us-east-1")
    sweep(sb, auto, born + 46 * DAY + HOUR)
    (flag,) = dms(sb, "UALICE", "has not been used for 45 days")
    assert "koding-iam deactivates it on" in dumps(flag)
    sweep(sb, auto, born + 50 * DAY)
    assert iam_status(sb) == {key: "Active"}

    sweep(sb, auto, born + 54 * DAY)
    assert iam_status(sb) == {key: "Inactive"}
    (off,) = dms(sb, "UALICE", "deactivated the unused access key")
    assert actions_in(off) == [ids.REACTIVATE]
    assert len(dms(sb, "UADMIN1", "deactivated by koding-iam")) == 1
    row = key_row(sb, key)
    assert (row.usage_stage, row.reminder_stage) == ("unused-off", "deactivated")
    posted = len(sb.standin.calls_to("chat.postMessage"))
    sweep(sb, auto, born + 55 * DAY)
    assert len(sb.standin.calls_to("chat.postMessage")) == posted

    late = sb.make_services(sb.settings, clock=lambda: born + 56 * DAY)
    rotation_flows.reactivate(late, key_row_id=row.id, user_id="UALICE")
    assert iam_status(sb) == {key: "Active"} and key_row(sb, key).status == "active"


def test_key_used_again_ends_its_unused_stage(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    born = key_row(sb, key).created_at
    sweep(sb, sb.services, born + 46 * DAY)
    assert len(dms(sb, "UALICE", "never been used")) == 1
    used(key, born + 47 * DAY)
    sweep(sb, sb.services, born + 48 * DAY)
    assert key_row(sb, key).usage_stage == ""
    sweep(sb, sb.services, born + 93 * DAY)  # unused 45 days again: flagged again
    assert len(dms(sb, "UALICE", "has not been used for 45 days")) == 1
