"""Writing audit events. Details are plain identifiers and reasons; callers never pass secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import AuditEvent
from models.audit import SYSTEM_ACTOR


def record(
    session: Session,
    *,
    action: str,
    actor: str = SYSTEM_ACTOR,
    request_id: int | None = None,
    at: datetime | None = None,
    **detail: Any,
) -> AuditEvent:
    event = AuditEvent(actor=actor, action=action, request_id=request_id, detail=detail)
    if at is not None:
        event.at = at
    session.add(event)
    return event
