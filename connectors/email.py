"""Outgoing email: one sender interface, three transports, and the `[email]` settings.

```
EmailSender.send(OutgoingEmail) -> Message-ID
├── SmtpSender     smtplib; STARTTLS or implicit TLS, certificates verified, optional AUTH
├── EwsSender      exchangelib, on-premises Exchange Server (CreateItem with the MIME message)
└── GraphSender    msal client credentials + POST /v1.0/users/{mailbox}/sendMail (Exchange Online)
```
Every transport sends the same message: `build_mime` turns an `OutgoingEmail` into an RFC 5322
message with a text and an HTML part, a stable Message-ID and the thread headers. Text that came
from a ticket never reaches a header unchecked: `clean_header_text` removes line breaks and other
control characters, addresses go through `validate_address`, and the message is serialised with
the strict SMTP policy of the standard library, which refuses a header containing CR or LF.

Errors follow `connectors.errors`: transient SMTP replies (4xx), dropped connections, HTTP 429 and
5xx are `RetryableError`; refused addresses, 5xx SMTP replies and other 4xx HTTP answers are
`PermanentError` (an `InvalidAddress` names the address and why it is unusable). An SMTP
connection lost after the message was handed over is `DeliveryUncertain`: it may have gone out,
so the outbox checks before it sends again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.errors import (
    AuthFailed,
    InvalidRequest,
    NotFound,
    PermanentError,
    RateLimited,
    RetryableError,
    ServerUnavailable,
    TransportFailed,
)
from connectors.retry import RetryPolicy, call_with_retry, retry_after_seconds
from errors import InDoubt

SYSTEM = "email"
GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# A named MAPI property carrying our Message-ID on JSON-format Graph messages: Sent Items can be
# searched on it whatever Exchange does with internetMessageId.
GRAPH_ID_PROPERTY = "String {8f3c5f0e-2b7a-4d0e-9c61-5a4d2e7b9f13} Name EscalationSyncMessageId"

# Line breaks in every spelling a mail client or the email package might honour, plus the other
# RFC 5322's hard line limit: headers this module builds stay under it, so they are never
# folded (the standard folder breaks right after "Subject:", leaving the reader a leading space).
_POLICY = policy.SMTP.clone(max_line_length=998)

# C0/C1 controls: none of them belongs in a subject or a display name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")


# --------------------------------------------------------------------------------------------
# The message


class InvalidAddress(InvalidRequest):
    """An address that cannot be used: the message is dead-lettered with this reason."""


class DeliveryUncertain(RetryableError, InDoubt):
    """The connection failed after the message was handed over: it may or may not have gone out.

    Sending again could duplicate it; the outbox checks with the transport first (or asks an
    operator) exactly as after a crash.
    """


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A message ready to send; `message_id` is stable for the update it carries."""

    to: tuple[str, ...]
    subject: str
    text: str
    message_id: str
    html: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # Extra headers, e.g. ("X-Escalation-Sync-Ticket", "INC0010001"); names must start with X-.
    headers: tuple[tuple[str, str], ...] = ()
    # Copied, not addressed (e.g. leadership informed of a stakeholder notice).
    cc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the mail comes from."""

    from_address: str
    from_name: str = ""
    reply_to: str | None = None


@runtime_checkable
class EmailSender(Protocol):
    """Sends one message and returns its Message-ID."""

    def send(self, message: OutgoingEmail) -> str:
        """Send `message`; raise RetryableError or PermanentError when it did not go out."""
        ...


@runtime_checkable
class SentLookup(Protocol):
    """A transport that can tell whether a message with a given Message-ID already went out."""

    def was_sent(self, message_id: str) -> bool | None:
        """True or False when the transport can tell, None when it cannot."""
        ...


@dataclass(frozen=True)
class CheckedSender:
    """Pairs a sender with a lookup the transport itself lacks (e.g. a mail archive or a sink)."""

    sender: EmailSender
    lookup: Callable[[str], bool | None]

    def send(self, message: OutgoingEmail) -> str:
        """Send through the wrapped sender."""
        return self.sender.send(message)

    def was_sent(self, message_id: str) -> bool | None:
        """Ask the lookup."""
        return self.lookup(message_id)


def clean_header_text(value: str | None, *, max_length: int = 200) -> str:
    """Make ticket text safe for a header: no line breaks or controls, one-line, bounded length."""
    if not value:
        return ""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    if len(flat) > max_length:
        flat = flat[: max_length - 1].rstrip() + "…"
    return flat


def validate_address(address: str) -> str:
    """Return the address stripped of surrounding blanks, or raise InvalidAddress saying why."""
    shown = repr(clean_header_text(str(address), max_length=80))
    if not isinstance(address, str) or not address.strip():
        raise InvalidAddress(f"invalid recipient address {shown}: empty", system=SYSTEM)
    candidate = address.strip()
    if _CONTROL.search(candidate) or _SPACES.search(candidate):
        raise InvalidAddress(
            f"invalid recipient address {shown}: contains spaces or line breaks", system=SYSTEM
        )
    if len(candidate) > 254 or candidate.count("@") != 1:
        raise InvalidAddress(
            f"invalid recipient address {shown}: expected exactly one '@'", system=SYSTEM
        )
    local, domain = candidate.split("@")
    if not local or len(local) > 64 or not _LOCAL_ATOM.match(local):
        raise InvalidAddress(f"invalid recipient address {shown}: bad local part", system=SYSTEM)
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidAddress(f"invalid recipient address {shown}: bad local part", system=SYSTEM)
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidAddress(
            f"invalid recipient address {shown}: bad domain", system=SYSTEM
        ) from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidAddress(f"invalid recipient address {shown}: bad domain", system=SYSTEM)
    try:
        Address(addr_spec=candidate)
    except (ValueError, IndexError) as exc:
        raise InvalidAddress(f"invalid recipient address {shown}: {exc}", system=SYSTEM) from None
    return candidate


def _id_domain(domain: str) -> str:
    domain = domain.strip().lower()
    labels = domain.split(".")
    if not domain or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError(f"not a usable Message-ID domain: {domain!r}")
    return domain


def make_message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of the update identified by `idempotency_key`: the same key, the same id."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{_id_domain(domain)}>"


def thread_root_id(ticket_ref: str, domain: str) -> str:
    """The per-ticket id every message of the ticket names in In-Reply-To and References."""
    digest = hashlib.sha256(f"thread:{ticket_ref}".encode()).hexdigest()[:40]
    return f"<thread.{digest}@{_id_domain(domain)}>"


def ticket_subject(ticket_key: str, subject: str) -> str:
    """Prefix the subject with "[KEY] " (once) so every mail names its ticket."""
    key = clean_header_text(ticket_key, max_length=40).replace("[", "").replace("]", "")
    text = clean_header_text(subject, max_length=180)
    prefix = f"[{key}]"
    if not key or text.startswith(prefix):
        return text
    return f"{prefix} {text}".strip()


_MSG_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")


def build_mime(
    message: OutgoingEmail, identity: Identity, *, now: datetime | None = None
) -> EmailMessage:
    """The RFC 5322 message every transport sends: text and HTML parts, thread headers."""
    if not message.to:
        raise InvalidAddress("message has no recipient", system=SYSTEM)
    recipients = [validate_address(a) for a in message.to]
    for mid in (message.message_id, message.in_reply_to, *message.references):
        if mid is not None and not _MSG_ID.match(mid):
            raise InvalidRequest(f"malformed Message-ID {mid!r}", system=SYSTEM)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = Address(
        display_name=clean_header_text(identity.from_name, max_length=80),
        addr_spec=validate_address(identity.from_address),
    )
    msg["To"] = [Address(addr_spec=a) for a in recipients]
    if message.cc:
        msg["Cc"] = [Address(addr_spec=validate_address(a)) for a in message.cc]
    if identity.reply_to:
        msg["Reply-To"] = Address(addr_spec=validate_address(identity.reply_to))
    msg["Subject"] = clean_header_text(message.subject, max_length=250)
    msg["Date"] = format_datetime((now or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = message.message_id
    if message.in_reply_to:
        msg["In-Reply-To"] = message.in_reply_to
    if message.references:
        msg["References"] = " ".join(message.references)
    # RFC 3834: out-of-office robots must not answer, which would start mail loops.
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in message.headers:
        if not re.fullmatch(r"X-[A-Za-z0-9-]+", name):
            raise InvalidRequest(f"extra header {name!r} must be an X- header", system=SYSTEM)
        msg[name] = clean_header_text(value, max_length=200)
    msg.set_content(message.text, subtype="plain", charset="utf-8")
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html", charset="utf-8")
    return msg


# --------------------------------------------------------------------------------------------
# Settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(value: SecretStr | None, path: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return None


def _one_of(value: object, path: object, name: str) -> None:
    if value is not None and path is not None:
        raise ValueError(f"set either {name} or {name}_file, not both")


class SmtpSettings(_Section):
    """`[email.smtp]`: the default transport."""

    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # Extra CA bundle for a private CA; verification itself cannot be switched off.
    ca_file: Path | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    local_hostname: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SmtpSettings:
        _one_of(self.password, self.password_file, "password")
        if self.security == "none" and self.host not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("security = 'none' is only allowed for a relay on localhost")
        return self

    @property
    def effective_port(self) -> int:
        """The configured port, else 465 for implicit TLS, 587 for STARTTLS, 25 for none."""
        if self.port is not None:
            return self.port
        return {"tls": 465, "starttls": 587, "none": 25}[self.security]

    def password_value(self) -> str | None:
        """The password, read from the file when `password_file` is used."""
        return _read_secret(self.password, self.password_file)


class EwsSettings(_Section):
    """`[email.ews]`: on-premises Exchange Server through EWS."""

    service_endpoint: str
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    auth_type: Literal["ntlm", "basic", "negotiate"] = "ntlm"
    # The mailbox the mail is sent from; defaults to the `[email] from_address`.
    mailbox: str | None = None
    save_to_sent_items: bool = True
    # e.g. "15.1" (Exchange 2016); set it to skip the version probe on first use.
    exchange_version: str | None = None
    timeout_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> EwsSettings:
        _one_of(self.password, self.password_file, "password")
        if not self.service_endpoint.startswith("https://"):
            raise ValueError("service_endpoint must be an https:// URL (…/EWS/Exchange.asmx)")
        return self

    def password_value(self) -> str | None:
        """The password, read from the file when `password_file` is used."""
        return _read_secret(self.password, self.password_file)


class GraphSettings(_Section):
    """`[email.graph]`: Exchange Online through Graph (application permission Mail.Send)."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    # The mailbox the mail is sent from; defaults to the `[email] from_address`.
    mailbox: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    # Applies to "json" only: Graph always keeps a copy of a MIME message in Sent Items.
    save_to_sent_items: bool = True
    # "mime" posts the message every transport sends (base64): text and HTML parts, and
    # In-Reply-To / References, which the JSON message resource cannot carry. "json" sends the
    # message resource (HTML part only; clients thread by subject).
    format: Literal["json", "mime"] = "mime"
    timeout_seconds: float = Field(30.0, gt=0)
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_max_delay_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> GraphSettings:
        _one_of(self.client_secret, self.client_secret_file, "client_secret")
        if self.client_secret is None and self.client_secret_file is None:
            raise ValueError("client_secret or client_secret_file is required")
        return self

    def secret_value(self) -> str:
        """The client secret, read from the file when `client_secret_file` is used."""
        return _read_secret(self.client_secret, self.client_secret_file) or ""


