"""`[email.inbound]`: which mailbox customers' replies are read from, and how they are read.

```toml
[email.inbound]
kind = "imap"                     # "imap" | "graph" (Exchange Online) | "ews" (Exchange Server)
folder = "INBOX"                  # read from here
processed_folder = "Processed"    # posted mails are moved here
refused_folder = "Refused"        # auto-replies, bounces, loops, refused strangers go here
poll_interval_seconds = 60        # between reads when the server cannot push (IMAP IDLE can)
max_message_bytes = 26214400      # a bigger mail is read up to this size
max_attachment_bytes = 10485760   # per attachment; bigger ones are listed, not attached
stranger_policy = "internal_note" # a reply from neither the customer nor a watcher: or "refuse"
watcher_fields = ["custom_fields.watch_list"]   # who else may answer publicly

[email.inbound.imap]
host = "imap.example.com"
security = "tls"                  # "tls" (993) | "starttls" (143) | "none" (localhost only)
username = "support-replies@example.com"
password_file = "/run/secrets/imap-password"   # or ESCALATION_SYNC_EMAIL__INBOUND__IMAP__PASSWORD
```
Folder names use "/" between levels ("INBOX/Processed"); the IMAP reader translates it to the
server's separator. Secrets come from the environment or a file, never from a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

MIB = 1024 * 1024
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret(value: SecretStr | None, path: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return None


def _exactly_one(value: object, path: object, name: str) -> None:
    if value is not None and path is not None:
        raise ValueError(f"set either {name} or {name}_file, not both")
    if value is None and path is None:
        raise ValueError(f"{name} or {name}_file is required")


class ImapInboxSettings(_Section):
    """`[email.inbound.imap]`."""

    host: str
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    # Extra CA bundle for a private CA; verification itself cannot be switched off.
    ca_file: Path | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    # Use IDLE when the server advertises it (new mail is read at once); polling otherwise.
    idle: bool = True

    @model_validator(mode="after")
    def _check(self) -> ImapInboxSettings:
        _exactly_one(self.password, self.password_file, "password")
        if self.security == "none" and self.host not in _LOCAL_HOSTS:
            raise ValueError("security = 'none' is only allowed for a server on localhost")
        return self

    @property
    def effective_port(self) -> int:
        """The configured port, else 993 for TLS and 143 otherwise."""
        return self.port or (993 if self.security == "tls" else 143)

    def password_value(self) -> str:
        """The password, read from the file when `password_file` is used."""
        return _secret(self.password, self.password_file) or ""


class GraphInboxSettings(_Section):
    """`[email.inbound.graph]`: application permission Mail.ReadWrite on the replies mailbox."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    mailbox: str
    authority_host: str = "https://login.microsoftonline.com"
    timeout_seconds: float = Field(30.0, gt=0)
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_max_delay_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> GraphInboxSettings:
        _exactly_one(self.client_secret, self.client_secret_file, "client_secret")
        return self

    def secret_value(self) -> str:
        """The client secret, read from the file when `client_secret_file` is used."""
        return _secret(self.client_secret, self.client_secret_file) or ""


class EwsInboxSettings(_Section):
    """`[email.inbound.ews]`: on-premises Exchange Server."""

    service_endpoint: str
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    auth_type: Literal["ntlm", "basic", "negotiate"] = "ntlm"
    mailbox: str
    exchange_version: str | None = None
    timeout_seconds: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> EwsInboxSettings:
        _exactly_one(self.password, self.password_file, "password")
        if not self.service_endpoint.startswith("https://"):
            raise ValueError("service_endpoint must be an https:// URL (…/EWS/Exchange.asmx)")
        return self

    def password_value(self) -> str:
        """The password, read from the file when `password_file` is used."""
        return _secret(self.password, self.password_file) or ""


class InboundSettings(_Section):
    """`[email.inbound]`: the mailbox replies arrive in, its folders, and the reading limits."""

    enabled: bool = True
    kind: Literal["imap", "graph", "ews"] = "imap"
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    refused_folder: str = "Refused"
    poll_interval_seconds: float = Field(60.0, ge=1, le=3600)
    batch_size: int = Field(50, ge=1, le=1000)
    max_message_bytes: int = Field(25 * MIB, ge=64 * 1024)
    max_attachment_bytes: int = Field(10 * MIB, ge=0)
    max_attachments_total_bytes: int = Field(25 * MIB, ge=0)
    max_attachments: int = Field(20, ge=0, le=500)
    max_text_chars: int = Field(20_000, ge=200, le=1_000_000)
    stranger_policy: Literal["internal_note", "refuse"] = "internal_note"
    # Ticket fields naming the people who may speak publicly besides the customer, as the
    # escalation policy names fields ("reporter", "custom_fields.watch_list"): a person's
    # e-mail, or addresses separated by commas, semicolons or spaces (a ServiceNow watch list).
    watcher_fields: tuple[str, ...] = ()
    # Regular expressions with a (?P<ticket>...) group; none given: the reader's defaults
    # (the bracketed key of our subjects, "[INC0010001]", and ServiceNow numbers).
    subject_patterns: tuple[str, ...] | None = None
    # Languages whose "On ... wrote:" / "From: ... Sent:" headers are recognised.
    languages: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs")
    # A conversation is a loop past this many relays or mails per sender and ticket and hour.
    loop_max_hops: int = Field(25, ge=5, le=200)
    loop_max_per_hour: int = Field(10, ge=1, le=1000)
    imap: ImapInboxSettings | None = None
    graph: GraphInboxSettings | None = None
    ews: EwsInboxSettings | None = None

    @field_validator("subject_patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        problems = []
        for index, pattern in enumerate(value or ()):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                problems.append(f"[{index}] {pattern!r}: {exc}")
                continue
            if "ticket" not in compiled.groupindex:
                problems.append(f"[{index}] {pattern!r}: needs a named group (?P<ticket>...)")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("watcher_fields")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[A-Za-z0-9_]+)*", v)]
        if bad:
            raise ValueError(
                "a watcher field is a ticket field path such as 'reporter' or "
                f"'custom_fields.watch_list', not {', '.join(repr(b) for b in bad)}"
            )
        return value

    @field_validator("folder", "processed_folder", "refused_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip() or any(ch in value for ch in "\r\n\x00*%"):
            raise ValueError("a folder name must be non-empty, one line, without * or %")
        return value.strip().strip("/")

    @model_validator(mode="after")
    def _kind_section(self) -> InboundSettings:
        if not self.enabled:
            return self
        if getattr(self, self.kind) is None:
            raise ValueError(f"kind = '{self.kind}' needs an [email.inbound.{self.kind}] section")
        if self.folder.lower() in (self.processed_folder.lower(), self.refused_folder.lower()):
            raise ValueError("processed_folder and refused_folder must differ from folder")
        return self


__all__ = [
    "EwsInboxSettings",
    "GraphInboxSettings",
    "ImapInboxSettings",
    "InboundSettings",
]
