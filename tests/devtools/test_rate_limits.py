"""The Slack stand-in answers HTTP 429 with Retry-After past Slack's per-method rate limits, like Slack.

Why: a bot that sends faster than Slack allows loses messages in production; only a stand-in that says no
the same way lets a test see whether the bot waits and retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.devtools.slack_standin import DEFAULT_RATE_LIMITS, RateLimit, SlackStandIn

HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "home"}}]}


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(base_url=standin.base_url, token="xoxb-test", timeout=5, retry_handlers=[])


def test_defaults_follow_slacks_published_tiers() -> None:
    assert DEFAULT_RATE_LIMITS["chat.postMessage"] == RateLimit(per_minute=60, burst=6, per_channel=True)
    assert DEFAULT_RATE_LIMITS["chat.update"].per_minute == 50  # Tier 3
    assert DEFAULT_RATE_LIMITS["views.publish"].per_minute == 100  # Tier 4


def test_post_message_allows_a_short_burst_per_channel_then_429(standin: SlackStandIn, client: WebClient) -> None:
    for i in range(6):
        client.chat_postMessage(channel="C1", text=f"burst {i}")
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C1", text="one too many")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    client.chat_postMessage(channel="C2", text="another channel has its own allowance")
    client.chat_postMessage(channel="U0ALICE", text="a DM too")
    assert [(r.method, r.key) for r in standin.rate_limited] == [("chat.postMessage", "C1")]
    assert standin.calls_to("chat.postMessage")[6].status == 429
    assert len(standin.messages("C1")) == 6


def test_post_message_refills_one_per_second(standin: SlackStandIn, client: WebClient) -> None:
    standin.set_rate_limit("chat.postMessage", RateLimit(per_minute=600, burst=1, per_channel=True))  # 10 a second
    client.chat_postMessage(channel="C1", text="first")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="too soon")
    time.sleep(0.15)
    client.chat_postMessage(channel="C1", text="after the refill")
    assert len(standin.rate_limited) == 1


def test_chat_update_tier_3(standin: SlackStandIn, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="card")["ts"]
    for i in range(50):
        client.chat_update(channel="C1", ts=ts, text=f"v{i}")
    with pytest.raises(SlackApiError) as limited:
        client.chat_update(channel="C1", ts=ts, text="v50")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] in ("1", "2")  # one call every 1.2 s
    assert standin.message("C1", ts)["text"] == "v49"  # type: ignore[index]


def test_views_publish_tier_4(standin: SlackStandIn, client: WebClient) -> None:
    for i in range(100):
        client.views_publish(user_id=f"U{i:04d}", view=HOME)
    with pytest.raises(SlackApiError) as limited:
        client.views_publish(user_id="U0ALICE", view=HOME)
    assert limited.value.response.status_code == 429
    assert [r.method for r in standin.rate_limited] == ["views.publish"]


def test_limits_can_be_lifted_tightened_or_disabled(standin: SlackStandIn, client: WebClient) -> None:
    with standin.rate_limits_lifted():
        for i in range(20):
            client.chat_postMessage(channel="C1", text=f"seed {i}")
    standin.set_rate_limit("chat.postMessage", RateLimit(per_minute=1, burst=1, per_channel=True))
    client.chat_postMessage(channel="C9", text="one")
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C9", text="two")
    assert limited.value.response.headers["Retry-After"] == "60"
    standin.set_rate_limit("chat.postMessage", None)
    client.chat_postMessage(channel="C9", text="unlimited again")
    standin.disable_rate_limits()
    ts = client.chat_postMessage(channel="C1", text="card")["ts"]
    for i in range(60):
        client.chat_update(channel="C1", ts=ts, text=f"v{i}")
    assert len(standin.rate_limited) == 1


def test_constructor_replaces_the_defaults() -> None:
    with SlackStandIn(rate_limits={}) as open_standin:
        client = WebClient(base_url=open_standin.base_url, token="xoxb-test", retry_handlers=[])
        for i in range(30):
            client.chat_postMessage(channel="C1", text=f"m{i}")
        assert open_standin.rate_limited == []


def test_slack_sdk_waits_for_retry_after_and_delivers(standin: SlackStandIn) -> None:
    """What the bot's client does (bot/app.py retries rate limits): the message arrives, late but once."""
    client = WebClient(
        base_url=standin.base_url, token="xoxb-test", retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)]
    )
    standin.set_rate_limit("chat.postMessage", RateLimit(per_minute=120, burst=1, per_channel=True))
    client.chat_postMessage(channel="C1", text="first")
    started = time.monotonic()
    client.chat_postMessage(channel="C1", text="second")
    assert time.monotonic() - started >= 0.9  # Retry-After: 1
    assert [m["text"] for m in standin.messages("C1")] == ["first", "second"]
    assert len(standin.rate_limited) == 1
