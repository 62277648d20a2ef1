"""Database models: one module per table family, all sharing `Base.metadata`."""

from models.audit import AuditEvent
from models.base import Base
from models.boundary import SeenRequest
from models.exemptions import Exemption
from models.extensions import AccessExtension, ExtensionStatus
from models.keys import AccessKey, GrantStatus, KeyGrant, KeyMessage, KeyMessageRole, KeyStatus
from models.leases import UserLease
from models.outbox import DigestItem, OutboxEntry
from models.requests import (
    OPEN_STATUSES,
    AccessRequest,
    ApprovalCard,
    ProvisioningStep,
    RequestApproval,
    RequestStatus,
)
from models.sync import IamUserGroups, SyncFinding

__all__ = [
    "OPEN_STATUSES",
    "AccessExtension",
    "AccessKey",
    "AccessRequest",
    "ApprovalCard",
    "AuditEvent",
    "Base",
    "DigestItem",
    "Exemption",
    "ExtensionStatus",
    "GrantStatus",
    "IamUserGroups",
    "KeyGrant",
    "KeyMessage",
    "KeyMessageRole",
    "KeyStatus",
    "OutboxEntry",
    "ProvisioningStep",
    "RequestApproval",
    "RequestStatus",
    "SeenRequest",
    "SyncFinding",
    "UserLease",
]
