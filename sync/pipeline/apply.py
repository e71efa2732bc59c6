"""Carrying out a plan on the two records: fields, comments, attachments, each with audit rows.

Field writes and conflicts are collected as `AuditNote`s for the caller to record in the
transaction that records the snapshots (one write transaction, not one per write). A comment copy
carries its marker, so a retry after a crash finds it instead of writing it twice; its comment
link and audit row are recorded as soon as it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mapping import to_vendor
from mapping.model import System, Ticket
from sync.pipeline.attachments import AttachmentCopier
from sync.pipeline.context import SyncContext
from sync.pipeline.markers import find_marker
from sync.pipeline.plan import AttachmentCopy, CommentMirror, FieldWrite, Plan, set_values
from sync.pipeline.records import status_context, ticket_id
from sync.store.database import StoreSession


@dataclass(frozen=True, slots=True)
class AuditNote:
    """An audit row still to record: a value written on `system`'s `record`, or a conflict."""

    system: str
    record: str
    field: str
    old: Any
    new: Any
    reason: str


def record_audit(tx: StoreSession, notes: Iterable[AuditNote]) -> None:
    """Append the audit rows of `notes` in the caller's transaction."""
    for note in notes:
        tx.audit(note.system, note.record, note.field, note.old, note.new, reason=note.reason)


def plain(value: Any) -> Any:
    """A canonical value as the audit log keeps it (JSON-ready)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if hasattr(value, "value"):
        return value.value
    return str(value)


class Applier:
    """Writes a plan's fields, comment copies and attachments to the records."""

    def __init__(self, context: SyncContext, copier: AttachmentCopier) -> None:
        self.context = context
        self.copier = copier

    def apply_plan(
        self, result: Plan, source: Ticket, target: Ticket, notes: list[AuditNote]
    ) -> tuple[int, dict[System, dict[str, Any]]]:
        """Carry out a plan; returns the writes made and each side's record as its field
        write's answer showed it (for systems that answer with the record). The audit rows of
        conflicts and field writes are added to `notes` for the caller to record."""
        sides = {source.ref.system: source, target.ref.system: target}
        writes = 0
        stored: dict[System, dict[str, Any]] = {}
        for conflict in result.conflicts:
            loser = sides[conflict.loser]
            notes.append(
                AuditNote(
                    conflict.loser.value,
                    ticket_id(loser),
                    "conflict",
                    conflict.loser_value,
                    conflict.winner_value,
                    reason=(
                        f"conflict on {conflict.field}: {conflict.winner.value} wins "
                        f"({conflict.rule}); lost value {conflict.loser_value!r}"
                    ),
                )
            )
        for system, ticket in sides.items():
            peer = target if ticket is source else source
            n, answer = self.write_fields(ticket, result.writes_to(system), peer, notes)
            writes += n
            if answer is not None:
                stored[system] = answer
        for mirror in result.comments:
            writes += self._mirror(mirror, sides)
        for direction in sorted(sides):
            copies = [c for c in result.attachments if c.target is direction]
            if copies:
                dest = sides[direction]
                writes += self._copy_attachments(copies, source if dest is target else target, dest)
        return writes, stored

    def write_fields(
        self,
        ticket: Ticket,
        writes: Sequence[FieldWrite],
        peer: Ticket,
        notes: list[AuditNote],
        *,
        why: str = "",
    ) -> tuple[int, dict[str, Any] | None]:
        """Write the fields; returns 1 (or 0 when nothing was sent) and the write's answer,
        and adds the audit rows of what was written to `notes`."""
        if not writes:
            return 0, None
        system = ticket.ref.system
        wanted = set_values(ticket, {w.field: w.new for w in writes})
        filled = (
            status_context(self.context, peer) if any(w.field == "status" for w in writes) else None
        )
        vendor = to_vendor(
            self.context.mapping, system, wanted, [w.field for w in writes], context=filled
        )
        if vendor.is_empty():
            return 0, None
        answer = self.context.adapters[system].apply(
            ticket_id(ticket), vendor, current_labels=ticket.labels
        )
        self.context.metrics.write(system.value, "transition" if vendor.transition_to else "field")
        notes.extend(
            AuditNote(
                system.value,
                ticket_id(ticket),
                w.field,
                plain(w.old),
                plain(w.new),
                reason=why or f"{w.reason} ({peer.ref.system.value} {ticket_id(peer)})",
            )
            for w in writes
        )
        self.context.after_write(f"fields {system.value} {ticket_id(ticket)}")
        return 1, answer

    def _mirror(self, mirror: CommentMirror, sides: dict[System, Ticket]) -> int:
        """Copy one comment (unless its marked copy is there already) and record the copy."""
        dest_id = ticket_id(sides[mirror.target])
        source_id = ticket_id(sides[mirror.source])
        adapter = self.context.adapters[mirror.target]
        written = 0
        existing = adapter.find_comment_by_marker(dest_id, mirror.marker)
        if existing is None:
            existing = adapter.add_comment(
                dest_id, mirror.body, public=mirror.public, marker=mirror.marker
            )
            written = 1
            self.context.metrics.write(mirror.target.value, "comment")
            self.context.after_write(f"comment {mirror.marker.text()}")
        with self.context.store.session() as tx:
            tx.put_comment_link(
                source_system=mirror.source.value,
                source_ticket=source_id,
                source_comment_id=mirror.comment_id,
                target_system=mirror.target.value,
                target_ticket=dest_id,
                target_comment_id=existing or None,
                marker=mirror.marker.text(),
            )
            tx.audit(
                mirror.target.value,
                dest_id,
                "comment" if mirror.public else "work_note",
                None,
                mirror.marker.text(),
                reason=f"{mirror.visibility.value} comment mirrored from "
                f"{mirror.source.value} {source_id}",
            )
        return written

    def _copy_attachments(self, copies: Sequence[AttachmentCopy], src: Ticket, dest: Ticket) -> int:
        """Copy the attachments `dest` lacks from `src`; returns the writes made."""
        direction = dest.ref.system
        markers = [m for c in dest.comments if (m := find_marker(c.body)) is not None]
        outcomes = self.copier.copy_all(
            copies,
            source=self.context.adapters[src.ref.system],
            target=self.context.adapters[direction],
            source_id=ticket_id(src),
            target_id=ticket_id(dest),
            target_attachments=dest.attachments,
            existing_markers=markers,
        )
        writes = 0
        for item in outcomes:
            if item.outcome not in ("copied", "oversized"):
                continue
            writes += 1
            kind = "attachment" if item.outcome == "copied" else "comment"
            self.context.metrics.write(direction.value, kind)
            self.context.store.audit(
                direction.value,
                ticket_id(dest),
                "attachment",
                None,
                item.copy.attachment.filename,
                reason=(
                    f"attachment copied from {src.ref.system.value} {ticket_id(src)}"
                    if item.outcome == "copied"
                    else "attachment over the size limit: listed in an internal note"
                )
                + (f" (sha256 {item.sha256})" if item.sha256 else ""),
            )
        return writes
