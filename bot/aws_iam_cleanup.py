"""The IAM calls that take a user apart before DeleteUser, mixed into `IamGateway` (bot/aws_iam.py).

Kept apart only to keep each module small: no boto3 here, every call goes through the gateway's `_call`, so errors
are translated the same way. Each removal treats "already gone" (NoSuchEntity) as done, so a resumed offboarding
can repeat it.
"""

from __future__ import annotations

from typing import Any


class UserCleanupCalls:
    """List and remove what IAM's DeleteUser refuses to delete around
    (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html)."""

    def _call(self, operation: str, *, eventual: bool = False, fast: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - IamGateway provides it

    def _gone_ok(self, operation: str, **kwargs: Any) -> bool:
        raise NotImplementedError  # pragma: no cover - IamGateway provides it

    def remove_user_from_group(self, user: str, group: str) -> None:
        self._gone_ok("RemoveUserFromGroup", UserName=user, GroupName=group)

    def delete_login_profile(self, user: str) -> bool:
        """True when a console password existed and was removed."""
        return self._gone_ok("DeleteLoginProfile", UserName=user)

    def list_mfa_devices(self, user: str) -> list[str]:
        return [d["SerialNumber"] for d in self._call("ListMFADevices", UserName=user)["MFADevices"]]

    def deactivate_mfa_device(self, user: str, serial: str) -> None:
        self._gone_ok("DeactivateMFADevice", UserName=user, SerialNumber=serial)

    def delete_virtual_mfa_device(self, serial: str) -> None:
        """IAM refuses (DeleteConflict) while the device is still assigned: deactivate it first."""
        self._gone_ok("DeleteVirtualMFADevice", SerialNumber=serial)

    def list_ssh_public_keys(self, user: str) -> list[str]:
        return [k["SSHPublicKeyId"] for k in self._call("ListSSHPublicKeys", UserName=user)["SSHPublicKeys"]]

    def delete_ssh_public_key(self, user: str, key_id: str) -> None:
        self._gone_ok("DeleteSSHPublicKey", UserName=user, SSHPublicKeyId=key_id)

    def list_signing_certificates(self, user: str) -> list[str]:
        return [c["CertificateId"] for c in self._call("ListSigningCertificates", UserName=user)["Certificates"]]

    def delete_signing_certificate(self, user: str, certificate_id: str) -> None:
        self._gone_ok("DeleteSigningCertificate", UserName=user, CertificateId=certificate_id)

    def list_service_specific_credentials(self, user: str) -> list[str]:
        """Git (CodeCommit), Keyspaces... credentials: their ids."""
        found = self._call("ListServiceSpecificCredentials", UserName=user)["ServiceSpecificCredentials"]
        return [c["ServiceSpecificCredentialId"] for c in found]

    def delete_service_specific_credential(self, user: str, credential_id: str) -> None:
        self._gone_ok("DeleteServiceSpecificCredential", UserName=user, ServiceSpecificCredentialId=credential_id)

    def list_user_policies(self, user: str) -> list[str]:
        return list(self._call("ListUserPolicies", UserName=user)["PolicyNames"])

    def delete_user_policy(self, user: str, name: str) -> None:
        self._gone_ok("DeleteUserPolicy", UserName=user, PolicyName=name)

    def list_attached_user_policies(self, user: str) -> list[str]:
        return [p["PolicyArn"] for p in self._call("ListAttachedUserPolicies", UserName=user)["AttachedPolicies"]]

    def detach_user_policy(self, user: str, policy_arn: str) -> None:
        self._gone_ok("DetachUserPolicy", UserName=user, PolicyArn=policy_arn)

    def delete_user(self, user: str) -> bool:
        """True when the user existed and was deleted."""
        return self._gone_ok("DeleteUser", UserName=user)


def is_virtual_mfa(serial: str) -> bool:
    """A virtual MFA device's serial is its ARN, arn:aws:iam::ACCOUNT:mfa/NAME; hardware tokens have a plain serial
    and FIDO keys a u2f/ ARN (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteVirtualMFADevice.html)."""
    parts = serial.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam" and parts[5].startswith("mfa/")
