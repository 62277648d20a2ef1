"""Offboarding's IAM side: the steps DeleteUser requires, in order, what a user still has (the inventory an
admin confirms, and what is left after a DeleteConflict), and the IAM calls of each step. The recorded,
resumable run is bot/core/offboarding.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AwsError, IamGateway
from bot.aws_iam_cleanup import is_virtual_mfa
from bot.core import audit
from bot.db import session_scope
from models import (
    AuditEvent,
)

# Step keys are recorded when done, so a key keeps its meaning: a revoke half-done by an older list resumes here
# (steps it finished are skipped, steps it never had run before DeleteUser).
STEPS: list[tuple[str, str]] = [
    ("revoke:access_keys", "Delete access keys"),
    ("revoke:login_profile", "Delete console password"),
    ("revoke:mfa_devices", "Deactivate MFA devices"),
    ("revoke:virtual_mfa_devices", "Delete virtual MFA devices"),
    ("revoke:signing_certificates", "Delete signing certificates"),
    ("revoke:ssh_public_keys", "Delete SSH public keys"),
    ("revoke:service_credentials", "Delete service-specific credentials"),
    ("revoke:inline_policies", "Delete inline policies"),
    ("revoke:attached_policies", "Detach managed policies"),
    ("revoke:groups", "Remove from groups"),
    ("revoke:user", "Delete the user"),
]
MFA_INTENT = "revoke.mfa_deactivating"  # audit action written before a virtual MFA device is deactivated


@dataclass(frozen=True)
class Inventory:
    """Everything DeleteUser needs gone, as listed before the admin confirms (and again after a DeleteConflict)."""

    iam_user_name: str
    access_keys: list[str]
    login_profile: bool
    mfa_devices: list[str]
    inline_policies: list[str]
    attached_policies: list[str]
    groups: list[str]
    exists: bool
    ssh_public_keys: list[str] = field(default_factory=list)
    signing_certificates: list[str] = field(default_factory=list)
    service_credentials: list[str] = field(default_factory=list)

    def leftovers(self) -> list[tuple[str, str]]:
        """(step key, what is left) for each kind still present, in step order."""
        found = [
            ("revoke:access_keys", "access keys", self.access_keys),
            ("revoke:login_profile", "a console password", ["yes"] if self.login_profile else []),
            ("revoke:mfa_devices", "MFA devices", self.mfa_devices),
            ("revoke:signing_certificates", "signing certificates", self.signing_certificates),
            ("revoke:ssh_public_keys", "SSH public keys", self.ssh_public_keys),
            ("revoke:service_credentials", "service-specific credentials", self.service_credentials),
            ("revoke:inline_policies", "inline policies", self.inline_policies),
            ("revoke:attached_policies", "attached policies", self.attached_policies),
            ("revoke:groups", "group memberships", self.groups),
        ]
        return [
            (key, what if values == ["yes"] else f"{what} {', '.join(values)}") for key, what, values in found if values
        ]


def inventory(gateway: IamGateway, iam_user_name: str) -> Inventory:
    user = gateway.get_user(iam_user_name)
    if user is None:
        return Inventory(iam_user_name, [], False, [], [], [], [], exists=False)
    return Inventory(
        iam_user_name=iam_user_name,
        access_keys=[key.access_key_id for key in gateway.list_access_keys(iam_user_name)],
        login_profile=gateway.has_login_profile(iam_user_name),
        mfa_devices=gateway.list_mfa_devices(iam_user_name),
        inline_policies=gateway.list_user_policies(iam_user_name),
        attached_policies=gateway.list_attached_user_policies(iam_user_name),
        groups=gateway.list_groups_for_user(iam_user_name),
        exists=True,
        ssh_public_keys=gateway.list_ssh_public_keys(iam_user_name),
        signing_certificates=gateway.list_signing_certificates(iam_user_name),
        service_credentials=gateway.list_service_specific_credentials(iam_user_name),
    )


def what_is_left(gateway: IamGateway, user: str, refused: str) -> tuple[str, list[str]]:
    """DeleteUser was refused: list the user again and say what is left (for the admin), and which steps to redo."""
    try:
        left = inventory(gateway, user).leftovers()
    except AwsError:
        return refused, []
    if not left:
        return refused, []
    reason = f"{refused} IAM user {user} still has: {'; '.join(what for _, what in left)}."
    redo = [key for key, _ in left]
    if "revoke:mfa_devices" in redo:
        redo.append("revoke:virtual_mfa_devices")
    return reason, redo


class MfaMemo:
    """The serials of virtual MFA devices this revoke deactivates, written down before each DeactivateMFADevice.

    Once deactivated, a device no longer shows in ListMFADevices for the user; the record lets the next step
    (or a resumed run after a crash between the two calls) find it and delete it.
    """

    def __init__(self, factory: sessionmaker[Session], request_id: int, clock: Callable[[], datetime]) -> None:
        self._factory, self._request_id, self._clock = factory, request_id, clock

    def remember(self, serial: str) -> None:
        with session_scope(self._factory) as session:
            audit.record(session, action=MFA_INTENT, request_id=self._request_id, at=self._clock(), serial=serial)

    def recorded(self) -> list[str]:
        with session_scope(self._factory) as session:
            details = session.scalars(
                select(AuditEvent.detail)
                .where(AuditEvent.request_id == self._request_id, AuditEvent.action == MFA_INTENT)
                .order_by(AuditEvent.id)
            )
            return list(dict.fromkeys(str(d.get("serial")) for d in details if d and d.get("serial")))


def execute_step(step: str, user: str, gateway: IamGateway, memo: MfaMemo) -> None:
    if step == "revoke:access_keys":
        for key in gateway.list_access_keys(user):
            gateway.delete_access_key(user, key.access_key_id)
    elif step == "revoke:login_profile":
        gateway.delete_login_profile(user)
    elif step == "revoke:mfa_devices":
        for serial in gateway.list_mfa_devices(user):
            if is_virtual_mfa(serial):
                memo.remember(serial)
            gateway.deactivate_mfa_device(user, serial)
    elif step == "revoke:virtual_mfa_devices":
        for serial in memo.recorded():
            gateway.delete_virtual_mfa_device(serial)
    elif step == "revoke:signing_certificates":
        for certificate_id in gateway.list_signing_certificates(user):
            gateway.delete_signing_certificate(user, certificate_id)
    elif step == "revoke:ssh_public_keys":
        for key_id in gateway.list_ssh_public_keys(user):
            gateway.delete_ssh_public_key(user, key_id)
    elif step == "revoke:service_credentials":
        for credential_id in gateway.list_service_specific_credentials(user):
            gateway.delete_service_specific_credential(user, credential_id)
    elif step == "revoke:inline_policies":
        for name in gateway.list_user_policies(user):
            gateway.delete_user_policy(user, name)
    elif step == "revoke:attached_policies":
        for arn in gateway.list_attached_user_policies(user):
            gateway.detach_user_policy(user, arn)
    elif step == "revoke:groups":
        for group in gateway.list_groups_for_user(user):
            gateway.remove_user_from_group(user, group)
    elif step == "revoke:user":
        gateway.delete_user(user)
    else:  # pragma: no cover - STEPS names every step
        raise ValueError(step)
