"""An SMTP sink that keeps every message it receives and lists them over HTTP.

```
MailSink(smtp_port=0, api_port=0, imap_port=None, reply_delay=0.0).start()
    SMTP on 127.0.0.1:<smtp_port>        accepts any message (aiosmtpd), 250 after DATA (the
                                         message is kept first, then `reply_delay` s pass: a
                                         slow relay, with a window where it has the message
                                         and the sender does not know yet)
    GET    /messages                     [{"id", "received_at", "mail_from", "rcpt_tos",
                                           "headers": [[name, value], ...], "subject",
                                           "message_id", "text", "html"}, ...]
           /messages?message_id=<id>     only messages with that Message-ID header
           /messages?to=<address>        only messages with that envelope recipient
    GET    /messages/{id}                one message
    DELETE /messages                     forget them all
    POST   /refusals {"address", "code", "text"}   refuse RCPT TO <address> with <code>
    DELETE /refusals                     accept every recipient again
    IMAP on 127.0.0.1:<imap_port>        (when imap_port is given) each envelope recipient is a
                                         mailbox: LOGIN <address> <imap_password>, its INBOX holds
                                         what was sent to it (simulators.mail.imap)
```
The sink speaks plain SMTP (no TLS, no AUTH) and plain IMAP: it is a test double, only ever
bound to loopback. So that a customer's reply can be simulated end to end, mail sent to the
support mailbox's address through the sink can be read back with the product's IMAP reader.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from simulators.common import ServerThread
from simulators.mail.imap import ImapServer, Mailboxes


@dataclass(frozen=True)
class StoredMessage:
    """One message as the sink received it."""

    id: int
    received_at: str
    mail_from: str
    rcpt_tos: list[str]
    headers: list[tuple[str, str]]
    subject: str | None
    message_id: str | None
    text: str | None
    html: str | None
    raw: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (headers as [name, value] pairs)."""
        data = asdict(self)
        data["headers"] = [list(h) for h in self.headers]
        return data


def _part(msg: EmailMessage, subtype: str) -> str | None:
    body = msg.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_type() != f"text/{subtype}":
        return None
    content = body.get_content()
    # SMTP carries CRLF; list the parts with the line ends a reader sees.
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


