"""A sweep acts on the keys in windows of their ids, each as soon as its keys' last uses are recorded: the first
owners are told within a second of the sweep's start instead of after every key was read. Keys of a rotation in
progress (old and new key, decided as a pair) are held back to the sweep's last window, after every reading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, true
from sqlalchemy.orm import Session, aliased

from models import AccessKey, GrantStatus, KeyGrant, KeyStatus


@dataclass(frozen=True)
class KeyWindow:
    """Key ids in (`after`, `through`] (`through` None: no end) less `held`; or, with `only`, exactly those.
    The default is every key."""

    after: int = 0
    through: int | None = None
    held: frozenset[int] = frozenset()
    only: frozenset[int] | None = None

    def clause(self, key_id: Any) -> Any:
        """This window as a condition on an id column (AccessKey.id or an alias's)."""
        if self.only is not None:
            return key_id.in_(sorted(self.only)) if self.only else ~true()
        parts = [key_id > self.after]
        if self.through is not None:
            parts.append(key_id <= self.through)
        if self.held:
            parts.append(key_id.notin_(sorted(self.held)))
        return and_(*parts)

    @property
    def pairs(self) -> bool:
        """Rotation pairs are decided in the held-back window, once both keys' readings are recorded."""
        return self.only is not None


EVERY_KEY = KeyWindow()


def paired_key_ids(session: Session) -> frozenset[int]:
    """Both keys of every rotation whose new key was revealed while both are active: decided together
    (bot/core/key_usage.py decide_pair), so held back until every reading of the sweep is recorded."""
    old, new = aliased(AccessKey), aliased(AccessKey)
    rows = session.execute(
        select(old.id, new.id)
        .select_from(KeyGrant)
        .join(old, old.access_key_id == KeyGrant.replaces_access_key_id)
        .join(new, new.access_key_id == KeyGrant.access_key_id)
        .where(KeyGrant.status == GrantStatus.REVEALED, old.status == KeyStatus.ACTIVE, new.status == KeyStatus.ACTIVE)
    ).all()
    return frozenset(int(key_id) for row in rows for key_id in row)
