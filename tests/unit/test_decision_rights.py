"""Unit tests for bot/core/access.py's decision_rights: what Slack says of a clicker, asked before the deciding
transaction opens, then judged inside it by authorize_decision with no Slack call."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.core import access
from bot.core.access import DirectoryUnavailable, StaticDirectory
from bot.errors import NotAuthorized


class CountingDirectory(StaticDirectory):
    """A directory that records every question, as Slack would see them."""

    def __init__(self, *args: object, down: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.asked: list[tuple[str, str, bool]] = []
        self.down = down

    def group_members(self, group_id: str, *, fresh: bool = False) -> frozenset[str]:
        self.asked.append(("group", group_id, fresh))
        return super().group_members(group_id, fresh=fresh)

    def is_active_person(self, user_id: str) -> bool:
        self.asked.append(("person", user_id, False))
        if self.down:
            raise DirectoryUnavailable("ratelimited")
        return super().is_active_person(user_id)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KODING_IAM_PROFILES", raising=False)
    return load_settings(
        slack_bot_token="xoxb-1-2-test",
        slack_signing_secret="signing-secret-value",
        koding_iam_admins="UADMIN,S0SECOPS",
    )


def decide(settings, rights: StaticDirectory, user: str, requester: str = "UALICE") -> None:  # type: ignore[no-untyped-def]
    access.authorize_decision(settings, requester_id=requester, profile_keys=["ec2"], user_id=user, directory=rights)


def test_groups_are_asked_afresh_and_a_member_removed_since_cannot_decide(settings) -> None:  # type: ignore[no-untyped-def]
    slack = CountingDirectory({"S0SECOPS": ["UCAROL"]})
    rights = access.decision_rights(settings, "UCAROL", slack)
    assert ("group", "S0SECOPS", True) in slack.asked and ("person", "UCAROL", False) in slack.asked
    decide(settings, rights, "UCAROL")  # a member, active: allowed

    slack.groups["S0SECOPS"] = frozenset()  # removed from the group before the next click
    with pytest.raises(NotAuthorized, match="Only koding-iam admins"):
        decide(settings, access.decision_rights(settings, "UCAROL", slack), "UCAROL")


def test_someone_who_is_no_approver_costs_no_person_lookup(settings) -> None:  # type: ignore[no-untyped-def]
    slack = CountingDirectory({"S0SECOPS": ["UCAROL"]})
    rights = access.decision_rights(settings, "UMALLORY", slack)
    assert [kind for kind, *_ in slack.asked] == ["group"]
    with pytest.raises(NotAuthorized, match="Only koding-iam admins"):
        decide(settings, rights, "UMALLORY")


def test_an_approver_slack_could_not_confirm_is_refused_inside_the_transaction(settings) -> None:  # type: ignore[no-untyped-def]
    rights = access.decision_rights(settings, "UADMIN", CountingDirectory({"S0SECOPS": []}, down=True))
    with pytest.raises(NotAuthorized, match="could not confirm"):
        decide(settings, rights, "UADMIN")


def test_a_deactivated_admin_and_the_requester_are_refused(settings) -> None:  # type: ignore[no-untyped-def]
    inactive = access.decision_rights(settings, "UADMIN", CountingDirectory({"S0SECOPS": []}, inactive=["UADMIN"]))
    with pytest.raises(NotAuthorized, match="Deactivated"):
        decide(settings, inactive, "UADMIN")
    own = access.decision_rights(settings, "UADMIN", CountingDirectory({"S0SECOPS": []}))
    with pytest.raises(NotAuthorized, match="your own request"):
        decide(settings, own, "UADMIN", requester="UADMIN")
