"""Tests for the Slack Web API stand-in, driven through the real slack_sdk client over real HTTP.

Why: every bot test trusts this server to answer like Slack; if it drifted, those tests would pass against
behaviour production never shows.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.devtools.slack_standin import RecordedCall, SlackStandIn

TS_PATTERN = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(base_url=standin.base_url, token="xoxb-test", timeout=5)


@pytest.fixture
def strict_client(standin: SlackStandIn) -> WebClient:
    """A client without slack_sdk's retry handlers, so injected failures reach the test unchanged."""
    return WebClient(base_url=standin.base_url, token="xoxb-test", timeout=5, retry_handlers=[])


def _post(url: str, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - the URL is the local stand-in
        url, data=data, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _modal(title: str = "Request access", blocks: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "request_access",
        "title": {"type": "plain_text", "text": title},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"line {i}"}} for i in range(blocks)],
        **extra,
    }


# ------------------------------------------------------------------------------------------ lifecycle


def test_base_url_shape_and_lifecycle() -> None:
    server = SlackStandIn()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", server.base_url)
        assert server.start() is server  # idempotent
    finally:
        server.stop()
    server.stop()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.base_url + "auth.test", timeout=2)  # noqa: S310


def test_auth_test_shape(standin: SlackStandIn, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.data == {
        "ok": True,
        "url": "https://koding-test.slack.com/",
        "team": "Koding Test",
        "user": "koding-iam",
        "team_id": "T0KODING",
        "user_id": "UKODINGBOT",
        "bot_id": "BKODINGBOT",
        "is_enterprise_install": False,
    }


def test_custom_identity() -> None:
    with SlackStandIn(team_id="T1", bot_user_id="U1BOT", bot_id="B1", token_prefix="xoxe-") as server:
        resp = WebClient(base_url=server.base_url, token="xoxe-1").auth_test()
        assert (resp["team_id"], resp["user_id"], resp["bot_id"]) == ("T1", "U1BOT", "B1")
        with pytest.raises(SlackApiError) as err:
            WebClient(base_url=server.base_url, token="xoxb-1").auth_test()
        assert err.value.response["error"] == "invalid_auth"


# -------------------------------------------------------------------------------------------- messages


def test_post_then_update_changes_message_state(standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "section", "block_id": "b1", "text": {"type": "mrkdwn", "text": "*pending*"}}]
    posted = client.chat_postMessage(channel="C123", text="Request pending", blocks=blocks)
    assert posted["channel"] == "C123"
    ts = posted["ts"]
    assert TS_PATTERN.match(ts)
    assert posted["message"]["type"] == "message"
    assert posted["message"]["text"] == "Request pending"
    assert posted["message"]["blocks"] == blocks
    assert posted["message"]["user"] == "UKODINGBOT"
    assert posted["message"]["bot_id"] == "BKODINGBOT"
    assert posted["message"]["ts"] == ts
    assert standin.message("C123", ts) == {"channel": "C123", "ts": ts, "text": "Request pending", "blocks": blocks}

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*approved*"}}]
    updated = client.chat_update(channel="C123", ts=ts, text="Approved", blocks=new_blocks)
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C123", ts, "Approved")
    assert updated["message"]["blocks"] == new_blocks
    state = standin.message("C123", ts)
    assert state is not None
    assert (state["text"], state["blocks"]) == ("Approved", new_blocks)

    # Leaving blocks out keeps them, as in Slack; only the text changes.
    client.chat_update(channel="C123", ts=ts, text="Approved by U2")
    state = standin.message("C123", ts)
    assert state is not None
    assert (state["text"], state["blocks"]) == ("Approved by U2", new_blocks)
    assert [m["ts"] for m in standin.messages("C123")] == [ts]


def test_ts_values_are_unique_and_increasing(standin: SlackStandIn, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(5)]
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 5
    assert [m["text"] for m in standin.messages()] == ["0", "1", "2", "3", "4"]
    assert standin.messages("C2") == []


def test_message_argument_errors(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMessage", json={"text": "no channel"})
    assert err.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMessage", json={"channel": "C1"})
    assert err.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts="1700000000.999999", text="x")
    assert err.value.response["error"] == "message_not_found"


def test_too_many_blocks_in_message_is_invalid_blocks(standin: SlackStandIn, client: WebClient) -> None:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    client.chat_postMessage(channel="C1", text="fifty", blocks=[section] * 50)
    standin.expect_violations(r"\$\.blocks: 51 > 50")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="fifty-one", blocks=[section] * 51)
    assert err.value.response["error"] == "invalid_blocks"
    assert [m["text"] for m in standin.messages()] == ["fifty"]
    assert standin.calls_to("chat.postMessage")[-1].failed is True


