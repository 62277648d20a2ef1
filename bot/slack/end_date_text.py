"""The end date of time-bound access as it appears on surfaces other than its own (bot/slack/timebound_views.py): the
request summary (approval card, DMs, App Home) and the request form's optional "Access for" field. Apart from
bot/slack/views.py, which shows both, so that module and the time-bound views can each import it.
"""

from __future__ import annotations

from typing import Any

from bot.slack import ids
from bot.slack.limits import INPUT_LABEL, OPTION_TEXT, clip
from models import AccessRequest


def _when(at: Any) -> str:
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def end_line(request: AccessRequest) -> str:
    """One line for a request's summary (card, DMs, App Home): its end date, or how long it will last."""
    if request.ends_at is not None:
        return f"*Access ends* {_when(request.ends_at)}; the IAM user is then deleted"
    if request.access_days:
        days = request.access_days
        return f"*Access for* {days} day{'s' if days != 1 else ''} from when the IAM user is created"
    return ""


def access_days_input(limits: dict[str, int]) -> dict[str, Any]:
    """The request form's optional "Access for" field; `limits` is each time-bound profile's label → max_days."""
    hint = "Optional. Leave empty for " + ("the longest the profile allows." if limits else "no end date.")
    if limits:
        hint += " " + "; ".join(f"{label}: at most {days} days" for label, days in limits.items()) + "."
    return {
        "type": "input",
        "block_id": ids.ACCESS_DAYS_BLOCK,
        "optional": True,
        "label": {"type": "plain_text", "text": clip("Access for (days)", OPTION_TEXT)},
        "hint": {"type": "plain_text", "text": clip(hint, INPUT_LABEL)},
        "element": {"type": "number_input", "action_id": ids.ACCESS_DAYS_INPUT, "is_decimal_allowed": False},
    }
