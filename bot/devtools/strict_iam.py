"""A strict layer over moto's IAM: the documented IAM rules moto does not enforce, so tests see what AWS would do.

moto accepts `Koding-Bob` beside `koding-bob` and deletes a user that still has SSH keys or MFA devices; real IAM
refuses both. `install()` patches moto's `IAMBackend` class (and adds the few actions moto lacks to its
`IamResponse` class) rather than hooking botocore events, because the backend is the one place every way the
tests reach moto goes through: the in-process `mock_aws` (sandbox, `koding-iam demo`, tests that call
`mock_aws` directly), a `ThreadedMotoServer` in the test process (served-process tests: the server shares this
process's backends) and the benchmark's moto server (`bench.backends` installs it in its own process). A botocore
event hook would only see the clients of the process that installed it, never a `koding-iam serve` child.

STS is held to one IAM rule as well: a new access key is refused by GetCallerIdentity for its first seconds
(IAM's eventual consistency), when a test asks for that with `new_keys_refused_for`.

Each rule cites the AWS documentation it comes from. `install()` is idempotent; `uninstall()` restores moto.
"""

from __future__ import annotations

import contextlib
import random
import string
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.exceptions import InvalidClientTokenIdError
from moto.core.responses import ActionResult, EmptyResult
from moto.iam.exceptions import (
    DeleteConflictException,
    EntityAlreadyExists,
    IAMException,
    LimitExceededException,
    NotFoundException,
)
from moto.iam.models import IAMBackend, User, iam_backends
from moto.iam.responses import IamResponse
from moto.sts.models import STSBackend


class NotSupportedService(IAMException):
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateServiceSpecificCredential.html (Errors)
    code = "NotSupportedService"


_lock = threading.Lock()
_originals: dict[str, Any] = {}
_sts_originals: dict[str, Any] = {}
_response_originals: dict[str, Any] = {}
_ADDED_ACTIONS = (
    "create_service_specific_credential",
    "list_service_specific_credentials",
    "delete_service_specific_credential",
)
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateServiceSpecificCredential.html (ServiceName)
SERVICE_CREDENTIAL_SERVICES = ("codecommit.amazonaws.com", "cassandra.amazonaws.com", "bedrock.amazonaws.com")
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html: "Service-specific credentials per
# user per service: 2"
SERVICE_CREDENTIALS_PER_SERVICE = 2


def installed() -> bool:
    return bool(_originals)


def install() -> None:
    """Patch moto's IAM classes (every account, every backend instance, in-process and served alike)."""
    with _lock:
        if _originals:
            return
        for name, strict in _BACKEND_PATCHES.items():
            _originals[name] = getattr(IAMBackend, name)
            setattr(IAMBackend, name, strict)
        for name, strict in _STS_PATCHES.items():
            _sts_originals[name] = getattr(STSBackend, name)
            setattr(STSBackend, name, strict)
        for name in _ADDED_ACTIONS:
            setattr(IamResponse, name, globals()[f"_response_{name}"])
        for name, strict in _RESPONSE_PATCHES.items():
            _response_originals[name] = IamResponse.__dict__[name]
            setattr(IamResponse, name, strict)


def uninstall() -> None:
    """moto as it ships (for a test that must show a rule is the layer's and not moto's)."""
    with _lock:
        for name, original in _originals.items():
            setattr(IAMBackend, name, original)
        _originals.clear()
        for name, original in _sts_originals.items():
            setattr(STSBackend, name, original)
        _sts_originals.clear()
        for name in _ADDED_ACTIONS:
            if name in IamResponse.__dict__:
                delattr(IamResponse, name)
        for name, original in _response_originals.items():
            setattr(IamResponse, name, original)
        _response_originals.clear()


