"""The AWS errors callers tell apart, without importing botocore: permanent failures (stop and tell a person)
and transient ones (retry). bot/aws_iam.py translates every botocore failure into one of these."""

from __future__ import annotations


class AwsError(Exception):
    """An IAM call failed; `code` is the AWS error code, `message` is AWS's own text (never a secret)."""

    transient = False

    def __init__(self, code: str, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.code = code
        self.message = message
        self.operation = operation


class EntityAlreadyExists(AwsError):
    pass


class NoSuchEntity(AwsError):
    pass


class AccessDenied(AwsError):
    pass


class LimitExceeded(AwsError):
    pass


class ConcurrentModification(AwsError):
    transient = True


class TransientAwsError(AwsError):
    """Throttling, service failure or a network problem that outlived botocore's own retries."""

    transient = True


ERROR_CLASSES: dict[str, type[AwsError]] = {
    "EntityAlreadyExists": EntityAlreadyExists,
    "NoSuchEntity": NoSuchEntity,
    "AccessDenied": AccessDenied,
    "AccessDeniedException": AccessDenied,
    "UnauthorizedOperation": AccessDenied,
    "InvalidClientTokenId": AccessDenied,
    "SignatureDoesNotMatch": AccessDenied,
    "ExpiredToken": AccessDenied,
    "LimitExceeded": LimitExceeded,
    "ConcurrentModification": ConcurrentModification,
    "Throttling": TransientAwsError,
    "ThrottlingException": TransientAwsError,
    "ServiceFailure": TransientAwsError,
    "ServiceUnavailable": TransientAwsError,
    "RequestLimitExceeded": TransientAwsError,
}
