"""Modal submissions. Validation happens before the ack so errors show on the offending field."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot import admin_flows, flows, ids, views
from bot.errors import AlreadyDecided, DomainError, ValidationFailed
from bot.services import Services
from handlers.parsing import TAMPERED_FORM, user_of


def register(app: App, services: Services) -> None:
    @app.view(ids.REQUEST_MODAL)
    def on_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        form = views.parse_request_form(view)
        try:
            request_id = flows.submit_request(
                services, user_id=user_of(body), team_id=(body.get("team") or {}).get("id"), form=form
            )
        except ValidationFailed as exc:
            ack(response_action="errors", errors=views.form_errors(exc.errors))
            return
        ack()
        flows.announce_request(services, request_id)

    def on_deny(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id, reason = views.parse_deny_submission(view)
        if request_id is None:
            ack(response_action="errors", errors={ids.DENY_REASON_BLOCK: TAMPERED_FORM})
            return
        try:
            flows.deny(services, request_id=request_id, admin_id=user_of(body), reason=reason)
        except AlreadyDecided as exc:
            at = exc.decided_at.strftime("%Y-%m-%d %H:%M UTC") if exc.decided_at else "earlier"
            message = f"Already {exc.status} by another admin ({exc.decided_by}) at {at}."
            ack(response_action="errors", errors={ids.DENY_REASON_BLOCK: message})
            return
        except DomainError as exc:
            ack(response_action="errors", errors={ids.DENY_REASON_BLOCK: exc.user_message[:150]})
            return
        ack()
        flows.announce_denial(services, request_id)

    for callback_id in (ids.View.DENY, ids.LEGACY_DENY_VIEW):  # a form opened before an upgrade still submits
        app.view(callback_id)(on_deny)

    @app.view(ids.REVOKE_MODAL)
    def on_revoke(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        request_id = views.parse_revoke_submission(view)
        admin_id = user_of(body)
        if request_id is None:
            ack(response_action="update", view=views.reveal_problem_modal(TAMPERED_FORM))
            return
        try:
            admin_flows.confirm_revoke(services, request_id=request_id, admin_id=admin_id)
        except DomainError as exc:
            ack(response_action="update", view=views.reveal_problem_modal(exc.user_message))
            return
        ack()
        admin_flows.run_revoke(services, request_id, admin_id=admin_id)
