"""Catches Slack and AWS calls made while the calling thread holds an open database transaction.

Why: a call to Slack or AWS inside a transaction holds SQLite's only write lock (or a PostgreSQL row lock and a
pooled connection) across the other service's latency and any 429 Retry-After sleep, and lets a message go out
for a change that may then fail to commit. The rule is "no Slack or AWS call while a transaction is open"; this
guard makes every test check it.

How: SQLAlchemy's connection events count the transactions each thread has open; the two doors to the outside
(slack_sdk's HTTP request and botocore's `Endpoint.make_request`, which runs for the in-process moto mock too)
check that count and record a violation with a short stack. Nothing is raised inside the app: the test fixture
fails the test afterwards, naming each call and where it came from.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

_local = threading.local()
_lock = threading.Lock()
_violations: list[Violation] = []
_installed = False
_originals: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class Violation:
    call: str  # "slack chat.postMessage" or "aws iam.CreateUser"
    where: str  # the innermost frames from bot/ and handlers/


def _open() -> set[int]:
    if not hasattr(_local, "open"):
        _local.open = set()
    return _local.open


def _on_begin(conn: Connection) -> None:
    _open().add(id(conn))


def _on_end(conn: Connection) -> None:
    _open().discard(id(conn))


def _check(call: str) -> None:
    if not _open():
        return
    frames = [
        f"{frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_stack()[:-2]
        if "/bot/" in frame.filename or "/handlers/" in frame.filename
    ]
    if frames and frames[-1].startswith("devtools/"):
        return  # a stand-in or test helper, not the app
    with _lock:
        _violations.append(Violation(call, " <- ".join(reversed(frames[-6:]))))


def install() -> None:
    """Idempotent: hooks every Engine (present and future), slack_sdk and botocore once per process."""
    global _installed
    if _installed:
        return
    from botocore.endpoint import Endpoint
    from slack_sdk.web.base_client import BaseClient

    event.listen(Engine, "begin", _on_begin)
    event.listen(Engine, "commit", _on_end)
    event.listen(Engine, "rollback", _on_end)

    slack_send = BaseClient._perform_urllib_http_request
    aws_send = Endpoint.make_request
    _originals["slack"], _originals["aws"] = slack_send, aws_send

    def guarded_slack(self: Any, *, url: str, args: dict[str, Any]) -> Any:
        _check("slack " + url.rsplit("/", 1)[-1])
        return slack_send(self, url=url, args=args)

    def guarded_aws(self: Any, operation_model: Any, request_dict: Any) -> Any:
        _check(f"aws {operation_model.service_model.endpoint_prefix}.{operation_model.name}")
        return aws_send(self, operation_model, request_dict)

    BaseClient._perform_urllib_http_request = guarded_slack  # type: ignore[method-assign]
    Endpoint.make_request = guarded_aws  # type: ignore[method-assign]
    _installed = True


def take() -> list[Violation]:
    """The violations recorded since the last call, and forget them."""
    with _lock:
        found = list(_violations)
        _violations.clear()
    return found