def _find(entities: dict[str, Any], name: str) -> str | None:
    """The stored key for `name`, matched case-insensitively.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html: names of users and groups "aren't
    distinguished by case, for example, you can't create groups named both ADMINS and admins". The API takes a
    name in any case and answers with the entity as it was created (UserName keeps its original case), so every
    look-up by name resolves case-insensitively here too.
    """
    if name in entities:
        return name
    folded = name.casefold() if isinstance(name, str) else name
    # A copy of the keys (taken at once under the GIL): the threaded moto server may add an entity meanwhile.
    return next((key for key in list(entities) if key.casefold() == folded), None)


# Users and groups: unique and looked up case-insensitively -------------------------------------------------------
def _create_user(self: IAMBackend, region_name: str, user_name: str, path: str = "/", tags: Any = None) -> User:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html: "Names are not distinguished by
    # case. For example, you cannot create resources named both "MyResource" and "myresource"." → EntityAlreadyExists
    existing = _find(self.users, user_name)
    if existing is not None:
        raise EntityAlreadyExists(f"User with name {existing} already exists.")
    return _originals["create_user"](self, region_name, user_name, path, tags)


def _get_user(self: IAMBackend, name: str) -> User:
    key = _find(self.users, name)
    return _originals["get_user"](self, key if key is not None else name)


def _create_group(self: IAMBackend, group_name: str, path: str = "/") -> Any:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateGroup.html: same rule as CreateUser.
    existing = _find(self.groups, group_name)
    if existing is not None:
        raise EntityAlreadyExists(f"Group with name {existing} already exists.")
    return _originals["create_group"](self, group_name, path)


def _get_group(self: IAMBackend, group_name: str) -> Any:
    key = _find(self.groups, group_name)
    return _originals["get_group"](self, key if key is not None else group_name)


# DeleteUser / DeleteGroup: refused while anything is attached ------------------------------------------------
def user_leftovers(backend: IAMBackend, user: User) -> list[str]:
    """What still keeps DeleteUser from succeeding, in the order the AWS guide removes it.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html: "you must delete the items attached
    to the user manually": password (login profile), access keys, signing certificates, SSH public keys, Git
    credentials (service-specific credentials), MFA devices, inline policies, attached managed policies, group
    memberships; otherwise DeleteConflict (HTTP 409).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli lists the same
    calls in order.
    """
    left = []
    if user.password is not None:
        left.append("login profile")
    if user.access_keys:
        left.append("access keys")
    if user.signing_certificates:
        left.append("signing certificates")
    if user.ssh_public_keys:
        left.append("SSH public keys")
    if _credentials(user):
        left.append("service specific credentials")
    if user.mfa_devices:
        left.append("MFA devices")
    if user.policies:
        left.append("inline policies")
    if user.managed_policies:
        left.append("attached policies")
    if any(user in group.users for group in backend.groups.values()):
        left.append("group memberships")
    return left


def _delete_user(self: IAMBackend, user_name: str) -> None:
    user = self.get_user(user_name)
    left = user_leftovers(self, user)
    if left:
        raise DeleteConflictException(f"Cannot delete entity, must remove {', '.join(left)} first.")
    _originals["delete_user"](self, user.name)


def _delete_group(self: IAMBackend, group_name: str) -> None:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteGroup.html: "The group must not contain any
    # users or have any attached policies." → DeleteConflict. Inline group policies count too (the guide's
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_groups_manage_delete.html removes them first).
    group = self.get_group(group_name)
    left = [
        what
        for what, present in (
            ("users", group.users),
            ("attached policies", group.managed_policies),
            ("inline policies", group.policies),
        )
        if present
    ]
    if left:
        raise DeleteConflictException(f"Cannot delete entity, must remove {', '.join(left)} first.")
    _originals["delete_group"](self, group.name)


def _delete_virtual_mfa_device(self: IAMBackend, serial_number: str) -> None:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteVirtualMFADevice.html: "You must deactivate a
    # user's virtual MFA device before you can delete it." → DeleteConflict while it is still assigned.
    device = self.virtual_mfa_devices.get(serial_number)
    if device is not None and device.user is not None:
        raise DeleteConflictException("Cannot delete entity, must deactivate the MFA device first.")
    _originals["delete_virtual_mfa_device"](self, serial_number)


