"""Slack's Block Kit length limits the builders write to, and the one way they shorten text to fit.

Why: Slack refuses the whole message or modal when one field is a character too long, so anything a person
typed (names, purposes, reasons) or AWS answered (error text) is shortened to the limit before it is sent, with
a visible "…" so nobody mistakes the shortened text for the whole. Sources:
https://api.slack.com/reference/block-kit/blocks, .../composition-objects, .../block-elements and
https://api.slack.com/reference/surfaces/views.
"""

from __future__ import annotations

ELLIPSIS = "…"
SECTION_TEXT = 3000  # section text; also any text object (context elements)
HEADER_TEXT = 150
BUTTON_TEXT = 75
OPTION_TEXT = 75  # an option's text and its description
VIEW_TITLE = 24  # a modal's title, submit and close
INPUT_LABEL = 2000  # an input block's label and hint
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and "…" in exactly ``limit`` or fewer.

    A cut never splits an escaped entity (``&amp;``) or a ``<…>`` token (mention, date, link): Slack would show
    those half-rendered, so the cut moves back to just before them.
    """
    if len(text) <= limit:
        return text
    cut = max(0, limit - len(ELLIPSIS))
    opener = max(text.rfind("<", 0, cut), text.rfind("&", 0, cut))
    if opener >= 0:
        closer = ">" if text[opener] == "<" else ";"
        end = text.find(closer, opener)
        if end == -1 or end >= cut:
            cut = opener
    return text[:cut].rstrip() + ELLIPSIS
