"""Unit tests for bot/aws_iam.py: error translation, bounded backoff and the gateway over a stubbed boto3 client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from bot import aws_iam
from bot.aws_iam import (
    AccessDenied,
    AwsError,
    Backoff,
    ConcurrentModification,
    EntityAlreadyExists,
    IamGateway,
    LimitExceeded,
    NewAccessKey,
    NoSuchEntity,
    TransientAwsError,
    _translate,
    fast_check,
    standard_retries,
)

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
USER = {
    "Path": "/koding/",
    "UserName": "koding-alice",
    "UserId": "AIDAEXAMPLEUSERID0001",
    "Arn": "arn:aws:iam::123456789012:user/koding/koding-alice",
    "CreateDate": CREATED,
}


def client_error(code: str, status: int, message: str = "msg", operation: str = "GetUser") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture
def stubbed(session: boto3.session.Session) -> Iterator[tuple[Any, Stubber]]:
    client = session.client("iam", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def gateway(client: Any, *, attempts: int = 4, sleeps: Sleeps | None = None) -> IamGateway:
    return IamGateway(
        client,
        backoff=Backoff(attempts=attempts, first_delay=0.25, max_delay=1.0, sleep=sleeps or Sleeps()),
    )


# Configs ------------------------------------------------------------------------------------------------------
def test_standard_retries_mode_is_explicit() -> None:
    config = standard_retries()
    assert config.retries is not None
    assert config.retries["mode"] == "standard"
    assert config.retries["max_attempts"] >= 1


def test_gateway_clients_use_standard_retry_mode() -> None:
    gateway = IamGateway.from_environment()
    assert gateway._client.meta.config.retries["mode"] == "standard"
    assert gateway._client.meta.config.retries["total_max_attempts"] == 6
    assert gateway._fast_client.meta.config.retries["total_max_attempts"] == 1


def test_fast_check_makes_one_attempt() -> None:
    config = fast_check()
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.connect_timeout <= 1
    assert config.read_timeout <= 2


# _translate -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "cls", "transient"),
    [
        ("EntityAlreadyExists", 409, EntityAlreadyExists, False),
        ("NoSuchEntity", 404, NoSuchEntity, False),
        ("AccessDenied", 403, AccessDenied, False),
        ("AccessDeniedException", 403, AccessDenied, False),
        ("InvalidClientTokenId", 403, AccessDenied, False),
        ("ExpiredToken", 400, AccessDenied, False),
        ("LimitExceeded", 409, LimitExceeded, False),
        ("ConcurrentModification", 409, ConcurrentModification, True),
        ("Throttling", 400, TransientAwsError, True),
        ("ThrottlingException", 400, TransientAwsError, True),
        ("ServiceFailure", 500, TransientAwsError, True),
        ("SomethingNew", 503, TransientAwsError, True),
        ("SomethingNew", 500, TransientAwsError, True),
        ("MalformedPolicyDocument", 400, AwsError, False),
        ("ValidationError", 400, AwsError, False),
    ],
)
def test_translate_client_errors(code: str, status: int, cls: type[AwsError], transient: bool) -> None:
    error = _translate(client_error(code, status, message="AWS says no"), "GetUser")
    assert type(error) is cls
    assert error.transient is transient
    assert error.code == code
    assert error.message == "AWS says no"
    assert error.operation == "GetUser"
    assert str(error) == f"GetUser: {code}: AWS says no"


def test_translate_without_status_or_code() -> None:
    error = _translate(ClientError({"Error": {}}, "GetUser"), "GetUser")
    assert type(error) is AwsError
    assert error.code == "Unknown"
    assert error.transient is False


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://iam.amazonaws.com/"),
    ],
)
def test_translate_network_errors_are_transient(exc: Exception) -> None:
    error = _translate(exc, "CreateUser")
    assert type(error) is TransientAwsError
    assert error.transient is True
    assert error.code == type(exc).__name__


# Gateway over a stubbed client ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("EntityAlreadyExists", 409, EntityAlreadyExists),
        ("AccessDenied", 403, AccessDenied),
        ("LimitExceeded", 409, LimitExceeded),
        ("Throttling", 400, TransientAwsError),
        ("InternalFailure", 500, TransientAwsError),
        ("InvalidInput", 400, AwsError),
    ],
)
def test_gateway_raises_translated_errors(stubbed: tuple[Any, Stubber], code: str, status: int, cls: type) -> None:
    client, stubber = stubbed
    stubber.add_client_error("create_user", service_error_code=code, service_message="m", http_status_code=status)
    sleeps = Sleeps()
    with pytest.raises(AwsError) as caught:
        gateway(client, sleeps=sleeps).create_user("koding-alice", path="/koding/", tags={}, permissions_boundary=None)
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.operation == "CreateUser"
    assert sleeps.calls == []  # only ConcurrentModification (and eventual NoSuchEntity) are retried here
    assert not isinstance(caught.value, ClientError)


def test_get_user_found(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response(
        "get_user",
        {"User": {**USER, "Tags": [{"Key": "koding-iam:request", "Value": "42"}]}},
        expected_params={"UserName": "koding-alice"},
    )
    user = gateway(client).get_user("koding-alice")
    assert user is not None
    assert user.name == "koding-alice"
    assert user.path == "/koding/"
    assert user.arn == USER["Arn"]
    assert user.tags == {"koding-iam:request": "42"}


def test_get_user_returns_none_on_no_such_entity(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("get_user", service_error_code="NoSuchEntity", http_status_code=404)
    sleeps = Sleeps()
    gw = gateway(client, sleeps=sleeps)
    assert gw.get_user("koding-bob") is None
    assert sleeps.calls == []
    assert gw.calls == 1


def test_get_user_access_denied_is_raised(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("get_user", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(AccessDenied):
        gateway(client).get_user("koding-bob")


def test_create_user_sends_path_tags_and_boundary(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    boundary = "arn:aws:iam::123456789012:policy/koding-boundary"
    stubber.add_response(
        "create_user",
        {"User": USER},
        expected_params={
            "UserName": "koding-alice",
            "Path": "/koding/",
            "Tags": [{"Key": "koding-iam:request", "Value": "42"}],
            "PermissionsBoundary": boundary,
        },
    )
    user = gateway(client).create_user(
        "koding-alice", path="/koding/", tags={"koding-iam:request": "42"}, permissions_boundary=boundary
    )
    assert user.name == "koding-alice"
    assert user.tags == {"koding-iam:request": "42"}


def test_create_user_without_boundary_omits_it(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response(
        "create_user",
        {"User": USER},
        expected_params={"UserName": "koding-alice", "Path": "/koding/", "Tags": []},
    )
    gateway(client).create_user("koding-alice", path="/koding/", tags={}, permissions_boundary=None)


# Backoff -------------------------------------------------------------------------------------------------------
def test_backoff_delays_double_and_are_capped() -> None:
    assert Backoff(attempts=6, first_delay=0.25, max_delay=2.0).delays() == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert Backoff(attempts=1).delays() == []
    assert len(Backoff().delays()) == Backoff().attempts - 1


def test_concurrent_modification_is_retried_then_succeeds(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("list_access_keys", service_error_code="ConcurrentModification", http_status_code=409)
    stubber.add_client_error("list_access_keys", service_error_code="ConcurrentModification", http_status_code=409)
    stubber.add_response(
        "list_access_keys",
        {
            "AccessKeyMetadata": [
                {
                    "UserName": "koding-alice",
                    "AccessKeyId": "AKIAIOSFODNN7EXAMPLE",
                    "Status": "Active",
                    "CreateDate": CREATED,
                }
            ]
        },
    )
    sleeps = Sleeps()
    gw = gateway(client, sleeps=sleeps)
    keys = gw.list_access_keys("koding-alice")
    assert [(k.access_key_id, k.status, k.created) for k in keys] == [("AKIAIOSFODNN7EXAMPLE", "Active", CREATED)]
    assert sleeps.calls == [0.25, 0.5]
    assert gw.calls == 3


def test_concurrent_modification_gives_up_after_attempts(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    for _ in range(4):
        stubber.add_client_error("create_group", service_error_code="ConcurrentModification", http_status_code=409)
    sleeps = Sleeps()
    gw = gateway(client, attempts=4, sleeps=sleeps)
    with pytest.raises(ConcurrentModification) as caught:
        gw.create_group("Developers", path="/koding/")
    assert caught.value.transient is True
    assert sleeps.calls == [0.25, 0.5, 1.0]
    assert gw.calls == 4


def test_eventual_no_such_entity_is_retried(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("add_user_to_group", service_error_code="NoSuchEntity", http_status_code=404)
    stubber.add_response(
        "add_user_to_group", {}, expected_params={"UserName": "koding-alice", "GroupName": "Developers"}
    )
    sleeps = Sleeps()
    gw = gateway(client, sleeps=sleeps)
    gw.add_user_to_group("koding-alice", "Developers")
    assert sleeps.calls == [0.25]
    assert gw.calls == 2


def test_eventual_no_such_entity_gives_up_after_attempts(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_client_error("add_user_to_group", service_error_code="NoSuchEntity", http_status_code=404)
    sleeps = Sleeps()
    gw = gateway(client, attempts=3, sleeps=sleeps)
    with pytest.raises(NoSuchEntity):
        gw.add_user_to_group("koding-alice", "Developers")
    assert sleeps.calls == [0.25, 0.5]
    assert gw.calls == 3


def test_no_such_entity_is_not_retried_when_not_eventual(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("list_access_keys", service_error_code="NoSuchEntity", http_status_code=404)
    sleeps = Sleeps()
    with pytest.raises(NoSuchEntity):
        gateway(client, sleeps=sleeps).list_access_keys("koding-ghost")
    assert sleeps.calls == []


def test_throttling_is_not_retried_by_the_gateway(stubbed: tuple[Any, Stubber]) -> None:
    # botocore's standard retry mode owns throttling; the gateway's own backoff is only for IAM's quirks.
    client, stubber = stubbed
    stubber.add_client_error("create_access_key", service_error_code="Throttling", http_status_code=400)
    sleeps = Sleeps()
    with pytest.raises(TransientAwsError):
        gateway(client, sleeps=sleeps).create_access_key("koding-alice")
    assert sleeps.calls == []


def test_fast_calls_never_retry(session: boto3.session.Session) -> None:
    slow = session.client("iam", region_name="us-east-1")
    fast = session.client("iam", region_name="us-east-1")
    sleeps = Sleeps()
    gw = IamGateway(slow, fast_client=fast, backoff=Backoff(attempts=5, sleep=sleeps))
    with Stubber(fast) as fast_stub, Stubber(slow) as slow_stub:
        fast_stub.add_client_error("get_user", service_error_code="ConcurrentModification", http_status_code=409)
        with pytest.raises(ConcurrentModification):
            gw.get_user("koding-alice", fast=True)
        fast_stub.assert_no_pending_responses()
        slow_stub.assert_no_pending_responses()
    assert sleeps.calls == []
    assert gw.calls == 1


def test_network_errors_become_transient() -> None:
    class BrokenClient:
        def get_user(self, **_: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/")

    with pytest.raises(TransientAwsError) as caught:
        gateway(BrokenClient()).get_user("koding-alice")
    assert caught.value.code == "EndpointConnectionError"


def test_delete_access_key_ignores_missing_key(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("delete_access_key", service_error_code="NoSuchEntity", http_status_code=404)
    assert gateway(client).delete_access_key("koding-alice", "AKIAIOSFODNN7EXAMPLE") is None


# Access keys ----------------------------------------------------------------------------------------------------
def test_create_access_key_returns_secret_once(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response(
        "create_access_key",
        {
            "AccessKey": {
                "UserName": "koding-alice",
                "AccessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "Status": "Active",
                "SecretAccessKey": SECRET,
                "CreateDate": CREATED,
            }
        },
        expected_params={"UserName": "koding-alice"},
    )
    key = gateway(client).create_access_key("koding-alice")
    assert key.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert key.secret_access_key == SECRET
    assert key.created == CREATED


def test_new_access_key_hides_secret_from_repr_and_str() -> None:
    key = NewAccessKey(access_key_id="AKIAIOSFODNN7EXAMPLE", created=CREATED, secret_access_key=SECRET)
    for shown in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), str({"k": key})):
        assert SECRET not in shown
        assert "AKIAIOSFODNN7EXAMPLE" in shown


@pytest.mark.parametrize(
    ("operation", "snake"),
    [
        ("GetUser", "get_user"),
        ("AddUserToGroup", "add_user_to_group"),
        ("ListAttachedGroupPolicies", "list_attached_group_policies"),
        ("CreateAccessKey", "create_access_key"),
    ],
)
def test_snake_case_operation_names(operation: str, snake: str) -> None:
    assert aws_iam._snake(operation) == snake


class _Raising:
    """A client whose every call raises `exc` (a response botocore could not parse, a bug of ours...)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def call(**_: Any) -> Any:
            raise self.exc

        return call


def test_a_botocore_error_outside_its_exception_tree_becomes_an_aws_error_without_the_body() -> None:
    from botocore.parsers import ResponseParserError

    body = f"<CreateAccessKeyResponse><SecretAccessKey>{SECRET}</SecretAccessKey>"
    exc = ResponseParserError(f"Unable to parse response (syntax error), invalid XML received. Retry:\n{body}")
    gateway = IamGateway(_Raising(exc), backoff=Backoff(sleep=Sleeps()))

    with pytest.raises(AwsError) as caught:
        gateway.simulate("arn:aws:iam::123456789012:user/bot", ["iam:CreateUser"], ["*"])

    error = caught.value
    assert isinstance(error, TransientAwsError)
    assert (error.code, error.operation) == ("ResponseParserError", "SimulatePrincipalPolicy")
    assert SECRET not in str(error) and "<" not in error.message


def test_an_error_that_is_not_botocore_s_is_not_disguised_as_an_aws_error() -> None:
    gateway = IamGateway(_Raising(KeyError("a bug of ours")), backoff=Backoff(sleep=Sleeps()))
    with pytest.raises(KeyError):
        gateway.get_user("koding-alice")
