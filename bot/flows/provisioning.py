"""Provisioning as the worker runs it: the steps (bot/core/provisioning.py) with the approval cards redrawn as the
steps are recorded (at most once a second); the requester hears how it ended through the outbox (the Reveal button
or the failure DM), the cards and the App Homes, all marked in the transaction that records the outcome."""

from __future__ import annotations

import logging
import time

from bot.core import provisioning, runs
from bot.services import Services
from bot.slack import cards

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0  # how often a run's progress is marked on the approval cards


def provision(services: Services, request_id: int) -> runs.Outcome:
    """Run provisioning with the approval cards updated live, then tell the requester how it ended.

    The cards are drawn from the recorded steps, so marking them at most once a second during a run loses no
    step: a run of quick steps costs one chat.update per card copy, not one per step; the end is always shown.
    The decision marked them as the run began, so a run shorter than that second shows only its end."""
    last_marked = [time.monotonic()]

    def show_progress(_: list[runs.StepProgress]) -> None:
        if time.monotonic() - last_marked[0] >= PROGRESS_EVERY_SECONDS:
            last_marked[0] = time.monotonic()
            cards.refresh_cards(services, request_id)  # each step is recorded before this

    outcome = provisioning.run(
        services.session_factory,
        gateway=services.gateway,
        settings=services.settings,
        request_id=request_id,
        owner=services.owner,
        clock=services.clock,
        progress=show_progress,
        leaser=services.leaser,
        homes=services.admin_ids(),  # the outcome marks their App Homes, the requester's and the cards
    )
    services.metrics.provisioning_ended(outcome.status)
    if outcome.status == "skipped":
        return outcome
    log.info("provisioning of request %s ended: %s", request_id, outcome.status)
    # The outcome marked the Reveal button (provisioned) or the failure DM (failed), the cards and the App Homes.
    services.wake_outbox()
    return outcome
