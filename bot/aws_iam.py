"""The one place that talks to AWS: a thin gateway over an injected boto3 IAM client.

No Slack and no database here. botocore errors are translated into the `AwsError` family so callers can tell
permanent failures (stop and tell a person) from transient ones (retry), without importing botocore.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bot.aws_errors import ERROR_CLASSES
from bot.aws_errors import AccessDenied as AccessDenied
from bot.aws_errors import AwsError as AwsError
from bot.aws_errors import ConcurrentModification as ConcurrentModification
from bot.aws_errors import EntityAlreadyExists as EntityAlreadyExists
from bot.aws_errors import LimitExceeded as LimitExceeded
from bot.aws_errors import NoSuchEntity as NoSuchEntity
from bot.aws_errors import TransientAwsError as TransientAwsError
from bot.aws_iam_cleanup import UserCleanupCalls
from bot.aws_iam_policies import PolicyReadCalls

T = TypeVar("T")


_LOADER_LOCK = threading.Lock()
_shared_loader: botocore.loaders.Loader | None = None


def new_session() -> boto3.session.Session:
    """A fresh boto3 session (credentials and region read from the environment now) over one process-wide loader.

    Why: each botocore session otherwise parses its endpoint rules and service models again (about 1 MB of JSON,
    a tenth of a second), and the loader's cache only lives as long as its session. Loaded models never change.
    """
    global _shared_loader
    core = botocore.session.get_session()
    with _LOADER_LOCK:
        if _shared_loader is None:
            _shared_loader = botocore.loaders.create_loader(core.get_config_variable("data_path"))
        core.register_component("data_loader", _shared_loader)
    return boto3.session.Session(botocore_session=core)


def standard_retries() -> Config:
    """botocore's standard retry mode (throttling, 5xx), set explicitly so a default cannot silently change it.

    A fresh Config per client: botocore rewrites a Config's retries dict in place when it builds a client.
    """
    # As many pooled connections as listener threads that may call IAM at once (botocore keeps 10).
    return Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20, max_pool_connections=64
    )


def key_check() -> Config:
    """For asking STS with a brand-new key: short timeouts and one retry, so the reveal's wait stays bounded."""
    return Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)


def fast_check() -> Config:
    """For the quick existence check inside a Slack acknowledgement: one attempt, short timeouts, and a pooled
    connection for each listener thread that may check at once (botocore keeps 10: an eleventh concurrent check
    opened a connection and dropped it again)."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=0.5,
        read_timeout=1.0,
        max_pool_connections=64,
    )


@dataclass(frozen=True)
class IamUser:
    name: str
    arn: str
    path: str
    tags: dict[str, str]


@dataclass(frozen=True)
class IamGroup:
    name: str
    arn: str
    path: str


@dataclass(frozen=True)
class AccessKeyInfo:
    access_key_id: str
    status: str
    created: datetime


@dataclass(frozen=True)
class NewAccessKey:
    """A key straight from CreateAccessKey. The secret is kept out of repr() so it cannot reach a log by accident."""

    access_key_id: str
    created: datetime
    secret_access_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"NewAccessKey({self.access_key_id})"


@dataclass
class Backoff:
    """Short, bounded backoff for IAM's eventual consistency and ConcurrentModification."""

    attempts: int = 6
    first_delay: float = 0.25
    max_delay: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> list[float]:
        return [min(self.first_delay * 2**n, self.max_delay) for n in range(self.attempts - 1)]


def _translate(exc: Exception, operation: str) -> AwsError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        cls = ERROR_CLASSES.get(code)
        if cls is None:
            cls = TransientAwsError if status >= 500 else AwsError
        return cls(code, message, operation)
    # Any other botocore (or urllib3) failure: a response it could not parse, a dropped connection... Only the
    # first line of its text is kept: ResponseParserError appends the raw response body, which must never reach a
    # log line or a message (a CreateAccessKey body holds the secret).
    first_line = (str(exc).splitlines() or [""])[0][:300].rstrip(": ")
    return TransientAwsError(type(exc).__name__, first_line, operation)


def _is_aws_failure(exc: Exception) -> bool:
    """Raised by botocore (or the HTTP stack under it) while calling AWS, whether or not it is a ClientError or
    BotoCoreError: `botocore.parsers.ResponseParserError` is neither, and moto's server provokes it."""
    if isinstance(exc, (ClientError, BotoCoreError)):
        return True
    return type(exc).__module__.split(".", 1)[0] in ("botocore", "urllib3")


