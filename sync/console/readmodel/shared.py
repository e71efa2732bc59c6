"""What every page of the read model shares: the configuration it reads through, the names
people read for systems and channels, and canonical ticket JSON (a snapshot's data, or a record
read from its system) taken apart for display."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.config.settings import Settings
from sync.store.database import DeadLetter, StoreSession
from sync.systems.registry import registry

# A canonical ticket as JSON: `Ticket.model_dump(mode="json")`, as snapshots keep it.
Record = Mapping[str, Any]
# A record by (system name, ticket id as the engine addresses it).
RecordRef = tuple[str, str]

STATE_LABELS = {
    "none": "No escalation",
    "requested": "Requested",
    "incomplete": "Incomplete",
    "pending_approval": "Awaiting approval",
    "approved": "Escalated",
    "rejected": "Rejected",
    "refused": "Refused",
    "resolved": "Resolved",
    "closed": "Closed",
}


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the read model needs of the configuration holder."""

    settings: Settings
    digest: str
    loaded_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """The last time the configuration was (re)loaded, and how it went."""

    at: datetime
    ok: bool
    errors: tuple[str, ...] = ()


# --- systems and channels -----------------------------------------------------------------------


def title(name: str) -> str:
    """The name people read: a ticket system's own title (`servicenow` -> ServiceNow), else a
    notification channel's name capitalised (`email` -> Email)."""
    systems = registry()
    if name in systems:
        return systems.get(name).title
    return name.replace("_", " ").capitalize()


def installed(name: str) -> bool:
    """Whether `name` is a ticket system this installation knows (what a URL names may not be)."""
    return name in registry()


def mapped(settings: Settings) -> tuple[str, ...]:
    """The systems the mapping syncs: where escalations are decided first, then the others."""
    mapping = settings.mapping_model
    itsm = sorted(mapping.itsm_systems())
    others = sorted(s for s in mapping.systems if s not in itsm)
    return tuple(s.value for s in [*itsm, *others])


def in_order(settings: Settings) -> tuple[str, ...]:
    """The systems an installation works with, as pages list them: those the mapping syncs
    (see `mapped`), then other configured ones."""
    return tuple(dict.fromkeys([*mapped(settings), *sorted(settings.systems)]))


def itsm_of(settings: Settings) -> tuple[str, ...]:
    """The systems escalations are decided in (where the mapping's routes start)."""
    return tuple(s.value for s in sorted(settings.mapping_model.itsm_systems()))


# --- canonical ticket JSON ------------------------------------------------------------------------


def split_ref(ref: str) -> RecordRef:
    """`servicenow:<sys_id>` as (system, id)."""
    system, _, ident = ref.partition(":")
    return system, ident


def key_of(data: Record) -> str | None:
    """The record's human key (a Jira key, a ServiceNow number), else its id."""
    ref = data.get("ref") or {}
    return ref.get("key") or ref.get("id")


def url_of(data: Record) -> str | None:
    """Where people open the record."""
    url = (data.get("ref") or {}).get("url")
    return str(url) if url else None


def person(value: object) -> str | None:
    """A person field's name as the record gives it (name, else e-mail, else id)."""
    if not isinstance(value, Mapping):
        return None
    return value.get("name") or value.get("email") or value.get("id")


def custom(data: Record, name: str) -> object:
    """A custom field's value (None when the record has none of that name)."""
    fields = data.get("custom_fields") or {}
    return fields.get(name) if isinstance(fields, Mapping) else None


def text_of(value: object) -> str | None:
    """A custom field's value as text (a reference's display value or name)."""
    if isinstance(value, Mapping):
        value = value.get("display_value") or value.get("name") or value.get("value")
    return str(value) if value else None


def when(value: object) -> datetime | None:
    """A moment as records carry it (ISO text, maybe `Z`), timezone-aware; None if not one."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- dead letters, as pages show them ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """A dead letter with the name people know its record by."""

    id: int
    system: str
    ticket: str
    key: str
    reason: str
    error_class: str
    created_at: datetime
    replayed_at: datetime | None
    attempts: int

    @property
    def system_name(self) -> str:
        """The system in words."""
        return title(self.system)


def failed_events(tx: StoreSession, letters: Iterable[DeadLetter]) -> tuple[FailedEvent, ...]:
    """Dead letters, newest first, each named by its record's key where the store knows it
    (the pair's record, else the last snapshot)."""
    kept = sorted(letters, key=lambda d: d.id, reverse=True)
    refs = {(d.system, d.ticket) for d in kept if installed(d.system)}
    keys: dict[RecordRef, str] = {}
    for ref, snap in tx.get_snapshots(refs).items():
        if found := key_of(snap.data):
            keys[ref] = found
    for system in {s for s, _ in refs}:
        for ticket, link in tx.get_links(system, [t for s, t in refs if s == system]).items():
            if record_key := link.side(system).record_key:
                keys[(system, ticket)] = record_key
    return tuple(
        FailedEvent(
            id=d.id,
            system=d.system,
            ticket=d.ticket,
            key=keys.get((d.system, d.ticket), d.ticket),
            reason=d.reason,
            error_class=d.error_class,
            created_at=d.created_at,
            replayed_at=d.replayed_at,
            attempts=d.attempts,
        )
        for d in kept
    )
