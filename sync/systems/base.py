"""What every ticket system offers the engine, and the interface a system package implements.

A ticket system (Jira, ServiceNow, or one an external package adds) is one package under
`sync/systems/` (or anywhere, registered through the `escalation_sync.systems` entry point
group) that provides one `TicketSystem`:

- its name (configuration section, markers, webhook path, the store) and the title people read;
- its settings section, validated by its own model (`SystemSettings` and what it adds);
- its `Adapter`: read, write, comments, attachments, links, changed-since, and the bulk
  operations a backfill uses (`BulkAdapter`), over the vendor's connector in `connectors/`;
- webhook parsing with signature verification;
- how its records are named: the id the adapter, events and the store use, the project a record
  belongs to, the references an operator types;
- where its simulator lives, as a module path, so nothing imports simulators to know it.

The engine speaks canonical tickets and `VendorWrite`s; an adapter speaks its vendor. The ticket
id an adapter takes is the one change events carry (a Jira issue key, a ServiceNow sys_id).
"""

from __future__ import annotations

import importlib
import mimetypes
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.events import ChangeEvent
from connectors.retry import RetryPolicy
from escalation.policy import Scope
from mapping import Mapping as SyncMapping
from mapping import VendorWrite
from mapping.model import Ref, System
from sync.pipeline.markers import Marker


@dataclass(frozen=True, slots=True)
class Created:
    """A record an adapter created: its id for later calls, its human key and browse URL."""

    ticket_id: str
    key: str | None
    url: str | None
    # The vendor's own id where `ticket_id` is another (a Jira issue's numeric id), if known.
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class Changed:
    """A record the poller found changed, and when it changed."""

    ticket_id: str
    updated: datetime | None
    # The vendor's version (Jira `updated`, ServiceNow `sys_mod_count`), as the mapping reads it.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """Records read in bulk, each as `Adapter.read` returns one; `total` is how many the whole
    scan matched, when the system says."""

    records: list[dict[str, Any]]
    total: int | None = None


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to create in bulk: its first write, in project / table `container`, of `kind`."""

    write: VendorWrite
    container: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """What became of one `NewRecord`: the record made, if any, and the vendor's reason for
    what failed (the create itself, or reaching the wanted status afterwards)."""

    created: Created | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class PairLink:
    """The link a record shows to its pair; `record` is the record as last read, so a link
    already shown there is not written again."""

    ticket_id: str
    url: str
    title: str
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What became of one `PairLink`: the vendor's reason when it failed, and the record's
    version after the write when the write changed it (as `Changed.version` reads it)."""

    problem: str | None = None
    version: str | None = None


@runtime_checkable
class Adapter(Protocol):
    """What the engine does to one system."""

    system: System

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The raw record as `mapping.to_canonical` expects it."""
        ...

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """Write fields, reach a status, add journal entries.

        Returns the record as the system stored it, when the system answers a write with it
        (shaped as `read` returns it, comments and attachments left out); else None.
        """
        ...

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        """The record with at least the values at these read paths (as `read` shapes it), in
        as small a read as the vendor allows."""
        ...

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        """Add a comment carrying `marker`; returns the new comment's id."""
        ...

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        """The id of a comment on the record carrying `marker`, if one exists."""
        ...

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        """Create a record (in project / table `container`, of issue type `kind`) with the
        plain fields only, in one request; the caller records it, then `apply`s the rest."""
        ...

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """Show a link to the paired record on this one."""
        ...

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """Raw attachment metadata of the record."""
        ...

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """An attachment's content, in chunks."""
        ...

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        """Attach a file to the record, typed `content_type` (else by its name)."""
        ...

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Records changed at or after `since`, oldest first."""
        ...

    def probe(self) -> None:
        """One cheap authenticated call: does the system accept our credentials (again)?"""
        ...


@runtime_checkable
class BulkAdapter(Adapter, Protocol):
    """What a backfill does on top, many records per request: `fields` names what the mapping
    reads below `fields_under` in a record (ServiceNow columns, Jira issue fields; None:
    everything)."""

    fields_under: tuple[str, ...]

    def scan(self, since: datetime, fields: Collection[str] | None) -> Iterator[RecordsPage]:
        """Every record of the configured query changed since `since`, page by page."""
        ...

    def read_many(
        self, ticket_ids: Sequence[str], fields: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """The records with these ids, as `read` returns each; ids not found are left out."""
        ...

    def create_many(self, records: Sequence[NewRecord]) -> list[CreateOutcome]:
        """Create records in bulk, reaching each one's status; one outcome per record, in order."""
        ...

    def add_links(self, links: Sequence[PairLink]) -> list[LinkOutcome]:
        """Show many links (idempotent); one outcome per link, in order."""
        ...


@runtime_checkable
class CommentsAsPerson(Protocol):
    """An adapter whose system lets the integration write a comment in another user's name.

    Neither Jira's nor ServiceNow's REST API does (a comment's author is the user who calls),
    so a customer's e-mail reply is written by the integration user and says whose words it
    carries ("By e-mail from ..."). A system that can implements this, and replies are posted
    in the customer's name there.
    """

    def add_comment_as(
        self, ticket_id: str, body: str, *, author_email: str, public: bool, marker: Marker
    ) -> str | None:
        """Add the comment as the user with this e-mail address; returns its id, or None when
        the system knows no such user (the caller then writes it in its own name)."""
        ...