class _Handler:
    """aiosmtpd handler: stores messages, refuses configured recipients."""

    def __init__(self, store: _Store, reply_delay: float = 0.0) -> None:
        self._store = store
        self._reply_delay = reply_delay

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self._store.refusal(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self._store.add(str(envelope.mail_from or ""), list(envelope.rcpt_tos), raw)
        if self._reply_delay > 0:
            await asyncio.sleep(self._reply_delay)
        return "250 Message accepted for delivery"


class _Store:
    def __init__(self) -> None:
        self.mailboxes = Mailboxes()
        self._lock = threading.Lock()
        self._messages: list[StoredMessage] = []
        self._refusals: dict[str, str] = {}
        self._next_id = 1

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        headers = [(k, str(v)) for k, v in parsed.items()]
        with self._lock:
            stored = StoredMessage(
                id=self._next_id,
                received_at=datetime.now(UTC).isoformat(),
                mail_from=mail_from,
                rcpt_tos=rcpt_tos,
                headers=headers,
                subject=str(parsed["Subject"]) if parsed["Subject"] is not None else None,
                message_id=str(parsed["Message-ID"]).strip() if parsed["Message-ID"] else None,
                text=_part(parsed, "plain"),
                html=_part(parsed, "html"),
                raw=raw.decode("utf-8", "replace"),
            )
            self._next_id += 1
            self._messages.append(stored)
        self.mailboxes.deliver(rcpt_tos, raw)

    def list(self) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
        self.mailboxes.clear()

    def refuse(self, address: str, reply: str) -> None:
        with self._lock:
            self._refusals[address.lower()] = reply

    def clear_refusals(self) -> None:
        with self._lock:
            self._refusals.clear()

    def refusal(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.lower())


class Refusal(BaseModel):
    """Body of POST /refusals."""

    address: str
    code: int = Field(550, ge=400, le=599)
    text: str = "5.1.1 Recipient address rejected: User unknown"


def _api(store: _Store) -> FastAPI:
    api = FastAPI(title="Mail sink")

    @api.get("/messages")
    def list_messages(message_id: str | None = None, to: str | None = None) -> list[dict[str, Any]]:
        found = store.list()
        if message_id is not None:
            found = [m for m in found if m.message_id == message_id]
        if to is not None:
            found = [m for m in found if to.lower() in (r.lower() for r in m.rcpt_tos)]
        return [m.to_json() for m in found]

    @api.get("/messages/{message_id}")
    def get_message(message_id: int) -> dict[str, Any]:
        for m in store.list():
            if m.id == message_id:
                return m.to_json()
        raise HTTPException(status_code=404, detail="no such message")

    @api.delete("/messages")
    def clear_messages() -> dict[str, bool]:
        store.clear()
        return {"cleared": True}

    @api.post("/refusals")
    def add_refusal(body: Refusal) -> dict[str, str]:
        store.refuse(body.address, f"{body.code} {body.text}")
        return {"address": body.address}

    @api.delete("/refusals")
    def clear_refusals() -> dict[str, bool]:
        store.clear_refusals()
        return {"cleared": True}

    return api


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MailSink:
    """SMTP server plus HTTP listing, runnable in-process: `start()`, `stop()`, `messages()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        api_port: int = 0,
        *,
        imap_port: int | None = None,
        imap_password: str = "sink",
        reply_delay: float = 0.0,
    ) -> None:
        self.host = host
        self.reply_delay = reply_delay
        self._requested_smtp_port = smtp_port
        self._requested_api_port = api_port
        self._requested_imap_port = imap_port
        self.imap_password = imap_password
        self._imap: ImapServer | None = None
        self._store = _Store()
        self._controller: Controller | None = None
        self._api: ServerThread | None = None
        self._smtp_port: int | None = None

    @property
    def smtp_port(self) -> int:
        """The SMTP port (known once started)."""
        if self._smtp_port is None:
            raise RuntimeError("mail sink not started")
        return self._smtp_port

    @property
    def imap_port(self) -> int:
        """The IMAP port (known once started with an imap_port)."""
        if self._imap is None:
            raise RuntimeError("mail sink IMAP not started")
        return self._imap.port

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP listing, without a trailing slash."""
        if self._api is None:
            raise RuntimeError("mail sink not started")
        return self._api.url

    def start(self) -> MailSink:
        """Start the SMTP server and the HTTP API; returns once both accept connections."""
        if self._controller is not None:
            return self
        self._start_smtp()
        self._api = ServerThread(_api(self._store), host=self.host, port=self._requested_api_port)
        try:
            self._api.start()
            if self._requested_imap_port is not None:
                self._imap = ImapServer(
                    self._store.mailboxes, self.host, self._requested_imap_port, self.imap_password
                ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_smtp(self) -> None:
        # aiosmtpd wants a concrete port; when asked for "any", pick a free one and retry if
        # another process grabs it between the probe and the bind.
        attempts = 1 if self._requested_smtp_port else 5
        last: Exception | None = None
        for _ in range(attempts):
            port = self._requested_smtp_port or _free_port(self.host)
            controller = Controller(
                _Handler(self._store, self.reply_delay),
                hostname=self.host,
                port=port,
                ready_timeout=10.0,
                data_size_limit=25 * 1024 * 1024,
            )
            try:
                controller.start()
            except (OSError, RuntimeError, TimeoutError) as exc:
                last = exc
                time.sleep(0.05)
                continue
            self._controller = controller
            self._smtp_port = port
            return
        raise RuntimeError(f"mail sink could not bind an SMTP port: {last}")

    def stop(self) -> None:
        """Stop the servers."""
        if self._imap is not None:
            self._imap.stop()
            self._imap = None
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self._smtp_port = None

    def messages(self) -> list[StoredMessage]:
        """Everything received so far, oldest first."""
        return self._store.list()

    def clear(self) -> None:
        """Forget every message."""
        self._store.clear()

    def refuse(self, address: str, code: int = 550, text: str = "5.1.1 User unknown") -> None:
        """Answer RCPT TO <address> with `code text` from now on."""
        self._store.refuse(address, f"{code} {text}")

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
