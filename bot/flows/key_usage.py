"""The Keep button on an unused key's message: the owner (or an admin) keeps the key; every message about it shows
the outcome. The sweep's part of key usage is bot/core/key_usage_sweep.py."""

from __future__ import annotations

import logging

from bot.core import digest, rotation_exemptions
from bot.core.key_usage import UsageKind
from bot.db import session_scope
from bot.services import Services
from bot.slack import home

log = logging.getLogger(__name__)
DEACTIVATING = (UsageKind.RETIRE, UsageKind.DEACTIVATE_UNUSED)
TELLS_ADMINS = (UsageKind.FLAG_UNUSED, UsageKind.DEACTIVATE_UNUSED)


# The Keep button -------------------------------------------------------------------------------------------------
def keep(services: Services, *, key_row_id: int, user_id: str) -> None:
    """Keep an unused key: the owner or an admin (checked here, whoever's message was clicked); recorded. Its
    unused-key messages show the outcome once the outbox redraws them (marked with the change)."""
    now = services.clock()
    admins = services.admin_ids()  # groups expanded, Slack asked before the transaction opens
    with session_scope(services.session_factory) as session:
        kept = rotation_exemptions.keep(session, key_row_id=key_row_id, user_id=user_id, admins=admins, now=now)
        digest.key_changed(session, kept.id, now=now)  # the admins' digests listing it show it kept
    services.wake_outbox()
    home.refresh(services, kept.owner_id, user_id)
