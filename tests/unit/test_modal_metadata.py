"""private_metadata round-trips through its model, and anything the bot did not write reads as None."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.slack.modal_metadata import MAX_METADATA, DenyMetadata, DoneMetadata, ExtendMetadata, RevokeMetadata

MODELS = [DenyMetadata, RevokeMetadata, DoneMetadata, ExtendMetadata]


@pytest.mark.parametrize("model", MODELS)
def test_what_the_bot_writes_reads_back(model: type[DenyMetadata]) -> None:
    written = model(request_id=42).dump()
    assert model.of({"private_metadata": written}) == model(request_id=42)
    assert model.of({"private_metadata": json.dumps({"request_id": 42})}) == model(request_id=42)  # older modals


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        123,
        "{",
        "[" * 3000,
        "null",
        json.dumps([42]),
        json.dumps({}),
        json.dumps({"request_id": "42"}),
        json.dumps({"request_id": True}),
        json.dumps({"request_id": 42.0}),
        json.dumps({"request_id": 0}),
        json.dumps({"request_id": -1}),
        json.dumps({"request_id": 2**53}),
        '{"request_id": Infinity}',
        json.dumps({"request_id": 42, "admin": "U0ADMIN"}),  # a field the bot never writes
        json.dumps({"request_id": 42, "pad": "x" * MAX_METADATA}),
    ],
)
def test_tampered_metadata_reads_as_none(model: type[DenyMetadata], raw: Any) -> None:
    assert model.of({"private_metadata": raw}) is None


def test_a_view_without_metadata_or_not_a_dict_reads_as_none() -> None:
    assert DenyMetadata.of({}) is None
    assert DenyMetadata.of("not a view") is None  # type: ignore[arg-type]
