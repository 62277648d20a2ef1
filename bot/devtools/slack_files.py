"""The Slack stand-in's file uploads, the three steps slack_sdk's `WebClient.files_upload_v2` takes, each answering
as Slack documents it. A mixin of SlackStandIn, whose lock is held while a Web API method runs.

1. `files.getUploadURLExternal` (https://api.slack.com/methods/files.getUploadURLExternal, Tier 4): `filename`
   and `length` (bytes, an integer) are required; answers `{"ok": true, "upload_url": ..., "file_id": "F..."}`.
   A missing or non-integer argument is `invalid_arguments`; a length of 0 is `missing_argument` (the method's
   documented error: "Typically only occurs when the length provided is 0").
2. A POST of the file's bytes (raw or multipart) to `upload_url`: HTTP 200 with `OK - <length>` as Slack's upload
   service answers; an unknown URL is HTTP 404. The bytes are kept so tests can read exactly what was uploaded.
3. `files.completeUploadExternal` (https://api.slack.com/methods/files.completeUploadExternal, Tier 4): `files`
   (a JSON array of `{"id", "title"}`) is required (`invalid_arguments` when missing or malformed); a file id
   never issued, not uploaded yet, or already completed ("This method can only be called once") is
   `file_not_found`; `channel_id` must be a conversation id (`channel_not_found` otherwise). The file is shared
   into that channel as a message carrying `files`, as Slack shows it; without a channel it stays private.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.devtools.slack_wire import _Answer, _SlackError, _str

_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")
UPLOAD_PATH = "/upload/v1/"


@dataclass
class UploadedFile:
    """One file's upload as the stand-in saw it: what was announced, the bytes that arrived, where it was shared."""

    id: str
    filename: str
    length: int
    token: str
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    completed: bool = False
    initial_comment: str | None = None
    thread_ts: str | None = None
    shared_ts: str | None = field(default=None)


class FileUploads:
    """files.getUploadURLExternal, the upload URL and files.completeUploadExternal over the stand-in's state."""

    port: int
    _lock: threading.Lock
    _messages: dict[tuple[str, str], dict[str, Any]]
    _files: dict[str, UploadedFile]
    _next_seq: Callable[[], int]
    _next_ts: Callable[[], str]
    _injected: Callable[[str], _Answer | None]

    def _file_methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # ------------------------------------------------------------------------------------------ inspection

    def uploaded_files(self) -> list[UploadedFile]:
        """Every file whose upload was started, in order (copies: the bytes are in `content`)."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values()]

    def shared_files(self, channel: str) -> list[UploadedFile]:
        """Files completed and shared into `channel` (a conversation id), oldest first."""
        return [f for f in self.uploaded_files() if f.completed and f.channel == channel]

    # ------------------------------------------------------------------------------------ Web API (locked)

    def _files_get_upload_url_external(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = _str(args.get("filename"))
        length_text = _str(args.get("length"))
        if not filename:
            raise _SlackError("invalid_arguments", detail="missing required field: filename")
        if length_text is None or not length_text.strip().isdigit():
            raise _SlackError("invalid_arguments", detail="missing or non-integer field: length")
        length = int(length_text)
        if length == 0:
            raise _SlackError("missing_argument")
        file_id = f"F{self._next_seq():010d}"
        token = secrets.token_urlsafe(18)
        self._files[file_id] = UploadedFile(id=file_id, filename=filename, length=length, token=token)
        return {"upload_url": f"http://127.0.0.1:{self.port}{UPLOAD_PATH}{token}", "file_id": file_id}

    def _files_complete_upload_external(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = _file_entries(args.get("files"))
        channel = _str(args.get("channel_id"))
        if channel is not None and not _CHANNEL_ID.fullmatch(channel):
            raise _SlackError("channel_not_found")
        found: list[tuple[UploadedFile, str | None]] = []
        for entry in entries:
            upload = self._files.get(str(entry["id"]))
            if upload is None or upload.content is None or upload.completed:
                raise _SlackError("file_not_found")
            found.append((upload, _str(entry.get("title"))))
        shared: list[dict[str, Any]] = []
        for upload, title in found:
            upload.completed = True
            upload.title = title or upload.filename
            upload.channel = channel
            upload.initial_comment = _str(args.get("initial_comment"))
            upload.thread_ts = _str(args.get("thread_ts"))
            shared.append(_file_object(upload))
        if channel is not None:
            ts = self._next_ts()
            message: dict[str, Any] = {
                "channel": channel,
                "ts": ts,
                "text": _str(args.get("initial_comment")) or "",
                "blocks": [],
                "files": copy.deepcopy(shared),
            }
            if args.get("thread_ts"):
                message["thread_ts"] = _str(args["thread_ts"])
            self._messages[(channel, ts)] = message
            for upload, _ in found:
                upload.shared_ts = ts
        return {"files": shared}

    # ------------------------------------------------------------------------------------- the upload URL

    def _upload(self, path: str, command: str, raw: bytes) -> tuple[dict[str, Any], _Answer]:
        """A POST of a file's bytes to the URL files.getUploadURLExternal gave (not a Web API method: no token)."""
        token = path[len(UPLOAD_PATH) :]
        body = {"_upload_url": path, "bytes": len(raw)}
        injected = self._injected("upload_url")
        if injected is not None:
            return body, injected
        if command != "POST":
            return body, _Answer(405, {"ok": False, "error": "method_not_allowed"})
        with self._lock:
            upload = next((f for f in self._files.values() if f.token == token and not f.completed), None)
            if upload is None:
                return body, _Answer(404, {"ok": False, "error": "file_not_found"})
            upload.content = bytes(raw)
        # Slack's upload service answers in plain text; the JSON here carries the same words for the recorder.
        return body, _Answer(200, {"ok": True, "text": f"OK - {len(raw)}"})


def _file_entries(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _SlackError("invalid_arguments", detail="files must be a JSON array") from None
    if not isinstance(value, list) or not value:
        raise _SlackError("invalid_arguments", detail="missing required field: files")
    if not all(isinstance(entry, dict) and _str(entry.get("id")) for entry in value):
        raise _SlackError("invalid_arguments", detail="each file needs an id")
    return value


def _file_object(upload: UploadedFile) -> dict[str, Any]:
    """The parts of Slack's file object the bot could read (https://api.slack.com/types/file)."""
    return {
        "id": upload.id,
        "name": upload.filename,
        "title": upload.title,
        "size": upload.length,
        "filetype": upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else "text",
        "channels": [upload.channel] if upload.channel else [],
    }
