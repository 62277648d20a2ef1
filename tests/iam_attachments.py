"""Give an IAM user (in moto) one of every kind of thing DeleteUser refuses to delete around.

Shared by the strict IAM layer's tests and the offboarding tests. Each helper takes a boto3 IAM client, so it
works against the in-process mock and against a moto server alike.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

INLINE_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}
)
SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 koding-test"  # moto reads the body only as text
ATTACHED_POLICY = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"


def signing_certificate_pem() -> str:
    """A self-signed X.509 certificate: UploadSigningCertificate accepts nothing else."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "koding-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def add_virtual_mfa(iam: Any, user: str) -> str:
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{user}-mfa")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(
        UserName=user, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
    )
    return str(serial)


def attach(iam: Any, user: str, kind: str, *, group: str = "Developers") -> str:
    """Add one attachment of `kind` to the user; returns its identifier."""
    if kind == "access_key":
        return str(iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"])
    if kind == "login_profile":
        iam.create_login_profile(UserName=user, Password="Correct-Horse-9!")
        return "login profile"
    if kind == "mfa_device":
        return add_virtual_mfa(iam, user)
    if kind == "inline_policy":
        iam.put_user_policy(UserName=user, PolicyName="inline", PolicyDocument=INLINE_POLICY)
        return "inline"
    if kind == "attached_policy":
        iam.attach_user_policy(UserName=user, PolicyArn=ATTACHED_POLICY)
        return ATTACHED_POLICY
    if kind == "group":
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_group(GroupName=group)
        iam.add_user_to_group(UserName=user, GroupName=group)
        return group
    if kind == "ssh_public_key":
        return str(iam.upload_ssh_public_key(UserName=user, SSHPublicKeyBody=SSH_KEY)["SSHPublicKey"]["SSHPublicKeyId"])
    if kind == "signing_certificate":
        body = signing_certificate_pem()
        return str(iam.upload_signing_certificate(UserName=user, CertificateBody=body)["Certificate"]["CertificateId"])
    if kind == "service_credential":
        made = iam.create_service_specific_credential(UserName=user, ServiceName="codecommit.amazonaws.com")
        return str(made["ServiceSpecificCredential"]["ServiceSpecificCredentialId"])
    raise ValueError(kind)


KINDS = (
    "access_key",
    "login_profile",
    "mfa_device",
    "inline_policy",
    "attached_policy",
    "group",
    "ssh_public_key",
    "signing_certificate",
    "service_credential",
)


def attach_everything(iam: Any, user: str, *, group: str = "Developers") -> dict[str, str]:
    return {kind: attach(iam, user, kind, group=group) for kind in KINDS}
