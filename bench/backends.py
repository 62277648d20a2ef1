"""The stand-ins `koding-iam serve` talks to during a benchmark, in a process of their own.

Run as `python -m bench.backends [--slack-latency-ms N] [--aws-latency-ms N]`: starts the Slack Web API
stand-in and a moto server, prints one JSON line with their URLs, and serves until stdin closes.

Both are wrapped so every call is counted: IAM calls by action, with error codes, botocore retry attempts
(the `amz-sdk-request: attempt=N` header) and retryable errors; Slack calls by method, with failures. The
counts (and a few look-ups the workload needs) are served under `/_bench/` on the moto port.

They live outside the load generator's process so its hundred client threads do not slow them down (one GIL).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bot.devtools.sandbox import FAKE_AWS_ENV
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.slack_wire import DEFAULT_RATE_LIMITS

# IAM answers these when a call may succeed if repeated; botocore (throttling, 5xx) or the app's gateway
# (ConcurrentModification, NoSuchEntity on a brand-new entity) then sends the call again.
RETRYABLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceFailure",
    "ServiceUnavailable",
    "ConcurrentModification",
}
EVENTUAL_ACTIONS = {"AttachGroupPolicy", "AddUserToGroup", "CreateAccessKey", "ListAttachedGroupPolicies"}
_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_ATTEMPT = re.compile(r"attempt=(\d+)")


class CountingStandIn(SlackStandIn):
    """The Slack stand-in, counting every call; with `keep_calls` off it stops storing them (a load test
    makes tens of thousands, each with its full body), so only the counts grow."""

    def __init__(self, *, latency: float = 0.0) -> None:
        # The load phases measure koding-iam, not Slack's quotas: rate limits are off here (the DM sweep models
        # them explicitly); Block Kit rules stay on, and the suite fails when any body broke one.
        super().__init__(rate_limits={})
        self.latency = latency
        self.keep_calls = True
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def set_tiers(self, on: bool) -> None:
        """Answer 429 past Slack's documented per-method limits (bot.devtools.slack_wire.DEFAULT_RATE_LIMITS)."""
        for method, limit in DEFAULT_RATE_LIMITS.items():
            self.set_rate_limit(method, limit if on else None)

    def _serve(self, h: Any) -> None:
        if self.latency:
            time.sleep(self.latency)
        super()._serve(h)

    def _record(self, method: str, body: dict[str, Any], raw: str, headers: dict[str, str], answer: Any) -> None:
        payload = getattr(answer, "payload", None)
        ok = isinstance(payload, dict) and payload.get("ok") is True and getattr(answer, "status", 0) == 200
        with self._count_lock:
            self.counts[method] += 1
            if not ok:
                self.failures[method] += 1
        if self.keep_calls:
            super()._record(method, body, raw, headers, answer)

    def stats(self) -> dict[str, Any]:
        with self._count_lock:
            counts = {
                "calls": dict(self.counts),
                "failed": dict(self.failures),
                "total": sum(self.counts.values()),
            }
        violations = self.violations
        return {
            **counts,
            "block_kit_violations": len(violations),
            "block_kit_examples": [str(v) for v in violations[:10]],
            "rate_limited": len(self.rate_limited),
            "rate_limited_by_method": dict(Counter(limited.method for limited in self.rate_limited)),
        }

    def view_opened_with(self, trigger_id: str) -> dict[str, Any] | None:
        for call in self.calls:
            if call.method == "views.open" and call.body.get("trigger_id") == trigger_id and not call.failed:
                return self.view(call.response["view"]["id"]) if call.response else None
        return None

    def latest_message(self, channel: str, containing: str) -> dict[str, Any] | None:
        channel = self.dm_channel(channel) if channel[:1] in "UW" else channel
        for message in reversed(self.messages(channel)):
            if containing in json.dumps(message.get("blocks")) + message.get("text", ""):
                return message
        return None