def test_dm_via_user_id(standin: SlackStandIn, client: WebClient) -> None:
    assert standin.dm_channel("U0ALICE") == "D0ALICE"
    posted = client.chat_postMessage(channel="U0ALICE", text="Your keys are ready")
    assert posted["channel"] == "D0ALICE"
    assert standin.message("D0ALICE", posted["ts"])["text"] == "Your keys are ready"  # type: ignore[index]
    assert standin.message("U0ALICE", posted["ts"]) == standin.message("D0ALICE", posted["ts"])

    opened = client.conversations_open(users="U0ALICE")
    assert opened["channel"]["id"] == "D0ALICE"

    # Slack does not accept a user id as the channel of chat.update.
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="U0ALICE", ts=posted["ts"], text="edited")
    assert err.value.response["error"] == "channel_not_found"
    client.chat_update(channel="D0ALICE", ts=posted["ts"], text="edited")
    assert standin.messages("D0ALICE")[0]["text"] == "edited"


def test_post_ephemeral_is_recorded_per_user(standin: SlackStandIn, client: WebClient) -> None:
    resp = client.chat_postEphemeral(channel="C1", user="U0BOB", text="Only you can see this")
    assert TS_PATTERN.match(resp["message_ts"])
    assert [e["text"] for e in standin.ephemerals("U0BOB")] == ["Only you can see this"]
    assert standin.ephemerals("U0ALICE") == []
    assert standin.messages() == []  # ephemerals are not channel messages


def test_users_info_shape_and_override(standin: SlackStandIn, client: WebClient) -> None:
    user = client.users_info(user="U0ALICE")["user"]
    assert user["id"] == "U0ALICE"
    assert user["team_id"] == "T0KODING"
    assert user["name"] == "u0alice"
    assert user["deleted"] is False
    assert user["is_bot"] is False
    assert user["profile"]["real_name"] == user["real_name"]
    assert user["profile"]["display_name"]

    standin.set_user("U0GONE", real_name="Gone Person", deleted=True)
    gone = client.users_info(user="U0GONE")["user"]
    assert (gone["real_name"], gone["deleted"]) == ("Gone Person", True)
    assert standin.calls_to("users.info")[0].body == {"user": "U0ALICE"}


def test_users_info_answers_deactivated_guests_and_unknown_members_as_slack_does(
    standin: SlackStandIn, client: WebClient
) -> None:
    standin.deactivate_user("U0LEFT")
    assert client.users_info(user="U0LEFT")["user"]["deleted"] is True
    standin.set_user("U0GUEST", is_restricted=True)
    assert client.users_info(user="U0GUEST")["user"]["is_restricted"] is True
    standin.set_user("U0NOBODY", unknown=True)
    with pytest.raises(SlackApiError) as refused:
        client.users_info(user="U0NOBODY")
    assert refused.value.response["error"] == "user_not_found"


def test_usergroups_users_list_answers_members_and_slack_errors(standin: SlackStandIn, client: WebClient) -> None:
    standin.set_usergroup("S0APPROVERS", ["U0ALICE", "U0BOB"])
    assert client.usergroups_users_list(usergroup="S0APPROVERS")["users"] == ["U0ALICE", "U0BOB"]
    standin.remove_from_usergroup("S0APPROVERS", "U0BOB")
    assert client.usergroups_users_list(usergroup="S0APPROVERS")["users"] == ["U0ALICE"]
    for group in ("S0MISSING",):
        with pytest.raises(SlackApiError) as refused:
            client.usergroups_users_list(usergroup=group)
        assert refused.value.response["error"] == "no_such_subteam"
    standin.set_usergroup("S0OLD", ["U0ALICE"], disabled=True)
    with pytest.raises(SlackApiError) as refused:
        client.usergroups_users_list(usergroup="S0OLD")
    assert refused.value.response["error"] == "no_such_subteam"
    assert client.usergroups_users_list(usergroup="S0OLD", include_disabled=True)["users"] == ["U0ALICE"]
    with pytest.raises(SlackApiError) as refused:
        client.api_call("usergroups.users.list", params={})
    assert refused.value.response["error"] == "invalid_arguments"


# ----------------------------------------------------------------------------------------------- views


