"""Pure validation of what a person typed into the request form. Returns messages; changes nothing."""

from __future__ import annotations

import re
import unicodedata

from bot.config import MAX_ACCESS_DAYS, Profile

IAM_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
PURPOSE_MAX = 300
REASON_MAX = 300  # an exemption reason (its column holds 300 characters)
SUGGESTION_PREFIX = "koding-"


def iam_user_name_error(name: str) -> str | None:
    """IAM's own rules for user names; ASCII only, so Unicode look-alikes are refused, not normalised."""
    if not name:
        return "Enter an IAM user name."
    if len(name) > 64:
        return f"IAM user names are at most 64 characters; this one has {len(name)}."
    if not IAM_USER_NAME.fullmatch(name):
        bad = sorted({char for char in name if not IAM_USER_NAME.fullmatch(char)})
        shown = ", ".join(repr(char) for char in bad[:5])
        return f"Use only letters, digits and + = , . @ _ - (not {shown})."
    return None


def purpose_error(purpose: str) -> str | None:
    if not purpose.strip():
        return "Say which Koding team or stack these keys are for."
    if len(purpose) > PURPOSE_MAX:
        return f"Keep the purpose under {PURPOSE_MAX} characters; this one has {len(purpose)}."
    return hidden_characters_error(purpose, "The purpose")


def reason_error(
    reason: str, *, what: str = "The reason", limit: int = REASON_MAX, required: bool = False
) -> str | None:
    """A free-text reason (deny, exemption): bounded, and free of characters that hide or reorder text."""
    if required and not reason.strip():
        return f"{what} is required."
    if len(reason) > limit:
        return f"Keep {what.lower()} under {limit} characters; this one has {len(reason)}."
    return hidden_characters_error(reason, what)


def hidden_characters_error(text: str, what: str) -> str | None:
    """Refuse controls (Cc) other than newline and tab, and format characters (Cf: U+202E right-to-left
    override, U+200B zero-width space...), which make text read differently from what it is. Newlines stay:
    free text is always shown quoted, so a line cannot pass for the bot's own."""
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" and char not in "\n\t":
            return f"{what} contains control characters."
        if category == "Cf":
            return f"{what} contains an invisible formatting character (U+{ord(char):04X}); retype it without."
    return None


def profiles_error(selected: list[str], profiles: dict[str, Profile]) -> str | None:
    if not selected:
        return "Choose at least one access profile."
    unknown = [key for key in selected if key not in profiles]
    if unknown:
        return f"Unknown access profile: {', '.join(unknown)}."
    if len(set(selected)) != len(selected):
        return "An access profile was chosen twice."
    return None


def suggest_user_name(slack_handle: str | None) -> str:
    """A valid IAM name from a Slack handle: `alice.smith` becomes `koding-alice.smith`."""
    handle = unicodedata.normalize("NFKD", slack_handle or "").encode("ascii", "ignore").decode()
    handle = re.sub(r"[^\w+=,.@-]", "-", handle, flags=re.ASCII).strip("-")
    return (SUGGESTION_PREFIX + handle)[:64] if handle else ""


def max_days_of(profile_keys: list[str], profiles: dict[str, Profile]) -> int | None:
    """The longest access the chosen profiles allow: the smallest max_days among them, None when none has one."""
    limits = [profiles[key].max_days for key in profile_keys if key in profiles and profiles[key].max_days]
    return min(limits) if limits else None  # type: ignore[type-var]


def access_days_error(raw: str, limit: int | None) -> str | None:
    """The form's "Access for" (days, optional): a whole number from 1 up to the profiles' limit."""
    text = raw.strip()
    if not text:
        return None
    ceiling = limit or MAX_ACCESS_DAYS
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return f"Enter a whole number of days from 1 to {ceiling}, or leave it empty."
    days = int(text)
    if days < 1:
        return "Access lasts at least 1 day."
    if days > ceiling:
        why = "the chosen access profile allows" if limit else "koding-iam allows"
        return f"At most {ceiling} days: that is what {why}."
    return None


def access_days(raw: str, limit: int | None) -> int | None:
    """The days a validated form gives the user: those asked for, else the profiles' limit, else no end."""
    return int(raw.strip()) if raw.strip() else limit
