"""A strict Microsoft Graph double for the mailbox endpoints, answering in the documented shapes.

The bodies come from `tests/fixtures/vendor/microsoft/graph/` (Microsoft's own examples, see the
README there); ids, names and values are filled in. It is stateful (folders, messages, their
categories) and strict where Graph is: every request needs the bearer token, `$top` must be
1..1000, only documented writable properties may be PATCHed, `move` needs `destinationId`, an
unknown id is a 404 with Graph's error envelope, and a moved message gets a new id unless the
request said `Prefer: IdType="ImmutableId"`. A request the double does not know fails the test
(`responses` raises ConnectionError for it).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor" / "microsoft" / "graph"
ROOT = "https://graph.microsoft.com/v1.0"
TOKEN = "graph-test-token"
UPDATABLE = {
    "bccRecipients", "body", "categories", "ccRecipients", "flag", "from", "importance",
    "inferenceClassification", "internetMessageId", "isDeliveryReceiptRequested", "isRead",
    "isReadReceiptRequested", "replyTo", "sender", "subject", "toRecipients",
}  # fmt: skip


def fixture(name: str) -> Any:
    """A documented body."""
    path = FIXTURES / name
    return json.loads(path.read_text()) if name.endswith(".json") else path.read_bytes()


@dataclass
class Message:
    """A message in the double's mailbox."""

    mime: bytes
    folder: str
    internet_message_id: str
    received: str
    categories: list[str] = field(default_factory=list)
    is_read: bool = False


