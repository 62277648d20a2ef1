"""The stand-in's file uploads answer as Slack does, driven through slack_sdk's own `files_upload_v2` over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.devtools.slack_standin import DEFAULT_RATE_LIMITS, SlackStandIn


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(base_url=standin.base_url, token="xoxb-test", timeout=5)


def test_files_upload_v2_takes_three_steps_and_the_bytes_arrive_in_the_channel(
    standin: SlackStandIn, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="UADMIN1", text="Your report")
    dm = str(posted["channel"])
    content = "owner,iam_user\nUALICE,koding-ualice\n"
    answer = client.files_upload_v2(channel=dm, content=content, filename="report.csv", title="Report")
    assert answer["ok"] is True and answer["file"]["name"] == "report.csv" and answer["file"]["title"] == "Report"
    assert [c.method for c in standin.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload_url",
        "files.completeUploadExternal",
    ]
    assert standin.calls_to("files.getUploadURLExternal")[0].body["length"] == str(len(content.encode()))
    (shared,) = standin.shared_files(dm)
    assert shared.content == content.encode() and shared.id == answer["file"]["id"]
    (message,) = [m for m in standin.messages(dm) if m.get("files")]
    assert message["files"][0]["id"] == shared.id


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"length": 10}, "invalid_arguments"),  # no filename
        ({"filename": "a.csv"}, "invalid_arguments"),  # no length
        ({"filename": "a.csv", "length": "ten"}, "invalid_arguments"),
        ({"filename": "a.csv", "length": 0}, "missing_argument"),
    ],
)
def test_get_upload_url_refuses_what_slack_refuses(client: WebClient, args: dict[str, object], error: str) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.api_call("files.getUploadURLExternal", params=args)
    assert caught.value.response["error"] == error


def test_complete_refuses_unknown_unuploaded_and_twice_completed_files(
    standin: SlackStandIn, client: WebClient
) -> None:
    def complete(files: str, **extra: str) -> str:
        with pytest.raises(SlackApiError) as caught:
            client.api_call("files.completeUploadExternal", params={"files": files, **extra})
        return str(caught.value.response["error"])

    assert complete("") == "invalid_arguments"
    assert complete("not json") == "invalid_arguments"
    assert complete('[{"id": "F404"}]') == "file_not_found"
    started = client.files_getUploadURLExternal(filename="a.csv", length=3)
    file_id = started["file_id"]
    assert complete(f'[{{"id": "{file_id}"}}]') == "file_not_found"  # the bytes never arrived
    upload = urllib.request.Request(started["upload_url"], data=b"abc", method="POST")  # noqa: S310 - the stand-in's
    urllib.request.urlopen(upload, timeout=5)  # noqa: S310
    assert complete(f'[{{"id": "{file_id}"}}]', channel_id="UADMIN1") == "channel_not_found"  # a member, not a DM
    client.files_completeUploadExternal(files=[{"id": file_id, "title": "a"}], channel_id="DADMIN1")
    assert complete(f'[{{"id": "{file_id}"}}]') == "file_not_found"  # "can only be called once"
    (shared,) = standin.shared_files("DADMIN1")
    assert shared.content == b"abc"


def test_an_unknown_upload_url_is_not_found(standin: SlackStandIn) -> None:
    url = f"http://127.0.0.1:{standin.port}/upload/v1/nobody-issued-this"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=5)
    assert caught.value.code == 404


def test_both_methods_are_tier_4() -> None:
    for method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
        assert (DEFAULT_RATE_LIMITS[method].per_minute, DEFAULT_RATE_LIMITS[method].per_channel) == (100, False)
