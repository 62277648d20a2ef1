"""A global Bolt middleware: requests from another workspace or app, or naming no valid member, stop here.

The signature proves Slack sent a request, not that it is for this workspace and this app: an app installed
elsewhere with the same signing secret (or a replayed payload from another install) must not act here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse

from bot.config import SLACK_USER_ID
from bot.services import Services

log = logging.getLogger(__name__)
NEEDS_USER = {"block_actions", "view_submission", "view_closed", "shortcut", "message_action"}


def register(app: App, services: Services) -> None:
    expected_app = services.settings.koding_iam_app_id

    @app.middleware
    def same_workspace_and_member(context: BoltContext, body: dict[str, Any], next: Callable[[], Any]) -> Any:
        authorized = context.authorize_result
        team, home_team = context.team_id, authorized.team_id if authorized else None
        if team and home_team and team != home_team and not context.enterprise_id:
            log.warning("refused a request for another workspace")
            return BoltResponse(status=401, body="this app serves another workspace")
        app_id = body.get("api_app_id") if isinstance(body, dict) else None
        if expected_app and app_id and app_id != expected_app:
            log.warning("refused a request for another app")
            return BoltResponse(status=401, body="this request is for another app")
        user = context.user_id
        kind = body.get("type") if isinstance(body, dict) else None
        if kind in NEEDS_USER and not isinstance(body.get("user"), dict):
            return BoltResponse(status=400, body="malformed payload: no user object")
        is_command = isinstance(body, dict) and "command" in body
        if (user is None and (kind in NEEDS_USER or is_command)) or (
            user is not None and not SLACK_USER_ID.fullmatch(str(user))
        ):
            return BoltResponse(status=400, body="no valid Slack member in the request")
        return next()