class EmailSettings(_Section):
    """The `[email]` section of the configuration file (absent or empty: email is off)."""

    enabled: bool = True
    transport: Literal["smtp", "ews", "graph"] = "smtp"
    from_address: str = ""
    from_name: str = "Support"
    reply_to: str | None = None
    # Message-IDs are <hash@domain>; defaults to the domain of from_address.
    message_id_domain: str | None = None
    management_recipients: tuple[str, ...] = ()
    # An admin folder searched before the packaged templates (same file names).
    templates_dir: Path | None = None
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    ews: EwsSettings | None = None
    graph: GraphSettings | None = None
    # `[email.inbound]`: the mailbox customers' replies are read from (absent: none is read).
    inbound: InboundSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _absent_means_off(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data:
            return {"enabled": False}
        return data

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if not value:
            return value
        try:
            return validate_address(value)
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None

    @field_validator("management_recipients", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        out = []
        for item in value or ():
            try:
                out.append(validate_address(item))
            except InvalidAddress as exc:
                raise ValueError(str(exc)) from None
        return tuple(out)

    @model_validator(mode="after")
    def _transport_section(self) -> EmailSettings:
        if self.enabled and not self.from_address:
            raise ValueError("from_address is required when email is enabled")
        if self.transport == "ews" and self.ews is None:
            raise ValueError("transport = 'ews' needs an [email.ews] section")
        if self.transport == "graph" and self.graph is None:
            raise ValueError("transport = 'graph' needs an [email.graph] section")
        if self.message_id_domain is not None:
            _id_domain(self.message_id_domain)
        return self

    @property
    def identity(self) -> Identity:
        """The From / Reply-To identity for outgoing mail."""
        return Identity(self.from_address, self.from_name, self.reply_to)

    @property
    def id_domain(self) -> str:
        """The right-hand side of generated Message-IDs."""
        if self.message_id_domain:
            return self.message_id_domain
        if "@" not in self.from_address:
            raise ValueError("email is not configured: no from_address")
        return self.from_address.rsplit("@", 1)[1].lower()


# --------------------------------------------------------------------------------------------
# SMTP


def _smtp_error(code: int, text: bytes | str, what: str) -> Exception:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reply = clean_header_text(reply, max_length=300)
    message = f"SMTP {what} refused: {code} {reply}".strip()
    if 400 <= code < 500:
        return RetryableError(message, system=SYSTEM, status=code, messages=[reply])
    if what == "recipient":
        return InvalidAddress(message, system=SYSTEM, status=code, messages=[reply])
    if code in (530, 534, 535, 538):
        return AuthFailed(message, system=SYSTEM, status=code, messages=[reply])
    return InvalidRequest(message, system=SYSTEM, status=code, messages=[reply])


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that remembers whether the DATA phase began."""

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class _SMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL that remembers whether the DATA phase began."""

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class SmtpSender:
    """SMTP submission with smtplib: one connection per message, certificates always verified."""

    def __init__(self, settings: SmtpSettings, identity: Identity) -> None:
        self._settings = settings
        self._identity = identity

    def _context(self) -> ssl.SSLContext:
        cafile = str(self._settings.ca_file) if self._settings.ca_file else None
        # create_default_context turns on CERT_REQUIRED and hostname checking.
        return ssl.create_default_context(cafile=cafile)

    def _connect(self) -> _SMTP | _SMTP_SSL:
        s = self._settings
        if s.security == "tls":
            return _SMTP_SSL(
                s.host,
                s.effective_port,
                local_hostname=s.local_hostname,
                timeout=s.timeout_seconds,
                context=self._context(),
            )
        client = _SMTP(
            s.host, s.effective_port, local_hostname=s.local_hostname, timeout=s.timeout_seconds
        )
        try:
            if s.security == "starttls":
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise TransportFailed(
                        "SMTP server does not offer STARTTLS; refusing to send in clear text",
                        system=SYSTEM,
                    )
                client.starttls(context=self._context())
                client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    def check(self) -> str:
        """Connect, secure the connection as configured and log in, sending nothing; returns
        what was verified, raises the typed error `send` would."""
        s = self._settings
        try:
            client = self._connect()
            try:
                if s.username:
                    client.login(s.username, s.password_value() or "")
                client.noop()
            finally:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        except smtplib.SMTPAuthenticationError as exc:
            raise _smtp_error(exc.smtp_code, b"authentication failed", "login") from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error, "command") from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportFailed(
                f"SMTP server certificate not trusted: {exc.verify_message}", system=SYSTEM
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportFailed(
                f"SMTP connection to {s.host}:{s.effective_port} failed: {type(exc).__name__}",
                system=SYSTEM,
            ) from None
        how = {"tls": "TLS", "starttls": "STARTTLS", "none": "no encryption"}[s.security]
        who = f", logged in as {s.username}" if s.username else ", no login configured"
        return f"{s.host}:{s.effective_port} answered ({how}{who})"

    def send(self, message: OutgoingEmail) -> str:
        """Submit the message; see the module docstring for how failures are typed."""
        mime = build_mime(message, self._identity)
        client: _SMTP | _SMTP_SSL | None = None
        try:
            client = self._connect()
            try:
                username = self._settings.username
                if username:
                    client.login(username, self._settings.password_value() or "")
                # Refusals of some recipients (others accepted) are not raised: the message
                # went out, and sending it again would duplicate it for the accepted ones.
                client.send_message(
                    mime,
                    from_addr=self._identity.from_address,
                    to_addrs=list(dict.fromkeys([*message.to, *message.cc])),
                )
            finally:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"refused"))
            raise _smtp_error(code, text, "recipient") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error, "sender") from None
        except smtplib.SMTPDataError as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error, "message") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise _smtp_error(exc.smtp_code, b"authentication failed", "login") from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error, "command") from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportFailed(
                f"SMTP server certificate not trusted: {exc.verify_message}", system=SYSTEM
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            if client is not None and client.data_started:
                raise DeliveryUncertain(
                    f"SMTP connection lost after the message was handed over "
                    f"({type(exc).__name__}); it may have been delivered",
                    system=SYSTEM,
                ) from None
            raise TransportFailed(
                f"SMTP connection to {self._settings.host}:{self._settings.effective_port} "
                f"failed: {type(exc).__name__}",
                system=SYSTEM,
            ) from None
        return message.message_id


# --------------------------------------------------------------------------------------------
# Exchange Web Services (on-premises)


class EwsSender:
    """EWS CreateItem with the MIME message, so headers and both parts survive unchanged.

    exchangelib builds its own HTTP sessions (it needs NTLM/Negotiate adapters), so this sender
    does not take a requests session; its retry policy stays fail-fast so the outbox owns retries.
    """

    def __init__(self, settings: EwsSettings, identity: Identity) -> None:
        self._settings = settings
        self._identity = identity
        self._account: Any = None

    def _get_account(self) -> Any:
        if self._account is not None:
            return self._account
        from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials
        from exchangelib.transport import GSSAPI
        from exchangelib.version import Build, Version

        s = self._settings
        auth = {"ntlm": NTLM, "basic": BASIC, "negotiate": GSSAPI}[s.auth_type]
        version = None
        if s.exchange_version:
            major, _, minor = s.exchange_version.partition(".")
            version = Version(build=Build(int(major), int(minor or 0)))
        config = Configuration(
            service_endpoint=s.service_endpoint,
            credentials=Credentials(s.username, s.password_value() or ""),
            auth_type=auth,
            version=version,
        )
        self._account = Account(
            primary_smtp_address=s.mailbox or self._identity.from_address,
            config=config,
            autodiscover=False,
            access_type=DELEGATE,
        )
        return self._account

    def check(self) -> str:
        """Log in to the mailbox and open its Sent Items folder, sending nothing."""
        try:
            account = self._get_account()
            name = account.sent.name
        except Exception as exc:
            raise _ews_error(exc) from None
        return f"{self._settings.service_endpoint} opened {account.primary_smtp_address} ({name})"

    def send(self, message: OutgoingEmail) -> str:
        """Send through Exchange, keeping a copy in Sent Items when configured."""
        from exchangelib import Message

        mime = build_mime(message, self._identity).as_bytes()
        try:
            account = self._get_account()
            if self._settings.save_to_sent_items:
                Message(account=account, folder=account.sent, mime_content=mime).send_and_save()
            else:
                Message(account=account, mime_content=mime).send(save_copy=False)
        except Exception as exc:
            raise _ews_error(exc) from None
        return message.message_id

    def was_sent(self, message_id: str) -> bool | None:
        """Look for the Message-ID in Sent Items (None when copies are not saved)."""
        if not self._settings.save_to_sent_items:
            return None
        try:
            account = self._get_account()
            return bool(account.sent.filter(message_id=message_id).only("id").count())
        except Exception as exc:
            raise _ews_error(exc) from None


def _ews_error(exc: Exception) -> Exception:
    from exchangelib import errors as ews

    name = type(exc).__name__
    text = clean_header_text(str(exc), max_length=300)
    if isinstance(exc, ews.ErrorServerBusy):
        return RateLimited(
            f"Exchange is busy: {name}",
            system=SYSTEM,
            retry_after=getattr(exc, "back_off", None),
        )
    if isinstance(exc, ews.UnauthorizedError | ews.ErrorAccessDenied):
        return AuthFailed(f"Exchange refused the credentials: {name}", system=SYSTEM)
    if isinstance(exc, ews.ErrorInvalidRecipients | ews.ErrorInvalidSmtpAddress):
        return InvalidAddress(f"Exchange refused a recipient: {name}: {text}", system=SYSTEM)
    if isinstance(exc, ews.ErrorNonExistentMailbox | ews.ErrorMailboxStoreUnavailable):
        return NotFound(f"Exchange mailbox unavailable: {name}", system=SYSTEM)
    if isinstance(
        exc,
        ews.TransportError
        | ews.RateLimitError
        | ews.ErrorTimeoutExpired
        | ews.ErrorInternalServerTransientError
        | ews.ErrorServerBusy
        | requests.RequestException
        | OSError,
    ):
        return TransportFailed(f"Exchange request failed: {name}: {text}", system=SYSTEM)
    if isinstance(exc, ews.ResponseMessageError):
        return InvalidRequest(f"Exchange refused the message: {name}: {text}", system=SYSTEM)
    if isinstance(exc, ews.EWSError):
        return ServerUnavailable(f"Exchange error: {name}: {text}", system=SYSTEM)
    if isinstance(exc, InvalidRequest | RetryableError | PermanentError | AuthFailed):
        return exc
    return ServerUnavailable(f"Exchange error: {name}", system=SYSTEM)


# --------------------------------------------------------------------------------------------
# Microsoft Graph (Exchange Online)


TokenProvider = Callable[[], str]


class MsalTokenProvider:
    """Application token for Graph through msal's client-credentials flow, cached by msal."""

    def __init__(self, settings: GraphSettings, session: requests.Session) -> None:
        self._settings = settings
        self._session = session
        self._app: Any = None

    def __call__(self) -> str:
        import msal

        s = self._settings
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    s.client_id,
                    client_credential=s.secret_value(),
                    authority=f"{s.authority_host.rstrip('/')}/{s.tenant_id}",
                    http_client=self._session,
                    timeout=s.timeout_seconds,
                    # The authority host is configured explicitly; no discovery round trip.
                    instance_discovery=False,
                )
            result = self._app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except requests.RequestException as exc:
            raise TransportFailed(
                f"token request failed: {type(exc).__name__}", system=SYSTEM
            ) from None
        except ValueError as exc:
            # msal raises ValueError when the authority cannot be resolved.
            raise AuthFailed(f"token authority rejected: {exc}", system=SYSTEM) from None
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", "unknown_error"))
        description = clean_header_text(str(result.get("error_description", "")), max_length=300)
        if error in ("temporarily_unavailable", "server_error"):
            raise ServerUnavailable(f"token endpoint unavailable: {error}", system=SYSTEM)
        raise AuthFailed(f"token request refused: {error}: {description}", system=SYSTEM)


