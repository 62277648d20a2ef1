"""Shared helpers for the reliability suite (tests/reliability): database and IAM fingerprints, a hanging HTTP
proxy that lets a SIGKILL land mid-call, PostgreSQL schemas for module-scoped fixtures, and figure recording.

Not a conftest: the folder has no __init__.py, so pytest puts it on sys.path and the test modules import this
module by its (unique) name.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, MetaData, create_engine, select, text

from bot.config import normalise_database_url
from bot.devtools import waiting
from bot.devtools.pg import throwaway_schema

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("TEST_DATABASE_URL") or ("postgresql://postgres@127.0.0.1:5432/test" if IN_CI else "")


# Waiting ---------------------------------------------------------------------------------------------------
def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (bot/devtools/waiting.py), with this suite's defaults."""
    return waiting.wait_for(check, timeout=timeout, what=what, every=interval)


# The steps of provisioning the default (EC2) profile, as recorded in provisioning_steps.
ALL_STEPS = {
    "group:Developers",
    "policy:Developers:arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    "policy:Developers:arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    "user",
    "membership:Developers",
}


# Figures ---------------------------------------------------------------------------------------------------
def record_figure(name: str, **figures: Any) -> None:
    """Print a measured figure (run pytest with -s or -rA to see it) and, when KODING_IAM_RELIABILITY_FIGURES
    names a file, append it there as one JSON line. docs/RELIABILITY.md quotes these."""
    line = json.dumps({"figure": name, **figures}, sort_keys=True, default=str)
    print(f"RELIABILITY-FIGURE {line}")
    target = os.environ.get("KODING_IAM_RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


# Database --------------------------------------------------------------------------------------------------
_reflected: dict[int, tuple[Engine, MetaData]] = {}


def _metadata(engine: Engine) -> MetaData:
    """The engine's tables, reflected once per engine (so tables added by later migrations are included)."""
    cached = _reflected.get(id(engine))
    if cached is None or cached[0] is not engine:
        metadata = MetaData()
        metadata.reflect(bind=engine)
        cached = _reflected[id(engine)] = (engine, metadata)
    return cached[1]


# The replay guard's log of signed deliveries (digests and timestamps): written for every signed request, refused
# or not, by design, so "nothing changed" means nothing else changed.
DELIVERY_LOG = {"seen_requests"}


def db_rows(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table but the delivery log, as sorted reprs."""
    metadata = _metadata(engine)
    out: dict[str, list[str]] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name in DELIVERY_LOG:
                continue
            out[table.name] = sorted(repr(tuple(row)) for row in connection.execute(select(table)))
    return out


def db_counts(engine: Engine) -> dict[str, int]:
    return {name: len(rows) for name, rows in db_rows(engine).items()}


def scalar(url_or_engine: str | Engine, sql: str, **params: Any) -> Any:
    """One value from the database the app uses (a URL for served processes, or the sandbox's engine)."""
    engine = (
        url_or_engine if isinstance(url_or_engine, Engine) else create_engine(normalise_database_url(url_or_engine))
    )
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        if not isinstance(url_or_engine, Engine):
            engine.dispose()


def execute(url: str, sql: str, **params: Any) -> int:
    engine = create_engine(normalise_database_url(url))
    try:
        with engine.begin() as connection:
            return connection.execute(text(sql), params).rowcount
    finally:
        engine.dispose()


def audit_count(url_or_engine: str | Engine, action: str) -> int:
    return int(scalar(url_or_engine, "SELECT count(*) FROM audit_events WHERE action = :a", a=action) or 0)


# IAM -------------------------------------------------------------------------------------------------------
def iam_state(iam: Any) -> dict[str, Any]:
    """Every IAM user (any path) with path, groups, tags and access key ids; every group with its policies."""
    users = {}
    for user in iam.list_users()["Users"]:
        name = user["UserName"]
        users[name] = {
            "path": user["Path"],
            "groups": sorted(g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]),
            "keys": sorted(k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]),
            "tags": sorted((t["Key"], t["Value"]) for t in iam.list_user_tags(UserName=name)["Tags"]),
        }
    groups = {}
    for group in iam.list_groups()["Groups"]:
        name = group["GroupName"]
        policies = iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"]
        groups[name] = {"path": group["Path"], "policies": sorted(p["PolicyArn"] for p in policies)}
    return {"users": users, "groups": groups}


def koding_users(iam: Any) -> list[str]:
    return sorted(u["UserName"] for u in iam.list_users(PathPrefix="/koding/")["Users"])


# PostgreSQL ------------------------------------------------------------------------------------------------
def postgres_schema() -> contextlib.AbstractContextManager[str]:
    """A fresh schema on TEST_DATABASE_URL for a module-scoped fixture (tests/conftest.py's are per test)."""
    return throwaway_schema(PG_URL, prefix="rel")


# Slack -----------------------------------------------------------------------------------------------------
def messages_with(standin: Any, user_or_channel: str, needle: str) -> list[dict[str, Any]]:
    """Current messages in a DM (given a user id) or channel whose text or blocks contain `needle`."""
    channel = standin.dm_channel(user_or_channel) if user_or_channel[:1] in "UW" else user_or_channel
    return [
        m for m in standin.messages(channel) if needle in json.dumps(m.get("blocks"), ensure_ascii=False) + m["text"]
    ]


def posts_with(standin: Any, needle: str, *, method: str = "chat.postMessage") -> list[Any]:
    """Successful recorded calls of `method` whose body mentions `needle`."""
    return [c for c in standin.calls_to(method) if not c.failed and needle in json.dumps(c.body, ensure_ascii=False)]


# A proxy that can hang one call ----------------------------------------------------------------------------
def iam_action(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """The IAM operation of a botocore request (query protocol: `Action=` in the form body)."""
    try:
        form = parse_qs(body.decode("utf-8"))
    except UnicodeDecodeError:
        return ""
    return (form.get("Action") or [""])[0]


def slack_call(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """`<api method>:<channel>` for a Slack Web API request, e.g. `chat.postMessage:UADMIN1`."""
    name = urlsplit(path).path.rsplit("/", 1)[-1]
    channel = ""
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        if headers.get("content-type", "").startswith("application/json"):
            parsed = json.loads(body.decode("utf-8") or "{}")
            channel = str(parsed.get("channel") or "") if isinstance(parsed, dict) else ""
        else:
            channel = (parse_qs(body.decode("utf-8")).get("channel") or [""])[0]
    return f"{name}:{channel}"


@dataclass
class HangingProxy:
    """A tiny HTTP proxy in front of moto (or the Slack stand-in). Requests are forwarded unchanged, except:

    - a label in `hang_before` is held without forwarding (the call never reaches the upstream);
    - a label in `hang_after` is forwarded, the upstream's answer is read, then the client is held without it
      (the upstream did the work, the caller never learns the result);
    - a label in `pause_before` is held until `resume()`, then forwarded normally (a slow upstream).

    `hung` reports each held label, so a test can SIGKILL the caller at exactly that moment.
    """

    upstream: str
    classify: Callable[[str, str, dict[str, str], bytes], str]
    hang_before: set[str] = field(default_factory=set)
    hang_after: set[str] = field(default_factory=set)
    pause_before: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._resume = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: bodies may hold secrets."""

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                """A killed client hangs up on us; that is the point of this proxy."""

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        label = self.classify(h.command, h.path, headers, body)
        with self._lock:
            self.seen.append(label)
            before, after, pause = label in self.hang_before, label in self.hang_after, label in self.pause_before
        if before:
            self._hold(label)
            return
        if pause:
            with self._lock:
                self.hung.append(label)
            self._resume.wait(timeout=120)
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            connection.request(h.command, h.path, body=body, headers={k: v for k, v in h.headers.items()})
            answer = connection.getresponse()
            status, reason, answer_headers, data = answer.status, answer.reason, answer.getheaders(), answer.read()
        finally:
            connection.close()
        if after:
            self._hold(label)
            return
        h.send_response(status, reason)
        for name, value in answer_headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _hold(self, label: str) -> None:
        with self._lock:
            self.hung.append(label)
        self._release.wait(timeout=120)  # then return without answering: the connection closes unanswered

    def wait_hung(self, label: str, timeout: float = 20.0) -> None:
        wait_for(lambda: label in self.hung, timeout=timeout, what=f"a held {label} call")

    def resume(self) -> None:
        """Forward the calls held by `pause_before`, and stop pausing new ones."""
        with self._lock:
            self.pause_before.clear()
        self._resume.set()

    def pass_everything(self) -> None:
        """Stop holding new calls and let held handler threads finish (their clients are gone by then)."""
        with self._lock:
            self.hang_before.clear()
            self.hang_after.clear()
        self._release.set()
        self.resume()

    def count(self, label: str) -> int:
        with self._lock:
            return self.seen.count(label)

    def stop(self) -> None:
        self._release.set()
        self._resume.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def hanging_proxy(upstream: str, classify: Callable[[str, str, dict[str, str], bytes], str]) -> Iterator[HangingProxy]:
    proxy = HangingProxy(upstream, classify)
    try:
        yield proxy
    finally:
        proxy.stop()


# botocore fault injection ----------------------------------------------------------------------------------
IAM_ERROR_STATUS = {
    "Throttling": 400,
    "ServiceFailure": 500,
    "ConcurrentModification": 409,
    "NoSuchEntity": 404,
    "AccessDenied": 403,
}


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def iam_error_response(url: str, code: str, message: str) -> Any:
    """An HTTP-level IAM error answer, as AWS sends it, for a `before-send` hook: botocore parses it and its
    own retry policy (standard mode: Throttling, 5xx) applies exactly as for a real answer."""
    from botocore.awsrequest import AWSResponse, HeadersDict

    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    headers = HeadersDict({"Content-Type": "text/xml", "Content-Length": str(len(body))})
    return AWSResponse(url, IAM_ERROR_STATUS[code], headers, _Raw(body))


class _Status:
    def __init__(self, status: int) -> None:
        self.status_code = status


@dataclass
class FaultInjector:
    """Fails the first `times` calls of one IAM operation on a botocore client, then lets calls through.

    `level="send"` answers at the HTTP layer (`before-send`), so botocore's retry handler sees the error like a
    real one; `level="call"` short-circuits the whole call (`before-call`), as tests/e2e/test_resilience.py does,
    so only the gateway's own retries apply. `times=None` fails every call until `stop()`.
    """

    client: Any
    operation: str
    code: str
    times: int | None
    level: str = "send"
    attempts: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        self._event = f"before-{self.level}.iam.{self.operation}"
        self.client.meta.events.register(self._event, self._hook)

    def _hook(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.times is not None and self.injected >= self.times:
            return None
        self.injected += 1
        message = f"injected {self.code} #{self.injected}"
        if self.level == "send":
            return iam_error_response(kwargs["request"].url, self.code, message)
        error = {"Error": {"Code": self.code, "Message": message}}
        error["ResponseMetadata"] = {"HTTPStatusCode": IAM_ERROR_STATUS[self.code]}  # type: ignore[assignment]
        return _Status(IAM_ERROR_STATUS[self.code]), error

    def stop(self) -> None:
        self.client.meta.events.unregister(self._event, self._hook)
