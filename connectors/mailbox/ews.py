"""EWS reader (Exchange Server on premises) through exchangelib.

```
GetFolder    the distinguished folder (inbox, msgfolderroot, ...) a path starts at
FindFolder   a named sub-folder (shallow, by display name); CreateFolder when missing
FindItem     the folder's messages, oldest first: ItemId, categories, read flag, size
GetItem      the MIME content of one message
UpdateItem   categories (the states of `connectors.mailbox.base`) and IsRead
MoveItem     to the processed or refused folder
```
The states are Outlook categories, as with Graph, so both Exchange readers leave the same marks a
person can see. EWS item ids change when an item moves, but a message is only referred to while
it is in the folder being read. EWS cannot hand over part of a MIME body: a message bigger than
the limit is downloaded whole (Exchange's own size limit bounds it) and cut. Exchange's
`ErrorServerBusy` carries a back-off and is retried by the caller; unknown items are settled.
Exchange Online is shutting EWS down (2026-2027): use the Graph reader there.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import requests

from connectors.email import clean_header_text
from connectors.errors import (
    AuthFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)
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

CLAIMED = "escalation-sync: claimed"
DONE: dict[Outcome, str] = {
    "processed": "escalation-sync: processed",
    "refused": "escalation-sync: refused",
}
# Path starts exchangelib knows as distinguished folders (EWS DistinguishedFolderId values).
_DISTINGUISHED = {
    "inbox": "inbox",
    "msgfolderroot": "msg_folder_root",
    "archive": "archive_inbox",
    "junkemail": "junk",
    "deleteditems": "trash",
}
_PAGE = 100


def _ews_error(exc: Exception) -> Exception:
    from exchangelib import errors as ews

    name = type(exc).__name__
    text = clean_header_text(str(exc), max_length=300)
    if isinstance(exc, ews.ErrorServerBusy):
        return RateLimited(
            f"Exchange is busy: {name}", system=SYSTEM, retry_after=getattr(exc, "back_off", None)
        )
    if isinstance(exc, ews.UnauthorizedError | ews.ErrorAccessDenied):
        return AuthFailed(f"Exchange refused the credentials: {name}", system=SYSTEM)
    if isinstance(exc, ews.ErrorItemNotFound | ews.ErrorFolderNotFound):
        return NotFound(f"Exchange has no such item or folder: {name}", system=SYSTEM)
    if isinstance(
        exc,
        ews.TransportError
        | ews.RateLimitError
        | ews.ErrorTimeoutExpired
        | ews.ErrorInternalServerTransientError
        | requests.RequestException
        | OSError,
    ):
        return TransportFailed(f"Exchange request failed: {name}: {text}", system=SYSTEM)
    if isinstance(exc, ews.ResponseMessageError):
        return InvalidRequest(f"Exchange refused the request: {name}: {text}", system=SYSTEM)
    return ServerUnavailable(f"Exchange error: {name}: {text}", system=SYSTEM)


class EwsMailbox:
    """The `Mailbox` of one folder of one Exchange Server mailbox."""

    def __init__(self, settings: InboundSettings, *, account: Any = None) -> None:
        if settings.ews is None:
            raise ValueError("[email.inbound.ews] is not configured")
        self._settings = settings
        self._ews = settings.ews
        self._account = account
        self._folders: dict[str, Any] = {}
        self._items: dict[str, Any] = {}

    def _get_account(self) -> Any:
        if self._account is not None:
            return self._account
        from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials
        from exchangelib.transport import GSSAPI
        from exchangelib.version import Build, Version

        s = self._ews
        version = None
        if s.exchange_version:
            major, _, minor = s.exchange_version.partition(".")
            version = Version(build=Build(int(major), int(minor or 0)))
        config = Configuration(
            service_endpoint=s.service_endpoint,
            credentials=Credentials(s.username, s.password_value()),
            auth_type={"ntlm": NTLM, "basic": BASIC, "negotiate": GSSAPI}[s.auth_type],
            version=version,
        )
        self._account = Account(
            primary_smtp_address=s.mailbox, config=config, autodiscover=False, access_type=DELEGATE
        )
        return self._account

    def _call(self, what: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return what(*args, **kwargs)
        except (RateLimited, AuthFailed, NotFound, TransportFailed, InvalidRequest):
            raise
        except Exception as exc:
            raise _ews_error(exc) from None

    # ---- folders ----

    def _folder(self, path: str, *, create: bool) -> Any:
        if path in self._folders:
            return self._folders[path]
        folder = self._call(self._resolve, path, create)
        self._folders[path] = folder
        return folder

    def _resolve(self, path: str, create: bool) -> Any:
        from exchangelib import Q
        from exchangelib.folders import Folder, FolderCollection

        account = self._get_account()
        parts = [p for p in path.split("/") if p]
        start = _DISTINGUISHED.get(parts[0].lower()) if parts else None
        folder = getattr(account, start) if start else account.msg_folder_root
        rest = parts[1:] if start else parts
        for name in rest:
            found = list(
                FolderCollection(account=account, folders=[folder]).find_folders(
                    q=Q(name=name), depth="Shallow"
                )
            )
            match = next((f for f in found if isinstance(f, Folder)), None)
            if match is None:
                if not create:
                    raise NotFound(f"mail folder {name!r} does not exist", system=SYSTEM)
                match = Folder(parent=folder, name=name)
                match.save()
            folder = match
        return folder

    # ---- Mailbox ----

    def fetch(self, limit: int = 50) -> list[FetchedMail]:
        """See `Mailbox.fetch`: settled messages are moved on, the others given out."""
        source = self._folder(self._settings.folder, create=False)
        listing = self._call(
            lambda: list(
                source.all()
                .order_by("datetime_received")
                .only("id", "changekey", "categories", "is_read", "message_id", "size")[
                    : _PAGE * 10
                ]
            )
        )
        found: list[FetchedMail] = []
        for item in listing:
            self._items[item.id] = item
            categories = list(item.categories or ())
            done = next((o for o, c in DONE.items() if c in categories), None)
            if done is not None:
                self._move(item, done)
                continue
            if len(found) >= limit:
                continue
            raw = self._mime(item)
            cap = self._settings.max_message_bytes
            found.append(
                FetchedMail(
                    ref=MailRef(item.id, self._settings.folder),
                    raw=raw[:cap],
                    state=MailState.MAYBE_PROCESSED if CLAIMED in categories else MailState.NEW,
                    message_id=header_message_id(raw) or item.message_id,
                    size=len(raw),
                    truncated=len(raw) > cap,
                )
            )
        return found

    def _mime(self, item: Any) -> bytes:
        account = self._get_account()
        (full,) = self._call(lambda: list(account.fetch(ids=[item], only_fields=["mime_content"])))
        if isinstance(full, Exception):
            raise _ews_error(full)
        return bytes(full.mime_content or b"")

    def _item(self, ref: MailRef) -> Any:
        item = self._items.get(ref.id)
        if item is not None:
            return item
        from exchangelib.items import Message

        account = self._get_account()
        (found,) = self._call(
            lambda: list(
                account.fetch(ids=[Message(id=ref.id)], only_fields=["categories", "is_read"])
            )
        )
        if isinstance(found, Exception):
            raise _ews_error(found)
        self._items[ref.id] = found
        return found

    def claim(self, ref: MailRef) -> None:
        """Add the "claimed" category."""
        item = self._item(ref)
        categories = list(item.categories or ())
        if CLAIMED not in categories:
            item.categories = [*categories, CLAIMED]
            self._call(item.save, update_fields=["categories"])

    def settle(self, ref: MailRef, outcome: Outcome) -> None:
        """Add the outcome's category, mark read, move; an item already gone is settled."""
        try:
            item = self._item(ref)
            item.categories = [c for c in item.categories or () if c != CLAIMED]
            item.categories.append(DONE[outcome])
            item.is_read = True
            self._call(item.save, update_fields=["categories", "is_read"])
        except NotFound:
            self._items.pop(ref.id, None)
            return
        self._move(item, outcome)

    def _move(self, item: Any, outcome: Outcome) -> None:
        s = self._settings
        destination = self._folder(
            s.processed_folder if outcome == "processed" else s.refused_folder, create=True
        )
        with suppress(NotFound):  # moved already
            self._call(item.move, destination)
        self._items.pop(item.id, None)

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Polls: streaming notifications need a connection per mailbox held open."""
        return wait_quietly(timeout, stop)

    def close(self) -> None:
        """Release exchangelib's connection pool."""
        if self._account is not None:
            protocol = getattr(self._account, "protocol", None)
            close = getattr(protocol, "close", None)
            if callable(close):
                close()


__all__ = ["CLAIMED", "DONE", "EwsMailbox"]