def _get_access_key_last_used(self: IAMBackend, access_key_id: str) -> dict[str, Any]:
    """moto's answer, found in one pass over the users' keys. moto's own scan looks every user up again by name
    (through the case-insensitive look-up above), so a stand-in holding thousands of keys answered each call in
    tenths of a second of CPU, where IAM answers in constant time
    (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccessKeyLastUsed.html)."""
    for account in iam_backends.values():
        for user in list(account[self.partition].users.values()):
            for key in list(user.access_keys):
                if key.access_key_id == access_key_id:
                    return {"user_name": key.user_name, "last_used": key.last_used}
    raise NotFoundException(f"The Access Key with id {access_key_id} cannot be found")


_BACKEND_PATCHES = {
    "create_user": _create_user,
    "get_user": _get_user,
    "create_group": _create_group,
    "get_group": _get_group,
    "delete_user": _delete_user,
    "delete_group": _delete_group,
    "delete_virtual_mfa_device": _delete_virtual_mfa_device,
    "get_access_key_last_used": _get_access_key_last_used,
}


# Service-specific credentials: moto has none ---------------------------------------------------------------
def _credentials(user: User) -> list[dict[str, Any]]:
    """Kept on moto's User object, so they go when the user goes (and with every moto reset)."""
    store: list[dict[str, Any]] | None = getattr(user, "_strict_service_credentials", None)
    if store is None:
        store = []
        user._strict_service_credentials = store  # type: ignore[attr-defined]
    return store


def _metadata(credential: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in credential.items() if key != "ServicePassword"}


def _random(alphabet: str, length: int) -> str:
    return "".join(random.choice(alphabet) for _ in range(length))  # noqa: S311 - a test stand-in's ids


def _response_get_group(self: IamResponse) -> ActionResult:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetGroup.html: the group and a page of its users,
    # at most MaxItems of them ("If you do not include this parameter, the number of items defaults to 100"),
    # with IsTruncated and a Marker for the next page. moto answers every member at once, whatever MaxItems says.
    group = self.backend.get_group(self._get_param("GroupName"))
    size = int(self._get_param("MaxItems") or 100)
    start = int(self._get_param("Marker") or 0)
    page = group.users[start : start + size]
    result: dict[str, Any] = {"Group": group, "Users": page, "IsTruncated": start + size < len(group.users)}
    if result["IsTruncated"]:
        result["Marker"] = str(start + size)
    return ActionResult(result)


def _response_create_service_specific_credential(self: IamResponse) -> ActionResult:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateServiceSpecificCredential.html
    user = self.backend.get_user(self._get_param("UserName"))
    service = self._get_param("ServiceName")
    if service not in SERVICE_CREDENTIAL_SERVICES:
        raise NotSupportedService(f"Service {service} is not supported for service-specific credentials.")
    if sum(1 for c in _credentials(user) if c["ServiceName"] == service) >= SERVICE_CREDENTIALS_PER_SERVICE:
        quota = SERVICE_CREDENTIALS_PER_SERVICE
        raise LimitExceededException(f"Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: {quota}")
    credential = {
        "CreateDate": datetime.now(UTC),
        "ServiceName": service,
        "ServiceUserName": f"{user.name}-at-{self.backend.account_id}",
        "ServicePassword": _random(string.ascii_letters + string.digits + "+/=", 44),
        "ServiceSpecificCredentialId": "ACCA" + _random(string.ascii_uppercase + string.digits, 17),
        "UserName": user.name,
        "Status": "Active",
    }
    _credentials(user).append(credential)
    return ActionResult({"ServiceSpecificCredential": credential})


def _response_list_service_specific_credentials(self: IamResponse) -> ActionResult:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListServiceSpecificCredentials.html
    user = self.backend.get_user(self._get_param("UserName"))
    service = self._get_param("ServiceName")
    found = [_metadata(c) for c in _credentials(user) if service in (None, "", c["ServiceName"])]
    return ActionResult({"ServiceSpecificCredentials": found})


