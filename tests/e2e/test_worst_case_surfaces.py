"""Every surface koding-iam shows, rendered with the largest inputs it accepts, stays inside Slack's limits.

Why: a 64-character IAM name, a 300-character purpose full of `<&>` (each escaped to five characters), a
500-character deny reason, 40 keys or 40 pending requests must never make Slack refuse a message or a modal.
The flows a person drives run through the sandbox, where the strict Slack stand-in and the driver's ack checks
refuse any body past a limit; the remaining builders are rendered directly and held to the same rules.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bot.aws_iam import KeyLastUsed, NewAccessKey
from bot.core.runs import StepProgress, StepState
from bot.db import session_scope
from bot.devtools import blockkit_rules
from bot.devtools.sandbox import Sandbox
from bot.slack import home, ids, views
from models import AccessKey, AccessRequest, AuditEvent, KeyGrant, RequestStatus, SyncFinding
from tests.e2e.flow_steps import card, click, only_request, open_request_modal

NAME = "koding-" + "n" * 57  # 64, IAM's maximum
PURPOSE = ("<&>" * 100)[:300]
REASON = ("<&>" * 200)[:500]
LONG = "x<&>" * 200
POLICY = "arn:aws:iam::aws:policy/" + "P" * 100


def worst_profiles() -> str:
    """10 profiles (the most the config accepts), each with a 75-character label and a 128-character group."""
    return json.dumps(
        {
            f"profile-{i}": {
                "label": f"{i}" + "L" * 74,
                "group": f"G{i}" + "g" * 126,
                "policies": [f"{POLICY}{j}" for j in range(10)],
                "default": i == 0,
            }
            for i in range(10)
        }
    )


def no_violations(body: dict[str, Any]) -> None:
    found = blockkit_rules.check_view(body) if "type" in body else blockkit_rules.check_message(body)
    assert found == [], [str(v) for v in found]


def message(text_and_blocks: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    text, blocks = text_and_blocks
    return {"text": text, "blocks": blocks}


def seed(sb: Sandbox, plan: list[dict[str, Any]]) -> None:
    """40 pending and 20 failed requests, 40 keys for an admin, long sync findings and audit events."""
    now = sb.services.clock()
    with session_scope(sb.services.session_factory) as session:
        for i in range(60):
            session.add(
                AccessRequest(
                    requester_id=f"UPEND{i:04d}",
                    iam_user_name=f"{NAME[:60]}{i:04d}",
                    iam_user_name_key=f"{NAME[:60]}{i:04d}",
                    plan=plan,
                    purpose=PURPOSE,
                    status=RequestStatus.PENDING if i < 40 else RequestStatus.FAILED,
                    failure_reason=LONG if i >= 40 else None,
                )
            )
        session.flush()
        mine = AccessRequest(
            requester_id="UADMIN1",
            iam_user_name=NAME,
            iam_user_name_key=NAME,
            plan=plan,
            purpose=PURPOSE,
            status=RequestStatus.PROVISIONED,
        )
        session.add(mine)
        session.flush()
        session.add(
            KeyGrant(request_id=mine.id, requester_id="UADMIN1", iam_user_name=NAME, expires_at=now + timedelta(days=1))
        )
        for i in range(40):
            session.add(
                AccessKey(
                    access_key_id=f"AKIA{i:016d}",
                    iam_user_name=NAME,
                    owner_id="UADMIN1",
                    request_id=mine.id,
                    created_at=now - timedelta(days=100 + i),
                )
            )
            session.add(
                SyncFinding(
                    kind="key_status",
                    iam_user_name=NAME,
                    access_key_id=f"AKIA{i:016d}",
                    detail=LONG[:500],
                    fixable=False,
                    remedy=LONG[:500],
                )
            )
            session.add(
                AuditEvent(actor="UADMIN1", action="request.denied", request_id=mine.id, detail={"reason": REASON})
            )


def test_every_surface_with_maximal_inputs_stays_within_slacks_limits(sqlite_url: str) -> None:
    with Sandbox(sqlite_url, koding_iam_profiles=worst_profiles()) as sb:
        # The request modal with every profile, the request, the approval cards and the requester's DM.
        form = open_request_modal(sb, "UALICE", "a" * 80)
        profiles = [
            o["value"]
            for b in form["blocks"]
            if b.get("block_id") == ids.PROFILES_BLOCK
            for o in b["element"]["options"]
        ]
        assert len(profiles) == 10
        response = sb.driver.submit(
            "UALICE", form, {ids.USER_NAME_BLOCK: NAME, ids.PURPOSE_BLOCK: PURPOSE, ids.PROFILES_BLOCK: profiles}
        )
        sb.wait_idle()
        assert response.status == 200 and not response.text, response.text
        request = only_request(sb)
        assert request.purpose == PURPOSE

        # Deny with the longest reason: the deny modal, the reason's submission, the updated cards and the DM.
        _, trigger = click(sb, "UADMIN1", ids.DENY, card(sb))
        deny = sb.driver.view_opened_with(trigger)
        assert sb.driver.submit("UADMIN1", deny, {ids.DENY_REASON_BLOCK: REASON}).status == 200
        sb.wait_idle()
        assert "Denied" in json.dumps(card(sb)["blocks"])
        assert sb.driver.latest_message("UALICE", containing="was denied")

        # An admin's App Home and slash-command answers over 40 pending requests, 40 keys, long findings.
        seed(sb, request.plan)
        assert (
            sb.driver.event(
                {"type": "app_home_opened", "user": "UADMIN1", "channel": "DADMIN1", "tab": "home", "event_ts": "1.0"}
            ).status
            == 200
        )
        sb.wait_idle()
        published = sb.standin.published_home("UADMIN1")
        assert published is not None and "more pending requests" in json.dumps(published["blocks"])
        for command in ("status", "list", "audit", "audit <@UALICE>", "help"):
            assert sb.driver.command("UADMIN1", command)[0].status == 200
        sb.wait_idle()
        with session_scope(sb.services.session_factory) as session:
            now = sb.services.clock()
            assert len(home.user_blocks(sb.services, session, "UADMIN1", now=now)) <= 50

        assert sb.standin.violations == []
        assert [c.method for c in sb.standin.calls if c.failed] == []

        render_the_other_builders(request)


def render_the_other_builders(request: AccessRequest) -> None:
    """Surfaces that need AWS state or time to pass, rendered directly with the same maximal inputs."""
    now = request.created_at
    request.deny_reason = REASON
    request.failure_reason = LONG
    request.decided_by, request.decided_at = "UADMIN1", now
    progress = [StepProgress(f"{LONG[:200]} {i}", StepState.DONE) for i in range(30)]
    calls = [f"AttachGroupPolicy {POLICY}{i}" for i in range(100)]
    for status in RequestStatus:
        request.status = status
        no_violations(message(views.approval_card(request, calls=calls, progress=progress)))
    for builder in (views.request_received_dm, views.denied_dm, views.approved_dm, views.failed_dm, views.expired_dm):
        no_violations(message(builder(request)))
    no_violations(views.deny_modal(request))
    no_violations(message(views.expiry_reminder_notice(request, expires_at=now)))

    key = NewAccessKey(access_key_id="AKIA" + "K" * 124, created=now, secret_access_key="s" * 40)
    no_violations(views.reveal_keys_modal(key, iam_user_name=NAME))
    no_violations(views.reveal_problem_modal(LONG))
    no_violations(views.revoke_checking_modal(NAME))
    used = KeyLastUsed(used_at=now, service="s" * 64, region="r" * 64)
    no_violations(
        message(
            views.key_reminder_dm(
                key_row_id=2**53,
                access_key_id=key.access_key_id,
                iam_user_name=NAME,
                created_at=now,
                stage="overdue",
                last_used=used,
                due_at=now,
                now=now,
            )
        )
    )
    no_violations(
        message(
            views.admin_overdue_card(
                key_row_id=1,
                access_key_id=key.access_key_id,
                iam_user_name=NAME,
                owner_id="U" + "X" * 30,
                created_at=now,
                last_used=used,
                now=now,
            )
        )
    )
    no_violations(
        message(
            views.rotated_dm(
                old_key_row_id=1,
                old_access_key_id=key.access_key_id,
                new_access_key_id=key.access_key_id,
                old_last_used=used,
            )
        )
    )
    no_violations(message(("too many keys", views.too_many_keys_blocks(LONG, 1))))
    no_violations(
        message(
            views.member_left_notice(
                slack_user_id="UALICE", iam_user_name=NAME, request_id=1, deactivated=[key.access_key_id] * 40
            )
        )
    )
    no_violations(
        message(
            views.revoke_result_notice(request, admin_id="UADMIN1", progress=progress, outcome="failed", reason=LONG)
        )
    )
    no_violations(views.revoke_confirm_modal(request, _EverythingInventory()))
    no_violations(message(("help", views.help_message(problem=LONG)["blocks"])))
    assert all(len(m) <= 150 for m in views.form_errors({"purpose": LONG, "iam_user_name": LONG}).values())


class _EverythingInventory:
    """An IAM user with 50 of every attachment, each with a long name (whatever kinds the inventory lists)."""

    exists = True
    login_profile = True
    iam_user_name = NAME

    def __getattr__(self, name: str) -> list[str]:
        return [f"{name}-{i}-" + "n" * 100 for i in range(50)]
