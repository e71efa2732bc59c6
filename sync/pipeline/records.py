"""Reading records fresh and mapping them to canonical tickets; what a write left in a record.

The engine never trusts an event's payload: every pass reads the records it works on, and reads
a ticket's pair at the same time as the ticket (one round trip's wait for the two).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

import errors
from mapping import StatusContext, UnmappedValue, read_path, stored_as_written, to_canonical
from mapping.model import Comment, System, Ticket
from sync.pipeline.context import SyncContext
from sync.pipeline.markers import find_marker
from sync.pipeline.plan import FieldWrite, get_value, set_values
from sync.store.database import Link, LinkSide, Snapshot
from sync.systems import registry as systems
from sync.systems.base import Created

# Threads reading paired records alongside the workers (idle threads cost nothing).
READERS = 16


class MappingFailed(errors.DeadLetter):
    """A record cannot be mapped (a value the mapping does not know): fix the mapping, replay."""


def ticket_id(ticket: Ticket) -> str:
    """The id the adapters and the store use (its system says which: the Jira key, the
    ServiceNow sys_id)."""
    return systems.get(ticket.ref.system).ticket_id(ticket.ref)


def last_word(context: SyncContext, ticket: Ticket) -> Comment | None:
    """What a record's people last said: its newest comment not written by us (no marker, not
    by an integration user). On an engineering record, that is the engineering resolution."""
    for comment in reversed(ticket.comments):
        if find_marker(comment.body) is not None or not comment.body.strip():
            continue
        author = comment.author
        if author is not None and context.is_integration_user(author.id, author.name, author.email):
            continue
        return comment
    return None


def status_context(context: SyncContext, peer: Ticket) -> StatusContext:
    """What the fields a status requires are filled in with, from the paired record: its
    people's last word (the engineering resolution), its key and link."""
    said = last_word(context, peer)
    return StatusContext(
        resolution=said.body.strip() if said is not None else "",
        peer_key=peer.ref.key or peer.ref.id,
        peer_url=peer.ref.url or "",
    )


def link_side(ticket: Ticket) -> LinkSide:
    """The record as one side of a pair: its system, ticket id, vendor id and key."""
    return LinkSide(ticket.ref.system.value, ticket_id(ticket), ticket.ref.id, ticket.ref.key)


def created_side(system: System, made: Created) -> LinkSide:
    """A record just created in `system` as one side of a pair (its vendor id is its ticket id
    unless the system answered with another)."""
    return LinkSide(system.value, made.ticket_id, made.record_id or made.ticket_id, made.key)


def snapshot_data(ticket: Ticket) -> dict[str, Any]:
    """What a snapshot keeps: fields only; comments and attachments are tracked by markers."""
    return ticket.model_copy(update={"comments": (), "attachments": ()}).model_dump(mode="json")


def last_synced(row: Snapshot | None) -> Ticket | None:
    """A side's last-synced ticket (None when it has none, or one this version cannot read)."""
    if row is None:
        return None
    try:
        return Ticket.model_validate(row.data)
    except ValueError:
        return None


def paired_link(there: Ticket) -> tuple[str, str]:
    """The URL and title a record shows for its paired record `there`."""
    name = systems.get(there.ref.system).title
    title = f"Paired {name} record {there.ref.key or there.ref.id}"
    return there.ref.url or ticket_id(there), title


def map_record(context: SyncContext, system: System, raw: dict[str, Any]) -> Ticket:
    """A raw record as a canonical ticket; an unmappable record is a permanent failure."""
    try:
        return to_canonical(context.mapping, system, raw)
    except (UnmappedValue, ValueError) as exc:
        raise MappingFailed(str(exc), system=system.value) from None


class Reader:
    """Reads records through the adapters and maps them with the mapping in force."""

    def __init__(self, context: SyncContext, *, readers: int = READERS) -> None:
        self.context = context
        # Reads the paired record while the worker reads the changed one.
        self._pool = futures.ThreadPoolExecutor(readers, thread_name_prefix="pair-read")

    def read(self, system: System, ticket: str) -> Ticket:
        """Read a record fresh and map it; an unmappable record is a permanent failure."""
        return map_record(self.context, system, self.context.adapters[system].read(ticket))

    def read_pair(self, system: System, tid: str, link: Link) -> tuple[Ticket, Ticket]:
        """The ticket and its pair, both read fresh at the same time (one wait for the two)."""
        other_system, other_id = link.other(system.value)
        # The other read runs with this thread's log context (the ticket bound on each line).
        pending = self._pool.submit(
            contextvars.copy_context().run, self.read, System(other_system), other_id
        )
        try:
            source = self.read(system, tid)
        except BaseException:
            futures.wait([pending])
            raise
        return source, pending.result()

    def as_written(
        self,
        ticket: Ticket,
        writes: Sequence[FieldWrite],
        stored: Mapping[System, Mapping[str, Any]],
    ) -> Ticket:
        """The next snapshot of a side: what it holds now, its written fields as stored.

        The stored value (rather than the one sent) matters when a system silently ignores or
        normalises a value (a column that does not exist, a priority computed from impact and
        urgency): the snapshot then matches what its webhook will show, so the difference is
        not mistaken for a new change and sent back. It comes from the write's answer when the
        system answers with the record (ServiceNow); otherwise only the fields whose value the
        system may store differently are read back, and only those fields.
        """
        if not writes:
            return ticket
        system = ticket.ref.system
        answer = stored.get(system)
        if answer is not None:
            fresh = map_record(self.context, system, dict(answer))
            return set_values(ticket, {w.field: get_value(fresh, w.field) for w in writes})
        mapping = self.context.mapping
        values = {w.field: w.new for w in writes if stored_as_written(mapping, system, w.field)}
        unsure = [w.field for w in writes if w.field not in values]
        if unsure:
            paths = [read_path(mapping, system, name) for name in unsure]
            adapter = self.context.adapters[system]
            known = [p for p in paths if p is not None]
            if len(known) < len(paths):
                raw = adapter.read(ticket_id(ticket))
            else:
                raw = adapter.read_fields(ticket_id(ticket), known)
            fresh = map_record(self.context, system, raw)
            values.update({name: get_value(fresh, name) for name in unsure})
        return set_values(ticket, values)
