"""`koding-iam demo`: the whole flow, offline, as the people in it would see it.

The REAL app (handlers, services, migrations, Block Kit builders) runs on a temporary SQLite file behind a local
HTTP server; Slack is the local Web API stand-in and AWS is moto's in-process IAM (see bot/devtools/sandbox.py).
The demo plays Alice (who asks for an IAM user) and an admin through signed HTTP requests, prints every message
and modal as plain text, then the IAM state the app created. No Slack workspace and no AWS account are touched.

The secret access key is printed once, inside the reveal modal, because that is the one place a person sees it;
the demo checks that it is in no message, no other Slack call and not in the database. The printing of Block Kit
as text is bot/devtools/terminal_render.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.devtools.terminal_render import INDENT, WIDTH, render_message, render_modal, wrap
from bot.slack import ids

REQUESTER = "UALICE"
REQUESTER_HANDLE = "alice"
ADMINS = ("UADMIN1", "UADMIN2")
PURPOSE = "Staging stack for the web team"

TIMES = "\u00d7"  # the multiplication sign, as in "chat.update (times) 12"

# An AWS secret access key: 40 characters of the base64 alphabet standing alone (same shape bot/logs.py masks).
SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_LIBRARY_LOGGERS = ("slack_sdk", "slack_bolt", "botocore", "boto3", "urllib3", "waitress", "waitress.queue")


class DemoError(Exception):
    """A step did not turn out as a person would expect; the message is one line a newcomer can act on."""


# ------------------------------------------------------------------------------------------- the story
class _Story:
    """Prints the numbered sections and remembers where we are, for the one-line error."""

    def __init__(self) -> None:
        self.step = "start-up"

    def say(self, text: str = "") -> None:
        try:
            print(text, flush=True)
        except UnicodeEncodeError:  # a terminal without UTF-8: keep the story, lose the box-drawing characters
            encoding = sys.stdout.encoding or "ascii"
            print(text.encode(encoding, "replace").decode(encoding), flush=True)

    def section(self, number: int | str, title: str) -> None:
        self.step = f"step {number} ({title})"
        self.say()
        header = f"── {number}. {title} "
        self.say(header + "─" * max(3, WIDTH - len(header)))

    def note(self, text: str) -> None:
        for line in wrap([text], WIDTH - len(INDENT)):
            self.say(f"{INDENT}{line}")


def _check_ack(response: Any, what: str) -> None:
    """Slack shows an error to the person unless the app answers 200 within 3 s; a JSON body may carry errors."""
    if response.status != 200:
        raise DemoError(f"{what}: the app answered HTTP {response.status}")
    body = response.json() if response.text.strip().startswith("{") else None
    if isinstance(body, dict) and body.get("response_action") == "errors":
        problems = "; ".join(f"{k}: {v}" for k, v in (body.get("errors") or {}).items())
        raise DemoError(f"{what}: the modal showed errors ({problems})")


def _ack_words(response: Any, started: float) -> str:
    return f"HTTP {response.status} in {(time.monotonic() - started) * 1000:.0f} ms"


def _new_messages(standin: Any, channel: str, after_ts: str) -> list[dict[str, Any]]:
    return [m for m in standin.messages(channel) if float(m["ts"]) > float(after_ts)]


def _play(story: _Story, sandbox: Any, db_dir: Path) -> tuple[str, str]:
    """The scripted flow. Returns (IAM user name, access key id); raises DemoError/AssertionError on a wrong turn."""
    driver, standin = sandbox.driver, sandbox.standin
    admin = ADMINS[0]

    # 1 ------------------------------------------------------------------------------------------------
    story.section(1, f"Alice ({REQUESTER}) types /koding-iam request")
    started = time.monotonic()
    response, trigger = driver.command(REQUESTER, "request", user_name=REQUESTER_HANDLE)
    _check_ack(response, "/koding-iam request")
    form = driver.view_opened_with(trigger)
    if form.get("callback_id") != ids.REQUEST_MODAL:
        raise DemoError(f"/koding-iam request opened {form.get('callback_id')!r} instead of the request form")
    story.note(f"The app acknowledges ({_ack_words(response, started)}) and opens this form for Alice:")
    story.say(render_modal(form))
    name_block = next((b for b in form["blocks"] if b.get("block_id") == ids.USER_NAME_BLOCK), None)
    user_name = str(((name_block or {}).get("element") or {}).get("initial_value") or "")
    if not user_name:
        raise DemoError("the request form has no prefilled IAM user name")

    # 2 ------------------------------------------------------------------------------------------------
    story.section(2, "Alice fills in the purpose and presses Request")
    story.note(f"Purpose: “{PURPOSE}”; the user name and access profile keep their prefilled values.")
    started = time.monotonic()
    response = driver.submit(REQUESTER, form, {ids.PURPOSE_BLOCK: PURPOSE})
    _check_ack(response, "submitting the request form")
    story.note(f"The app accepts the form ({_ack_words(response, started)}); the modal closes.")
    sandbox.wait_idle()
    received = driver.latest_message(REQUESTER, containing="received")
    story.say(render_message(f"DM from koding-iam to Alice ({REQUESTER})", received))
    last_ts = received["ts"]

    # 3 ------------------------------------------------------------------------------------------------
    story.section(3, f"The approval card, as {admin} sees it")
    card = driver.latest_message(admin, containing=ids.APPROVE)
    story.say(render_message(f"DM from koding-iam to {admin}", card))
    others = [a for a in ADMINS[1:] if any(ids.APPROVE in str(m.get("blocks")) for m in standin.messages(a))]
    if others:
        story.note(f"Every admin gets the same card ({', '.join(others)} too); the first decision wins.")

    # 4 ------------------------------------------------------------------------------------------------
    story.section(4, f"{admin} presses Approve")
    updates_before = len(standin.calls_to("chat.update"))
    card_ts = card["ts"]
    started = time.monotonic()
    response, _ = driver.click(admin, ids.APPROVE, message=card)
    _check_ack(response, "pressing Approve")
    story.note(
        f"The app acknowledges at once ({_ack_words(response, started)}) and provisions IAM in the background, "
        "ticking off each step on the card."
    )
    sandbox.wait_idle()
    card = standin.message(card["channel"], card["ts"])
    if card is None:
        raise DemoError("the approval card disappeared after Approve")
    updates = sum(1 for c in standin.calls_to("chat.update")[updates_before:] if c.body.get("ts") == card_ts)
    story.say(render_message(f"DM from koding-iam to {admin} — the same card, now (updated {updates}{TIMES})", card))
    card_text = str(card.get("blocks"))
    if "Done" not in card_text:
        raise DemoError("provisioning did not finish: the approval card does not say Done")
    story.note("What Alice received meanwhile:")
    news = _new_messages(standin, REQUESTER, last_ts)
    for message in news:
        story.say(render_message(f"DM from koding-iam to Alice ({REQUESTER})", message))
    ready = driver.latest_message(REQUESTER, containing=ids.REVEAL)

    # 5 ------------------------------------------------------------------------------------------------
    story.section(5, "Alice presses “Reveal my access keys”")
    started = time.monotonic()
    response, trigger = driver.click(REQUESTER, ids.REVEAL, message=ready)
    _check_ack(response, "pressing Reveal")
    story.note(
        f"The app opens a “Generating…” modal within the 3 s Slack allows ({_ack_words(response, started)}), "
        "calls CreateAccessKey, then replaces the modal's content:"
    )
    sandbox.wait_idle()
    reveal = driver.view_opened_with(trigger)
    if reveal.get("callback_id") != ids.REVEAL_MODAL or "Secret Access Key" not in str(reveal.get("blocks")):
        raise DemoError("the reveal modal does not show an access key (see the app's warnings above)")
    story.say(render_modal(reveal))
    secrets_shown = set(SECRET_SHAPE.findall(str(reveal.get("blocks"))))
    if len(secrets_shown) != 1:
        raise DemoError(f"expected one secret access key in the reveal modal, found {len(secrets_shown)}")
    secret = secrets_shown.pop()
    _check_secret_kept_once(story, standin, db_dir, secret)

    # 6 ------------------------------------------------------------------------------------------------
    story.section(6, "Alice's DM after the reveal")
    after = standin.message(ready["channel"], ready["ts"])
    if after is None:
        raise DemoError("the key-ready DM disappeared after the reveal")
    story.say(render_message(f"DM from koding-iam to Alice ({REQUESTER}) — the same message, now", after))
    if ids.REVEAL in str(after.get("blocks")):
        raise DemoError("the Reveal button is still in Alice's DM after the reveal")
    key_ids = re.findall(r"AKIA[A-Z0-9]{12,}", str(after.get("blocks")))
    story.note("The button is gone: a second press could not show the secret again.")
    return user_name, (key_ids[0] if key_ids else "")


def _check_block_kit(standin: Any) -> None:
    """Slack refuses a body past a Block Kit limit; the stand-in recorded each one the demo's flow produced."""
    if standin.violations:
        listed = "; ".join(str(v) for v in standin.violations[:5])
        raise DemoError(f"Slack would refuse {len(standin.violations)} body part(s): {listed}")


