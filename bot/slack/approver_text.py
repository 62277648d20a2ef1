"""Who approves what, in Slack's words: mrkdwn mentions of the admins and approver groups (`<!subteam^S…>`), for
the help text, the admins' App Home and the approval card. The rule itself is bot/core/access.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.config import Settings
from bot.core import access
from bot.slack.limits import SECTION_TEXT, clip


def describe_approvers(settings: Settings, profile_keys: Sequence[str]) -> str:
    """Who may decide, in mrkdwn mentions (`<!subteam^S…>` for a group), for help texts and the card."""
    admins, per_profile = access.may_decide_entries(settings, profile_keys)
    text = "the koding-iam admins (" + mentions(admins) + ")"
    if per_profile and all(per_profile):
        text += " or " + " and ".join(mentions(entries) for entries in per_profile)
    return text


def approval_rules(settings: Settings) -> str:
    """Who may approve what, one line per profile (mrkdwn, within a section's 3000 characters): for `/koding-iam
    help` and the admins' App Home."""
    lines = ["*Who approves what*"]
    for profile in settings.profiles.values():
        count = profile.approvals_required
        needed = "1 approval" if count == 1 else f"{count} approvals from distinct people"
        where = access.policy_for(settings, [profile.key]).channels
        place = f", cards in <#{where[0]}>" if where else ", cards in each approver's DM"
        lines.append(f"• *{profile.label}*: {needed} by {describe_approvers(settings, [profile.key])}{place}")
    lines.append("Nobody approves their own request; deactivated accounts and bots never do.")
    return clip("\n".join(lines), SECTION_TEXT)


def mentions(entries: Iterable[str]) -> str:
    return ", ".join(f"<!subteam^{e}>" if access.is_group(e) else f"<@{e}>" for e in entries)