def graph_message(message: OutgoingEmail, identity: Identity) -> dict[str, Any]:
    """The Graph `message` resource for sendMail (JSON format)."""
    build_mime(message, identity)  # validates addresses, ids and headers the same way
    body: dict[str, str]
    if message.html is not None:
        body = {"contentType": "HTML", "content": message.html}
    else:
        body = {"contentType": "Text", "content": message.text}
    resource: dict[str, Any] = {
        "subject": clean_header_text(message.subject, max_length=250),
        "body": body,
        "toRecipients": [{"emailAddress": {"address": validate_address(a)}} for a in message.to],
        "from": {
            "emailAddress": {
                "address": identity.from_address,
                "name": clean_header_text(identity.from_name, max_length=80),
            }
        },
        "internetMessageId": message.message_id,
        "singleValueExtendedProperties": [{"id": GRAPH_ID_PROPERTY, "value": message.message_id}],
    }
    if message.cc:
        resource["ccRecipients"] = [
            {"emailAddress": {"address": validate_address(a)}} for a in message.cc
        ]
    if identity.reply_to:
        resource["replyTo"] = [{"emailAddress": {"address": identity.reply_to}}]
    headers = [{"name": n, "value": clean_header_text(v)} for n, v in message.headers]
    if headers:
        resource["internetMessageHeaders"] = headers
    return resource


