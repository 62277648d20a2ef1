"""Who may decide a request, who is shown its card, and who counts as an admin: the one place these are decided.

Approver lists (`KODING_IAM_ADMINS`, a profile's `approvers`) hold member IDs (`U…`, `W…`) and user group IDs
(`S…`). No Slack here: group members and whether a member is an active person come from a `Directory` passed in
(bot/slack/directory.py asks Slack, with a cache of at most five minutes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.config import Settings
from bot.errors import NotAuthorized

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """Slack could not say (a group it does not know, a rate limit, an outage); the message names why."""


class Directory(Protocol):
    def group_members(self, group_id: str, *, fresh: bool = False) -> frozenset[str]:
        """The group's member IDs; `fresh` skips the cache. Raises DirectoryUnavailable."""
        ...

    def is_active_person(self, user_id: str) -> bool:
        """False for a deactivated or deleted member, a bot, or an ID Slack does not know. Raises
        DirectoryUnavailable when Slack could not be asked."""
        ...


class StaticDirectory:
    """A Directory from fixed data: a clicker's decision rights (decision_rights), unit tests, tools without Slack."""

    def __init__(
        self, groups: dict[str, Iterable[str]] | None = None, inactive: Iterable[str] = (), unknown: Iterable[str] = ()
    ) -> None:
        self.groups = {group: frozenset(members) for group, members in (groups or {}).items()}
        self.inactive = frozenset(inactive)
        self.unknown = frozenset(unknown)  # members Slack could not be asked about

    def group_members(self, group_id: str, *, fresh: bool = False) -> frozenset[str]:
        if group_id not in self.groups:
            raise DirectoryUnavailable("no_such_subteam")
        return self.groups[group_id]

    def is_active_person(self, user_id: str) -> bool:
        if user_id in self.unknown:
            raise DirectoryUnavailable("not asked")
        return user_id not in self.inactive


def is_group(entry: str) -> bool:
    return entry.startswith("S")


@dataclass(frozen=True)
class Policy:
    """The approval policy of a request: the strictest of its profiles' policies."""

    approvals_required: int
    # Where the cards go: the profiles' own approval channels, else the global one; empty: each approver's DM.
    channels: tuple[str, ...]


def policy_for(settings: Settings, profile_keys: Sequence[str]) -> Policy:
    profiles = [settings.profiles[key] for key in profile_keys if key in settings.profiles]
    required = max((profile.approvals_required for profile in profiles), default=1)
    channels = tuple(dict.fromkeys(p.approval_channel for p in profiles if p.approval_channel))
    if not channels and settings.koding_iam_approval_channel:
        channels = (settings.koding_iam_approval_channel,)
    return Policy(approvals_required=required, channels=channels)


def members(entries: Iterable[str], directory: Directory, *, fresh: bool = False) -> frozenset[str]:
    """Member IDs named directly or through a group; a group Slack cannot answer for adds nobody (logged)."""
    found: set[str] = set()
    for entry in entries:
        if not is_group(entry):
            found.add(entry)
            continue
        try:
            found |= directory.group_members(entry, fresh=fresh)
        except DirectoryUnavailable as exc:
            log.warning("user group %s could not be read: %s", entry, exc)
    return frozenset(found)


def _active(user_id: str, directory: Directory) -> bool:
    """For sending: a member Slack could not be asked about counts as active (a card too many, never too few)."""
    try:
        return directory.is_active_person(user_id)
    except DirectoryUnavailable as exc:
        log.warning("could not check member %s (%s); treated as active for sending", user_id, exc)
        return True


def admin_members(settings: Settings, directory: Directory) -> list[str]:
    """The active admins, groups expanded (cached): who gets admin DMs and the admins' App Home."""
    return sorted(u for u in members(settings.admins, directory) if _active(u, directory))


def is_admin(settings: Settings, user_id: str, directory: Directory) -> bool:
    """An admin by ID or through a group (cached up to five minutes), and an active person."""
    if user_id not in members(settings.admins, directory):
        return False
    try:
        return directory.is_active_person(user_id)
    except DirectoryUnavailable:
        return False


def may_decide_entries(
    settings: Settings, profile_keys: Sequence[str]
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The admins' entries, and per profile its own approvers' entries (a profile without any: admins only)."""
    profiles = [settings.profiles[key] for key in profile_keys if key in settings.profiles]
    return tuple(settings.koding_iam_admins), [tuple(p.approvers) for p in profiles]


def may_decide(
    settings: Settings, profile_keys: Sequence[str], user_id: str, directory: Directory, *, fresh: bool = False
) -> bool:
    """An admin, or an approver of every profile the request asks for (a profile listing none: admins only)."""
    admins, per_profile = may_decide_entries(settings, profile_keys)
    if user_id in members(admins, directory, fresh=fresh):
        return True
    return bool(per_profile) and all(
        entries and user_id in members(entries, directory, fresh=fresh) for entries in per_profile
    )


def card_recipients(settings: Settings, profile_keys: Sequence[str], directory: Directory) -> list[str]:
    """Where the approval cards go: the policy's channels, else a DM to each active person who may decide.
    Deactivated members and bots are never sent a card."""
    policy = policy_for(settings, profile_keys)
    if policy.channels:
        return list(policy.channels)
    admins, per_profile = may_decide_entries(settings, profile_keys)
    candidates = members(admins, directory) | members((e for entries in per_profile for e in entries), directory)
    return sorted(u for u in candidates if may_decide(settings, profile_keys, u, directory) and _active(u, directory))


def decision_rights(settings: Settings, user_id: str, directory: Directory) -> StaticDirectory:
    """What Slack says now about someone who clicked a decision: every approver group's members (asked afresh, so
    someone removed from a group can no longer decide) and whether they are an active person. Asked before the
    deciding transaction opens; the rule then runs inside it on this snapshot (authorize_decision), with no
    Slack call while the request's row is held."""
    groups: dict[str, frozenset[str]] = {}
    entries = [*settings.koding_iam_admins, *(e for p in settings.profiles.values() for e in p.approvers)]
    for group in dict.fromkeys(e for e in entries if is_group(e)):
        try:
            groups[group] = directory.group_members(group, fresh=True)
        except DirectoryUnavailable as exc:
            log.warning("user group %s could not be read: %s", group, exc)  # it adds nobody, as in members()
    inactive, unknown = [], []
    if user_id in {e for e in entries if not is_group(e)}.union(*groups.values()):  # else never asked: no approver
        try:
            inactive = [] if directory.is_active_person(user_id) else [user_id]
        except DirectoryUnavailable:
            unknown = [user_id]
    return StaticDirectory(groups, inactive=inactive, unknown=unknown)


def authorize_decision(
    settings: Settings, *, requester_id: str, profile_keys: Sequence[str], user_id: str, directory: Directory
) -> None:
    """At click time: membership is read fresh from Slack, so someone removed from a group can no longer decide;
    a deactivated member or a bot never decides; nobody decides on their own request."""
    if requester_id == user_id:
        raise NotAuthorized("You cannot decide on your own request; another approver has to.")
    if not may_decide(settings, profile_keys, user_id, directory, fresh=True):
        raise NotAuthorized(
            "Only koding-iam admins and the approvers of the requested profiles can approve or deny this request "
            "(membership of an approver group is checked at each click). Nothing was changed."
        )
    try:
        active = directory.is_active_person(user_id)
    except DirectoryUnavailable:
        raise NotAuthorized("Slack could not confirm your account just now; nothing was changed. Try again.") from None
    if not active:
        raise NotAuthorized("Deactivated accounts and bots cannot approve or deny requests. Nothing was changed.")
