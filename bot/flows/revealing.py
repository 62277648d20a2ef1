"""The reveal modal, from "Creating your key…" to the key shown once: the Slack side of a claimed reveal.

The modal opens at once (the trigger lives 3 s). After CreateAccessKey the bot asks AWS whether it accepts the new
key (bot/core/key_verification.py); if the first try is refused, the modal says "Creating and checking your key…" (a
views.update without the secret) while it keeps asking. Then one views.update shows the key with what AWS said:
"AWS accepts this key", or plainly that AWS has not accepted it yet and it will work shortly. That update is the
only Slack call that carries the secret; the check is the only other use of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.aws_iam import NewAccessKey
from bot.core import key_verification, reveal, reveal_grants, timebound
from bot.core.key_verification import KeyCheck, Verdict
from bot.db import session_scope
from bot.errors import AdminAttention, AlreadyRevealed, DomainError, GrantExpired, InvalidState
from bot.services import Services
from bot.slack import blockkit, home, views

log = logging.getLogger(__name__)

CHECKING = ":hourglass_flowing_sand: Creating and checking your key… AWS takes a few seconds to accept a new key."
ACCEPTED = ":white_check_mark: *AWS accepts this key.* It works now."
NOT_YET = (
    ":hourglass: *AWS has not accepted this key yet.* New keys take a few seconds to reach every part of AWS; "
    "this one will work shortly. If AWS still refuses it in a few minutes, tell an admin."
)


def checking_modal() -> dict[str, Any]:
    """Shown while AWS does not accept the new key yet; no secret in it."""
    modal = views.reveal_generating_modal()
    modal["blocks"] = [blockkit.section_block(CHECKING)]
    return modal


def keys_modal(
    key: NewAccessKey, *, iam_user_name: str, checked: KeyCheck, ends_at: datetime | None = None
) -> dict[str, Any]:
    """The one-time key modal, with what AWS said of the key under the ready-to-paste lines (the blocks above it
    keep their places), and the end date of a time-bound user."""
    modal = views.reveal_keys_modal(key, iam_user_name=iam_user_name, ends_at=ends_at)
    said = {Verdict.ACCEPTED: ACCEPTED, Verdict.NOT_YET: NOT_YET}.get(checked.verdict)
    if said is not None:
        modal["blocks"].insert(len(modal["blocks"]) - 1, blockkit.section_block(said))
    return modal


def reveal_in_modal(
    services: Services, claimed: reveal.Claimed, *, user_id: str, trigger_id: str, channel: str | None
) -> reveal.Revealed | None:
    """Open the modal, create and check the key, show it there once; the caller holds the user's lease."""
    notifier = services.notifier
    view_id = notifier.open_modal(trigger_id, views.reveal_generating_modal())
    if view_id is None:
        reveal.release(services.session_factory, claimed, now=services.clock(), reason="modal did not open")
        notifier.ephemeral(channel, user_id, "Slack could not open the key window in time. Press the button again.")
        return None

    ends_at = timebound.end_of(services.session_factory, claimed.request_id)

    def show_checking() -> None:
        try:
            notifier.update_modal(view_id, checking_modal())
        except Exception as exc:  # only a progress line: the key's own update decides what happens next
            log.warning("could not say the key is being checked: %s", type(exc).__name__)

    def check(key: NewAccessKey) -> KeyCheck:
        return key_verification.until_accepted(
            services.gateway,
            key,
            limit_seconds=services.settings.koding_iam_key_verify_seconds,
            pace=services.key_check_pace,
            on_waiting=show_checking,
        )

    def deliver(key: NewAccessKey, checked: KeyCheck) -> None:
        modal = keys_modal(key, iam_user_name=claimed.iam_user_name, checked=checked, ends_at=ends_at)
        notifier.update_modal(view_id, modal)

    try:
        revealed = reveal.create_and_deliver(
            services.session_factory,
            gateway=services.gateway,
            claimed=claimed,
            deliver=deliver,
            check=check,
            clock=services.clock,
        )
    except AdminAttention as exc:
        try_update_modal(services, view_id, exc.user_message)
        services.notifier.admin_notice(
            views.escape(exc.admin_message), [blockkit.section_block(f":warning: {views.escape(exc.admin_message)}")]
        )
        return None
    except DomainError as exc:
        try_update_modal(services, view_id, exc.user_message)
        return None
    except Exception as exc:  # Slack could not show the key (after its retries): the key was deleted again
        log.warning("the reveal modal could not be updated: %s", type(exc).__name__)
        try_update_modal(
            services,
            view_id,
            "Slack could not show your key, so it was deleted again. Close this window and press Reveal once more.",
        )
        return None
    if not revealed.recorded:
        _tell_unrecorded(services, view_id, revealed)
    return revealed