def in_slices(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in consecutive slices of at most `size` (a vendor's limit per request)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- a system's settings ----------------------------------------------------------------------


class SystemSettings(BaseModel):
    """What every system's section of the configuration holds; a system's own model adds its
    connection keys. Secrets are `SecretStr` (masked in repr and str) and may be read from a
    file named by `<secret>_file`; list a model's secrets in `secrets`."""

    model_config = ConfigDict(extra="forbid")

    # The secrets of this section, each also readable from `<name>_file`.
    secrets: ClassVar[tuple[str, ...]] = ("webhook_secret",)

    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    integration_user: str | None = None
    poll_interval_seconds: int = Field(default=60, ge=5)

    @model_validator(mode="after")
    def _secrets_from_files(self) -> SystemSettings:
        for name in self.secrets:
            path: Path | None = getattr(self, f"{name}_file")
            if getattr(self, name) is None and path is not None:
                try:
                    setattr(self, name, SecretStr(Path(path).read_text().strip()))
                except OSError as exc:
                    raise ValueError(f"cannot read {name}_file: {exc.strerror}") from None
        return self

    def address(self) -> str | None:
        """Where the system is (a base URL), for messages; None when the section has none."""
        return None

    def webhook_secret_value(self) -> str | None:
        """The shared secret the system signs its webhooks with, if configured."""
        return self.webhook_secret.get_secret_value() if self.webhook_secret else None


# --- a system ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulator:
    """Where a system's simulator lives, as "package.module:Class": named, not imported, so a
    command that does not start simulators never loads them."""

    path: str

    def load(self) -> type[Any]:
        """The simulator's class (started with `port=`, then `.start()`, `.url`, `.stop()`)."""
        module, _, attribute = self.path.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not isinstance(found, type):
            raise TypeError(f"{self.path} is not a class")
        return found


S = TypeVar("S", bound=SystemSettings)


class TicketSystem(ABC, Generic[S]):
    """One ticket system: its name, settings, adapter, webhooks and how its records are named."""

    # The system's name: configuration section, markers, `/webhooks/<name>`, the store.
    name: ClassVar[str]
    # The name people read ("Jira").
    title: ClassVar[str]
    # The model validating its configuration section.
    settings_model: type[S]
    # Its simulator, if it has one.
    simulator: ClassVar[Simulator | None] = None

    @property
    def system(self) -> System:
        """The system's name as the canonical model carries it."""
        return System.declare(self.name)

    # --- configuration ------------------------------------------------------------------------

    def section(self, sections: Mapping[str, SystemSettings]) -> S:
        """This system's validated section among the configured ones."""
        found = sections.get(self.name)
        if not isinstance(found, self.settings_model):
            raise LookupError(f"{self.title} is not configured (no [{self.name}] section)")
        return found

    # --- the adapter --------------------------------------------------------------------------

    @abstractmethod
    def adapter(
        self,
        section: S,
        mapping: SyncMapping,
        *,
        retry: RetryPolicy | None = None,
        session_factory: Callable[[], Any] | None = None,
    ) -> Adapter:
        """The adapter over this system's connector, configured from `section` (the mapping
        says what it reads and writes). `session_factory` makes each connector's HTTP session
        (tests hand in a fake); `retry` is the connectors' retry policy."""

    # --- webhooks -----------------------------------------------------------------------------

    @abstractmethod
    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, section: S, now: datetime
    ) -> list[ChangeEvent]:
        """The change events of one delivery, its signature checked with the section's secret.

        Raise BadSignature, StaleWebhook or MalformedWebhook (connectors/errors.py) to refuse it.
        """

    def vendor_record(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A record as the vendor prints it (an API answer, a webhook body), as `Adapter.read`
        returns one."""
        return dict(document)

    # --- naming records -----------------------------------------------------------------------

    def ticket_id(self, ref: Ref) -> str:
        """The id the adapter, change events and the store use for a record (default its
        `ref.id`)."""
        return ref.id

    def container_of(self, ticket_id: str) -> str | None:
        """The project (or table) a record belongs to, when its id says; None when it does not."""
        del ticket_id
        return None

    def scope(self, section: S, mapping: SyncMapping) -> Scope | None:
        """The projects (or tables) a configuration works in on this system: where the policy
        may escalate to and have the records followed. None when it does not bound them."""
        del section, mapping
        return None

    def claims_reference(self, text: str) -> bool:
        """Whether an operator's bare reference (`explain DS-12`) names a record of this system."""
        del text
        return False


GENERIC_TYPE = "application/octet-stream"


def content_type_of(filename: str, declared: str | None) -> str:
    """The content type to upload a file with: the one its source declared, unless that is the
    generic application/octet-stream (what a browser sends for a type it does not know), then
    the one its name implies (a `.log` is text/plain), else application/octet-stream."""
    kept = (declared or "").strip()
    if kept and kept.lower() != GENERIC_TYPE:
        return kept
    guessed, _encoding = mimetypes.guess_type(filename, strict=False)
    if guessed is None and filename.lower().endswith((".log", ".out", ".err")):
        return "text/plain"
    return guessed or GENERIC_TYPE
