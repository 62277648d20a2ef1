"""Slack's documented Block Kit limits, as pure functions: a message body or a view in, violations out.

Why: Slack refuses a whole message (``invalid_blocks``) or modal (``invalid_arguments``) when one option
description is a character too long, and nothing in a test would notice unless the stand-in refuses it too.
Each violation names the JSON path of the offending field and the measured size, e.g.
``$.blocks[2].element.options[1].description: 81 > 75``.

The node-level validators of ``slack_sdk.models`` (``validate_json``) are reused for every limit they know
(their message is turned into a path and a measured size); this module adds only what they lack: option
descriptions, checkbox and radio option counts, section field lengths, the message block count, duplicate
block_ids and action_ids, a view's external_id and the top-level ``text`` fallback. Sources, one per limit:

- blocks: https://api.slack.com/reference/block-kit/blocks
- composition objects: https://api.slack.com/reference/block-kit/composition-objects
- block elements: https://api.slack.com/reference/block-kit/block-elements
- views: https://api.slack.com/reference/surfaces/views
- messages: https://api.slack.com/methods/chat.postMessage
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block, BlockElement, ConfirmObject, Option
from slack_sdk.models.views import View

__all__ = ["Violation", "check_ack", "check_message", "check_view"]

# Limits slack_sdk's validators check (restated here so the rules can be listed in one place):
#   https://api.slack.com/reference/block-kit/composition-objects#option  option text <= 75, value <= 150
#   https://api.slack.com/reference/block-kit/block-elements#button       button text <= 75, value <= 2000
#   https://api.slack.com/reference/block-kit/block-elements              action_id <= 255, placeholder <= 150,
#                                                                         static_select options <= 100
#   https://api.slack.com/reference/block-kit/blocks                      block_id <= 255; section text <= 3000,
#       <= 10 fields; header text <= 150; context <= 10 elements; actions <= 25 elements; input label, hint <= 2000
#   https://api.slack.com/reference/surfaces/views                        title, submit, close <= 24; <= 100 blocks;
#                                                                         private_metadata <= 3000, callback_id <= 255
# Limits slack_sdk does not check:
OPTION_DESCRIPTION_MAX = 75  # https://api.slack.com/reference/block-kit/composition-objects#option "description"
CHOICE_OPTIONS_MAX = 10  # https://api.slack.com/reference/block-kit/block-elements#checkboxes (and #radio)
FIELD_TEXT_MAX = 2000  # https://api.slack.com/reference/block-kit/blocks#section "fields": each at most 2000
MESSAGE_BLOCKS_MAX = 50  # https://api.slack.com/reference/block-kit/blocks "up to 50 blocks in each message"
EXTERNAL_ID_MAX = 255  # https://api.slack.com/reference/surfaces/views "external_id ... Max length of 255"
# block_id "should be unique for each message and each iteration of a message" (blocks, "block_id");
# action_id "should be unique among all other action_ids in the containing block" (block-elements);
# chat.postMessage: with blocks, `text` is the fallback shown in notifications and to screen readers
# (https://api.slack.com/methods/chat.postMessage#text_usage): required here on every message.

_CHOICE_TYPES = ("checkboxes", "radio_buttons")
_SDK_MESSAGE = re.compile(
    r"^(?P<attr>\w+)(?: attribute)? (?:cannot exceed|must be between 1 and|must contain between 1 and) "
    r"(?P<limit>\d+)"
)
_SDK_ATTR_ALIASES = {"views": "blocks"}


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (a JSON path from the body's root) and what (``81 > 75`` or a sentence)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# Entry points ----------------------------------------------------------------------------------------------
def check_message(body: dict[str, Any], *, require_text: bool = True) -> list[Violation]:
    """A chat.postMessage / update / postEphemeral body, a response_url post or a message in an HTTP ack."""
    out: list[Violation] = []
    blocks = body.get("blocks")
    if blocks is None:
        return out
    if not isinstance(blocks, list):
        return [Violation("$.blocks", "must be an array of blocks")]
    text = body.get("text")
    if require_text and (not isinstance(text, str) or not text.strip()):
        out.append(Violation("$.text", "a non-empty text fallback is required beside blocks"))
    if len(blocks) > MESSAGE_BLOCKS_MAX:
        out.append(Violation("$.blocks", f"{len(blocks)} > {MESSAGE_BLOCKS_MAX} blocks"))
    out += _check_blocks(blocks, "$.blocks")
    return out


def check_view(view: Any, path: str = "$") -> list[Violation]:
    """A modal or home view as passed to views.open / update / push / publish or a ``response_action``."""
    if not isinstance(view, dict):
        return [Violation(path, "a view must be an object")]
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [Violation(f"{path}.blocks", "must be an array of blocks")]
    out = _sdk(lambda v: View(**v), view, path)
    external_id = view.get("external_id")
    if isinstance(external_id, str) and len(external_id) > EXTERNAL_ID_MAX:
        out.append(Violation(f"{path}.external_id", f"{len(external_id)} > {EXTERNAL_ID_MAX}"))
    out += _check_blocks(blocks, f"{path}.blocks")
    return out


def check_ack(body: Any) -> list[Violation]:
    """What an app answers an interaction or command with: a view for ``response_action`` update/push, field
    errors for ``errors``, else a message (slash commands, ``respond``-style acks)."""
    if not isinstance(body, dict):
        return []
    action = body.get("response_action")
    if action in ("update", "push"):
        return check_view(body.get("view"), "$.view")
    if action == "errors":
        errors = body.get("errors")
        if not isinstance(errors, dict) or not all(isinstance(v, str) for v in errors.values()):
            return [Violation("$.errors", "must map block_ids to messages")]
        return []
    if "blocks" in body:
        return check_message(body)
    return []


# Walk ------------------------------------------------------------------------------------------------------
def _check_blocks(blocks: list[Any], path: str) -> list[Violation]:
    out: list[Violation] = []
    seen: dict[str, int] = {}
    for i, block in enumerate(blocks):
        here = f"{path}[{i}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            out.append(Violation(here, "a block must be an object with a type"))
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen:
                out.append(Violation(f"{here}.block_id", f"duplicate of {path}[{seen[block_id]}].block_id"))
            seen.setdefault(block_id, i)
        out += _check_block(block, here)
    return out


def _check_block(block: dict[str, Any], path: str) -> list[Violation]:
    out = _sdk(Block.parse, block, path)
    kind = block["type"]
    if kind == "section":
        for j, field in enumerate(_list(block.get("fields"))):
            size = _text_size(field)
            if size is not None and size > FIELD_TEXT_MAX:
                out.append(Violation(f"{path}.fields[{j}]", f"{size} > {FIELD_TEXT_MAX}"))
        if isinstance(block.get("accessory"), dict):
            out += _check_element(block["accessory"], f"{path}.accessory")
    elif kind == "actions":
        out += _unique_action_ids(block, path)
        for j, element in enumerate(_list(block.get("elements"))):
            if isinstance(element, dict):
                out += _check_element(element, f"{path}.elements[{j}]")
    elif kind == "input" and isinstance(block.get("element"), dict):
        out += _check_element(block["element"], f"{path}.element")
    return out


def _check_element(element: dict[str, Any], path: str) -> list[Violation]:
    out = _sdk(BlockElement.parse, element, path)
    options = _list(element.get("options"))
    if element.get("type") in _CHOICE_TYPES and len(options) > CHOICE_OPTIONS_MAX:
        out.append(Violation(f"{path}.options", f"{len(options)} > {CHOICE_OPTIONS_MAX} options"))
    for key in ("options", "initial_options"):
        for j, option in enumerate(_list(element.get(key))):
            out += _check_option(option, f"{path}.{key}[{j}]")
    if isinstance(element.get("initial_option"), dict):
        out += _check_option(element["initial_option"], f"{path}.initial_option")
    for g, group in enumerate(_list(element.get("option_groups"))):
        for j, option in enumerate(_list(group.get("options") if isinstance(group, dict) else None)):
            out += _check_option(option, f"{path}.option_groups[{g}].options[{j}]")
    if isinstance(element.get("confirm"), dict):
        out += _sdk(ConfirmObject.parse, element["confirm"], f"{path}.confirm")
    return out


def _check_option(option: Any, path: str) -> list[Violation]:
    if not isinstance(option, dict):
        return [Violation(path, "an option must be an object")]
    out = _sdk(lambda o: Option.parse_all([o])[0], option, path)
    size = _text_size(option.get("description"))
    if size is not None and size > OPTION_DESCRIPTION_MAX:
        out.append(Violation(f"{path}.description", f"{size} > {OPTION_DESCRIPTION_MAX}"))
    return out


def _unique_action_ids(block: dict[str, Any], path: str) -> list[Violation]:
    out: list[Violation] = []
    seen: set[str] = set()
    for j, element in enumerate(_list(block.get("elements"))):
        action_id = element.get("action_id") if isinstance(element, dict) else None
        if isinstance(action_id, str):
            if action_id in seen:
                out.append(Violation(f"{path}.elements[{j}].action_id", "duplicate action_id in this block"))
            seen.add(action_id)
    return out


# slack_sdk's own validators --------------------------------------------------------------------------------
def _sdk(parse: Callable[[dict[str, Any]], JsonObject | None], node: dict[str, Any], path: str) -> list[Violation]:
    """Run every validator slack_sdk has for this node (not only the first that fails, as validate_json does)."""
    try:
        model = parse(node)
    except (SlackObjectFormationError, TypeError, ValueError, AttributeError, KeyError) as exc:
        return [Violation(path, f"malformed: {exc}")]
    if model is None:
        return [Violation(path, f"unknown type {node.get('type')!r}")]
    out: list[Violation] = []
    cls = type(model)
    for name in sorted(n for n in dir(cls) if not n.startswith("__") and hasattr(getattr(cls, n), "validator")):
        try:
            getattr(model, name)()
        except SlackObjectFormationError as exc:
            out.append(_from_sdk(str(exc), node, path))
        except (TypeError, AttributeError) as exc:  # a required field is missing or of the wrong type
            out.append(Violation(path, f"malformed ({name.lstrip('_')}): {exc}"))
    return out


def _from_sdk(message: str, node: dict[str, Any], path: str) -> Violation:
    """'text attribute cannot exceed 75 characters' on a node -> '<path>.text: 81 > 75'."""
    found = _SDK_MESSAGE.match(message)
    if not found:
        return Violation(path, message)
    attr = _SDK_ATTR_ALIASES.get(found["attr"], found["attr"])
    size = _size(node.get(attr))
    limit = int(found["limit"])
    if size is not None and size > limit:
        return Violation(f"{path}.{attr}", f"{size} > {limit}")
    return Violation(f"{path}.{attr}", message)


def _size(value: Any) -> int | None:
    if isinstance(value, str | list):
        return len(value)
    return _text_size(value)


def _text_size(value: Any) -> int | None:
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return len(value["text"])
    return len(value) if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