def _tell_unrecorded(services: Services, view_id: str, revealed: reveal.Revealed) -> None:
    """The key was shown but is not recorded as this reveal's: say what actually happened."""
    if revealed.note == "access ended":
        try_update_modal(
            services,
            view_id,
            f"Your access ended while this key was shown (an admin revoked it, or you left the workspace), so key "
            f"{revealed.access_key_id} was deleted again. Do not use it.",
        )
        return
    # The key stays valid and recovery records it as yours; the modal keeps showing it. The admins hear why.
    log.error("revealed key %s could not be recorded (%s); recovery will", revealed.access_key_id, revealed.note)
    services.notifier.admin_notice(
        f"Access key {revealed.access_key_id} was shown to its owner but could not be recorded yet.",
        [
            blockkit.section_block(
                f":warning: Access key `{views.escape(revealed.access_key_id)}` was shown to its owner but could not "
                f"be recorded ({views.escape(revealed.note or 'unknown')}). koding-iam records it on its next "
                "recovery tick; nothing to do unless this repeats."
            )
        ],
    )


def try_update_modal(services: Services, view_id: str, message: str) -> None:
    try:
        services.notifier.update_modal(view_id, views.reveal_problem_modal(message))
    except Exception as exc:  # Slack unreachable: the requester sees the modal time out, nothing else is lost
        log.warning("could not update the reveal modal with a problem message: %s", type(exc).__name__)


# Revealing a grant: the click on Reveal (or Rotate now), and renewing its window ---------------------------------
def reveal_keys(
    services: Services,
    *,
    grant_id: int,
    user_id: str,
    trigger_id: str,
    channel: str | None,
    then: Callable[[Services, int], None] | None = None,
) -> reveal.Revealed | None:
    """Take the user's lease and claim the grant, open the modal at once, then create the key and show it there,
    once. The lease is held until the outcome is recorded, so nothing else changes this user meanwhile. `then`
    runs after a key was shown (a rotation's guide to retiring the old key)."""
    notifier = services.notifier
    try:
        claimed = reveal.claim(
            services.session_factory,
            grant_id=grant_id,
            user_id=user_id,
            process_owner=services.owner,
            clock=services.clock,
            lease_seconds=services.settings.koding_iam_lease_seconds,
        )
    except GrantExpired as exc:
        _redraw_dm(services, grant_id)
        notifier.ephemeral(channel, user_id, views.escape(exc.user_message))
        return None
    except AlreadyRevealed as exc:
        _redraw_dm(services, grant_id)
        key = f" (key `{views.escape(exc.access_key_id)}`)" if exc.access_key_id else ""
        notifier.ephemeral(
            channel, user_id, f"{views.escape(exc.user_message)} Revealed on {views.when(exc.revealed_at)}{key}."
        )
        return None
    except InvalidState:  # the grant ended or its request moved on: the owner's DM loses its button
        _redraw_dm(services, grant_id)
        raise
    try:
        revealed = reveal_in_modal(services, claimed, user_id=user_id, trigger_id=trigger_id, channel=channel)
    finally:
        claimed.lease.release()
    services.wake_outbox()  # the outcome's transaction marked the DM's redraw (and a rotation's notices)
    if revealed is not None and then is not None:
        then(services, grant_id)
    home.refresh(services, user_id)
    return revealed


def renew_reveal_window(services: Services, *, grant_id: int, user_id: str) -> None:
    with session_scope(services.session_factory) as session:
        reveal_grants.renew_window(
            session,
            grant_id=grant_id,
            user_id=user_id,
            hours=services.settings.koding_iam_reveal_window_hours,
            now=services.clock(),
        )
    services.wake_outbox()  # a renewed window marked the DM's redraw: its button is back


def _redraw_dm(services: Services, grant_id: int) -> None:
    """A click that changed nothing but found the DM out of date (expired, revealed or ended elsewhere): the
    outbox redraws it as the grant is now."""
    with session_scope(services.session_factory) as session:
        reveal_grants.mark_dm(session, grant_id, now=services.clock())
    services.wake_outbox()