class GraphMailboxDouble:
    """Mailbox `user` with an Inbox under the root; add messages, then let a reader at it."""

    def __init__(self, rsps: responses.RequestsMock, user: str = "replies@example.com") -> None:
        self.user = user
        self.folders: dict[str, dict[str, str]] = {
            "root-id": {"displayName": "Top of Information Store", "parent": ""},
            "inbox-id": {"displayName": "Inbox", "parent": "root-id"},
        }
        self.well_known = {"msgfolderroot": "root-id", "inbox": "inbox-id"}
        self.messages: dict[str, Message] = {}
        self.requests: list[tuple[str, str]] = []
        self.throttle_next = 0
        self._ids = itertools.count(1)
        base = re.compile(rf"^{re.escape(ROOT)}/users/{re.escape(user)}/.*")
        for method in ("GET", "POST", "PATCH"):
            rsps.add_callback(method, base, callback=self._dispatch)

    # ---- setup ----

    def add(
        self, mime: bytes, folder: str = "inbox-id", categories: list[str] | None = None
    ) -> str:
        """Deliver a message; returns its id."""
        message_id = f"AAMkADhAAA{next(self._ids):04d}="
        mid = re.search(rb"Message-ID:\s*(<[^>]+>)", mime, re.IGNORECASE)
        self.messages[message_id] = Message(
            mime=mime,
            folder=folder,
            internet_message_id=mid.group(1).decode() if mid else "",
            received=f"2026-11-03T10:{len(self.messages):02d}:00Z",
            categories=list(categories or ()),
        )
        return message_id

    def in_folder(self, name: str) -> list[str]:
        """Internet Message-IDs of the messages in the folder with that display name."""
        ids = {fid for fid, f in self.folders.items() if f["displayName"] == name}
        return [m.internet_message_id for m in self.messages.values() if m.folder in ids]

    # ---- answers ----

    @staticmethod
    def _json(status: int, body: Any) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _error(self, status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
        body = fixture("error.response.json")
        body["error"]["code"], body["error"]["message"] = code, message
        return self._json(status, body)

    def _folder(self, folder_id: str) -> dict[str, Any]:
        body = fixture("mailfolder_post_childfolders.response.json")
        count = sum(1 for m in self.messages.values() if m.folder == folder_id)
        body.update(
            id=folder_id,
            displayName=self.folders[folder_id]["displayName"],
            parentFolderId=self.folders[folder_id]["parent"],
            childFolderCount=sum(1 for f in self.folders.values() if f["parent"] == folder_id),
            unreadItemCount=count,
            totalItemCount=count,
        )
        return body

    def _dispatch(self, request: Any) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(request.url)
        path = url.path.split(f"/users/{self.user}/", 1)[1]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((request.method, path))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.throttle_next:
            self.throttle_next -= 1
            status, headers, body = self._error(429, "ApplicationThrottled", "Too many requests")
            return status, {**headers, "Retry-After": "0"}, body
        immutable = request.headers.get("Prefer") == 'IdType="ImmutableId"'
        sent = json.loads(request.body) if request.body else None
        parts = path.split("/")
        if parts[0] == "mailFolders":
            return self._folders(request.method, parts[1:], query, sent)
        if parts[0] == "messages":
            return self._message(request.method, parts[1:], query, sent, immutable)
        return self._error(400, "BadRequest", f"Unsupported segment {parts[0]}")

    def _folders(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> Any:
        folder_id = self.well_known.get(parts[0].lower(), parts[0])
        if folder_id not in self.folders:
            return self._error(404, "ErrorItemNotFound", "The specified folder could not be found.")
        if len(parts) == 1 and method == "GET":
            return self._json(200, self._folder(folder_id))
        if parts[1:] == ["childFolders"] and method == "GET":
            wanted = re.fullmatch(r"displayName eq '(.*)'", query.get("$filter", ""))
            children = [
                {**fixture("mailfolder_list_childfolders.response.200.json")["value"][0],
                 **self._folder(fid), "isHidden": False}
                for fid, f in self.folders.items()
                if f["parent"] == folder_id
                and (wanted is None or f["displayName"] == wanted.group(1).replace("''", "'"))
            ]  # fmt: skip
            return self._json(200, {"value": children})
        if parts[1:] == ["childFolders"] and method == "POST":
            if set(body) != {"displayName"}:
                return self._error(400, "ErrorInvalidProperty", "displayName only")
            if any(
                f["parent"] == folder_id and f["displayName"] == body["displayName"]
                for f in self.folders.values()
            ):
                return self._error(409, "ErrorFolderExists", "A folder with that name exists.")
            new_id = f"folder-{next(self._ids)}"
            self.folders[new_id] = {"displayName": body["displayName"], "parent": folder_id}
            return self._json(201, self._folder(new_id))
        if parts[1:] == ["messages"] and method == "GET":
            return self._list(folder_id, query)
        return self._error(405, "BadRequest", "Method not allowed")

    def _list(self, folder_id: str, query: dict[str, str]) -> Any:
        top = int(query.get("$top", "10"))
        if not 1 <= top <= 1000:
            return self._error(400, "BadRequest", "$top must be between 1 and 1000")
        skip = int(query.get("$skip", "0"))
        select = [s for s in query.get("$select", "").split(",") if s]
        in_folder = sorted(
            ((mid, m) for mid, m in self.messages.items() if m.folder == folder_id),
            key=lambda pair: pair[1].received,
        )
        page = in_folder[skip : skip + top]
        template = fixture("list_messages.response.200.json")
        values = []
        for mid, m in page:
            full = {
                **template["value"][0],
                "id": mid,
                "internetMessageId": m.internet_message_id,
                "categories": list(m.categories),
                "isRead": m.is_read,
                "receivedDateTime": m.received,
            }
            if select:
                full = {k: v for k, v in full.items() if k in select or k.startswith("@odata")}
            values.append(full)
        answer: dict[str, Any] = {"@odata.context": template["@odata.context"], "value": values}
        if skip + top < len(in_folder):
            answer["@odata.nextLink"] = (
                f"{ROOT}/users/{self.user}/mailFolders/{folder_id}/messages"
                f"?%24select={','.join(select)}&%24top={top}&%24skip={skip + top}"
            )
        return self._json(200, answer)

    def _message(
        self, method: str, parts: list[str], query: dict[str, str], body: Any, immutable: bool
    ) -> Any:
        message_id = parts[0]
        held = self.messages.get(message_id)
        if held is None:
            return self._error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        rest = parts[1:]
        if rest == ["$value"] and method == "GET":
            return 200, {"Content-Type": "text/plain"}, held.mime
        if not rest and method == "GET":
            return self._json(200, {"id": message_id, "categories": list(held.categories)})
        if not rest and method == "PATCH":
            unknown = set(body) - UPDATABLE
            if unknown:
                return self._error(400, "ErrorInvalidPropertyUpdateSentMessage", f"{unknown}")
            if "categories" in body:
                held.categories = list(body["categories"])
            if "isRead" in body:
                held.is_read = bool(body["isRead"])
            answer = {**fixture("message_update.response.200.json"), "id": message_id,
                      "categories": held.categories, "isRead": held.is_read}  # fmt: skip
            return self._json(200, answer)
        if rest == ["move"] and method == "POST":
            if set(body or {}) != {"destinationId"}:
                return self._error(400, "ErrorInvalidRequest", "destinationId is required")
            destination = self.well_known.get(body["destinationId"], body["destinationId"])
            if destination not in self.folders:
                return self._error(404, "ErrorItemNotFound", "destination folder not found")
            held.folder = destination
            new_id = message_id
            if not immutable:
                new_id = f"AAMkADhAAA{next(self._ids):04d}="
                self.messages[new_id] = self.messages.pop(message_id)
            answer = copy.deepcopy(fixture("message_move.response.201.json"))
            answer.update(id=new_id, parentFolderId=destination, categories=held.categories,
                          internetMessageId=held.internet_message_id)  # fmt: skip
            return self._json(201, answer)
        return self._error(405, "BadRequest", "Method not allowed")
