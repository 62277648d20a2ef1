"""Promise 4 — hostile input through the real HTTP endpoint changes nothing.

Every case is one request to POST /slack/events of the running app (signed unless the case is about signing).
Each must be answered with a clear refusal — 401 / 400 / 413, Bolt's 404 for ids the app does not handle, an
ephemeral to the person who acted, or `response_action: errors` on the offending field — and leave every row of
every table and the whole IAM account exactly as they were. The only Slack calls allowed are the refusal itself.

Baseline (one sandbox per backend for the whole module): UALICE has a provisioned IAM user with an unrevealed
reveal grant; UBOB has a pending request with cards in both admins' DMs; `koding-legacy` is an IAM user outside
koding-iam's path that koding-iam did not create; UCAROL has nothing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from reliability_support import PG_URL, db_rows, iam_state, postgres_schema
from slack_sdk.signature import SignatureVerifier

from bot.devtools.driver import Response
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, provision_for, settle_holds, submit_request

TEAM, APP = "T0KODING", "AKODING"
BROKEN = "does not point to anything koding-iam knows"
ONLY_ADMINS = "Only koding-iam admins"
NOT_YOUR_OWN = "You cannot decide on your own request"
ONLY_REQUESTER = "Only the person who requested these keys"


@dataclass
class World:
    sb: Sandbox
    bob_card: dict[str, Any]  # UBOB's pending request #2, as UADMIN1 sees it
    alice_card: dict[str, Any]  # UALICE's provisioned request #1 (no buttons left)
    alice_dm: dict[str, Any]  # UALICE's reveal DM (grant #1)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'koding-iam.db'}"
        else:
            if not PG_URL:
                pytest.skip("PostgreSQL variant needs TEST_DATABASE_URL")
            url = stack.enter_context(postgres_schema())
        sb = stack.enter_context(Sandbox(url))
        alice_card, alice_dm = provision_for(sb, "UALICE")
        assert submit_request(sb, "UBOB").text == ""
        sb.services.gateway.create_user("koding-legacy", path="/", tags={}, permissions_boundary=None)
        settle_holds(sb)
        yield World(sb, card(sb, "UADMIN1", 2), alice_card, alice_dm)


# Building requests ------------------------------------------------------------------------------------------
def command(user: str, text: str, *, name: str = "/koding-iam", **fields: str) -> str:
    form = {
        "team_id": TEAM,
        "api_app_id": APP,
        "channel_id": "C0GENERAL",
        "user_id": user,
        "user_name": user.lower(),
        "command": name,
        "text": text,
        "trigger_id": f"{time.time()}.hostile.trigger",
        "response_url": "http://127.0.0.1:9/unused",
        **fields,
    }
    return urlencode({k: v for k, v in form.items() if v is not None})


def forged_click(
    user: str, action_id: str, value: Any, *, message: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A block_actions payload for any button, shown or not (buttons the bot never drew included)."""
    channel = message["channel"] if message else "C0GENERAL"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "koding-test"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": APP,
        "trigger_id": f"{time.time()}.hostile.trigger",
        "container": {"type": "message", "channel_id": channel, "message_ts": message["ts"] if message else "1.0"},
        "channel": {"id": channel},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "forged", "value": value}],
        **top,
    }
    return payload


def submission(user: str, callback_id: str, values: Any, *, private_metadata: Any = "", **top: Any) -> dict[str, Any]:
    view = {
        "id": "VHOSTILE",
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "state": {"values": values},
    }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": APP,
        "trigger_id": f"{time.time()}.hostile.trigger",
        "view": view,
        **top,
    }
    return payload


def request_form(
    name: Any = "koding-carol", purpose: Any = "Carol's stack", profiles: Any = ("ec2",), *, drop: str | None = None
) -> dict[str, Any]:
    options = (
        [{"value": p, "text": {"type": "plain_text", "text": str(p)}} for p in profiles]
        if isinstance(profiles, tuple | list)
        else profiles
    )
    values = {
        ids.USER_NAME_BLOCK: {ids.USER_NAME_INPUT: {"type": "plain_text_input", "value": name}},
        ids.PROFILES_BLOCK: {ids.PROFILES_INPUT: {"type": "checkboxes", "selected_options": options}},
        ids.PURPOSE_BLOCK: {ids.PURPOSE_INPUT: {"type": "plain_text_input", "value": purpose}},
    }
    if drop:
        values.pop(drop)
    return values