class GraphSender:
    """POST /users/{mailbox}/sendMail; 202 means accepted, 429/503 are retried per Retry-After."""

    def __init__(
        self,
        settings: GraphSettings,
        identity: Identity,
        *,
        session: requests.Session | None = None,
        token: TokenProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._identity = identity
        self._session = session or requests.Session()
        self._token = token or MsalTokenProvider(settings, self._session)
        self._retry = retry or RetryPolicy(
            attempts=settings.retry_attempts, max_delay=settings.retry_max_delay_seconds
        )
        self._mailbox = settings.mailbox or identity.from_address

    def check(self) -> str:
        """Obtain an application token (client credentials), sending nothing."""
        self._token()
        return f"token issued for application {self._settings.client_id} ({self._mailbox})"

    @property
    def send_url(self) -> str:
        """The sendMail endpoint of the sending mailbox."""
        return f"{GRAPH_ROOT}/users/{quote(self._mailbox, safe='@')}/sendMail"

    def send(self, message: OutgoingEmail) -> str:
        """Send as MIME (the default) or as the JSON message resource, per `format`."""
        if self._settings.format == "mime":
            mime = build_mime(message, self._identity).as_bytes()
            data: bytes = base64.b64encode(mime)
            content_type = "text/plain"
        else:
            payload = {
                "message": graph_message(message, self._identity),
                "saveToSentItems": self._settings.save_to_sent_items,
            }
            data = json.dumps(payload).encode("utf-8")
            content_type = "application/json"

        def attempt() -> None:
            self._request("POST", self.send_url, data=data, content_type=content_type)

        call_with_retry(self._retry, attempt)
        return message.message_id

    def was_sent(self, message_id: str) -> bool | None:
        """Search Sent Items for the Message-ID (None when copies are not saved).

        JSON-format messages are found by the extended property set when sending; MIME-format
        ones by internetMessageId, which Exchange takes from the Message-ID header. Graph saves
        every MIME message it sends, whatever `save_to_sent_items` says.
        """
        if self._settings.format == "json" and not self._settings.save_to_sent_items:
            return None
        quoted = message_id.replace("'", "''")
        url = f"{GRAPH_ROOT}/users/{quote(self._mailbox, safe='@')}/mailFolders/sentitems/messages"
        if self._settings.format == "json":
            condition = (
                f"singleValueExtendedProperties/Any(ep: ep/id eq '{GRAPH_ID_PROPERTY}' "
                f"and ep/value eq '{quoted}')"
            )
        else:
            condition = f"internetMessageId eq '{quoted}'"
        params = {"$filter": condition, "$select": "id", "$top": "1"}

        def attempt() -> requests.Response:
            return self._request("GET", url, params=params)

        response = call_with_retry(self._retry, attempt)
        return bool(response.json().get("value"))

    def _request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = self._session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=self._settings.timeout_seconds,
            )
        except requests.RequestException as exc:
            raise TransportFailed(
                f"Graph request failed: {type(exc).__name__}", system=SYSTEM
            ) from None
        if response.status_code < 400:
            return response
        raise _graph_error(response)


