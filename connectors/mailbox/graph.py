"""Microsoft Graph reader (Exchange Online): msal client credentials + requests.

```
GET   /users/{mailbox}/mailFolders/{well-known name | id}          the folder to read
GET   /users/{mailbox}/mailFolders/{id}/childFolders?$filter=...   a named sub-folder
POST  /users/{mailbox}/mailFolders/{id}/childFolders               created when missing
GET   /users/{mailbox}/mailFolders/{id}/messages?$select=...&$top  oldest first, @odata.nextLink
GET   /users/{mailbox}/messages/{id}/$value                        the MIME, cut at the size limit
PATCH /users/{mailbox}/messages/{id}       {"categories": [...], "isRead": true}
POST  /users/{mailbox}/messages/{id}/move  {"destinationId": folder id}
```
Every request says `Prefer: IdType="ImmutableId"`, so a message keeps its id when it moves and a
reference taken at fetch time still names it when it is settled. The states of
`connectors.mailbox.base` are Outlook categories ("escalation-sync: claimed", "... processed",
"... refused"), which people see in Outlook and which survive a restart. The application needs the
Graph application permission Mail.ReadWrite, restricted to the replies mailbox by an application
access policy. Throttling (429) and unavailability (5xx) are retried honouring Retry-After.
Graph cannot push without a public webhook endpoint, so `wait` polls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Any
from urllib.parse import quote

import requests

from connectors.email import (
    GRAPH_ROOT,
    GraphSettings,
    MsalTokenProvider,
    TokenProvider,
    _graph_error,
)
from connectors.errors import NotFound, TransportFailed
from connectors.mailbox.base import (
    SYSTEM,
    FetchedMail,
    MailRef,
    MailState,
    Outcome,
    header_message_id,
    wait_quietly,
)
from connectors.mailbox.settings import InboundSettings
from connectors.retry import RetryPolicy, call_with_retry

CLAIMED = "escalation-sync: claimed"
DONE: dict[Outcome, str] = {
    "processed": "escalation-sync: processed",
    "refused": "escalation-sync: refused",
}
# mailFolder resource: the well-known folder names Graph accepts in place of an id.
WELL_KNOWN = frozenset(
    {
        "archive",
        "clutter",
        "conflicts",
        "conversationhistory",
        "deleteditems",
        "drafts",
        "inbox",
        "junkemail",
        "localfailures",
        "msgfolderroot",
        "outbox",
        "recoverableitemsdeletions",
        "scheduled",
        "searchfolders",
        "sentitems",
        "serverfailures",
        "syncissues",
    }
)
_PAGE = 50
_MAX_PAGES = 40


class GraphMailbox:
    """The `Mailbox` of one folder of one Exchange Online mailbox."""

    def __init__(
        self,
        settings: InboundSettings,
        *,
        session: requests.Session | None = None,
        token: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        graph = settings.graph
        if graph is None:
            raise ValueError("[email.inbound.graph] is not configured")
        self._settings = settings
        self._graph = graph
        self._own_session = session is None
        self._session = session or requests.Session()
        self._token = token or MsalTokenProvider(
            GraphSettings(
                tenant_id=graph.tenant_id,
                client_id=graph.client_id,
                client_secret=graph.client_secret,
                client_secret_file=graph.client_secret_file,
                authority_host=graph.authority_host,
                timeout_seconds=graph.timeout_seconds,
            ),
            self._session,
        )
        self._retry = retry or RetryPolicy(
            attempts=graph.retry_attempts, max_delay=graph.retry_max_delay_seconds
        )
        self._user = f"{GRAPH_ROOT}/users/{quote(graph.mailbox, safe='@')}"
        self._folder_ids: dict[str, str] = {}
        self._categories: dict[str, list[str]] = {}

    # ---- HTTP ----

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        def attempt() -> requests.Response:
            headers = {
                "Authorization": f"Bearer {self._token()}",
                "Accept": "application/json",
                "Prefer": 'IdType="ImmutableId"',
            }
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=self._graph.timeout_seconds,
                    stream=stream,
                )
            except requests.RequestException as exc:
                raise TransportFailed(
                    f"Graph request failed: {type(exc).__name__}", system=SYSTEM
                ) from None
            if response.status_code >= 400:
                raise _graph_error(response)
            return response

        return call_with_retry(self._retry, attempt)

    # ---- folders ----

    def _folder_id(self, path: str, *, create: bool) -> str:
        cached = self._folder_ids.get(path)
        if cached is not None:
            return cached
        parts = [p for p in path.split("/") if p]
        if parts and parts[0].lower() in WELL_KNOWN:
            start, rest = parts[0].lower(), parts[1:]
        else:
            start, rest = "msgfolderroot", parts
        folder_id = str(self._request("GET", f"{self._user}/mailFolders/{start}").json()["id"])
        for name in rest:
            folder_id = self._child(folder_id, name, create=create)
        self._folder_ids[path] = folder_id
        return folder_id

    def _child(self, parent: str, name: str, *, create: bool) -> str:
        quoted = name.replace("'", "''")
        listing = self._request(
            "GET",
            f"{self._user}/mailFolders/{parent}/childFolders",
            params={"$filter": f"displayName eq '{quoted}'", "$select": "id,displayName"},
        ).json()
        for folder in listing.get("value", []):
            if str(folder.get("displayName", "")).lower() == name.lower():
                return str(folder["id"])
        if not create:
            raise NotFound(f"mail folder {name!r} does not exist", system=SYSTEM)
        made = self._request(
            "POST", f"{self._user}/mailFolders/{parent}/childFolders", body={"displayName": name}
        ).json()
        return str(made["id"])

    def _destination(self, outcome: Outcome) -> str:
        s = self._settings
        return self._folder_id(
            s.processed_folder if outcome == "processed" else s.refused_folder, create=True
        )

    # ---- Mailbox ----

    def _listing(self) -> Iterator[dict[str, Any]]:
        folder = self._folder_id(self._settings.folder, create=False)
        url: str | None = f"{self._user}/mailFolders/{folder}/messages"
        params: dict[str, str] | None = {
            "$select": "id,internetMessageId,categories,isRead,receivedDateTime",
            "$orderby": "receivedDateTime asc",
            "$top": str(_PAGE),
        }
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            page = self._request("GET", url, params=params).json()
            yield from page.get("value", [])
            url, params = page.get("@odata.nextLink"), None

    def fetch(self, limit: int = 50) -> list[FetchedMail]:
        """See `Mailbox.fetch`: settled messages are moved on, the others given out."""
        found: list[FetchedMail] = []
        for item in self._listing():
            message_id = str(item["id"])
            categories = [str(c) for c in item.get("categories") or ()]
            self._categories[message_id] = categories
            done = next((o for o, c in DONE.items() if c in categories), None)
            if done is not None:
                self._move(message_id, done)
                continue
            if len(found) >= limit:
                continue
            raw, truncated = self._mime(message_id)
            found.append(
                FetchedMail(
                    ref=MailRef(message_id, self._settings.folder),
                    raw=raw,
                    state=MailState.MAYBE_PROCESSED if CLAIMED in categories else MailState.NEW,
                    message_id=header_message_id(raw) or item.get("internetMessageId"),
                    size=len(raw),
                    truncated=truncated,
                )
            )
        return found

    def _mime(self, message_id: str) -> tuple[bytes, bool]:
        cap = self._settings.max_message_bytes
        response = self._request("GET", f"{self._user}/messages/{message_id}/$value", stream=True)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    break
        finally:
            response.close()
        raw = b"".join(chunks)
        return raw[:cap], len(raw) > cap

    def claim(self, ref: MailRef) -> None:
        """Add the "claimed" category."""
        categories = self._current(ref.id)
        if CLAIMED not in categories:
            self._patch(ref.id, {"categories": [*categories, CLAIMED]})

    def settle(self, ref: MailRef, outcome: Outcome) -> None:
        """Add the outcome's category, mark read, move; a message already gone is settled."""
        categories = [c for c in self._current(ref.id) if c != CLAIMED]
        try:
            self._patch(ref.id, {"categories": [*categories, DONE[outcome]], "isRead": True})
        except NotFound:
            return
        self._move(ref.id, outcome)

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Graph pushes only to a public webhook: sleep the poll interval."""
        return wait_quietly(timeout, stop)

    def close(self) -> None:
        """Close the HTTP session when this reader made it."""
        if self._own_session:
            self._session.close()

    # ---- helpers ----

    def _current(self, message_id: str) -> list[str]:
        if message_id not in self._categories:
            item = self._request(
                "GET", f"{self._user}/messages/{message_id}", params={"$select": "categories"}
            ).json()
            self._categories[message_id] = [str(c) for c in item.get("categories") or ()]
        return self._categories[message_id]

    def _patch(self, message_id: str, body: Mapping[str, Any]) -> None:
        self._request("PATCH", f"{self._user}/messages/{message_id}", body=body)
        if "categories" in body:
            self._categories[message_id] = list(body["categories"])

    def _move(self, message_id: str, outcome: Outcome) -> None:
        destination = self._destination(outcome)
        # NotFound: moved already (by us before a crash, or by a person).
        with suppress(NotFound):
            self._request(
                "POST",
                f"{self._user}/messages/{message_id}/move",
                body={"destinationId": destination},
            )
        self._categories.pop(message_id, None)


__all__ = ["CLAIMED", "DONE", "WELL_KNOWN", "GraphMailbox"]