def deny_form(reason: str = "no") -> dict[str, Any]:
    return {ids.DENY_REASON_BLOCK: {ids.DENY_REASON_INPUT: {"type": "plain_text_input", "value": reason}}}


def post_bytes(w: World, body: bytes) -> Response:
    """A correctly signed body that is not UTF-8 (urllib would encode a str)."""
    ts = str(int(time.time()))
    signature = w.sb.driver.signer.generate_signature(timestamp=ts, body=body.decode("latin-1"))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }
    request = urllib.request.Request(w.sb.driver.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return Response(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read().decode())


def signed_elsewhere(w: World, body: str, **kwargs: Any) -> Response:
    ts = int(time.time())
    signature = SignatureVerifier("not-the-signing-secret").generate_signature(timestamp=str(ts), body=body)
    return w.sb.driver.post(body, timestamp=ts, signature=signature, **kwargs)


def tampered(w: World) -> Response:
    ts = int(time.time())
    signature = w.sb.driver.signer.generate_signature(timestamp=str(ts), body=command("UCAROL", "help"))
    return w.sb.driver.post(command("UCAROL", "request"), timestamp=ts, signature=signature)


# The cases ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    send: Callable[[World], Response]
    status: int
    says: str | None = None  # must appear in the answer: the HTTP body, or what `to` was told
    to: str | None = None  # the person who must be told (ephemeral or DM); None: the HTTP response carries it
    block: str | None = None  # for response_action errors: the field the error is on


CAROL_REQUEST = command("UCAROL", "request")


def d(w: World) -> Any:
    return w.sb.driver


CASES: dict[str, Case] = {
    # Signatures and timestamps: refused before anything is parsed.
    "no-signature": Case(lambda w: d(w).post(CAROL_REQUEST, sign=False), 401, "invalid signature"),
    "forged-signature": Case(lambda w: d(w).post(CAROL_REQUEST, signature="v0=" + "0" * 64), 401),
    "empty-signature": Case(lambda w: d(w).post(CAROL_REQUEST, headers={"X-Slack-Signature": ""}), 401),
    "signature-version-v1": Case(lambda w: d(w).post(CAROL_REQUEST, signature="v1=abc"), 401),
    "signed-with-another-secret": Case(lambda w: signed_elsewhere(w, CAROL_REQUEST), 401),
    "body-tampered-after-signing": Case(tampered, 401),
    "stale-timestamp": Case(lambda w: d(w).post(CAROL_REQUEST, timestamp=int(time.time()) - 6 * 60), 401),
    "future-timestamp": Case(lambda w: d(w).post(CAROL_REQUEST, timestamp=int(time.time()) + 6 * 60), 401),
    "timestamp-not-a-number": Case(
        lambda w: d(w).post(CAROL_REQUEST, headers={"X-Slack-Request-Timestamp": "yesterday"}), 401
    ),
    "timestamp-non-ascii-digits": Case(
        lambda w: d(w).post(CAROL_REQUEST, headers={"X-Slack-Request-Timestamp": "\u00b9\u00b2\u00b3"}), 401
    ),
    # Bodies that are not Slack payloads.
    "payload-not-json": Case(lambda w: d(w).post("payload=%7Bnot-json"), 400, "malformed payload"),
    "payload-json-list": Case(lambda w: d(w).post("payload=%5B1%2C2%5D"), 400),
    "payload-json-null": Case(lambda w: d(w).post("payload=null"), 400),
    "json-body-garbage": Case(lambda w: d(w).post("{not json", content_type="application/json"), 400),
    "body-not-utf8": Case(lambda w: post_bytes(w, b"payload=\xff\xfe\xfd"), 400, "not UTF-8"),
    "body-over-1mb": Case(lambda w: d(w).post("text=" + "x" * 1_100_000), 413),
    "empty-body": Case(lambda w: d(w).post(""), 404),
    # Ids the app does not handle: Bolt answers 404 and nothing runs.
    "block-actions-without-actions": Case(
        lambda w: d(w).post_payload({"type": "block_actions", "team": {"id": TEAM}}),
        400,  # names no member
    ),
    "unknown-action-id": Case(lambda w: d(w).post_payload(forged_click("UADMIN1", "koding_iam.delete_all", "2")), 404),
    "unknown-callback-id": Case(
        lambda w: d(w).post_payload(submission("UADMIN1", "koding_iam.grant_admin", request_form())), 404
    ),
    "unknown-slash-command": Case(lambda w: d(w).post(command("UCAROL", "request", name="/sudo")), 404),
    "unsubscribed-event": Case(
        lambda w: d(w).post(
            json.dumps({"type": "event_callback", "team_id": TEAM, "api_app_id": APP, "event": {"type": "message"}}),
            content_type="application/json",
        ),
        404,
    ),
    # Button values that are not a request or grant id.
    **{
        f"approve-value-{label}": Case(
            lambda w, v=value: d(w).click("UADMIN1", ids.APPROVE, message=w.bob_card, value=v)[0],
            200,
            BROKEN,
            "UADMIN1",
        )
        for label, value in [
            ("letters", "abc"),
            ("zero", "0"),
            ("negative", "-2"),
            ("decimal", "2.0"),
            ("sql", "2 OR 1=1"),
            ("sixteen-digits", "9" * 16),
            ("arabic-indic-digit", "\u0662"),
            ("empty", ""),
        ]
    },
    "approve-unknown-request": Case(
        lambda w: d(w).click("UADMIN1", ids.APPROVE, message=w.bob_card, value="99999")[0],
        200,
        "Request #99999 does not exist.",
        "UADMIN1",
    ),
    # Buttons pointing at someone else's request or grant, or pressed by the wrong person.
    "non-admin-approves": Case(
        lambda w: d(w).click("UMALLORY", ids.APPROVE, message=w.bob_card)[0], 200, ONLY_ADMINS, "UMALLORY"
    ),
    "requester-approves-own-request": Case(
        lambda w: d(w).click("UBOB", ids.APPROVE, message=w.bob_card)[0], 200, NOT_YOUR_OWN, "UBOB"
    ),
    "non-admin-presses-deny": Case(
        lambda w: d(w).click("UMALLORY", ids.DENY, message=w.bob_card)[0], 200, ONLY_ADMINS, "UMALLORY"
    ),
    "non-admin-presses-retry": Case(
        lambda w: d(w).post_payload(forged_click("UMALLORY", ids.RETRY, "2", message=w.bob_card)),
        200,
        "Only koding-iam admins can retry",
        "UMALLORY",
    ),
    "admin-retries-a-provisioned-request": Case(
        lambda w: d(w).post_payload(forged_click("UADMIN2", ids.RETRY, "1", message=w.alice_card)),
        200,
        "nothing to retry",
        "UADMIN2",
    ),
    "admin-approves-a-provisioned-request": Case(
        lambda w: d(w).post_payload(forged_click("UADMIN2", ids.APPROVE, "1", message=w.alice_card)),
        200,
        "already approved by <@UADMIN1>",
        "UADMIN2",
    ),
    "admin-denies-a-provisioned-request": Case(
        lambda w: d(w).post_payload(forged_click("UADMIN2", ids.DENY, "1", message=w.alice_card)),
        200,
        "already approved by <@UADMIN1>",
        "UADMIN2",
    ),
    "requester-approves-via-forged-value": Case(
        lambda w: d(w).post_payload(forged_click("UALICE", ids.APPROVE, "2", message=w.alice_dm)),
        200,
        ONLY_ADMINS,
        "UALICE",
    ),
    "someone-else-reveals-a-grant": Case(
        lambda w: d(w).click("UBOB", ids.REVEAL, message=w.alice_dm)[0], 200, ONLY_REQUESTER, "UBOB"
    ),
    "admin-reveals-a-grant": Case(
        lambda w: d(w).click("UADMIN1", ids.REVEAL, message=w.alice_dm)[0], 200, ONLY_REQUESTER, "UADMIN1"
    ),
    "someone-else-renews-a-grant": Case(
        lambda w: d(w).post_payload(forged_click("UBOB", ids.RENEW_REVEAL, "1", message=w.alice_dm)),
        200,
        ONLY_REQUESTER,
        "UBOB",
    ),
    "reveal-unknown-grant": Case(
        lambda w: d(w).click("UALICE", ids.REVEAL, message=w.alice_dm, value="999")[0],
        200,
        "does not belong to any key grant",
        "UALICE",
    ),
    # Forged Deny submissions.
    "non-admin-submits-deny": Case(
        lambda w: d(w).post_payload(
            submission("UMALLORY", ids.DENY_MODAL, deny_form(), private_metadata=json.dumps({"request_id": 2}))
        ),
        200,
        ONLY_ADMINS,
        block=ids.DENY_REASON_BLOCK,
    ),
    "requester-denies-own-request": Case(
        lambda w: d(w).post_payload(
            submission("UBOB", ids.DENY_MODAL, deny_form(), private_metadata=json.dumps({"request_id": 2}))
        ),
        200,
        NOT_YOUR_OWN,
        block=ids.DENY_REASON_BLOCK,
    ),
    "deny-a-provisioned-request": Case(
        lambda w: d(w).post_payload(
            submission("UADMIN2", ids.DENY_MODAL, deny_form(), private_metadata=json.dumps({"request_id": 1}))
        ),
        200,
        "Already approved by another admin (UADMIN1)",
        block=ids.DENY_REASON_BLOCK,
    ),
    "deny-unknown-request": Case(
        lambda w: d(w).post_payload(
            submission("UADMIN2", ids.DENY_MODAL, deny_form(), private_metadata=json.dumps({"request_id": 99999}))
        ),
        200,
        "Request #99999 does not exist.",
        block=ids.DENY_REASON_BLOCK,
    ),
    **{
        f"deny-metadata-{label}": Case(
            lambda w, m=metadata: d(w).post_payload(
                submission("UADMIN2", ids.DENY_MODAL, deny_form(), private_metadata=m)
            ),
            200,
            "hidden data is not what koding-iam wrote",
            block=ids.DENY_REASON_BLOCK,
        )
        for label, metadata in [
            ("not-json", "{request_id: 2"),
            ("id-as-string", json.dumps({"request_id": "2"})),
            ("id-true", json.dumps({"request_id": True})),
            ("id-negative", json.dumps({"request_id": -2})),
            ("id-float", json.dumps({"request_id": 2.0})),
            ("a-list", json.dumps([2])),
            ("missing", ""),
        ]
    },
    # The request form, as UCAROL (who may ask): every invalid field is answered on that field.
    **{
        f"request-name-{label}": Case(
            lambda w, n=name: d(w).post_payload(submission("UCAROL", ids.REQUEST_MODAL, request_form(name=n))),
            200,
            message,
            block=ids.USER_NAME_BLOCK,
        )
        for label, name, message in [
            ("with-space", "koding carol", "Use only letters"),
            ("65-chars", "k" * 65, "at most 64"),
            ("10000-chars", "k" * 10_000, "at most 64"),
            ("case-clash-with-a-provisioned-user", "KODING-UALICE", "already taken"),
            ("case-clash-with-a-pending-request", "Koding-UBob", "already taken"),
            ("cyrillic-lookalike", "koding-c\u0430rol", "Use only letters"),
            ("fullwidth-lookalike", "\uff4boding-carol", "Use only letters"),
            ("zero-width-space", "koding\u200b-carol", "Use only letters"),
            ("slack-markup", "<!channel>", "Use only letters"),
            ("path-traversal", "../../admin", "Use only letters"),
            ("empty", "", "Enter an IAM user name"),
            ("number-not-text", 12345, "Enter an IAM user name"),
            ("foreign-aws-user", "koding-legacy", "not created by koding-iam"),
        ]
    },
    "request-name-field-missing": Case(
        lambda w: d(w).post_payload(submission("UCAROL", ids.REQUEST_MODAL, request_form(drop=ids.USER_NAME_BLOCK))),
        200,
        "Enter an IAM user name",
        block=ids.USER_NAME_BLOCK,
    ),
    **{
        f"request-purpose-{label}": Case(
            lambda w, p=purpose: d(w).post_payload(submission("UCAROL", ids.REQUEST_MODAL, request_form(purpose=p))),
            200,
            message,
            block=ids.PURPOSE_BLOCK,
        )
        for label, purpose, message in [
            ("blank", "   \n\t ", "Say which Koding team"),
            ("301-chars", "p" * 301, "under 300"),
            ("200000-chars", "p" * 200_000, "under 300"),
            ("nul-byte", "stack\x00drop table", "control characters"),
            ("terminal-escape", "stack \x1b[31mred", "control characters"),
        ]
    },
    **{
        f"request-profiles-{label}": Case(
            lambda w, p=profiles: d(w).post_payload(submission("UCAROL", ids.REQUEST_MODAL, request_form(profiles=p))),
            200,
            message,
            block=ids.PROFILES_BLOCK,
        )
        for label, profiles, message in [
            ("none", (), "at least one"),
            ("unknown", ("ec2", "administrator"), "Unknown access profile"),
            ("twice", ("ec2", "ec2"), "chosen twice"),
            ("not-a-list", "ec2", "at least one"),
        ]
    },
    "request-while-one-is-pending": Case(
        lambda w: d(w).post_payload(submission("UBOB", ids.REQUEST_MODAL, request_form(name="koding-bob2"))),
        200,
        "You already have request #2",
        block=ids.USER_NAME_BLOCK,
    ),
    "request-with-an-active-user": Case(
        lambda w: d(w).post_payload(submission("UALICE", ids.REQUEST_MODAL, request_form(name="koding-alice2"))),
        200,
        "You already have the IAM user koding-ualice",
        block=ids.USER_NAME_BLOCK,
    ),
    # Slash commands.
    "command-request-while-pending": Case(
        lambda w: d(w).post(command("UBOB", "request")), 200, "You already have request #2"
    ),
    "command-with-slack-markup": Case(
        lambda w: d(w).post(command("UCAROL", "<!channel> <@UADMIN1>")), 200, "&lt;!channel&gt;"
    ),
    "command-5000-chars": Case(lambda w: d(w).post(command("UCAROL", "x" * 5000)), 200, "Unknown subcommand"),
}

# Malformed or foreign envelopes: Bolt or the handlers once answered these with a 500 or acted on them; each is now
# refused at the boundary.
CASES |= {
    "view-without-type": Case(
        lambda w: d(w).post_payload(
            {
                "type": "view_submission",
                "team": {"id": TEAM},
                "user": {"id": "UCAROL"},
                "view": {"callback_id": ids.REQUEST_MODAL},
            }
        ),
        400,
    ),
    "command-without-user-id": Case(
        lambda w: d(w).post(command("UCAROL", "request", user_id=None)),  # type: ignore[arg-type]
        400,
    ),
    "view-submission-user-not-an-object": Case(
        lambda w: d(w).post_payload({**submission("UCAROL", ids.REQUEST_MODAL, request_form()), "user": "UCAROL"}),
        400,
    ),
    "deny-metadata-deeply-nested": Case(  # 3,000 nested '[' fit in private_metadata and used to raise RecursionError
        lambda w: d(w).post_payload(submission("UADMIN2", ids.DENY_MODAL, deny_form(), private_metadata="[" * 3000)),
        200,
        "hidden data is not what koding-iam wrote",
        block=ids.DENY_REASON_BLOCK,
    ),
    "command-from-a-foreign-workspace": Case(
        lambda w: d(w).post(command("UCAROL", "request", team_id="T0FOREIGN", api_app_id="A0FOREIGN")), 401
    ),
}


def answer_text(w: World, case: Case, response: Response, calls_before: int, told_before: int) -> str:
    if case.to is None:
        return response.text
    new = w.sb.standin.ephemerals(case.to)[told_before:]
    dm = w.sb.standin.dm_channel(case.to)
    posted = [
        c.body
        for c in w.sb.standin.calls[calls_before:]
        if c.method == "chat.postMessage" and c.body.get("channel") in (case.to, dm)
    ]
    return json.dumps(new + posted, ensure_ascii=False)


def run_case(w: World, case: Case) -> None:
    sb = w.sb
    iam = boto3.client("iam", region_name="us-east-1")
    rows, aws = db_rows(sb.services.engine), iam_state(iam)
    calls_before = len(sb.standin.calls)
    told_before = len(sb.standin.ephemerals(case.to)) if case.to else 0

    response = case.send(w)
    sb.wait_idle()
    if case.to:  # the refusal is posted after the ack, from the listener thread
        deadline = time.monotonic() + 5
        while len(sb.standin.ephemerals(case.to)) == told_before and time.monotonic() < deadline:
            time.sleep(0.02)

    assert response.status == case.status, (response.status, response.text[:300])
    text = answer_text(w, case, response, calls_before, told_before)
    if case.says:
        assert case.says in text, text[:500]
    if case.block:
        body = response.json()
        assert body["response_action"] == "errors" and list(body["errors"]) == [case.block], body
        assert case.says and case.says in body["errors"][case.block]
    # Nothing changed: every row of every table, the whole IAM account, and no Slack call but the refusal.
    assert db_rows(sb.services.engine) == rows
    assert iam_state(iam) == aws
    allowed = {"auth.test", "chat.postEphemeral"} if case.to else {"auth.test"}
    acting = [c for c in sb.standin.calls[calls_before:] if c.method not in allowed]
    if case.to:  # an ephemeral with no channel falls back to a DM to the person who acted, and only to them
        acting = [c for c in acting if not (c.method == "chat.postMessage" and c.body.get("channel") == case.to)]
    assert [c.method for c in acting] == [], [(c.method, c.body.get("channel")) for c in acting]
    assert "<!channel>" not in text


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_is_refused_and_changes_nothing(world: World, name: str) -> None:
    run_case(world, CASES[name])
