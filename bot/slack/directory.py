"""The access rule's Directory (bot/core/access.py) answered by Slack: user group members and member status.

Both are cached for at most five minutes (usergroups.users.list is Tier 2, about 20 calls a minute:
https://api.slack.com/methods/usergroups.users.list; users.info is Tier 4: https://api.slack.com/methods/users.info).
A decision click asks for the group afresh, so someone removed from a group can no longer decide.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.access import Directory, DirectoryUnavailable

CACHE_SECONDS = 300.0
QUICK_TIMEOUT_SECONDS = 1
# users.info answers these for an ID that is no (longer a) member: not a transient failure.
T = TypeVar("T")
_NOT_A_MEMBER = frozenset({"user_not_found", "user_not_visible", "account_inactive"})


class SlackDirectory:
    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        quick_client: WebClient | None = None,
    ) -> None:
        self.client = client
        # For answers due before ack(): one short try, no retry waits (a cache miss must not eat Slack's 3 s).
        self.quick_client = quick_client or WebClient(
            token=client.token, base_url=client.base_url, timeout=QUICK_TIMEOUT_SECONDS, retry_handlers=[]
        )
        self.ttl = min(ttl, CACHE_SECONDS)
        self.clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._people: dict[str, tuple[float, bool]] = {}

    def _cached(self, cache: dict[str, tuple[float, T]], key: str) -> T | None:
        with self._lock:
            entry = cache.get(key)
        if entry is not None and self.clock() - entry[0] < self.ttl:
            return entry[1]
        return None

    def quick(self) -> Directory:
        """The same caches, asking Slack with one short try on a miss: for the answers a command gives in its ack."""
        return _Quick(self)

    def group_members(self, group_id: str, *, fresh: bool = False) -> frozenset[str]:
        return self._group_members(group_id, fresh=fresh, client=self.client)

    def is_active_person(self, user_id: str) -> bool:
        return self._is_active_person(user_id, client=self.client)

    def _group_members(self, group_id: str, *, fresh: bool, client: WebClient) -> frozenset[str]:
        if not fresh and (cached := self._cached(self._groups, group_id)) is not None:
            return cached
        try:
            response = client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            raise DirectoryUnavailable(str(exc.response.get("error") or "error")) from None
        except OSError as exc:  # a timeout or a dropped connection (the quick client does not retry)
            raise DirectoryUnavailable(type(exc).__name__) from None
        members = frozenset(str(u) for u in response.get("users") or [])
        with self._lock:
            self._groups[group_id] = (self.clock(), members)
        return members

    def _is_active_person(self, user_id: str, *, client: WebClient) -> bool:
        if (cached := self._cached(self._people, user_id)) is not None:
            return cached
        try:
            user = client.users_info(user=user_id)["user"]
            active = not (user.get("deleted") or user.get("is_bot") or user.get("is_app_user"))
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "error")
            if error not in _NOT_A_MEMBER:
                raise DirectoryUnavailable(error) from None
            active = False
        except OSError as exc:  # a timeout or a dropped connection (the quick client does not retry)
            raise DirectoryUnavailable(type(exc).__name__) from None
        with self._lock:
            self._people[user_id] = (self.clock(), active)
        return active

    def forget(self, user_id: str) -> None:
        """Drop what is cached about a member (Slack sent user_change: deactivated, reactivated, renamed)."""
        with self._lock:
            self._people.pop(user_id, None)


class _Quick:
    """A SlackDirectory's caches behind its quick client (see `SlackDirectory.quick`)."""

    def __init__(self, directory: SlackDirectory) -> None:
        self.directory = directory

    def group_members(self, group_id: str, *, fresh: bool = False) -> frozenset[str]:
        return self.directory._group_members(group_id, fresh=fresh, client=self.directory.quick_client)

    def is_active_person(self, user_id: str) -> bool:
        return self.directory._is_active_person(user_id, client=self.directory.quick_client)