def _check_secret_kept_once(story: _Story, standin: Any, db_dir: Path, secret: str) -> None:
    """The promise of the reveal: the secret reached Slack only in the modal, and koding-iam kept no copy."""
    carrying = [c.method for c in standin.calls if secret in c.raw]
    if carrying not in (["views.update"], ["views.open"]):
        raise DemoError(f"the secret crossed to Slack in {carrying or 'no call'}, expected only the reveal modal")
    in_messages = [m for m in standin.messages() if secret in str(m)]
    if in_messages or any(secret in str(e) for user in (REQUESTER, *ADMINS) for e in standin.ephemerals(user)):
        raise DemoError("the secret appears in a Slack message")
    stored = any(secret.encode() in f.read_bytes() for f in db_dir.iterdir() if f.is_file())
    if stored:
        raise DemoError("the secret was written to the database")
    story.note(
        f"Checked: the secret reached Slack in exactly one call ({carrying[0]}), is in no message, and is not in "
        "the database. Closing this modal is the last time anyone sees it."
    )


def _print_iam(story: _Story, gateway: Any, user_name: str, revealed_key: str) -> None:
    story.section(7, "What now exists in IAM (read back from moto through the app's IamGateway)")
    user = gateway.get_user(user_name)
    if user is None:
        raise DemoError(f"IAM user {user_name} does not exist after provisioning")
    lines = [f"User      {user.name}", f"  path    {user.path}", f"  ARN     {user.arn}"]
    for index, (key, value) in enumerate(sorted(user.tags.items())):
        lines.append(f"  {'tags' if index == 0 else '':<8}{key} = {value}")
    groups = gateway.list_groups_for_user(user_name)
    if not groups:
        raise DemoError(f"IAM user {user_name} is in no group")
    for group in groups:
        lines.append(f"Group     {group}")
        for arn in gateway.attached_group_policies(group):
            lines.append(f"  policy  {arn.rsplit('/', 1)[-1]:<24} {arn}")
    keys = gateway.list_access_keys(user_name)
    if not keys:
        raise DemoError(f"IAM user {user_name} has no access key after the reveal")
    for key in keys:
        created = key.created.strftime("%Y-%m-%d %H:%M UTC") if key.created else "?"
        lines.append(f"Key       {key.access_key_id}  {key.status}, created {created}  (secret: not retrievable)")
    if revealed_key and revealed_key not in {k.access_key_id for k in keys}:
        raise DemoError(f"the key named in Alice's DM ({revealed_key}) is not the user's key in IAM")
    for line in lines:
        story.say(f"{INDENT}{line}")