def test_view_open_update_and_hash_conflict(standin: SlackStandIn, client: WebClient) -> None:
    opened = client.views_open(trigger_id="123.456.abc", view=_modal(private_metadata='{"step": 1}'))
    view = opened["view"]
    assert view["id"].startswith("V")
    assert view["type"] == "modal"
    assert view["callback_id"] == "request_access"
    assert view["private_metadata"] == '{"step": 1}'
    assert view["team_id"] == "T0KODING"
    assert view["app_id"] == "AKODING"
    assert view["bot_id"] == "BKODINGBOT"
    assert view["root_view_id"] == view["id"]
    first_hash = view["hash"]
    assert standin.view(view["id"]) == view

    updated = client.views_update(
        view_id=view["id"], hash=first_hash, view=_modal(title="Step 2", private_metadata='{"step": 2}')
    )["view"]
    assert updated["id"] == view["id"]
    assert updated["hash"] != first_hash
    current = standin.view(view["id"])
    assert current is not None
    assert (current["title"]["text"], current["private_metadata"]) == ("Step 2", '{"step": 2}')

    # The first hash is stale now: Slack refuses the update so concurrent edits are not lost.
    with pytest.raises(SlackApiError) as err:
        client.views_update(view_id=view["id"], hash=first_hash, view=_modal(title="Step 3"))
    assert err.value.response["error"] == "hash_conflict"
    assert standin.view(view["id"])["title"]["text"] == "Step 2"  # type: ignore[index]

    with pytest.raises(SlackApiError) as err:
        client.views_update(view_id="VNOPE", view=_modal())
    assert err.value.response["error"] == "not_found"


def test_view_update_by_external_id(standin: SlackStandIn, client: WebClient) -> None:
    view_id = client.views_open(trigger_id="t-ext", view=_modal(external_id="req-42"))["view"]["id"]
    client.views_update(external_id="req-42", view=_modal(title="Done"))
    assert standin.view(view_id)["title"]["text"] == "Done"  # type: ignore[index]
    assert standin.view(view_id)["external_id"] == "req-42"  # type: ignore[index]


def test_trigger_id_rules(standin: SlackStandIn, client: WebClient) -> None:
    client.views_open(trigger_id="t-once", view=_modal())
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="t-once", view=_modal())
    assert err.value.response["error"] == "exchanged_trigger_id"
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="t-expired-1", view=_modal())
    assert err.value.response["error"] == "expired_trigger_id"
    with pytest.raises(SlackApiError) as err:
        client.api_call("views.open", json={"view": _modal()})
    assert err.value.response["error"] == "invalid_arguments"
    assert [c.failed for c in standin.calls_to("views.open")] == [False, True, True, True]


def test_views_push_joins_the_open_stack(standin: SlackStandIn, client: WebClient) -> None:
    root = client.views_open(trigger_id="t-1", view=_modal())["view"]
    pushed = client.views_push(trigger_id="t-2", view=_modal(title="Confirm"))["view"]
    assert pushed["id"] != root["id"]
    assert pushed["root_view_id"] == root["id"]
    assert standin.view(pushed["id"])["title"]["text"] == "Confirm"  # type: ignore[index]
    with pytest.raises(SlackApiError) as err:
        client.views_push(trigger_id="t-2", view=_modal())
    assert err.value.response["error"] == "exchanged_trigger_id"


def test_view_limits_are_enforced(standin: SlackStandIn, client: WebClient) -> None:
    client.views_open(trigger_id="t-100", view=_modal(blocks=100))
    standin.expect_violations(r"\$\.blocks: 101 > 100|\$\.title: 25 > 24", method="views.open")
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="t-101", view=_modal(blocks=101))
    assert err.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="t-title", view=_modal(title="x" * 25))
    assert err.value.response["error"] == "invalid_arguments"
    assert "title" in err.value.response["response_metadata"]["messages"][0]
    # A failed open does not use up the trigger.
    client.views_open(trigger_id="t-title", view=_modal(title="x" * 24))


def test_views_publish_home(standin: SlackStandIn, client: WebClient) -> None:
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "v1"}}]}
    first = client.views_publish(user_id="U0ALICE", view=home)["view"]
    assert first["type"] == "home"
    home2 = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "v2"}}]}
    second = client.views_publish(user_id="U0ALICE", view=home2)["view"]
    assert second["id"] == first["id"]
    assert second["hash"] != first["hash"]
    published = standin.published_home("U0ALICE")
    assert published is not None
    assert published["blocks"][0]["text"]["text"] == "v2"
    assert standin.published_home("U0BOB") is None
    with pytest.raises(SlackApiError) as err:
        client.views_publish(user_id="U0ALICE", view=_modal())
    assert err.value.response["error"] == "invalid_arguments"


