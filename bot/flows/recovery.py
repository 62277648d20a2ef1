"""Recovery: finish what a stopped process left, by ownership, never by age. The one flow that calls others
(provisioning and offboarding runs are resumed by the use cases that own them)."""

from __future__ import annotations

import logging

from bot.core import reveal_recovery
from bot.core.runs import resumable_request_ids
from bot.db import session_scope
from bot.flows import offboarding
from bot.flows import provisioning as provisioning_flow
from bot.services import Services

log = logging.getLogger(__name__)


def resume_interrupted(services: Services, *, runs: bool = True) -> None:
    """Finish what a crashed process (or an outage) left: approved requests with no live run, reveals cut off
    mid-way. (Messages marked in the outbox are the sender's: its lease recovers them.) `runs=False`: leave
    provisioning and offboarding runs to the worker, which takes them from the database itself (bot/worker.py)."""
    with session_scope(services.session_factory) as session:
        request_ids = resumable_request_ids(session, now=services.clock()) if runs else []
    for request_id in request_ids:
        log.info("resuming provisioning of request %s", request_id)
        provisioning_flow.provision(services, request_id)
    if runs:
        offboarding.resume_revokes(services)  # offboarding resumes like provisioning
    recover_reveals(services)


def recover_reveals(services: Services) -> None:
    """Reveals whose process stopped beating: settle each by what its claim recorded (which marks what the owner
    and the admins are told in the outbox)."""
    recovered = reveal_recovery.recover(
        services.session_factory,
        gateway=services.gateway,
        process_owner=services.owner,
        clock=services.clock,
        lease_seconds=services.settings.koding_iam_lease_seconds,
    )
    for item in recovered:
        log.info("settled interrupted reveal %s: %s", item.grant_id, item.outcome)
    if recovered:
        services.wake_outbox()  # each settled reveal marked its DM's redraw and who is told of it
