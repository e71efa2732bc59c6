"""Reading a ticket for the rules: field values as text, people by name, our own notes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from escalation.policy import Policy
from mapping.model import Person, Ticket

# The origin marker the sync engine appends to every comment it mirrors or writes.
COPY_MARK = "[escalation-sync origin="
# The marker of a customer's e-mail reply the sync posted as a comment (its item is "mail-...").
_MAIL_MARK = re.compile(r"\[escalation-sync origin=[a-z][a-z0-9_]*:[^:\]\s]+:mail-[^\]\s]+\]")


def field_value(ticket: Ticket, path: str) -> Any:
    """The value at a dotted path (`custom.sla_due`, `assignee.email`); None where it stops."""
    value: Any = ticket
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return value


def as_text(value: Any) -> str:
    """A field's value as the text the rules compare and the reasons quote."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Person):
        return value.name or value.email or value.id or ""
    if isinstance(value, tuple | list):
        return " ".join(as_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def who(person: Person | None) -> str:
    """A person as notes and reasons name them."""
    if person is None:
        return "unknown"
    if person.name and person.email:
        return f"{person.name} <{person.email}>"
    return person.name or person.email or person.id or "unknown"


def person_key(person: Person | None) -> str | None:
    """A person as the ledger records them (their id, else their e-mail)."""
    if person is None:
        return None
    return person.id or person.email


def fingerprint(ticket: Ticket, policy: Policy) -> str | None:
    """A short hash of the fingerprint fields, normalised; None when they are all empty."""
    parts = [as_text(field_value(ticket, path)) for path in policy.fingerprint.fields]
    norm = [re.sub(r"\s+", " ", p).strip().casefold() for p in parts]
    if not any(norm):
        return None
    return hashlib.sha256("\x1f".join(norm).encode()).hexdigest()[:16]


def linked_ticket(ticket: Ticket, policy: Policy) -> tuple[str, ...]:
    """How the ticket the policy's duplicates.link_field names may be known to the ledger:
    its ledger key (`system:id`) and the value as written (a number or key); () when unset."""
    path = policy.duplicates.link_field
    if path is None:
        return ()
    value = field_value(ticket, path)
    if isinstance(value, Mapping):
        value = value.get("value") or value.get("id") or value.get("key")
    text = as_text(value).strip()
    if not text:
        return ()
    if ":" in text:
        return (text,)
    return (f"{ticket.ref.system.value}:{text}", text)


def defang(text: str, words: Iterable[str]) -> str:
    """Quote command words in our own notes so they can never be read back as commands.

    A command counts only at the start of the text or after whitespace, so a quoted word
    ("/escalate") reads the same to people and is no command.
    """
    for word in words:
        text = re.sub(rf"(?:^|(?<=\s)){re.escape(word)}(?![\w-])", f'"{word}"', text)
    return text


def from_mail(body: str) -> bool:
    """A comment that came by e-mail: a customer's reply the sync posted (or a copy of one)."""
    return _MAIL_MARK.search(body) is not None


def our_note(ticket: Ticket, body: str) -> bool:
    """A note this product wrote on the ticket itself (not a comment mirrored from elsewhere).

    Mirrored comments carry the origin of the other system; our policy notes name this one.
    """
    return f"{COPY_MARK}{ticket.ref.system.value}:" in body
