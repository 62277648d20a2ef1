"""Typed private_metadata: one pydantic model per modal, written and read only here.

Slack hands private_metadata back with the submission, and anyone who can craft a request can put anything in
it; so it is validated at the boundary, strictly (a request id is a JSON integer, not "9", true or 9.0), and a
string that is not exactly what the bot wrote reads as None, which the handler refuses with a clear message.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Slack's limit for private_metadata (https://docs.slack.dev/reference/views): anything longer was not ours.
MAX_METADATA = 3000
RequestId = Annotated[int, Field(gt=0, lt=2**53)]


class ModalMetadata(BaseModel):
    """Base: frozen, strict, no unknown fields."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    def dump(self) -> str:
        return self.model_dump_json()

    @classmethod
    def of(cls, view: dict[str, Any]) -> Self | None:
        """The metadata `view` carries, or None when it is missing, malformed or tampered with."""
        raw = view.get("private_metadata") if isinstance(view, dict) else None
        if not isinstance(raw, str) or not raw or len(raw) > MAX_METADATA:
            return None
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return None


class DenyMetadata(ModalMetadata):
    """The deny-reason modal: the request being denied."""

    request_id: RequestId


class RevokeMetadata(ModalMetadata):
    """The revoke confirmation: the request whose IAM user is removed."""

    request_id: RequestId


class DoneMetadata(ModalMetadata):
    """The "I'm done" confirmation: the request whose access ends now."""

    request_id: RequestId


class ExtendMetadata(ModalMetadata):
    """The extension form: the request whose end date would move."""

    request_id: RequestId
