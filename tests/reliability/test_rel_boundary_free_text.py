"""Issue 10, row 11 — free text cannot impersonate the bot.

Before: a purpose with newlines, a fake `*IAM calls approval makes*` heading, U+202E and a bare URL rendered as
mrkdwn on the approval card (only `Cc` characters were refused). Now bidi and other format characters (`Cf`) are
refused on the form, every line a person typed is shown behind the quote bar, and no posted message unfurls links.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from reliability_support import db_counts, record_figure

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, open_request_modal, requests, submit_request

FAKE_HEADING = "*IAM calls approval makes*"
TYPED = f"Staging\n{FAKE_HEADING}\n• `iam:DeleteUser` on everything\n\n*Approved* by the admins\nhttps://evil.example/x"


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


@pytest.mark.parametrize(
    ("label", "char"), [("right-to-left override", "\u202e"), ("zero-width space", "\u200b"), ("BOM", "\ufeff")]
)
def test_format_characters_in_the_purpose_are_refused_on_the_form(sandbox: Sandbox, label: str, char: str) -> None:
    sb = sandbox
    view = open_request_modal(sb, "UCAROL")
    before = db_counts(sb.services.engine)
    response = sb.driver.submit("UCAROL", view, {ids.PURPOSE_BLOCK: f"Staging for invoice{char}fdp.exe"})
    sb.wait_idle()
    assert response.status == 200
    error = response.json()["errors"][ids.PURPOSE_BLOCK]
    assert f"invisible formatting character (U+{ord(char):04X})" in error, (label, error)
    assert db_counts(sb.services.engine) == before
    assert requests(sb) == []


def test_format_characters_in_a_deny_reason_are_refused_on_the_form(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UBOB")
    _, trigger = click(sb, "UADMIN1", ids.DENY, card(sb, "UADMIN1", 1))
    modal = sb.driver.view_opened_with(trigger)
    response = sb.driver.submit("UADMIN1", modal, {ids.DENY_REASON_BLOCK: "Ask \u202eyour manager"})
    sb.wait_idle()
    assert "invisible formatting character (U+202E)" in response.json()["errors"][ids.DENY_REASON_BLOCK]
    assert [r.status for r in requests(sb)] == ["pending"]


def test_typed_lines_are_quoted_everywhere_and_no_link_unfurls(sandbox: Sandbox) -> None:
    sb = sandbox
    assert submit_request(sb, "UALICE", purpose=TYPED).text == ""
    assert submit_request(sb, "UBOB", purpose=TYPED).text == ""
    _, trigger = click(sb, "UADMIN2", ids.DENY, card(sb, "UADMIN2", 2))
    denied = sb.driver.submit("UADMIN2", sb.driver.view_opened_with(trigger), {ids.DENY_REASON_BLOCK: TYPED})
    assert denied.status == 200 and denied.text == ""
    sb.driver.event({"type": "app_home_opened", "user": "UADMIN1", "tab": "home"})
    sb.wait_idle()

    sent = [c for c in sb.standin.calls if not c.failed and c.method in ("chat.postMessage", "chat.update")]
    sent += [c for c in sb.standin.calls if not c.failed and c.method == "views.publish"]
    typed_lines = [line for line in TYPED.splitlines() if line.strip()]
    carrying, lines_checked = 0, 0
    for call in sent:
        texts = strings(call.body.get("blocks") or call.body.get("view") or [])
        if any("evil.example" in text for text in texts):
            carrying += 1
        for text in texts:
            for line in text.splitlines():
                if any(typed.replace("&", "&amp;") in line for typed in typed_lines if typed != "Staging"):
                    lines_checked += 1
                    assert line.startswith(">"), (call.method, line)
    # Received DMs (2), cards (2 posted + updates), the denial DM and card, App Home.
    assert carrying >= 8 and lines_checked >= 30, (carrying, lines_checked)
    posts = [c for c in sb.standin.calls_to("chat.postMessage") if not c.failed]
    assert posts and all(c.body.get("unfurl_links") is False and c.body.get("unfurl_media") is False for c in posts)
    card_text = json.dumps(card(sb, "UADMIN1", 1)["blocks"], ensure_ascii=False)
    assert f"\\n>{FAKE_HEADING}\\n" in card_text
    record_figure(
        "row11-free-text-quoted",
        backend=sb.services.engine.dialect.name,
        messages_carrying_typed_text=carrying,
        typed_lines_checked=lines_checked,
        posts_without_unfurl=len(posts),
    )
