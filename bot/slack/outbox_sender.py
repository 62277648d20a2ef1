"""The outbox's sender: after commit, draws each changed Slack surface from the database and delivers it, paced by
Slack's rate tiers, one process at a time per surface (bot/core/outbox.py holds the rules).

One thread per process. Flows mark surfaces changed and wake it; it also looks every `poll_seconds` for surfaces
another process marked. A surface marked ten times before its turn is drawn once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.core import outbox
from bot.db import session_scope
from bot.services import Services
from bot.slack import cards, home, notify, outbox_messages, outbox_notices, outbox_requests
from bot.slack.pacing import Pacer, rates_for

log = logging.getLogger(__name__)

Result = outbox.Result
# Slack's answers that no retry can change: the surface (or that copy of a card) is dropped, the error logged.
GONE = frozenset(
    {
        "user_not_found",
        "account_inactive",
        "not_allowed_token_type",
        "invalid_arguments",
        "invalid_blocks",
        "message_not_found",
        "channel_not_found",
        "cant_update_message",
        "is_archived",
    }
)
# Surfaces drawn whole from the database each time: delivering one twice shows the same state.
REDRAWN = frozenset({outbox.HOME, outbox.CARDS})
# Surfaces a batch draws together, in one read transaction right after its claim, instead of one each: an approval
# redraws its cards, posts the Reveal button and republishes two or three App Homes.
PREDRAWN = frozenset({outbox.HOME, outbox.CARDS, outbox.REVEAL})
Record = Callable[[Session], None]  # a posted message's record (its ts), made in the batch's record transaction
CLAIM_BATCH_PER_WORKER = 25  # each delivered in well under half a claim's life at the paced rate
# At most this many of a slowly paced kind per worker in one batch, so a batch lasts seconds, not minutes: a
# request's cards cost a chat.update per copy (Tier 3, ~0.75 a second), an App Home a views.publish (Tier 4, ~1.5 a
# second). A DM marked meanwhile (a Reveal button) waits for the batch in hand, never behind fifty cards' updates.
PACED_PER_WORKER = {outbox.CARDS: 1, outbox.HOME: 4}


# A surface delivered (or gone) whose record, with the Reveal DM's ts if any, waits for the batch's one transaction.
Settled = tuple[outbox.Claim, Record | None]
_NOT_DRAWN = object()


class ClaimLost(Exception):
    """The claim lapsed mid-drawing (this sender stalled past it): another sender owns the surface now."""


class OutboxSender:
    def __init__(
        self, services: Services, *, pacer: Pacer | None = None, poll_seconds: float = 1.0, workers: int = 1
    ) -> None:
        self.services = services
        self.pacer = pacer or Pacer()
        self.poll_seconds = poll_seconds
        # Surfaces claimed together are delivered by `workers` threads at once (each its own surface; the pacer is
        # shared), so the database work around each call does not slow a sweep's DMs below the paced rate.
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-worker") if workers > 1 else None
        # Surfaces claimed at once: with a pool, enough that the claim between batches (one transaction) costs a
        # sweep's paced DMs a few percent of their rate, not the fifth that batches of 20 did.
        self.batch = CLAIM_BATCH_PER_WORKER * workers if workers > 1 else 20
        self.caps = {kind: per_worker * workers for kind, per_worker in PACED_PER_WORKER.items()}
        self._counts = threading.Lock()
        # A claim lives as long as a user lease and is renewed before each Slack call: a stopped sender's surfaces
        # go to another process after that, a live one keeps them however long pacing makes it wait.
        self.claim_seconds = services.settings.koding_iam_lease_seconds
        self.delivered = 0
        self.failures = 0
        self.more_due = False  # the last claim left surfaces due (outbox.Claimed.more)
        self._wakes = 0  # wake() calls: a delivery that marked more surfaces wakes the sender
        self._local = threading.local()  # the claim the current thread is drawing
        self._wake = threading.Event()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._draw: dict[str, Callable[[str], Result]] = {
            outbox.HOME: self._draw_alone,
            outbox.CARDS: self._draw_alone,
            outbox.ANNOUNCE: self._one_shot(outbox_requests.announce),
            outbox.RECEIVED: self._one_shot(outbox_requests.received),
            outbox.ROTATION: self._one_shot(outbox_messages.rotation),
            outbox.USAGE: self._one_shot(outbox_messages.usage),
            outbox.ENDING: self._one_shot(outbox_messages.ending),
            outbox.REVEAL: self._draw_alone,
            outbox.DIGEST: self._one_shot(outbox_messages.admin_digest),
            outbox.DECISION: self._one_shot(outbox_requests.decision),
            outbox.NOTICE: self._one_shot(outbox_notices.deliver),
        }

    # Life ----------------------------------------------------------------------------------------------------
    def start(self) -> OutboxSender:
        self.services.wake_outbox = self.wake
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        with self._counts:
            self._wakes += 1
        self._wake.set()

    def pause(self) -> None:
        """Deliver nothing until `resume()` (tests and the benchmark hold a burst back to see it coalesce)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the delivery in hand (pacing waits end at once), then stop; claims left are released by the
        caller (bot/lifecycle.py) so another process delivers them now."""
        self._stop.set()
        self.pacer.stop()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                self.deliver_burst()
            except SQLAlchemyError as exc:  # the database is away: look again at the next tick
                log.warning("outbox: could not read the outbox: %s", type(exc).__name__)

    # Delivery ------------------------------------------------------------------------------------------------
    def deliver_due(self) -> int:
        """Claim what is due and deliver it; returns how many surfaces were handled (0: nothing is due).

        Three transactions for a batch: the claim, one read drawing the batch's App Homes, cards and Reveal DMs,
        and one recording what was delivered (with the Reveal DMs' ts); other messages draw and record their own."""
        with self._busy:
            if self._paused.is_set():
                return 0
            services = self.services
            claims = outbox.claim_due(
                services.session_factory,
                owner=services.owner,
                now=services.clock(),
                seconds=self.claim_seconds,
                limit=self.batch,
                caps=self.caps,
            )
            self.more_due = claims.more
            services.metrics.looked("outbox")
            drafts = self._draw_batch(claims)
            # What the batch drew goes out first, within seconds of its drawing (at most a few cards and tabs per
            # batch, PACED_PER_WORKER), never after a batch's worth of paced DMs.
            ordered = sorted(claims, key=lambda claim: (claim.kind, claim.subject) not in drafts)
            if self._pool is not None and len(ordered) > 1:
                settled = list(self._pool.map(lambda claim: self._deliver(claim, drafts), ordered))
            else:
                settled = [self._deliver(claim, drafts) for claim in ordered]
            outbox.delivered_all(services.session_factory, [item for item in settled if item is not None])
            return len(claims)

    def _draw_batch(self, claims: list[outbox.Claim]) -> dict[tuple[str, str], object]:
        """Draw the batch's App Homes, cards and Reveal DMs in one read transaction; one that fails to draw is
        left out (its delivery draws it alone, and reports why)."""
        services = self.services
        wanted = [claim for claim in claims if claim.kind in PREDRAWN]
        if not wanted:
            return {}
        # Before the transaction opens: whether someone is an admin may ask Slack.
        admins = {c.subject: services.is_admin(c.subject) for c in wanted if c.kind == outbox.HOME}
        drafts: dict[tuple[str, str], object] = {}
        try:
            with session_scope(services.session_factory) as session:
                for claim in wanted:
                    try:
                        drafts[(claim.kind, claim.subject)] = self._draft(session, claim, admins.get(claim.subject))
                    except Exception:  # drawn again alone, where its error is reported
                        session.rollback()
        except SQLAlchemyError as exc:
            log.warning("outbox: could not draw a batch together: %s", type(exc).__name__)
            return {}
        return drafts

    def _deliver(self, claim: outbox.Claim, drafts: dict[tuple[str, str], object]) -> Settled | None:
        """Draw (unless the batch did) and deliver one surface. A message posted is recorded at once (posting it
        again after a crash would send it twice), a Reveal DM with the batch; a redrawn surface delivered, or
        one gone, is returned for the batch to record."""
        factory = self.services.session_factory
        self._local.claim = claim
        self._local.until = claim.until
        record: Record | None = None
        try:
            drawn = drafts.get((claim.kind, claim.subject), _NOT_DRAWN)
            if drawn is _NOT_DRAWN:
                result = self._draw[claim.kind](claim.subject)
            else:
                result, record = self._send(claim, drawn)
        except ClaimLost:
            log.warning(
                "outbox: lost the claim on %s %s mid-drawing; its new owner draws it", claim.kind, claim.subject
            )
            return None
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "slack_error")
            result = "gone" if error in GONE else "retry"
            log.info("outbox: %s %s not delivered: %s", claim.kind, claim.subject, error)
        except Exception as exc:  # a bug drawing one surface must not stop the others
            log.exception("outbox: drawing %s %s failed", claim.kind, claim.subject)
            error, result = type(exc).__name__, "retry"
        else:
            error = ""
        finally:
            self._local.claim = None
        self.services.metrics.outbox_delivered(claim.kind, "delivered" if result == "recorded" else result)
        if result == "retry":
            with self._counts:
                self.failures += 1
            outbox.failed(factory, claim, error=error, now=self.services.clock())
            return None
        with self._counts:
            self.delivered += 1
        if result == "recorded":  # the drawing recorded it with the message's ts
            return None
        if result == "gone" or record is not None or claim.kind in REDRAWN:
            return claim, record
        outbox.delivered(factory, claim)
        return None

    def _draft(self, session: Session, claim: outbox.Claim, is_admin: bool | None) -> object:
        """An App Home, a request's cards or a Reveal DM drawn in `session`; None when the surface is gone.
        `is_admin` (asked before the session opened) decides an App Home's admin part."""
        if claim.kind == outbox.HOME:
            return home.home_view_in(self.services, session, claim.subject, is_admin=bool(is_admin))
        if claim.kind == outbox.CARDS:
            return cards.draw(self.services, session, claim.subject)
        return outbox_messages.draw_reveal(self.services, session, claim)

    def _send(self, claim: outbox.Claim, drawn: object) -> tuple[Result, Record | None]:
        """Deliver what was drawn: None means the surface is gone (a request or grant that ended)."""
        if drawn is None:
            return "gone", None
        if isinstance(drawn, cards.CardsDraft):
            return self._send_cards(claim.subject, drawn), None
        if isinstance(drawn, outbox_messages.RevealDraft):
            return "delivered", drawn.send(self._post)
        self._turn("views.publish")
        self.services.notifier.client.views_publish(user_id=claim.subject, view=drawn)
        return "delivered", None

    def _draw_alone(self, _: str) -> Result:
        """A surface the batch could not draw, drawn now in a transaction of its own and delivered; a Reveal DM is
        recorded at once with its outbox row."""
        claim = self._local.claim
        assert claim is not None
        services = self.services
        is_admin = services.is_admin(claim.subject) if claim.kind == outbox.HOME else None  # may ask Slack: first
        with session_scope(services.session_factory) as session:
            drawn = self._draft(session, claim, is_admin)
        result, record = self._send(claim, drawn)
        if record is None:
            return result
        with session_scope(services.session_factory) as session:
            record(session)
            outbox.delivered_in(session, claim)
        return "recorded"

    def _send_cards(self, subject: str, draft: cards.CardsDraft) -> Result:
        result: Result = "delivered"
        text, blocks = draft.message(self.services)  # no transaction open: it may read IAM's policy descriptions
        for channel, ts in draft.copies:
            self._turn("chat.update")
            try:
                self.services.notifier.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "slack_error")
                log.info("outbox: card %s/%s of request %s not updated: %s", channel, ts, subject, error)
                if error not in GONE:  # this copy again later (the others are redrawn too: an update is idempotent)
                    result = "retry"
        return result

    def _one_shot(self, draw: Callable[..., Result]) -> Callable[[str], Result]:
        def deliver(_: str) -> Result:
            claim = self._local.claim
            assert claim is not None
            return draw(self.services, claim, self._post, self._update_message)

        return deliver

    def _post(self, channel: str, text: str, blocks: list) -> tuple[str, str]:
        self._turn("chat.postMessage", channel)
        response = self.services.notifier.client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, **notify.NO_UNFURL
        )
        return str(response["channel"]), str(response["ts"])

    def _update_message(self, channel: str, ts: str, text: str, blocks: list) -> None:
        self._turn("chat.update")
        self.services.notifier.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def _turn(self, method: str, channel: str = "") -> None:
        """Wait for the method's pace, then make sure the claim holds: only its holder calls Slack for the surface.

        A claim with more than half its time left cannot have passed to another sender (one is taken only once it
        lapsed), so it is renewed, one transaction, only past that half: most drawings make one call or a few."""
        self.pacer.wait(method, channel)
        claim = getattr(self._local, "claim", None)
        if claim is None:
            return
        now = self.services.clock()
        until = getattr(self._local, "until", None)
        if until is not None and now < until - timedelta(seconds=self.claim_seconds / 2):
            return
        if not outbox.renew(self.services.session_factory, claim, now=now, seconds=self.claim_seconds):
            raise ClaimLost
        self._local.until = now + timedelta(seconds=self.claim_seconds)

    def deliver_burst(self) -> int:
        """Deliver batches while the last one may have left surfaces due or someone woke the sender meanwhile (a
        delivery that marked more); returns how many surfaces that took. A batch that left nothing due is the
        last: no claim just to find nothing, and what another process marks is found at the next look."""
        handled = 0
        while not self._stop.is_set():
            with self._counts:
                wakes = self._wakes
            count = self.deliver_due()
            handled += count
            with self._counts:
                woken = self._wakes != wakes
            if not count or not (self.more_due or woken):
                return handled
        return handled

    # Tests and the demo --------------------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 30.0, *, quietly: bool = False) -> int:
        """Deliver until a claim finds nothing due (back-offs aside); returns how many surfaces that took. After
        `timeout` it raises AssertionError, or, `quietly`, returns (a graceful stop leaves the rest to another
        process)."""
        deadline = time.monotonic() + timeout
        handled = 0
        while not self._stop.is_set() and (count := self.deliver_due()):
            handled += count
            if time.monotonic() > deadline:
                if quietly:
                    break
                raise AssertionError(f"the outbox still had surfaces due after {timeout}s")
        return handled


def start_outbox(services: Services) -> OutboxSender:
    pacer = Pacer(rates_for(services.settings.koding_iam_slack_posts_per_minute))
    return OutboxSender(services, pacer=pacer, workers=4).start()