# ------------------------------------------------------------------------------------- recorded bodies


def test_recorded_json_body(standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "divider"}]
    client.chat_postMessage(channel="C9", text="hello", blocks=blocks)
    (call,) = standin.calls_to("chat.postMessage")
    assert isinstance(call, RecordedCall)
    assert call.body == {"channel": "C9", "text": "hello", "blocks": blocks}
    assert json.loads(call.raw) == call.body
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.headers["Authorization"] == "Bearer xoxb-test"
    assert call.failed is False
    assert abs(call.at - time.time()) < 5


def test_recorded_form_body_decodes_json_strings(standin: SlackStandIn, client: WebClient) -> None:
    client.conversations_open(users="U0CAROL")
    (opened,) = standin.calls_to("conversations.open")
    assert opened.body == {"users": "U0CAROL"}
    assert opened.raw == "users=U0CAROL"
    assert opened.headers["Content-Type"] == "application/x-www-form-urlencoded"

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "form"}}]
    client.api_call("chat.postMessage", params={"channel": "C5", "text": "form", "blocks": json.dumps(blocks)})
    (posted,) = standin.calls_to("chat.postMessage")
    assert posted.body["blocks"] == blocks  # decoded from the JSON string in the form body
    assert "blocks=%5B%7B" in posted.raw
    assert standin.messages("C5")[0]["blocks"] == blocks


def test_token_in_form_body_is_accepted(standin: SlackStandIn) -> None:
    status, body = _post(
        standin.base_url + "chat.postMessage",
        b"token=xoxb-form&channel=C7&text=hi",
        "application/x-www-form-urlencoded",
    )
    assert (status, body["ok"], body["channel"]) == (200, True, "C7")
    assert standin.calls_to("chat.postMessage")[0].body["token"] == "xoxb-form"


def test_clear_and_reset(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="keep")
    standin.clear()
    assert standin.calls == []
    assert standin.message("C1", posted["ts"]) is not None
    standin.reset()
    assert standin.message("C1", posted["ts"]) is None


# ---------------------------------------------------------------------------------- auth and routing


def test_not_authed_without_token(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=standin.base_url).chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "not_authed"
    assert standin.calls_to("chat.postMessage")[0].failed is True
    assert standin.messages() == []


def test_wrong_token_kind_is_invalid_auth(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=standin.base_url, token="xoxp-user-token").auth_test()
    assert err.value.response["error"] == "invalid_auth"