def _response_delete_service_specific_credential(self: IamResponse) -> EmptyResult:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteServiceSpecificCredential.html
    user = self.backend.get_user(self._get_param("UserName"))
    credential_id = self._get_param("ServiceSpecificCredentialId")
    store = _credentials(user)
    for credential in store:
        if credential["ServiceSpecificCredentialId"] == credential_id:
            store.remove(credential)
            return EmptyResult()
    raise NotFoundException(f"No such service-specific credential: {credential_id}")


# Key last use: moto records it only for requests signed with the key; tests set it ------------------------------
def set_access_key_last_used(access_key_id: str, *, used_at: datetime | None, service: str, region: str) -> None:
    """Make GetAccessKeyLastUsed answer as AWS would for a key used at `used_at` with `service` in `region`.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccessKeyLastUsed.html and its AccessKeyLastUsed
    type: LastUsedDate is absent (null) and ServiceName and Region are "N/A" for a key never used; moto answers
    that for a key whose `last_used` is None, which `used_at=None` restores. AWS records only the first use of a key
    in any 15-minute span (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html,
    access_key_1_last_used_date), so a test that sets a date sets the span's first use, as AWS reports it.
    moto keeps the answer on its AccessKey object (`last_used`, an AccessKeyLastUsed), shared by the in-process
    mock and a moto server running in this process.
    """
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    for account in list(iam_backends.values()):
        for backend in list(account.values()):
            key = backend.access_keys.get(access_key_id)
            if key is not None:
                key.last_used = None if used_at is None else AccessKeyLastUsed(used_at, service, region)
                return
    raise KeyError(f"no access key {access_key_id} in moto's IAM")


# New access keys: eventually consistent -------------------------------------------------------------------
class _NewKeyRefusal:
    """How long a new key is refused, and the clock that says how old it is (moto stamps CreateDate in UTC)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)


_new_keys = _NewKeyRefusal()


@contextlib.contextmanager
def new_keys_refused_for(seconds: float, *, clock: Callable[[], datetime] | None = None) -> Iterator[None]:
    """While inside: STS refuses an access key during its first `seconds` after CreateAccessKey (0, the default
    outside, accepts every key at once, as moto does). `clock` replaces the wall clock the key's age is read by."""
    previous = (_new_keys.seconds, _new_keys.clock)
    _new_keys.seconds = float(seconds)
    if clock is not None:
        _new_keys.clock = clock
    try:
        yield
    finally:
        _new_keys.seconds, _new_keys.clock = previous


def _access_key(account_id: str, partition: str, access_key_id: str) -> Any:
    backend = iam_backends[account_id][partition]
    user = backend.get_user_from_access_key_id(access_key_id)
    if user is None:
        return None
    return next((key for key in user.access_keys if key.access_key_id == access_key_id), None)


def _get_caller_identity(self: STSBackend, access_key_id: str, region: str) -> tuple[str, str, str]:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    # "Changes that I make are not always immediately visible": IAM is eventually consistent, and a new access key
    # can be refused for a few seconds after CreateAccessKey returns it. STS then answers as for any key it does
    # not know: 403 InvalidClientTokenId, "The security token included in the request is invalid."
    # (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html). moto accepts every key at once, and
    # answers a key it never made (the tests' own "testing" credentials) with a default identity; that stays so.
    if _new_keys.seconds > 0:
        key = _access_key(self.account_id, self.partition, access_key_id)
        if key is not None:
            created = key.create_date if key.create_date.tzinfo else key.create_date.replace(tzinfo=UTC)
            if _new_keys.clock() < created + timedelta(seconds=_new_keys.seconds):
                raise InvalidClientTokenIdError()
    return _sts_originals["get_caller_identity"](self, access_key_id, region)


_STS_PATCHES = {"get_caller_identity": _get_caller_identity}
_RESPONSE_PATCHES = {"get_group": _response_get_group}
