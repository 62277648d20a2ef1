"""Block Kit as a terminal shows it: mrkdwn to plain text (mentions, links, bold, emoji), blocks to lines, and
messages and modals in captioned boxes. Used by `koding-iam demo` (bot/devtools/demo.py) to print what people
would see."""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

WIDTH = 100
TIMES = "\u00d7"  # the multiplication sign, as in "chat.update (times) 12"
INDENT = "   "

# What Slack shows for the emoji shortcodes koding-iam uses; unknown shortcodes are printed as they are.
EMOJI = {
    "inbox_tray": "📥",
    "white_check_mark": "✅",
    "no_entry": "⛔",
    "hourglass_flowing_sand": "⏳",
    "hourglass": "⌛",
    "tada": "🎉",
    "x": "❌",
    "lock": "🔒",
    "key": "🔑",
    "warning": "⚠️",
}

_MENTION = re.compile(r"<([@#!])([^<>|]*)(?:\|([^<>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^<>|]*)(?:\|([^<>]*))?>")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_EMOJI = re.compile(r":([a-z0-9_+-]+):")
_CODE_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)


def mrkdwn_to_text(text: str) -> str:
    """Slack mrkdwn as a terminal can show it: mentions, dates, links, emoji and bold resolved, entities unescaped."""

    def special(match: re.Match[str]) -> str:
        sigil, body, label = match.group(1), match.group(2), match.group(3)
        if sigil == "@":
            return f"@{label or body}"
        if sigil == "#":
            return f"#{label or body}"
        if body.startswith("date^"):
            return label or body.split("^")[1]
        return label or f"@{body.split('^')[0]}"  # <!here>, <!channel>, <!subteam^ID|@team>

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        return f"{label} ({url})" if label and label != url else url

    def code_block(match: re.Match[str]) -> str:
        body = match.group(1).strip("\n")
        return "\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"

    text = _MENTION.sub(special, text)
    text = _LINK.sub(link, text)
    text = _CODE_BLOCK.sub(code_block, text)
    text = _BOLD.sub(r"\1", text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    # Entities last: text a person typed reaches Slack escaped, so `&lt;!channel&gt;` must read as `<!channel>`.
    return html.unescape(text).strip("\n")


def _text(obj: dict[str, Any] | None) -> str:
    """A Block Kit text object (plain_text or mrkdwn) as terminal text."""
    if not obj:
        return ""
    raw = str(obj.get("text", ""))
    return mrkdwn_to_text(raw) if obj.get("type") == "mrkdwn" else html.unescape(raw)


def _buttons(elements: list[dict[str, Any]]) -> str:
    return "  ".join(f"[ {_text(e.get('text'))} ]" for e in elements if e.get("type") == "button")


def _input_lines(block: dict[str, Any]) -> list[str]:
    label = _text(block.get("label"))
    element = block.get("element") or {}
    kind = element.get("type")
    lines: list[str] = []
    if kind == "checkboxes" or kind == "radio_buttons":
        chosen = {o.get("value") for o in element.get("initial_options") or []}
        if element.get("initial_option"):
            chosen.add(element["initial_option"].get("value"))
        lines.append(f"{label}:")
        for option in element.get("options") or []:
            mark = "✓" if option.get("value") in chosen else " "
            description = _text(option.get("description"))
            suffix = f" — {description}" if description else ""
            lines.append(f"  [{mark}] {_text(option.get('text'))}{suffix}")
    else:
        value = element.get("initial_value") or ""
        shown = f"“{value}”" if value else "(empty)"
        lines.append(f"{label}: {shown}")
    hint = _text(block.get("hint"))
    if hint:
        lines.append(f"  ({hint})")
    return lines


def render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """Block Kit as the lines a person reads, in order; blank lines between blocks."""
    out: list[list[str]] = []
    for block in blocks or []:
        kind = block.get("type")
        lines: list[str] = []
        if kind == "header":
            title = _text(block.get("text"))
            lines += [title.upper()]
        elif kind == "section":
            if block.get("text"):
                lines += _text(block["text"]).splitlines()
            for field in block.get("fields") or []:
                lines += _text(field).splitlines()
            accessory = block.get("accessory") or {}
            if accessory.get("type") == "button":
                lines.append(_buttons([accessory]))
        elif kind == "context":
            lines += [
                " ".join(_text(e) for e in block.get("elements") or [] if e.get("type") in ("mrkdwn", "plain_text"))
            ]
        elif kind == "actions":
            lines.append(_buttons(block.get("elements") or []))
        elif kind == "input":
            lines += _input_lines(block)
        elif kind == "divider":
            lines.append("─" * 20)
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        else:
            lines.append(f"[{kind} block]")
        out.append(lines)
    flat: list[str] = []
    for index, lines in enumerate(out):
        if index:
            flat.append("")
        flat += lines
    return flat


def wrap(lines: list[str], width: int) -> list[str]:
    """Wrap long lines at spaces only, so keys and ARNs are never split."""
    wrapped: list[str] = []
    for line in lines:
        if len(line) <= width or not line.strip():
            wrapped.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        wrapped += textwrap.wrap(
            line,
            width=width,
            subsequent_indent=lead + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return wrapped


def boxed(caption: str, lines: list[str]) -> str:
    """A framed surface (message or modal) under a caption, indented under the section header."""
    body = wrap(lines, WIDTH - len(INDENT) - 2)
    top = f"{INDENT}┌─ {caption} "
    rows = [top + "─" * max(3, WIDTH - len(top))]
    rows += [f"{INDENT}│ {line}".rstrip() for line in body]
    rows.append(f"{INDENT}└" + "─" * (WIDTH - len(INDENT) - 1))
    return "\n".join(rows)


def render_message(caption: str, message: dict[str, Any]) -> str:
    lines = render_blocks(message.get("blocks") or [])
    return boxed(caption, lines or [mrkdwn_to_text(message.get("text", ""))])


def render_modal(view: dict[str, Any]) -> str:
    lines = render_blocks(view.get("blocks") or [])
    buttons = [b for b in (view.get("close"), view.get("submit")) if b]
    if buttons:
        lines += ["", "  ".join(f"[ {_text(b)} ]" for b in buttons)]
    return boxed(f"Modal: {_text(view.get('title'))}", lines)
