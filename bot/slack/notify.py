"""Sending and updating Slack messages. With bot/slack/views.py, the only place that knows what Slack looks like.

Message text comes from views.py; this module decides where it goes (approval channel or admin DMs, the
requester's DM) and remembers where it went, so later updates reach every copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.aws_iam_policies import PolicySummary
from bot.config import Settings
from bot.core import access
from bot.core.provisioning import plan_steps
from bot.core.runs import StepProgress
from bot.slack import approval_card_parts, blockkit, views
from models import AccessRequest, ApprovalCard

log = logging.getLogger(__name__)
# A URL someone typed into a purpose or reason is shown as text, never previewed: no unfurl fetches it and no
# preview card dresses it up (https://api.slack.com/methods/chat.postMessage#arg_unfurl_links).
NO_UNFURL = {"unfurl_links": False, "unfurl_media": False}


class Notifier:
    def __init__(
        self,
        client: WebClient,
        settings: Settings,
        directory: access.Directory | None = None,
        *,
        describe: Callable[[str], PolicySummary | None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.directory: access.Directory = directory or access.StaticDirectory()
        # What a managed policy grants (IamGateway.policy_summary, cached per process); None: cards list calls only.
        self.describe = describe

    # Requester ---------------------------------------------------------------------------------------------
    def dm(self, user_id: str, text: str, blocks: views.Blocks) -> tuple[str, str] | None:
        """Post a DM (or, given a channel id, a channel message); returns (channel, ts), or None when Slack
        refused (logged, never raised to the caller)."""
        try:
            response = self.client.chat_postMessage(channel=user_id, text=text, blocks=blocks, **NO_UNFURL)
        except SlackApiError as exc:
            log.warning("could not post to %s: %s", user_id, exc.response.get("error"))
            return None
        return str(response["channel"]), str(response["ts"])

    def ephemeral(self, channel: str | None, user_id: str, text: str, blocks: views.Blocks | None = None) -> None:
        """A reply only the clicker sees; falls back to a DM where there is no channel (App Home, modals)."""
        blocks = blocks or [blockkit.section_block(text)]
        try:
            if channel:
                self.client.chat_postEphemeral(channel=channel, user=user_id, text=text, blocks=blocks)
                return
        except SlackApiError as exc:
            log.info("ephemeral to %s failed (%s); sending a DM", user_id, exc.response.get("error"))
        self.dm(user_id, text, blocks)

    def upload_file(self, channel: str, *, filename: str, content: str, title: str) -> bool:
        """Share a file into a conversation (`channel`: its id, e.g. a DM's D…) through files.uploadV2; False when
        Slack refused (logged by error code only)."""
        try:
            self.client.files_upload_v2(channel=channel, content=content, filename=filename, title=title)
        except SlackClientError as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("could not upload %s to %s: %s", filename, channel, error)
            return False
        return True

    # Admins -----------------------------------------------------------------------------------------------
    def admin_targets(self) -> list[str]:
        """The approval channel, or each active admin's DM (user groups expanded; no deactivated member, no bot)."""
        if self.settings.koding_iam_approval_channel:
            return [self.settings.koding_iam_approval_channel]
        return access.admin_members(self.settings, self.directory)

    def admin_notice(self, text: str, blocks: views.Blocks) -> bool:
        """Tell the admins something; True only if every copy was posted."""
        posted = [self.dm(target, text, blocks) for target in self.admin_targets()]
        return all(at is not None for at in posted)

    def approval_card(
        self,
        request: AccessRequest,
        progress: Sequence[StepProgress] | None = None,
        approvers: Sequence[str] = (),
    ) -> tuple[str, views.Blocks]:
        calls = [step.label for step in plan_steps(request, self.settings)]
        calls.append(f"CreateAccessKey for {request.iam_user_name}, when they press Reveal")
        grants = self.grants_text(request) if request.status == "pending" else None
        return views.approval_card(request, calls=calls, progress=progress, approvers=approvers, grants=grants)

    def grants_text(self, request: AccessRequest) -> str | None:
        """Each requested policy's AWS description and services (read from IAM once per process)."""
        if self.describe is None:
            return None
        notes: dict[str, str | None] = {}
        for arn in {arn for entry in request.plan for arn in entry.get("policies", [])}:
            summary = self.describe(arn)
            if summary is None:
                notes[arn] = None
                continue
            services = ", ".join("every service" if s == "*" else s for s in summary.services)
            described = summary.description or ""
            notes[arn] = f"{described} (services: {services})".strip() if services else described or None
        return approval_card_parts.grants_text(request, notes, self.settings.koding_iam_permissions_boundary)

    # Modals -----------------------------------------------------------------------------------------------
    def open_modal(self, trigger_id: str, view: dict) -> str | None:
        """views.open inside the trigger's 3-second life; None when Slack refused (e.g. an expired trigger)."""
        try:
            response = self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("could not open a modal: %s", exc.response.get("error"))
            return None
        return str(response["view"]["id"])

    def update_modal(self, view_id: str, view: dict) -> None:
        """views.update; raises SlackApiError so the reveal can undo a key nobody saw."""
        self.client.views_update(view_id=view_id, view=view)


def cards_of(session: Session, request_id: int) -> list[tuple[str, str]]:
    """Where a request's approval cards were posted (channel, ts), as the bot recorded it."""
    cards = session.scalars(select(ApprovalCard).where(ApprovalCard.request_id == request_id).order_by(ApprovalCard.id))
    return [(card.channel, card.ts) for card in cards]


def record_cards(session: Session, request_id: int, posted: Sequence[tuple[str, str]]) -> None:
    for channel, ts in posted:
        session.add(ApprovalCard(request_id=request_id, channel=channel, ts=ts))
