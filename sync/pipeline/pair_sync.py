"""One pass over a pair: plan against the last-synced snapshots, apply, record the new snapshots.

```
snapshots of both sides and the comments already mirrored (store, or markers in the records)
plan (sync/pipeline/plan.py: ownership, conflicts, no echo)
apply (sync/pipeline/apply.py)
audit rows and both snapshots, as written, in one transaction
```
"""

from __future__ import annotations

from mapping.model import System, Ticket
from sync.pipeline.apply import Applier, AuditNote, record_audit
from sync.pipeline.context import SyncContext
from sync.pipeline.markers import Marker, find_marker
from sync.pipeline.plan import Plan, plan
from sync.pipeline.records import Reader, last_synced, snapshot_data, ticket_id
from sync.store.database import StoreSession

# A comment's copy known to be made: (the original's system, the original's comment id).
Mirrored = set[tuple[System, str]]
# A marked copy the store does not know: its marker, the ticket holding it, its comment id.
Unrecorded = list[tuple[Marker, Ticket, str]]


class PairSync:
    """Brings a pair's two records in step from both as just read."""

    def __init__(self, context: SyncContext, reader: Reader, applier: Applier) -> None:
        self.context = context
        self.reader = reader
        self.applier = applier

    def run(
        self,
        itsm: Ticket,
        eng: Ticket,
        *,
        origin: System,
        fresh_itsm: Ticket | None = None,
        repair: bool = False,
    ) -> tuple[Plan, int]:
        """Plan and apply between a pair; record snapshots, comment links and audit rows."""
        store = self.context.store
        source, target = (itsm, eng) if origin is itsm.ref.system else (eng, itsm)
        sid, tid = ticket_id(source), ticket_id(target)
        with store.reading() as tx:
            rows = tx.get_snapshots(
                [(source.ref.system.value, sid), (target.ref.system.value, tid)]
            )
            links, unrecorded = comment_links(tx, source, target)
        snap_s = last_synced(rows.get((source.ref.system.value, sid)))
        snap_t = last_synced(rows.get((target.ref.system.value, tid)))
        if unrecorded:
            # Copies written before a crash and never recorded: record them now.
            with store.session() as tx:
                for marker, ticket, comment_id in unrecorded:
                    tx.put_comment_link(
                        source_system=marker.system.value,
                        source_ticket=marker.ticket,
                        source_comment_id=marker.item,
                        target_system=ticket.ref.system.value,
                        target_ticket=ticket_id(ticket),
                        target_comment_id=comment_id,
                        marker=marker.text(),
                    )
        if fresh_itsm is not None:
            # A pair made in this pass: fields agree by construction, nothing flows back.
            snap_s, snap_t = source, target
        elif snap_s is None and snap_t is None:
            # Paired but never synced (the pass that made it was cut short): the ITSM record
            # is the original, so its values flow to the engineering record, not back.
            snap_s, snap_t = (None, target) if source is itsm else (source, None)
        result = plan(
            source, target, snap_s, snap_t, self.context.rules, comment_links=links, repair=repair
        )
        # Conflicts and field writes are audited in the transaction that records the
        # snapshots (one write transaction, not one per write); if the pass fails part way,
        # what was written is still audited before the error leaves.
        notes: list[AuditNote] = []
        try:
            writes, stored = self.applier.apply_plan(result, source, target, notes)
            after = [
                (
                    side,
                    ident,
                    self.reader.as_written(side, result.writes_to(side.ref.system), stored),
                )
                for side, ident in ((source, sid), (target, tid))
            ]
        except BaseException:
            if notes:
                with store.session() as tx:
                    record_audit(tx, notes)
            raise
        with store.session() as tx:
            record_audit(tx, notes)
            for side, ident, ticket in after:
                tx.put_snapshot(
                    side.ref.system.value, ident, snapshot_data(ticket), version=side.version
                )
        return result, writes


def comment_links(tx: StoreSession, source: Ticket, target: Ticket) -> tuple[Mirrored, Unrecorded]:
    """Comments already mirrored, per the store or their markers; and the marked copies the
    store does not know (marker, the ticket holding it, its comment id)."""
    done: Mirrored = set()
    unrecorded: Unrecorded = []
    for ticket in (source, target):
        system = ticket.ref.system.value
        known = tx.comment_links_of(system, (c.id for c in ticket.comments))
        for comment in ticket.comments:
            found = known.get(comment.id)
            if found is not None:
                done.add((System(found.source_system), found.source_comment_id))
            marker = find_marker(comment.body)
            if marker is not None and marker.from_mail and marker.system is ticket.ref.system:
                # A customer's e-mail reply posted here: an original, not a copy.
                continue
            if marker is not None and found is None:
                unrecorded.append((marker, ticket, comment.id))
                done.add((marker.system, marker.item))
    return done, unrecorded
