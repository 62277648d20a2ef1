"""Time-bound access: the end reminders' buttons, the "I'm done" and extension modals, the extension cards."""

from __future__ import annotations

import functools
from typing import Any

from slack_bolt import Ack, App

from bot.flows import timebound as timebound_flows
from bot.services import Services
from bot.slack import ids
from bot.slack import timebound_views as tviews
from bot.slack.modal_metadata import DoneMetadata, ExtendMetadata
from handlers.actions import Click, button
from handlers.middleware import Answer
from handlers.parsing import TAMPERED_FORM, user_of


def register(app: App, services: Services, answer: Answer) -> None:
    on = functools.partial(button, app, services, answer)

    @on(ids.Action.EXTEND)
    def open_extension_form(click: Click) -> None:
        timebound_flows.open_extension(
            services, request_id=click.target, user_id=click.member, trigger_id=click.trigger_id
        )

    @on(ids.Action.DONE)
    def open_done_confirmation(click: Click) -> None:
        timebound_flows.open_done(services, request_id=click.target, user_id=click.member, trigger_id=click.trigger_id)

    @on(ids.Action.EXTENSION_APPROVE)
    def approve_extension(click: Click) -> None:
        timebound_flows.decide_extension(services, extension_id=click.target, admin_id=click.member, approve=True)

    @on(ids.Action.EXTENSION_DENY)
    def deny_extension(click: Click) -> None:
        timebound_flows.decide_extension(services, extension_id=click.target, admin_id=click.member, approve=False)

    @app.view(ids.View.DONE)
    def end_access_now(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        metadata = DoneMetadata.of(view)
        if metadata is None:
            ack(response_action="update", view=tviews.problem_modal("End your access", TAMPERED_FORM))
            return
        timebound_flows.confirm_done(services, request_id=metadata.request_id, user_id=user_of(body))
        ack()
        timebound_flows.finish(services, metadata.request_id, by_owner=True)

    @app.view(ids.View.EXTEND)
    def ask_for_extension(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        metadata = ExtendMetadata.of(view)
        if metadata is None:
            ack(response_action="errors", errors={ids.Block.EXTEND_DATE: TAMPERED_FORM})
            return
        reason, new_end = tviews.parse_extension_form(view)
        extension_id = timebound_flows.submit_extension(
            services, request_id=metadata.request_id, user_id=user_of(body), reason=reason, new_end=new_end
        )
        ack()
        timebound_flows.announce_extension(services, extension_id)
