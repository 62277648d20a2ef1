"""Parts of the approval card about the approval policy and what a profile grants (pure functions over plain
values, within Block Kit's limits): "1 of 2 approvals — @alice", and each managed policy in plain words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.slack.limits import SECTION_TEXT, clip
from models import AccessRequest, RequestStatus

Blocks = list[dict[str, Any]]
# Descriptions longer than this are cut: a profile of ten policies still fits one section.
DESCRIPTION_MAX = 240


def approvals_line(request: AccessRequest, approvers: Sequence[str]) -> str | None:
    """The count of approvals and who gave them, for a request that needs more than one (None otherwise)."""
    required = request.approvals_required or 1
    if required <= 1:
        return None
    who = ", ".join(f"<@{user}>" for user in approvers)
    count = len(approvers) if request.status == RequestStatus.PENDING else max(len(approvers), required)
    line = f":busts_in_silhouette: {min(count, required)} of {required} approvals"
    if who:
        line += f" — {who}"
    if request.status == RequestStatus.PENDING:
        line += " (distinct approvers; never the requester)"
    return line


def grants_text(request: AccessRequest, descriptions: Mapping[str, str | None], boundary: str | None) -> str | None:
    """What the requested profiles grant, in AWS's own words for each managed policy, and the boundary if set."""
    lines = []
    for entry in request.plan:
        for arn in entry.get("policies", []):
            name = arn.rsplit("/", 1)[-1]
            described = descriptions.get(arn)
            text = _plain(clip(described, DESCRIPTION_MAX)) if described else "no description from AWS"
            lines.append(f"• *{name}*: {text}")
    if not lines:
        return None
    if boundary:
        lines.append(f"• Permissions boundary `{boundary.rsplit('/', 1)[-1]}` caps every permission above.")
    return clip("*What this grants*\n" + "\n".join(lines), SECTION_TEXT)


def _plain(text: str) -> str:
    """AWS's description as text, never markup: escape Slack's control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
