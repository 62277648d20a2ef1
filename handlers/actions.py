"""Button clicks. Every click is acknowledged first; authorization happens on the server in bot.flows.requesting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.flows import key_usage as key_usage_flows
from bot.flows import offboarding as admin_flows
from bot.flows import requesting as flows
from bot.flows import rotation as rotation_flows
from bot.services import Services
from bot.slack import ids
from bot.slack.notify import Notifier
from handlers.parsing import Toggle, button_id, channel_of, toggle_of, user_of

BROKEN_BUTTON = "This button does not point to anything koding-iam knows. Nothing was changed."


ButtonRun = Callable[[int, str, str | None, dict[str, Any]], None]


def register_button(app: App, notifier: Notifier, action_id: str, run: ButtonRun) -> None:
    """Acknowledge at once, then read the id the button carries; a value that is not one is refused."""

    @app.action(action_id)
    def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        target, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if target is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        run(target, user_id, channel, body)


def register(app: App, services: Services) -> None:
    notifier = services.notifier

    def on_button(action_id: str, run: ButtonRun) -> None:
        register_button(app, notifier, action_id, run)

    @app.action(ids.OPEN_REQUEST)
    def on_open_request(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = user_of(body)
        blocker = flows.request_blocker(services, user_id)
        if blocker:
            notifier.ephemeral(channel_of(body), user_id, blocker)
            return
        flows.open_request_modal(
            services,
            user_id=user_id,
            user_name=(body.get("user") or {}).get("username"),
            trigger_id=body["trigger_id"],
        )

    on_button(
        ids.APPROVE,
        lambda request_id, user_id, channel, _: flows.approve(
            services, request_id=request_id, admin_id=user_id, channel=channel
        ),
    )
    on_button(
        ids.DENY,
        lambda request_id, user_id, channel, body: flows.open_deny_modal(
            services, request_id=request_id, admin_id=user_id, trigger_id=body["trigger_id"], channel=channel
        ),
    )
    on_button(
        ids.RETRY,
        lambda request_id, user_id, channel, _: flows.retry(
            services, request_id=request_id, admin_id=user_id, channel=channel
        ),
    )
    on_button(
        ids.REVEAL,
        lambda grant_id, user_id, channel, body: flows.reveal_keys(
            services, grant_id=grant_id, user_id=user_id, trigger_id=body["trigger_id"], channel=channel
        ),
    )
    on_button(
        ids.RENEW_REVEAL,
        lambda grant_id, user_id, channel, _: flows.renew_reveal_window(
            services, grant_id=grant_id, user_id=user_id, channel=channel
        ),
    )
    on_button(
        ids.ROTATE,
        lambda key_id, user_id, channel, body: rotation_flows.rotate(
            services, key_row_id=key_id, user_id=user_id, trigger_id=body["trigger_id"], channel=channel
        ),
    )

    def on_toggle(action_id: str, run: Callable[[Toggle, str, str | None], None]) -> None:
        """Key status buttons carry the state they ask for; the flow updates only messages it recorded."""

        @app.action(action_id)
        def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
            ack()
            toggle, user_id, channel = toggle_of(action), user_of(body), channel_of(body)
            if toggle is None:
                notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
                return
            run(toggle, user_id, channel)

    on_toggle(
        ids.DEACTIVATE_OLD,
        lambda toggle, user_id, channel: rotation_flows.deactivate_old(
            services, key_row_id=toggle.key_row_id, user_id=user_id, channel=channel
        ),
    )
    on_toggle(
        ids.ADMIN_DEACTIVATE,
        lambda toggle, user_id, channel: rotation_flows.deactivate_old(
            services, key_row_id=toggle.key_row_id, user_id=user_id, channel=channel, by_admin=True
        ),
    )
    on_toggle(
        ids.REACTIVATE,
        lambda toggle, user_id, channel: rotation_flows.reactivate(
            services, key_row_id=toggle.key_row_id, user_id=user_id, channel=channel, since=toggle.since
        ),
    )
    on_button(
        ids.DELETE_INACTIVE,
        lambda key_id, user_id, channel, _: rotation_flows.delete_inactive(
            services, key_row_id=key_id, user_id=user_id, channel=channel
        ),
    )
    on_button(
        ids.KEEP_KEY,
        lambda key_id, user_id, channel, _: key_usage_flows.keep(
            services, key_row_id=key_id, user_id=user_id, channel=channel
        ),
    )
    on_button(
        ids.REVOKE_START,
        lambda request_id, user_id, channel, body: admin_flows.open_revoke_for_request(
            services, admin_id=user_id, request_id=request_id, trigger_id=body["trigger_id"], channel=channel
        ),
    )