def _graph_error(response: requests.Response) -> Exception:
    status = response.status_code
    code, text = "", ""
    try:
        error = response.json().get("error", {})
        code = str(error.get("code", ""))
        text = clean_header_text(str(error.get("message", "")), max_length=300)
    except ValueError:
        pass
    message = f"Graph answered {status} {code}: {text}".strip().rstrip(":")
    retry_after = retry_after_seconds(response.headers)
    if status == 429:
        return RateLimited(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerUnavailable(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthFailed(message, system=SYSTEM, status=status, messages=[text])
    if status == 404:
        return NotFound(message, system=SYSTEM, status=status, messages=[text])
    if "recipient" in code.lower() or "smtpaddress" in code.lower():
        return InvalidAddress(message, system=SYSTEM, status=status, messages=[text])
    return InvalidRequest(message, system=SYSTEM, status=status, messages=[text])


# --------------------------------------------------------------------------------------------


class _Disabled:
    """Stand-in when `[email] enabled = false`: refuses, so nothing is marked sent by mistake."""

    def send(self, message: OutgoingEmail) -> str:
        raise RetryableError("email is disabled in the configuration", system=SYSTEM)


def build_sender(settings: EmailSettings, session: requests.Session | None = None) -> EmailSender:
    """The transport `settings.transport` names; `session` is used by the Graph transport."""
    identity = settings.identity
    if not settings.enabled:
        return _Disabled()
    if settings.transport == "graph":
        assert settings.graph is not None
        return GraphSender(settings.graph, identity, session=session)
    if settings.transport == "ews":
        assert settings.ews is not None
        return EwsSender(settings.ews, identity)
    return SmtpSender(settings.smtp, identity)


# Imported last: the mailbox readers use this module's Graph token provider and header helpers,
# so `connectors.mailbox` can only be imported once everything above exists.
from connectors.mailbox.settings import InboundSettings  # noqa: E402

EmailSettings.model_rebuild()

__all__ = [
    "CheckedSender",
    "DeliveryUncertain",
    "EmailSender",
    "EmailSettings",
    "EwsSender",
    "EwsSettings",
    "GraphSender",
    "GraphSettings",
    "Identity",
    "InvalidAddress",
    "OutgoingEmail",
    "SentLookup",
    "SmtpSender",
    "SmtpSettings",
    "build_mime",
    "build_sender",
    "clean_header_text",
    "make_message_id",
    "thread_root_id",
    "ticket_subject",
    "validate_address",
]
