"""Modal submissions. Validation happens before the ack, so a refusal shows on the offending field: a flow's
DomainError is turned into field errors or a replaced modal by the one error handler (bot/app.py)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.flows import offboarding as admin_flows
from bot.flows import requesting as flows
from bot.services import Services
from bot.slack import ids, views
from bot.slack.modal_metadata import DenyMetadata, RevokeMetadata
from handlers.parsing import TAMPERED_FORM, user_of


def register(app: App, services: Services) -> None:
    @app.view(ids.View.REQUEST)
    def submit_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        form = views.parse_request_form(view)
        request_id = flows.submit_request(
            services, user_id=user_of(body), team_id=(body.get("team") or {}).get("id"), form=form
        )
        ack()
        flows.announce_request(services, request_id)

    def deny_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        metadata = DenyMetadata.of(view)
        if metadata is None:
            ack(response_action="errors", errors={ids.Block.DENY_REASON: TAMPERED_FORM})
            return
        _, reason = views.parse_deny_submission(view)
        flows.deny(services, request_id=metadata.request_id, admin_id=user_of(body), reason=reason)
        ack()
        flows.announce_denial(services, metadata.request_id)

    for callback_id in (ids.View.DENY, ids.LEGACY_DENY_VIEW):  # a form opened before an upgrade still submits
        app.view(callback_id)(deny_request)

    @app.view(ids.View.REVOKE)
    def confirm_revoke(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        metadata = RevokeMetadata.of(view)
        if metadata is None:
            ack(response_action="update", view=views.reveal_problem_modal(TAMPERED_FORM))
            return
        admin_id = user_of(body)
        admin_flows.confirm_revoke(services, request_id=metadata.request_id, admin_id=admin_id)
        ack()