def test_unknown_method(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.scheduleMessage", json={"channel": "C1", "text": "later", "post_at": 1})
    assert err.value.response["error"] == "unknown_method"
    assert standin.calls_to("chat.scheduleMessage")[0].failed is True


def test_body_over_one_megabyte_is_413(standin: SlackStandIn) -> None:
    status, body = _post(
        standin.base_url + "chat.postMessage",
        b"x" * (1024 * 1024 + 1),
        "application/x-www-form-urlencoded",
        {"Authorization": "Bearer xoxb-test"},
    )
    assert status == 413
    assert body["ok"] is False
    assert standin.messages() == []


# ---------------------------------------------------------------------------------- failure injection


def test_fail_next_with_error(standin: SlackStandIn, strict_client: WebClient) -> None:
    standin.fail_next("chat.postMessage", error="is_archived", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            strict_client.chat_postMessage(channel="C1", text="hi")
        assert err.value.response.status_code == 200
        assert err.value.response["error"] == "is_archived"
    assert strict_client.chat_postMessage(channel="C1", text="hi")["ok"] is True
    assert [c.failed for c in standin.calls_to("chat.postMessage")] == [True, True, False]
    assert len(standin.messages()) == 1
    # Other methods are unaffected.
    assert strict_client.auth_test()["ok"] is True


def test_fail_next_with_http_status(standin: SlackStandIn, strict_client: WebClient) -> None:
    standin.fail_next("views.open", status=500, error="internal_error")
    with pytest.raises(SlackApiError) as err:
        strict_client.views_open(trigger_id="t", view=_modal())
    assert err.value.response.status_code == 500
    assert err.value.response["error"] == "internal_error"
    # The injected failure happened before the trigger was looked at, so it is still usable.
    assert strict_client.views_open(trigger_id="t", view=_modal())["ok"] is True


def test_fail_next_rate_limited(standin: SlackStandIn, strict_client: WebClient) -> None:
    standin.fail_next("chat.update", retry_after=7)
    ts = strict_client.chat_postMessage(channel="C1", text="a")["ts"]
    with pytest.raises(SlackApiError) as err:
        strict_client.chat_update(channel="C1", ts=ts, text="b")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert standin.message("C1", ts)["text"] == "a"  # type: ignore[index]
    (call,) = standin.calls_to("chat.update")
    assert (call.failed, call.status) == (True, 429)
    strict_client.chat_update(channel="C1", ts=ts, text="b")
    assert standin.message("C1", ts)["text"] == "b"  # type: ignore[index]


def test_fail_next_drop_connection(standin: SlackStandIn, strict_client: WebClient) -> None:
    standin.fail_next("chat.postMessage", drop_connection=True)
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        strict_client.chat_postMessage(channel="C1", text="lost")
    (call,) = standin.calls_to("chat.postMessage")
    assert (call.failed, call.status, call.body["text"]) == (True, 0, "lost")
    assert strict_client.chat_postMessage(channel="C1", text="ok")["ok"] is True
    assert [m["text"] for m in standin.messages()] == ["ok"]


def test_dropped_connection_is_retried_by_default_handlers(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail_next("chat.postMessage", drop_connection=True)
    assert client.chat_postMessage(channel="C1", text="retried")["ok"] is True
    assert [c.failed for c in standin.calls_to("chat.postMessage")] == [True, False]


def test_fail_next_rejects_bad_times(standin: SlackStandIn) -> None:
    with pytest.raises(ValueError):
        standin.fail_next("auth.test", times=0)


# ---------------------------------------------------------------------------------------- response_url


def test_response_url_posts_are_recorded(standin: SlackStandIn) -> None:
    url = standin.new_response_url()
    assert re.fullmatch(rf"http://127\.0\.0\.1:{standin.port}/response/[\w-]+", url)
    assert standin.new_response_url() != url
    payload = {"text": "Working on it", "response_type": "ephemeral", "blocks": [{"type": "divider"}]}
    status, body = _post(url, json.dumps(payload).encode(), "application/json")
    assert (status, body) == (200, {"ok": True})
    (call,) = standin.calls_to("response_url")
    assert call.body == {**payload, "_response_url": url}
    assert call.method == "response_url"
    assert call.failed is False


def test_unknown_response_url_is_404(standin: SlackStandIn) -> None:
    status, body = _post(standin.base_url.replace("/api/", "/response/nope"), b"{}", "application/json")
    assert status == 404
    assert body["ok"] is False
    assert standin.calls_to("response_url")[0].failed is True


def test_bound_response_url_replaces_and_deletes(standin: SlackStandIn, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="Approve?")["ts"]
    url = standin.new_response_url(channel="C1", ts=ts, user="U0ADMIN")
    _post(url, json.dumps({"replace_original": True, "text": "Approved"}).encode(), "application/json")
    assert standin.message("C1", ts)["text"] == "Approved"  # type: ignore[index]
    _post(url, json.dumps({"text": "just for you"}).encode(), "application/json")
    assert [e["text"] for e in standin.ephemerals("U0ADMIN")] == ["just for you"]
    _post(url, json.dumps({"delete_original": True}).encode(), "application/json")
    assert standin.message("C1", ts) is None


def test_fail_next_applies_to_response_url(standin: SlackStandIn) -> None:
    standin.fail_next("response_url", error="expired_url", status=404)
    url = standin.new_response_url()
    status, body = _post(url, b'{"text": "late"}', "application/json")
    assert (status, body["error"]) == (404, "expired_url")
    assert _post(url, b'{"text": "again"}', "application/json")[0] == 200


# -------------------------------------------------------------------------------------------- wait_for


def test_wait_for_sees_calls_from_another_thread(standin: SlackStandIn, client: WebClient) -> None:
    timer = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C1", text="later"))
    timer.start()
    try:
        calls = standin.wait_for(lambda cs: any(c.method == "chat.postMessage" for c in cs), timeout=5)
    finally:
        timer.join()
    assert calls[-1].body["text"] == "later"


def test_wait_for_times_out_with_summary(standin: SlackStandIn, client: WebClient) -> None:
    client.auth_test()
    client.chat_postMessage(channel="C1", text="top secret body")
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        standin.wait_for(lambda cs: len(cs) >= 5, timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3
    message = str(err.value)
    assert "auth.test" in message
    assert "chat.postMessage" in message
    assert "2 call(s)" in message
    assert "top secret body" not in message  # bodies are never printed
