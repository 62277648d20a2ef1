"""Domain errors. Each carries a message that is safe to show to the person who caused it."""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """Base class: `user_message` is plain text (it is escaped before it reaches Slack)."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class NotAuthorized(DomainError):
    pass


class NotFound(DomainError):
    pass


class ValidationFailed(DomainError):
    """Form errors keyed by field name; shown with `response_action: errors`."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class AlreadyDecided(DomainError):
    def __init__(self, status: str, decided_by: str | None, decided_at: datetime | None) -> None:
        super().__init__(f"This request was already {status}.")
        self.status = status
        self.decided_by = decided_by
        self.decided_at = decided_at


class AlreadyApproved(DomainError):
    """The same approver clicked Approve again on a request that needs more approvals."""

    def __init__(self, request_id: int, count: int, required: int) -> None:
        super().__init__(
            f"You already approved request #{request_id} ({count} of {required} approvals); "
            "another approver has to approve it too."
        )


class InvalidState(DomainError):
    pass


class GrantExpired(DomainError):
    pass


class AlreadyRevealed(DomainError):
    def __init__(self, revealed_at: datetime | None, access_key_id: str | None) -> None:
        super().__init__("These access keys were already revealed; they are shown only once.")
        self.revealed_at = revealed_at
        self.access_key_id = access_key_id


class AdminAttention(DomainError):
    """Something only an admin can fix: the person who acted is told so, the admins are told what to do."""

    def __init__(self, user_message: str, admin_message: str) -> None:
        super().__init__(user_message)
        self.admin_message = admin_message
