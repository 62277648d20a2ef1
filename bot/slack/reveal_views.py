"""The key DM with its Reveal button and the reveal modals (creating, the key shown once, a problem), and the
notices about an interrupted reveal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.aws_iam import NewAccessKey
from bot.slack import ids
from bot.slack.blockkit import (
    Blocks,
    button_element,
    context_block,
    escape,
    modal_title,
    section_block,
    when,
)
from models import KeyGrant

KODING_CREDENTIALS_HINT = (
    "In Koding, open *Team Settings → Credentials*, choose *Add AWS credential* (the AWS credentials tab) "
    "and paste both values, then build your stack."
)


def reveal_dm(grant: KeyGrant, *, now: datetime, approved_by: str | None = None) -> tuple[str, Blocks]:
    """The requester's key DM: a Reveal button while the window is open; what happened once it is not.

    It names who approved the request: when the keys are ready within the approval notice's hold, this is the
    only message that tells the requester their request was approved."""
    name = escape(grant.iam_user_name)
    if grant.status == "revealed":
        text = (
            f":lock: Access keys for `{name}` were revealed on {when(grant.revealed_at)}: key "
            f"`{escape(grant.access_key_id or '')}`. They are shown only once."
        )
        return f"Access keys for {name} were revealed.", [section_block(text)]
    if grant.status == "ended":
        text = f":no_entry: The access of `{name}` has ended, so this button no longer works. Nothing was created."
        return f"Access of {name} has ended.", [section_block(text)]
    if grant.expires_at <= now:
        text = (
            f":hourglass: The button to reveal access keys for `{name}` expired on {when(grant.expires_at)}. "
            "Nothing was created. Ask for a fresh window to reveal them."
        )
        actions = [button_element("Ask for a fresh window", ids.RENEW_REVEAL, str(grant.id))]
        return "Your reveal button expired.", [section_block(text), {"type": "actions", "elements": actions}]
    approved = f"Your request #{grant.request_id} was approved by <@{approved_by}>. " if approved_by else ""
    text = (
        f":key: {approved}IAM user `{name}` is ready. Press *Reveal my access keys* to create its access key and "
        f"see it once, in a private window. The button works until {when(grant.expires_at)}."
    )
    actions = [button_element("Reveal my access keys", ids.REVEAL, str(grant.id), "primary")]
    return f"IAM user {name} is ready.", [section_block(text), {"type": "actions", "elements": actions}]


# Reveal modal ----------------------------------------------------------------------------------------------
def reveal_generating_modal() -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": modal_title("Your AWS access keys"),
        "close": modal_title("Close"),
        "blocks": [section_block(":hourglass_flowing_sand: Generating your access key…")],
    }


def reveal_keys_modal(key: NewAccessKey, *, iam_user_name: str, ends_at: datetime | None = None) -> dict[str, Any]:
    """Shows the secret once. No inputs and no submit: nothing typed here goes anywhere."""
    snippet = f"[koding]\naws_access_key_id = {key.access_key_id}\naws_secret_access_key = {key.secret_access_key}"
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": modal_title("Your AWS access keys"),
        "close": modal_title("Done"),
        "blocks": [
            section_block(
                f":warning: *Copy these now.* This is the only time the secret is shown; koding-iam does not "
                f"keep it. IAM user `{escape(iam_user_name)}`."
                + (f" Its access ends on {when(ends_at)}, when koding-iam deletes it." if ends_at else "")
            ),
            section_block(f"*Access Key ID*\n`{key.access_key_id}`"),
            section_block(f"*Secret Access Key*\n`{key.secret_access_key}`"),
            section_block(f"*Ready to paste*\n```{snippet}```"),
            context_block(KODING_CREDENTIALS_HINT),
        ],
    }


def reveal_problem_modal(message: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": modal_title("Your AWS access keys"),
        "close": modal_title("Close"),
        "blocks": [section_block(f":warning: {escape(message)}")],
    }


def reveal_recovered_dm(owner_id: str, iam_user_name: str, access_key_id: str | None) -> tuple[str, str, Blocks]:
    """A reveal was cut off after the key was sent to Slack: the key is kept and recorded as the owner's."""
    text = (
        f":key: A key reveal for `{escape(iam_user_name)}` was interrupted after the key "
        f"`{escape(access_key_id or '')}` was sent to your screen, so koding-iam kept it as yours. If you did not "
        "copy its secret, rotate it (`/koding-iam rotate`): the secret cannot be shown again."
    )
    return owner_id, "A key reveal was interrupted; your key was kept.", [section_block(text)]


def unexplained_keys_notice(iam_user_name: str, access_key_ids: list[str]) -> tuple[str, Blocks]:
    """Keys that appeared during an interrupted reveal that koding-iam cannot prove it made: an admin decides."""
    listed = ", ".join(f"`{escape(key)}`" for key in access_key_ids[:10])
    text = (
        f":warning: A key reveal for `{escape(iam_user_name)}` was interrupted before it recorded its key. IAM has "
        f"key(s) koding-iam did not record: {listed}. koding-iam deletes only keys it knows it made; check them "
        f"and delete any nobody uses: `aws iam delete-access-key --user-name {escape(iam_user_name)} "
        "--access-key-id <id>`."
    )
    return f"Unrecorded access keys on {iam_user_name}", [section_block(text)]