class CountingIam:
    """WSGI middleware in front of moto: counts IAM calls and answers the `/_bench/` control requests."""

    def __init__(self, app: Callable[..., Iterable[bytes]], slack: CountingStandIn, *, latency: float = 0.0) -> None:
        self.app = app
        self.slack = slack
        self.latency = latency
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # "Action:Code"
        self.botocore_retries = 0
        self.retryable_errors = 0
        self.url = ""  # set once the server is bound

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self.control(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        action = _action(environ, body)
        attempt = _ATTEMPT.search(environ.get("HTTP_AMZ_SDK_REQUEST", ""))
        if self.latency:
            time.sleep(self.latency)
        status: list[int] = []

        def capture(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(int(status_line.split()[0]))
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        try:
            chunks = list(self.app(environ, capture))
        except Exception as exc:  # the stand-in itself broke: the app sees a 500 (or a reset), so count it as one
            if action is not None:
                with self.lock:
                    self.calls[action] += 1
                    self.errors[f"{action}:stand-in raised {type(exc).__name__}"] += 1
            raise
        if action is not None and not path.startswith("/moto-api"):
            code = ""
            if status and status[0] >= 400:
                found = _CODE.search(b"".join(chunks))
                code = found.group(1).decode() if found else str(status[0])
            with self.lock:
                self.calls[action] += 1
                if attempt and int(attempt.group(1)) > 1:
                    self.botocore_retries += 1
                if code:
                    self.errors[f"{action}:{code}"] += 1
                    if _retryable(action, code, status[0]):
                        self.retryable_errors += 1
        return chunks

    def reset_aws(self) -> None:
        """An empty AWS account, with the AWS managed policies koding-iam's profiles attach."""
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=30).close()  # noqa: S310 - our own server
        install_managed_policies()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "errors": dict(self.errors),
                "total": sum(self.calls.values()),
                "botocore_retries": self.botocore_retries,
                "retryable_errors": self.retryable_errors,
            }

    def control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"][len("/_bench/") :]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        answer: Any
        if path == "stats":
            answer = {"aws": self.stats(), "slack": self.slack.stats()}
        elif path == "slack/view":
            answer = self.slack.view_opened_with(query.get("trigger", ""))
        elif path == "slack/message":
            answer = self.slack.latest_message(query.get("channel", ""), query.get("containing", ""))
        elif path == "aws/reset":
            self.reset_aws()
            answer = {"reset": True}
        elif path == "slack/card":
            answer = self.slack.message(query.get("channel", ""), query.get("ts", ""))
        elif path == "slack/rate-limits":
            # Slack's documented tiers (the stand-in's DEFAULT_RATE_LIMITS) on or off; off is the load phases' default
            self.slack.set_tiers(query.get("on", "0") == "1")
            answer = {"rate_limits": sorted(self.slack.rate_limits)}
        elif path == "slack/keep-calls":
            self.slack.keep_calls = query.get("on", "1") == "1"
            if not self.slack.keep_calls:
                self.slack.clear()
            answer = {"keep_calls": self.slack.keep_calls}
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
            return [b"not found"]
        data = json.dumps(answer).encode()
        status = "200 OK"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def _retryable(action: str, code: str, status: int) -> bool:
    return code in RETRYABLE_CODES or (code == "NoSuchEntity" and action in EVENTUAL_ACTIONS) or status >= 500


def install_managed_policies() -> None:
    """moto's IAM starts without AWS's managed policies. bot.devtools.sandbox installs just the ones the
    profiles attach (fast); an older sandbox without that helper relies on moto loading all of them."""
    try:
        from bot.devtools.sandbox import install_managed_policies as install
        from bot.devtools.sandbox import profile_policy_arns
    except ImportError:
        return  # MOTO_IAM_LOAD_MANAGED_POLICIES=true is set in main(): moto loads them all on reset
    install(profile_policy_arns())


def _action(environ: dict[str, Any], body: bytes) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    if body:
        values = parse_qs(body.decode("utf-8", errors="replace")).get("Action")
        if values:
            return values[0]
    values = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    return values[0] if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__)
    parser.add_argument("--slack-latency-ms", type=float, default=0.0)
    parser.add_argument("--aws-latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)

    import os

    for key, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from bot.devtools.sandbox import install_managed_policies as _  # noqa: F401
    except ImportError:
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    from bot.devtools import strict_iam

    strict_iam.install()  # this process's moto server answers as real IAM would (DeleteConflict, names by case)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    # SlackStandIn's server keeps socketserver's listen backlog of 5: with koding-iam's 32 listener threads calling
    # Slack at once, connections beyond it are reset (slack_sdk logs "Connection reset by peer" and retries).
    # Real Slack does not do that, so this process gives the stand-in a deeper backlog.
    from bot.devtools import slack_standin

    slack_standin._Server.request_queue_size = 128
    slack = CountingStandIn(latency=args.slack_latency_ms / 1000).start()
    iam = CountingIam(DomainDispatcherApplication(create_backend_app), slack, latency=args.aws_latency_ms / 1000)

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No access log: tens of thousands of lines would only slow the server down."""

    server = make_server("127.0.0.1", 0, iam, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    aws = f"http://127.0.0.1:{server.server_port}"
    iam.url = aws
    iam.reset_aws()
    print(json.dumps({"aws": aws, "slack": slack.base_url, "control": aws + "/_bench/"}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
    server.shutdown()
    slack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
