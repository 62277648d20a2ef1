"""Which Slack request a log line belongs to, carried by a ContextVar from the Bolt boundary into after-ack work.

The app sets the fields once per request (`bind`, from `fields_of` the payload) around Bolt's dispatch; every log
record made while they are set carries them (bot/logs.py). Bolt runs listeners and the work after ack() on an
executor, and provisioning goes to `Services.background`: threads of a pool do not inherit the submitter's
contextvars, so both executors are wrapped in `ContextExecutor`, which runs each task in a copy of the context
taken at submit.

Only identifiers are kept, never free text: a member can type anything after `/koding-iam`, so a command is
logged by its name alone, and every value must look like a Slack id or one of this app's own action ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

_REQUEST: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("slack_request", default=None)
_ID = re.compile(r"[A-Z0-9]{2,32}")
_NAME = re.compile(r"[A-Za-z0-9_./:-]{1,64}")
FIELDS = ("request_id", "team", "user", "kind", "callback")


def current() -> dict[str, str]:
    """The fields of the Slack request being handled in this context; empty outside one."""
    return dict(_REQUEST.get() or {})


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[dict[str, str]]:
    """Set request fields for the duration of a block, on top of any already set (a Socket Mode envelope id
    bound by the transport stays when the app binds the payload's fields)."""
    merged = {**current(), **{k: v for k, v in fields.items() if v}}
    token = _REQUEST.set(merged)
    try:
        yield merged
    finally:
        _REQUEST.reset(token)


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and _NAME.fullmatch(value) else None


def fields_of(body: Any) -> dict[str, str | None]:
    """team, user, kind and callback (command name, action_id, callback_id or event type) of a Slack payload,
    and its own id when it has one (an Events API event_id); a fresh id otherwise, so a request's lines group."""
    if not isinstance(body, dict):
        return {"request_id": uuid.uuid4().hex[:16]}
    team = body.get("team")
    user = body.get("user")
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    actions = body.get("actions") if isinstance(body.get("actions"), list) else []
    view = body.get("view") if isinstance(body.get("view"), dict) else {}
    if "command" in body:
        kind, callback = "command", _name(body.get("command"))
    elif body.get("type") == "event_callback":
        kind, callback = "event", _name(event.get("type"))
    else:
        kind = _name(body.get("type"))
        first = actions[0] if actions and isinstance(actions[0], dict) else {}
        callback = _name(first.get("action_id")) or _name(view.get("callback_id")) or _name(body.get("callback_id"))
    return {
        "request_id": _name(body.get("event_id")) or uuid.uuid4().hex[:16],
        "team": _id(team.get("id") if isinstance(team, dict) else body.get("team_id")),
        "user": _id(user.get("id") if isinstance(user, dict) else body.get("user_id") or event.get("user")),
        "kind": kind,
        "callback": callback,
    }


class ContextExecutor(Executor):
    """An executor that runs every task in a copy of the submitter's context (contextvars included)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.inner.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __getattr__(self, name: str) -> Any:  # the wrapped pool's own helpers (e.g. a test's wait_idle)
        return getattr(self.inner, name)


def carrying_context(executor: Executor) -> Executor:
    """`executor`, wrapped once so that its tasks see the submitter's request fields."""
    return executor if isinstance(executor, ContextExecutor) else ContextExecutor(executor)
