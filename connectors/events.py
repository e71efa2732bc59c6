"""The normalised change event both webhook parsers and both pollers produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change to one ticket, as a vendor reported it.

    `ticket` is the key the engine re-reads the record by: the Jira issue key (e.g. "DS-12") or
    the ServiceNow sys_id. `delivery_id` identifies the delivery for de-duplication; `dedupe_key`
    identifies the change itself (Jira: key+updated, ServiceNow: sys_id+sys_mod_count).
    """

    system: str
    event: str
    ticket: str
    changed_fields: tuple[str, ...] = ()
    comment_id: str | None = None
    author: str | None = None
    timestamp: datetime | None = None
    delivery_id: str | None = None
    dedupe_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The `webhook parse` output contract: the seven public keys, JSON-ready."""
        # Read field by field: dataclasses.asdict deep-copies `extra` too, which none of these
        # keys need, and this runs for every queued event.
        return {
            "system": self.system,
            "event": self.event,
            "ticket": self.ticket,
            "changed_fields": list(self.changed_fields),
            "comment_id": self.comment_id,
            "author": self.author,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
        }
