"""Origin markers: the trailing line every mirrored comment, note and listing carries.

A marker names where a write came from (system, ticket, item), so that a retry after a crash can
find what was already written instead of writing it twice, and so that the engine never treats
its own copy as a new source (no echo).

    Original comment text

    [escalation-sync origin=jira:DS-12:10001]

A customer's e-mail reply posted on a record carries a marker naming that record itself and the
reply's Message-ID (digested), `[escalation-sync origin=servicenow:INC0010001:mail-<digest>]`:
written by us, but the customer's words, so it is mirrored to the paired record like a comment a
person wrote there (`Marker.from_mail`), and a retry after a crash finds it by its Message-ID.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mapping.model import System

_PREFIX = "escalation-sync origin="
# The item of a marker on a comment posted from a customer's e-mail.
MAIL_ITEM_PREFIX = "mail-"
# Any system name matches here; only a declared (installed) system's makes a marker.
_PATTERN = re.compile(
    r"\[escalation-sync origin=(?P<system>[a-z][a-z0-9_]*)"
    r":(?P<ticket>[^:\]\s]+):(?P<item>[^\]\s]+)\]"
)


@dataclass(frozen=True, slots=True)
class Marker:
    """Where a mirrored item came from: source system, source ticket, source item id."""

    system: System
    ticket: str
    item: str

    def text(self) -> str:
        """The marker as it appears in a comment body."""
        return f"[{_PREFIX}{self.system.value}:{self.ticket}:{self.item}]"

    def __str__(self) -> str:
        return self.text()

    @property
    def from_mail(self) -> bool:
        """Whether the comment is a customer's e-mail reply we posted (the customer's words)."""
        return self.item.startswith(MAIL_ITEM_PREFIX)


def mail_marker(system: System, ticket: str, message_id: str) -> Marker:
    """The marker of the comment a mail with `message_id` became on `ticket` of `system`."""
    digest = hashlib.sha256(message_id.strip().encode("utf-8", "replace")).hexdigest()[:24]
    return Marker(system, ticket, f"{MAIL_ITEM_PREFIX}{digest}")


def with_marker(body: str, marker: Marker) -> str:
    """The body followed by a blank line and the marker (nothing added if already marked)."""
    if marker.text() in body:
        return body
    return f"{body.rstrip()}\n\n{marker.text()}"


def find_marker(body: str | None) -> Marker | None:
    """The last origin marker of an installed system in a body, or None for a comment written
    by a person."""
    if not body:
        return None
    found = None
    for match in _PATTERN.finditer(body):
        if match["system"] in System.names():
            found = match
    if found is None:
        return None
    return Marker(System(found["system"]), found["ticket"], found["item"])


def strip_marker(body: str) -> str:
    """The body without any origin marker line (what a person wrote)."""
    declared = System.names()
    return _PATTERN.sub(lambda m: "" if m["system"] in declared else m[0], body).rstrip()
