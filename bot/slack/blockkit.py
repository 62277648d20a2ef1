"""Block Kit building blocks every surface shares: sections, context lines, buttons, plain text, a list that
fits one section, and mrkdwn escaping of anything a person typed.

Text a person typed is escaped (`escape`) wherever it lands in mrkdwn, so `<!channel>`, mentions and links
typed into a form are shown as text and never act.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.slack.limits import BUTTON_TEXT, OPTION_TEXT, SECTION_TEXT, VIEW_TITLE, clip

Blocks = list[dict[str, Any]]
ROW_TEXT = 600  # one row of a table_section
TABLE_BUDGET = 2700  # rows of a table_section; the rest of the section's 3,000 is its title and "…and N more"
HEADING_TEXT = 150


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: with &, < and > escaped no mention, broadcast or link can be formed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(text: str) -> str:
    """Free text a person typed (purpose, reasons), as a mrkdwn blockquote: escaped, and every line behind the
    quote bar, so a typed newline cannot start a line that passes for the bot's own heading or section."""
    return "\n".join(f">{escape(line)}" for line in text.splitlines() or [""])


def one_line(text: str, limit: int) -> str:
    """Free text shortened for a list row: whitespace (newlines too) collapsed, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def when(at: datetime | None) -> str:
    """A timestamp every reader sees in their own time zone, with a UTC fallback."""
    if at is None:
        return "an unknown time"
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def section_block(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}}


def context_block(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}]}


def button_element(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, BUTTON_TEXT)},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def plain_text(text: str, limit: int = OPTION_TEXT) -> dict[str, str]:
    return {"type": "plain_text", "text": clip(text, limit)}


def modal_title(text: str) -> dict[str, str]:
    """A modal's title, submit or close label."""
    return plain_text(text, VIEW_TITLE)


def dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def table_section(title: str, rows: list[str], *, empty: str, total: int | None = None) -> list[dict[str, Any]]:
    """A titled list in one section that stays inside Slack's 3,000-character limit by construction: each row is
    shortened to a fifth of it, rows that do not fit are counted in "…and N more" (``total`` when the caller
    fetched only the first rows of a longer list)."""
    total = len(rows) if total is None else max(total, len(rows))
    body, shown = "", 0
    for row in rows:
        row = clip(row, ROW_TEXT)
        if len(body) + len(row) + 1 > TABLE_BUDGET:
            break
        body += row + "\n"
        shown += 1
    more = f"\n…and {total - shown} more" if shown < total else ""
    return [section_block(f"*{clip(title, HEADING_TEXT)}*\n{body.rstrip() or empty}{more}")]