def slack_call_summary(calls: list[Any]) -> str:
    counts = Counter(c.method for c in calls)
    order = list(dict.fromkeys(c.method for c in calls))
    return ", ".join(f"{method} {TIMES}{counts[method]}" for method in order) or "none"


# ------------------------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _offline_aws() -> Iterator[None]:
    """moto's placeholder credentials only, for the length of the demo: a profile, endpoint or real key in the
    shell must not point the demo at a real account (moto intercepts IAM anyway; this is the second fence)."""
    from bot.devtools.sandbox import FAKE_AWS_ENV

    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k in FAKE_AWS_ENV}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(FAKE_AWS_ENV)
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_") or k in FAKE_AWS_ENV]:
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """WARNING and above only while the demo runs, so the story reads well; under LOG_FORMAT=json the logs go
    to stderr at LOG_LEVEL as the server writes them (the story stays on stdout). The caller's logging is put
    back afterwards."""
    from bot import logs

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # configure() also pins some library loggers' levels: remember every logger's level to put them all back.
    loggers = [logging.getLogger(name) for name in (*_LIBRARY_LOGGERS, *logging.root.manager.loggerDict)]
    saved_levels = {logger: logger.level for logger in loggers}
    json_logs = logs.json_enabled()
    logs.configure(None if json_logs else "WARNING")
    # configure() may pin library loggers at INFO, and a caller may have set its own (bot.*) lower: keep them all
    # quiet, whatever the root's level says (a logger's own level decides what it passes on).
    for logger in () if json_logs else [*loggers, *(logging.getLogger(name) for name in _LIBRARY_LOGGERS)]:
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    if not json_logs:  # the in-process server's "Task queue depth" on a busy machine is not part of the story
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.captureWarnings(False)
        for logger, level in saved_levels.items():
            logger.setLevel(level)