class IamGateway(UserCleanupCalls, PolicyReadCalls):
    """IAM operations koding-iam needs, each translating errors; no decisions are made here."""

    def __init__(
        self,
        client: Any,
        *,
        fast_client: Any | None = None,
        sts_client: Any | None = None,
        backoff: Backoff | None = None,
        key_sts_client: Callable[[str, str], Any] | None = None,
    ) -> None:
        self._client = client
        self._fast_client = fast_client or client
        self._sts = sts_client
        # Builds an STS client signed with a given key (id, secret); from a default boto3 session when not given.
        self._key_sts_client = key_sts_client or (lambda *key: _key_sts_client(new_session())(*key))
        self.backoff = backoff or Backoff()
        self.calls: int = 0
        # Told of each retry: on_retry(reason, times), reason "botocore" (its own retries, from the answer's
        # RetryAttempts), "concurrent_modification" or "eventual_consistency" (this gateway's backoff).
        self.on_retry: Callable[[str, int], None] = lambda reason, times: None

    @classmethod
    def from_environment(cls, *, backoff: Backoff | None = None) -> IamGateway:
        """Credentials through boto3's normal chain; AWS_ENDPOINT_URL is honoured by boto3 itself."""
        session = new_session()
        region = session.region_name or "us-east-1"
        client = session.client("iam", region_name=region, config=standard_retries())
        fast = session.client("iam", region_name=region, config=fast_check())
        sts = session.client("sts", region_name=region, config=standard_retries())
        return cls(client, fast_client=fast, sts_client=sts, backoff=backoff, key_sts_client=_key_sts_client(session))

    def _call(self, operation: str, *, eventual: bool = False, fast: bool = False, **kwargs: Any) -> Any:
        """Call one IAM operation. `eventual` retries NoSuchEntity briefly: the entity may be brand new."""
        client = self._fast_client if fast else self._client
        method = getattr(client, _snake(operation))
        delays = [] if fast else self.backoff.delays()
        while True:
            self.calls += 1
            try:
                result = method(**kwargs)
            except Exception as exc:
                if not _is_aws_failure(exc):
                    raise
                if isinstance(exc, ClientError):
                    self._count_botocore_retries(exc.response)
                error = _translate(exc, operation)
                retryable = isinstance(error, ConcurrentModification) or (eventual and isinstance(error, NoSuchEntity))
                if not retryable or not delays:
                    raise error from None
                concurrent = isinstance(error, ConcurrentModification)
                self.on_retry("concurrent_modification" if concurrent else "eventual_consistency", 1)
                self.backoff.sleep(delays.pop(0))
            else:
                self._count_botocore_retries(result)
                return result

    def _count_botocore_retries(self, answer: Any) -> None:
        metadata = answer.get("ResponseMetadata") if isinstance(answer, dict) else None
        attempts = metadata.get("RetryAttempts") if isinstance(metadata, dict) else None
        if isinstance(attempts, int) and attempts > 0:
            self.on_retry("botocore", attempts)

    def _gone_ok(self, operation: str, **kwargs: Any) -> bool:
        """A removal that is done if the thing is already gone: True when it existed and was removed."""
        try:
            self._call(operation, **kwargs)
        except NoSuchEntity:
            return False
        return True

    # Users -----------------------------------------------------------------------------------------------
    def get_user(self, name: str, *, fast: bool = False) -> IamUser | None:
        try:
            user = self._call("GetUser", fast=fast, UserName=name)["User"]
        except NoSuchEntity:
            return None
        tags = {tag["Key"]: tag["Value"] for tag in user.get("Tags", [])}
        return IamUser(name=user["UserName"], arn=user["Arn"], path=user["Path"], tags=tags)

    def create_user(self, name: str, *, path: str, tags: dict[str, str], permissions_boundary: str | None) -> IamUser:
        kwargs: dict[str, Any] = {
            "UserName": name,
            "Path": path,
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
        }
        if permissions_boundary:
            kwargs["PermissionsBoundary"] = permissions_boundary
        user = self._call("CreateUser", **kwargs)["User"]
        return IamUser(name=user["UserName"], arn=user["Arn"], path=user["Path"], tags=dict(tags))

    def list_groups_for_user(self, name: str) -> list[str]:
        return [group["GroupName"] for group in self._call("ListGroupsForUser", UserName=name)["Groups"]]

    def add_user_to_group(self, user: str, group: str) -> None:
        self._call("AddUserToGroup", eventual=True, UserName=user, GroupName=group)

    def list_users(self, *, path_prefix: str) -> list[IamUser]:
        """Every user under the path (paginated); tags are read per user only where the caller needs them."""
        users: list[IamUser] = []
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"PathPrefix": path_prefix, "MaxItems": 1000}
            if marker:
                kwargs["Marker"] = marker
            page = self._call("ListUsers", **kwargs)
            users.extend(IamUser(u["UserName"], u["Arn"], u["Path"], {}) for u in page["Users"])
            if not page.get("IsTruncated"):
                return users
            marker = page["Marker"]

    def user_tags(self, name: str) -> dict[str, str]:
        return {tag["Key"]: tag["Value"] for tag in self._call("ListUserTags", UserName=name)["Tags"]}

    def has_login_profile(self, user: str) -> bool:
        try:
            self._call("GetLoginProfile", UserName=user)
        except NoSuchEntity:
            return False
        return True

    # The bot's own identity (koding-iam doctor) ---------------------------------------------------------------
    def caller_arn(self) -> str:
        """sts:GetCallerIdentity: who the bot's credentials are."""
        if self._sts is None:
            raise AwsError("NoSTSClient", "no STS client configured", "GetCallerIdentity")
        try:
            return str(self._sts.get_caller_identity()["Arn"])
        except Exception as exc:
            if not _is_aws_failure(exc):
                raise
            raise _translate(exc, "GetCallerIdentity") from None

    def key_identity(self, key: NewAccessKey) -> str:
        """sts:GetCallerIdentity signed with `key` itself: its ARN once AWS accepts it, AccessDenied
        (InvalidClientTokenId) while IAM has not made it usable yet. Needs no permission. The client lives for this
        one call, so the secret stays in `key` alone; botocore logs the signature, never the secret."""
        client = self._key_sts_client(key.access_key_id, key.secret_access_key)
        try:
            return str(client.get_caller_identity()["Arn"])
        except Exception as exc:
            if not _is_aws_failure(exc):
                raise
            raise _translate(exc, "GetCallerIdentity") from None

    def simulate(self, principal_arn: str, actions: list[str], resources: list[str]) -> dict[str, str]:
        """iam:SimulatePrincipalPolicy: the decision ('allowed', 'implicitDeny', ...) for each action."""
        response = self._call(
            "SimulatePrincipalPolicy", PolicySourceArn=principal_arn, ActionNames=actions, ResourceArns=resources
        )
        return {result["EvalActionName"]: result["EvalDecision"] for result in response["EvaluationResults"]}

    # Groups ----------------------------------------------------------------------------------------------
    def get_group(self, name: str) -> IamGroup | None:
        try:
            group = self._call("GetGroup", GroupName=name, MaxItems=1)["Group"]
        except NoSuchEntity:
            return None
        return IamGroup(name=group["GroupName"], arn=group["Arn"], path=group["Path"])

    def create_group(self, name: str, *, path: str) -> IamGroup:
        group = self._call("CreateGroup", GroupName=name, Path=path)["Group"]
        return IamGroup(name=group["GroupName"], arn=group["Arn"], path=group["Path"])

    def attached_group_policies(self, group: str) -> list[str]:
        response = self._call("ListAttachedGroupPolicies", eventual=True, GroupName=group)
        return [policy["PolicyArn"] for policy in response["AttachedPolicies"]]

    def attach_group_policy(self, group: str, policy_arn: str) -> None:
        self._call("AttachGroupPolicy", eventual=True, GroupName=group, PolicyArn=policy_arn)

    # Access keys -----------------------------------------------------------------------------------------
    def create_access_key(self, user: str) -> NewAccessKey:
        key = self._call("CreateAccessKey", eventual=True, UserName=user)["AccessKey"]
        return NewAccessKey(
            access_key_id=key["AccessKeyId"],
            created=key["CreateDate"],
            secret_access_key=key["SecretAccessKey"],
        )

    def list_access_keys(self, user: str) -> list[AccessKeyInfo]:
        keys = self._call("ListAccessKeys", UserName=user)["AccessKeyMetadata"]
        return [AccessKeyInfo(k["AccessKeyId"], k["Status"], k["CreateDate"]) for k in keys]

    def set_access_key_status(self, user: str, access_key_id: str, *, active: bool) -> None:
        self._call(
            "UpdateAccessKey", UserName=user, AccessKeyId=access_key_id, Status="Active" if active else "Inactive"
        )

    def access_key_last_used(self, access_key_id: str) -> KeyLastUsed:
        return _last_used(self._call("GetAccessKeyLastUsed", AccessKeyId=access_key_id))

    def delete_access_key(self, user: str, access_key_id: str) -> None:
        self._gone_ok("DeleteAccessKey", UserName=user, AccessKeyId=access_key_id)


def _key_sts_client(session: Any) -> Callable[[str, str], Any]:
    """STS clients signed with one given key and no session token (the environment's must not be mixed in)."""
    region = session.region_name or "us-east-1"

    def build(access_key_id: str, secret_access_key: str) -> Any:
        return session.client(
            "sts",
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=None,
            config=key_check(),
        )

    return build


def _snake(operation: str) -> str:
    """boto3's method name for an API operation (botocore's own rule: ListMFADevices → list_mfa_devices)."""
    return xform_name(operation)


@dataclass(frozen=True)
class KeyLastUsed:
    """GetAccessKeyLastUsed's answer; `used_at` None means the key was never used."""

    used_at: datetime | None
    service: str | None
    region: str | None


def _last_used(response: dict[str, Any]) -> KeyLastUsed:
    info = response.get("AccessKeyLastUsed") or {}
    service = info.get("ServiceName")
    region = info.get("Region")
    return KeyLastUsed(
        used_at=info.get("LastUsedDate"),
        service=None if service in (None, "N/A") else str(service),
        region=None if region in (None, "N/A") else str(region),
    )
