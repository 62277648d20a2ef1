"""Database models: one module per table family, all sharing `Base.metadata`."""

from models.audit import AuditEvent
from models.base import Base
from models.boundary import SeenRequest
from models.exemptions import Exemption
from models.keys import AccessKey, GrantStatus, KeyGrant, KeyMessage, KeyMessageRole, KeyStatus
from models.leases import UserLease
from models.outbox import OutboxEntry
from models.requests import OPEN_STATUSES, AccessRequest, ApprovalCard, ProvisioningStep, RequestStatus
from models.sync import SyncFinding

__all__ = [
    "OPEN_STATUSES",
    "AccessKey",
    "AccessRequest",
    "ApprovalCard",
    "AuditEvent",
    "Base",
    "Exemption",
    "GrantStatus",
    "KeyGrant",
    "KeyMessage",
    "KeyMessageRole",
    "KeyStatus",
    "OutboxEntry",
    "ProvisioningStep",
    "RequestStatus",
    "SeenRequest",
    "SyncFinding",
    "UserLease",
]
