"""The Slack stand-in's Web API methods and response_url posts, each answering as Slack documents it. A mixin of
SlackStandIn, whose lock is held while a method runs; state lives on the SlackStandIn (see its _reset_state).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

from bot.devtools import blockkit_rules
from bot.devtools.slack_wire import (
    _APP_ID,
    _USER_ID,
    _Answer,
    _blocks_well_formed,
    _message_content,
    _parse_response_url_body,
    _ResponseUrl,
    _SlackError,
    _str,
    _truthy,
    _validate_view,
)


class SocketModeEndpoint(Protocol):
    """What apps.connections.open needs of the Socket Mode stand-in (bot/devtools/socket_standin.py)."""

    def new_url(self) -> str: ...


class WebApiMethods:
    """chat.*, views.*, users.info, usergroups.users.list, conversations.open, auth.test, apps.connections.open
    and response_url, over the stand-in's state."""

    socket_mode: SocketModeEndpoint | None = None
    team_id: str
    bot_user_id: str
    bot_id: str
    _lock: threading.Lock
    _messages: dict[tuple[str, str], dict[str, Any]]
    _ephemerals: list[tuple[str, dict[str, Any]]]
    _views: dict[str, dict[str, Any]]
    _external_ids: dict[str, str]
    _homes: dict[str, str]
    _used_triggers: set[str]
    _response_urls: dict[str, _ResponseUrl]
    _users: dict[str, dict[str, Any]]
    _usergroups: dict[str, list[str]]
    _disabled_usergroups: set[str]
    _last_root_view_id: str | None
    _last_modal_view_id: str | None

    port: int
    _resolve_channel: Callable[[str], str]
    _next_seq: Callable[[], int]
    _next_ts: Callable[[], str]
    _new_hash: Callable[[], str]
    dm_channel: Callable[[str], str]
    _injected: Callable[[str], _Answer | None]
    _check: Callable[..., None]

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }

    # ------------------------------------------------------------------------- Web API methods (locked)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://koding-test.slack.com/",
            "team": "Koding Test",
            "user": "koding-iam",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A Socket Mode websocket URL (https://api.slack.com/methods/apps.connections.open: `{"ok": true, "url":
        "wss://..."}`), here the local socket stand-in's ws:// URL; without one attached, Socket Mode is off."""
        if self.socket_mode is None:
            raise _SlackError("invalid_auth")  # Slack's answer for an app without Socket Mode turned on
        return {"url": self.socket_mode.new_url()}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel:
            raise _SlackError("channel_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text")
        resolved = self._resolve_channel(channel)
        ts = self._next_ts()
        stored: dict[str, Any] = {"channel": resolved, "ts": ts, "text": text or "", "blocks": blocks or []}
        if attachments:
            stored["attachments"] = attachments
        if args.get("thread_ts"):
            stored["thread_ts"] = _str(args["thread_ts"])
        self._messages[(resolved, ts)] = copy.deepcopy(stored)
        return {"channel": resolved, "ts": ts, "message": self._message_payload(stored)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel or _USER_ID.fullmatch(channel):
            raise _SlackError("channel_not_found")
        ts = _str(args.get("ts"))
        stored = self._messages.get((channel, ts or ""))
        if stored is None:
            raise _SlackError("message_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and blocks is None and attachments is None:
            raise _SlackError("no_text")
        # Like Slack: fields left out keep their previous value; an empty blocks list removes the blocks.
        if text is not None:
            stored["text"] = text
        if blocks is not None:
            stored["blocks"] = blocks
        if attachments is not None:
            stored["attachments"] = attachments
        message = self._message_payload(stored)
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": stored["ts"], "text": stored["text"], "message": message}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        if not channel:
            raise _SlackError("channel_not_found")
        user = _str(args.get("user"))
        if not user:
            raise _SlackError("user_not_found")
        text, blocks, attachments = _message_content(args)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text")
        self._ephemerals.append((user, copy.deepcopy(args)))
        return {"message_ts": self._next_ts()}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _str(args.get("channel"))
        users = [u.strip() for u in (_str(args.get("users")) or "").split(",") if u.strip()]
        if channel:
            return {"channel": {"id": channel}}
        if not users:
            raise _SlackError("users_list_not_supplied")
        if any(not _USER_ID.fullmatch(u) for u in users):
            raise _SlackError("user_not_found")
        if len(users) == 1:
            return {"channel": {"id": self.dm_channel(users[0])}}
        digest = hashlib.sha256(",".join(sorted(users)).encode()).hexdigest()[:10].upper()
        return {"channel": {"id": "G" + digest}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """https://api.slack.com/methods/users.info: `user_not_found` for an id the workspace does not know;
        `deleted` for a deactivated member, `is_bot`, `is_restricted` / `is_ultra_restricted` for guests."""
        user_id = _str(args.get("user"))
        if not user_id or not _USER_ID.fullmatch(user_id):
            raise _SlackError("user_not_found")
        override = self._users.get(user_id, {})
        if override.get("unknown"):
            raise _SlackError("user_not_found")
        real_name = override.get("real_name") or f"Test User {user_id}"
        display_name = override.get("display_name") or user_id.lower()
        profile: dict[str, Any] = {"display_name": display_name, "real_name": real_name}
        if override.get("email"):
            profile["email"] = override["email"]
        return {
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": user_id.lower(),
                "real_name": real_name,
                "deleted": bool(override.get("deleted", False)),
                "is_bot": bool(override.get("is_bot", False)),
                "is_app_user": False,
                "is_restricted": bool(override.get("is_restricted", False)),
                "is_ultra_restricted": bool(override.get("is_ultra_restricted", False)),
                "profile": profile,
            }
        }

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """https://api.slack.com/methods/usergroups.users.list (scope usergroups:read, Tier 2): `{"ok": true,
        "users": [...]}`, the member ids of a user group (`S…`); `no_such_subteam` for a group the workspace does
        not have, `invalid_arguments` when `usergroup` is missing. A disabled group answers its members only
        with `include_disabled` (else `no_such_subteam`, as for a deleted group)."""
        group_id = _str(args.get("usergroup"))
        if not group_id:
            raise _SlackError("invalid_arguments", detail="missing required field: usergroup")
        members = self._usergroups.get(group_id)
        if members is None:
            raise _SlackError("no_such_subteam")
        if group_id in self._disabled_usergroups and not _truthy(args.get("include_disabled")):
            raise _SlackError("no_such_subteam")
        return {"users": list(members)}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_modal(args, push=False)

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_modal(args, push=True)

    def _open_modal(self, args: dict[str, Any], *, push: bool) -> dict[str, Any]:
        trigger_id = _str(args.get("trigger_id"))
        if not trigger_id:
            raise _SlackError("invalid_arguments", detail="missing required field: trigger_id")
        view = _validate_view(args.get("view"), allowed_types={"modal"})
        external_id = _str(view.get("external_id"))
        if external_id and external_id in self._external_ids:
            raise _SlackError("duplicate_external_id")
        if "expired" in trigger_id:
            raise _SlackError("expired_trigger_id")
        if trigger_id in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        self._used_triggers.add(trigger_id)
        view_id = f"V{self._next_seq():010d}"
        if push and self._last_root_view_id:
            root_view_id, previous_view_id = self._last_root_view_id, self._last_modal_view_id
        else:
            root_view_id, previous_view_id = view_id, None
        stored = self._stored_view(view, view_id, root_view_id=root_view_id, previous_view_id=previous_view_id)
        self._views[view_id] = stored
        if external_id:
            self._external_ids[external_id] = view_id
        self._last_root_view_id, self._last_modal_view_id = root_view_id, view_id
        return {"view": copy.deepcopy(stored)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = _str(args.get("view_id"))
        external_id = _str(args.get("external_id"))
        if not view_id and not external_id:
            raise _SlackError("invalid_arguments", detail="missing required field: view_id or external_id")
        if not view_id and external_id:
            view_id = self._external_ids.get(external_id)
        current = self._views.get(view_id or "")
        if current is None:
            raise _SlackError("not_found")
        view = _validate_view(args.get("view"), allowed_types={current["type"]})
        wanted_hash = _str(args.get("hash"))
        if wanted_hash and wanted_hash != current["hash"]:
            raise _SlackError("hash_conflict")
        new_external_id = _str(view.get("external_id"))
        if new_external_id and self._external_ids.get(new_external_id, current["id"]) != current["id"]:
            raise _SlackError("duplicate_external_id")
        stored = self._stored_view(
            view,
            current["id"],
            root_view_id=current["root_view_id"],
            previous_view_id=current.get("previous_view_id"),
        )
        if not new_external_id and current.get("external_id"):
            stored["external_id"] = current["external_id"]
        elif new_external_id:
            self._external_ids[new_external_id] = current["id"]
        self._views[current["id"]] = stored
        return {"view": copy.deepcopy(stored)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _str(args.get("user_id"))
        if not user_id:
            raise _SlackError("invalid_arguments", detail="missing required field: user_id")
        view = _validate_view(args.get("view"), allowed_types={"home"})
        existing_id = self._homes.get(user_id)
        wanted_hash = _str(args.get("hash"))
        if wanted_hash and existing_id and wanted_hash != self._views[existing_id]["hash"]:
            raise _SlackError("hash_conflict")
        view_id = existing_id or f"V{self._next_seq():010d}"
        stored = self._stored_view(view, view_id, root_view_id=view_id, previous_view_id=None)
        self._views[view_id] = stored
        self._homes[user_id] = view_id
        return {"view": copy.deepcopy(stored)}

    def _stored_view(
        self, view: dict[str, Any], view_id: str, *, root_view_id: str, previous_view_id: str | None
    ) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "title": None,
            "close": None,
            "submit": None,
            "clear_on_close": False,
            "notify_on_close": False,
            "external_id": "",
        }
        server_fields = {
            "id": view_id,
            "team_id": self.team_id,
            "hash": self._new_hash(),
            "previous_view_id": previous_view_id,
            "root_view_id": root_view_id,
            "app_id": _APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        return copy.deepcopy({**defaults, **view, **server_fields})

    def _message_payload(self, stored: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "text": stored["text"],
            "blocks": copy.deepcopy(stored["blocks"]),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": stored["ts"],
        }
        for key in ("attachments", "thread_ts"):
            if key in stored:
                message[key] = copy.deepcopy(stored[key])
        return message

    # ---------------------------------------------------------------------------------- response_url

    def _response_url(self, path: str, command: str, content_type: str, raw: str) -> tuple[dict[str, Any], _Answer]:
        token = path[len("/response/") :]
        url = f"http://127.0.0.1:{self.port}/response/{token}"
        try:
            body = _parse_response_url_body(content_type, raw)
        except _SlackError as exc:
            return {"_response_url": url}, _Answer(exc.status, exc.payload())
        body["_response_url"] = url
        injected = self._injected("response_url")
        if injected is not None:
            return body, injected
        if command != "POST":
            return body, _Answer(405, {"ok": False, "error": "method_not_allowed"})
        try:
            with self._lock:
                binding = self._response_urls.get(token)
                if binding is None:
                    raise _SlackError("expired_url", status=404)
                self._apply_response(binding, body)
        except _SlackError as exc:
            return body, _Answer(exc.status, exc.payload())
        return body, _Answer(200, {"ok": True})

    def _apply_response(self, binding: _ResponseUrl, body: dict[str, Any]) -> None:
        """Mirror what Slack does with a response_url post on the message it came from."""
        key = (binding.channel, binding.ts) if binding.channel is not None and binding.ts is not None else None
        if _truthy(body.get("delete_original")):
            if key is not None:
                self._messages.pop(key, None)
            return
        if _blocks_well_formed(body.get("blocks", [])):
            self._check("response_url", blockkit_rules.check_message(body), "invalid_blocks", status=400)
        text, blocks, attachments = _message_content(body, status=400)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text", status=400)
        if _truthy(body.get("replace_original")):
            if key is not None and key in self._messages:
                stored = self._messages[key]
                stored["text"] = text or ""
                stored["blocks"] = blocks or []
                stored.pop("attachments", None)
                if attachments:
                    stored["attachments"] = attachments
            return
        if body.get("response_type") == "in_channel":
            if binding.channel:
                ts = self._next_ts()
                stored = {"channel": binding.channel, "ts": ts, "text": text or "", "blocks": blocks or []}
                if attachments:
                    stored["attachments"] = attachments
                self._messages[(binding.channel, ts)] = stored
            return
        if binding.user:
            self._ephemerals.append((binding.user, copy.deepcopy(body)))
