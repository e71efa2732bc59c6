"""IMAP reader on `imapclient`: TLS or STARTTLS, IDLE where offered, UIDs checked by UIDVALIDITY.

How the states of `connectors.mailbox.base` are kept on an IMAP server:
- claimed: the keyword `$EscalationSyncClaimed`; processed / refused: `$EscalationSyncProcessed` /
  `$EscalationSyncRefused` plus `\\Seen`, then the move. A server that does not accept keywords
  (no `\\*` in PERMANENTFLAGS) gets `\\Seen` as the claim: a mail a person opened in a mail client
  then comes back as MAYBE_PROCESSED, which only costs the poster one look for the comment.
- move: `UID MOVE` (RFC 6851) where offered, else `UID COPY` + `\\Deleted` + `UID EXPUNGE`
  (RFC 4315; plain EXPUNGE without UIDPLUS). When a move interrupted earlier is finished and
  the server has no MOVE, the destination is first searched for the Message-ID, so a COPY that
  went through is not made twice.
- UIDVALIDITY: every `MailRef` carries it; settling a mail whose folder was recreated since the
  fetch raises `MailboxChanged` instead of flagging whatever now has that UID. When a `state`
  mapping is given (the caller persists it), a UIDVALIDITY different from the last one seen makes
  every mail of that pass MAYBE_PROCESSED, since the server's keywords may not have survived.

Connection errors drop the connection (the next call reconnects) and raise `TransportFailed`;
refused credentials raise `AuthFailed`; the server's NO/BAD answers raise `InvalidRequest`.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager, suppress

import structlog
from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from connectors.errors import AuthFailed, InvalidRequest, TransportFailed
from connectors.mailbox.base import (
    SYSTEM,
    FetchedMail,
    MailboxChanged,
    MailRef,
    MailState,
    Outcome,
    header_message_id,
)
from connectors.mailbox.settings import ImapInboxSettings, InboundSettings

log = structlog.get_logger("escalation_sync.mailbox.imap")

CLAIMED = b"$EscalationSyncClaimed"
DONE: dict[Outcome, bytes] = {
    "processed": b"$EscalationSyncProcessed",
    "refused": b"$EscalationSyncRefused",
}
SEEN = b"\\Seen"
DELETED = b"\\Deleted"

ClientFactory = Callable[[ImapInboxSettings], IMAPClient]


def connect(settings: ImapInboxSettings) -> IMAPClient:
    """Open and authenticate a connection; certificates are always verified."""
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    client = IMAPClient(
        settings.host,
        port=settings.effective_port,
        ssl=settings.security == "tls",
        ssl_context=context,
        timeout=settings.timeout_seconds,
    )
    try:
        if settings.security == "starttls":
            if not client.has_capability("STARTTLS"):
                raise TransportFailed(
                    "IMAP server does not offer STARTTLS; refusing to log in in clear text",
                    system=SYSTEM,
                )
            client.starttls(context)
        client.login(settings.username, settings.password_value())
    except BaseException:
        with _quiet():
            client.shutdown()
        raise
    return client


def _quiet() -> suppress:
    """Closing a broken connection: nothing more to learn from it."""
    return suppress(Exception)


class ImapMailbox:
    """The `Mailbox` of one IMAP folder; one connection, reopened after a failure."""

    def __init__(
        self,
        settings: InboundSettings,
        *,
        state: MutableMapping[str, str] | None = None,
        client_factory: ClientFactory = connect,
    ) -> None:
        if settings.imap is None:
            raise ValueError("[email.inbound.imap] is not configured")
        self._settings = settings
        self._imap = settings.imap
        self._state = state
        self._factory = client_factory
        self._client: IMAPClient | None = None
        self._uidvalidity = 0
        self._keywords = True
        self._delimiter = "/"
        self._folders: dict[str, str] = {}

    # ---- connection ----

    @property
    def _state_key(self) -> str:
        return f"imap:{self._imap.host}:{self._imap.username}:{self._settings.folder}:uidvalidity"

    def _open(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        client = self._factory(self._imap)
        try:
            self._delimiter = self._server_delimiter(client)
            for name in (self._settings.processed_folder, self._settings.refused_folder):
                server_name = self._server_name(name)
                if not client.folder_exists(server_name):
                    client.create_folder(server_name)
                self._folders[name] = server_name
            info = client.select_folder(self._server_name(self._settings.folder))
        except BaseException:
            with _quiet():
                client.logout()
            raise
        self._uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        self._keywords = b"\\*" in tuple(info.get(b"PERMANENTFLAGS", ()))
        self._client = client
        return client

    @staticmethod
    def _server_delimiter(client: IMAPClient) -> str:
        listing = client.list_folders("", "")
        for _flags, delimiter, _name in listing:
            if delimiter:
                return delimiter.decode() if isinstance(delimiter, bytes) else str(delimiter)
        return "/"

    def _server_name(self, name: str) -> str:
        return name.replace("/", self._delimiter) if self._delimiter != "/" else name

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with _quiet():
                client.shutdown()

    @contextmanager
    def _session(self, what: str) -> Iterator[IMAPClient]:
        try:
            yield self._open()
        except imap_errors.LoginError:
            self._drop()
            raise AuthFailed("IMAP server refused the login", system=SYSTEM) from None
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise TransportFailed(
                f"IMAP server certificate not trusted: {exc.verify_message}", system=SYSTEM
            ) from None
        except (TimeoutError, imap_errors.IMAPClientAbortError, OSError, EOFError) as exc:
            self._drop()
            raise TransportFailed(
                f"IMAP connection to {self._imap.host} failed during {what}: {type(exc).__name__}",
                system=SYSTEM,
            ) from None
        except imap_errors.IMAPClientError as exc:
            raise InvalidRequest(
                f"IMAP server refused {what}: {str(exc)[:300]}", system=SYSTEM
            ) from None

    # ---- Mailbox ----

    def fetch(self, limit: int = 50) -> list[FetchedMail]:
        """See `Mailbox.fetch`: UIDs ascending, settled mails moved on, the rest given out."""
        with self._session("fetch") as client:
            # The status of the folder may have changed since the last SELECT (NOOP reports it).
            client.noop()
            uids = sorted(client.search(["UNDELETED"]))
            stale = self._uidvalidity_changed()
            found: list[FetchedMail] = []
            for chunk_start in range(0, len(uids), 100):
                chunk = uids[chunk_start : chunk_start + 100]
                meta = client.fetch(chunk, ["FLAGS", "RFC822.SIZE"])
                for uid in chunk:
                    if uid not in meta:
                        continue  # expunged meanwhile
                    flags = set(meta[uid].get(b"FLAGS", ()))
                    done = next((o for o, f in DONE.items() if f in flags), None)
                    if done is not None:
                        self._finish_move(client, uid, done)
                        continue
                    if len(found) >= limit:
                        continue
                    size = int(meta[uid].get(b"RFC822.SIZE", 0))
                    raw, truncated = self._body(client, uid, size)
                    if raw is None:
                        continue
                    claimed = (CLAIMED if self._keywords else SEEN) in flags
                    state = MailState.MAYBE_PROCESSED if claimed or stale else MailState.NEW
                    found.append(
                        FetchedMail(
                            ref=self._ref(uid),
                            raw=raw,
                            state=state,
                            message_id=header_message_id(raw),
                            size=size,
                            truncated=truncated,
                        )
                    )
            return found

    def claim(self, ref: MailRef) -> None:
        """Add the claim keyword (or `\\Seen` on servers without keywords)."""
        with self._session("claim") as client:
            uid = self._uid(ref)
            client.add_flags([uid], [CLAIMED if self._keywords else SEEN], silent=True)

    def settle(self, ref: MailRef, outcome: Outcome) -> None:
        """Mark processed / refused and `\\Seen`, then move to the configured folder."""
        with self._session("settle") as client:
            uid = self._uid(ref)
            flags = [SEEN, DONE[outcome]] if self._keywords else [SEEN]
            client.add_flags([uid], flags, silent=True)
            self._move(client, uid, outcome, check_destination=False)

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """IDLE (RFC 2177) when the server offers it, checked every second for `stop`."""
        with self._session("wait") as client:
            if not (self._imap.idle and client.has_capability("IDLE")):
                if stop is not None:
                    stop.wait(timeout)
                else:
                    time.sleep(timeout)
                return False
            deadline = time.monotonic() + timeout
            client.idle()
            arrived = False
            try:
                while not arrived and time.monotonic() < deadline:
                    if stop is not None and stop.is_set():
                        break
                    remaining = max(0.1, min(1.0, deadline - time.monotonic()))
                    for response in client.idle_check(timeout=remaining):
                        if len(response) > 1 and response[1] in (b"EXISTS", b"RECENT"):
                            arrived = True
            finally:
                client.idle_done()
            return arrived

    def close(self) -> None:
        """Log out."""
        client, self._client = self._client, None
        if client is not None:
            with _quiet():
                client.logout()

    def __enter__(self) -> ImapMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ----

    def _uidvalidity_changed(self) -> bool:
        if self._state is None:
            return False
        key = self._state_key
        before = self._state.get(key)
        self._state[key] = str(self._uidvalidity)
        if before is not None and before != str(self._uidvalidity):
            log.warning(
                "IMAP folder was recreated (UIDVALIDITY changed); its mails are re-checked",
                folder=self._settings.folder,
                before=before,
                now=self._uidvalidity,
            )
            return True
        return False

    def _ref(self, uid: int) -> MailRef:
        return MailRef(f"{self._settings.folder};{self._uidvalidity};{uid}", self._settings.folder)

    def _uid(self, ref: MailRef) -> int:
        folder, validity, uid = ref.id.rsplit(";", 2)
        if folder != self._settings.folder or int(validity) != self._uidvalidity:
            raise MailboxChanged(
                f"IMAP folder {folder!r} changed (UIDVALIDITY {validity} -> "
                f"{self._uidvalidity}) since the mail was fetched",
                system=SYSTEM,
            )
        return int(uid)

    def _body(self, client: IMAPClient, uid: int, size: int) -> tuple[bytes | None, bool]:
        cap = self._settings.max_message_bytes
        if size > cap:
            item, key = f"BODY.PEEK[]<0.{cap}>", b"BODY[]<0>"
        else:
            item, key = "BODY.PEEK[]", b"BODY[]"
        data = client.fetch([uid], [item]).get(uid)
        if data is None:
            return None, False
        raw = data.get(key)
        if raw is None:
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[")), b"")
        return bytes(raw), size > cap

    def _destination(self, outcome: Outcome) -> str:
        name = (
            self._settings.processed_folder
            if outcome == "processed"
            else self._settings.refused_folder
        )
        return self._folders.get(name, self._server_name(name))

    def _finish_move(self, client: IMAPClient, uid: int, outcome: Outcome) -> None:
        log.info("finishing an interrupted move", uid=uid, outcome=outcome)
        self._move(client, uid, outcome, check_destination=True)

    def _move(
        self, client: IMAPClient, uid: int, outcome: Outcome, *, check_destination: bool
    ) -> None:
        destination = self._destination(outcome)
        if client.has_capability("MOVE"):
            client.move([uid], destination)
            return
        copied = False
        if check_destination:
            copied = self._in_folder(client, uid, destination)
        if not copied:
            client.copy([uid], destination)
        client.add_flags([uid], [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()

    def _in_folder(self, client: IMAPClient, uid: int, folder: str) -> bool:
        head = client.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).get(uid, {})
        raw = next((v for k, v in head.items() if k.startswith(b"BODY[")), b"")
        message_id = header_message_id(bytes(raw or b""))
        if not message_id:
            return False
        source = self._server_name(self._settings.folder)
        client.select_folder(folder, readonly=True)
        try:
            return bool(client.search(["HEADER", "Message-ID", message_id]))
        finally:
            client.select_folder(source)


__all__ = ["CLAIMED", "DONE", "ImapMailbox", "connect"]