def _stop_quietly(sandbox: Any) -> None:
    with contextlib.suppress(Exception):
        sandbox.stop()


def _one_line(exc: BaseException) -> str:
    from bot.logs import redact

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, DemoError | AssertionError):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)


def run_demo(keep: bool = False) -> int:
    """Play the whole flow offline and print it; 0 when every step went as expected, 1 otherwise."""
    story = _Story()
    db_dir = Path(tempfile.mkdtemp(prefix="koding-iam-demo-"))
    status = 1
    try:
        with _quiet_logs(), _offline_aws():
            status = _run(story, db_dir, keep=keep)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        story.say()
        from bot import logs

        failure = f"koding-iam demo failed at {story.step}: {_one_line(exc)}"
        print(logs.error_line("koding_iam.demo", failure) if logs.json_enabled() else failure, file=sys.stderr)
        status = 1
    finally:
        if keep:
            story.note(f"Kept the demo database: {db_dir / 'koding-iam.db'}")
            story.note(f"  (look inside: sqlite3 {db_dir / 'koding-iam.db'} .tables)")
        else:
            shutil.rmtree(db_dir, ignore_errors=True)
    return status


def _run(story: _Story, db_dir: Path, *, keep: bool) -> int:
    started = time.monotonic()
    try:
        import moto  # noqa: F401 - only to give a clear message when it is missing
    except ImportError:
        raise DemoError("the demo needs moto: pip install 'koding-iam[demo]'") from None
    from bot.devtools.sandbox import Sandbox

    sandbox = Sandbox(f"sqlite:///{db_dir / 'koding-iam.db'}", admins=ADMINS)
    try:
        sandbox.start()
        story.say("koding-iam demo: the real app, offline")
        story.note(f"App      real handlers and services, served at {sandbox.url}; every action below is a")
        story.note("         signed HTTP request, exactly what Slack would send")
        story.note(f"Slack    a local Web API stand-in at {sandbox.standin.base_url}")
        story.note("AWS      moto's in-process IAM with placeholder credentials: no AWS account is touched")
        story.note(
            f"Database a temporary SQLite file, migrated with Alembic ({'kept' if keep else 'deleted'} at the end):"
        )
        story.note(f"         {db_dir / 'koding-iam.db'}")
        story.note(f"People   Alice ({REQUESTER}) asks for an IAM user; {' and '.join(ADMINS)} are the admins")

        user_name, key_id = _play(story, sandbox, db_dir)
        _check_block_kit(sandbox.standin)
        iam_calls = sandbox.services.gateway.calls
        _print_iam(story, sandbox.services.gateway, user_name, key_id)

        story.section(8, "Summary")
        story.note(
            f"✓ Alice asked, {ADMINS[0]} approved, koding-iam created IAM user {user_name} and Alice saw her "
            f"key {key_id or '(id not shown)'} once — in {time.monotonic() - started:.1f} s, "
            f"with {iam_calls} IAM API calls."
        )
        story.note(f"Slack calls: {slack_call_summary(sandbox.standin.calls)}")
        story.note(
            f"Slack's rules: 0 Block Kit violations, {len(sandbox.standin.rate_limited)} call(s) answered 429 "
            "past Slack's rate limits"
        )
        return 0
    finally:
        _stop_quietly(sandbox)
