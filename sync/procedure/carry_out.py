"""Carrying out escalation decisions on the records: decide and record first, then act.

```
decide on the ITSM record (read-only when nothing would be recorded), else decide and record
    in the ledger and the outbox, parking the record actions in the same transaction
carry out the parked actions: labels, priority, status on the ITSM record (audited); notes, each
    once (its marker is its idempotency key); the engineering record; links both ways; a
    further level's own record
clear what was parked
```
A crash between the decision and the writes leaves the actions parked (sync/procedure/pending.py),
so the next pass carries them out although the new decision finds nothing new to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from escalation.decision import (
    Action,
    AddEngineeringComment,
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    Decision,
    EngineeringStatus,
    MoveStatus,
    PostLinks,
    RemoveLabel,
    SetPriority,
)
from mapping import browse_url
from mapping.model import Comment, Status, Ticket, Visibility
from sync.pipeline.apply import Applier, AuditNote, record_audit
from sync.pipeline.context import SyncContext
from sync.pipeline.markers import Marker, find_marker
from sync.pipeline.pairing import Pairing
from sync.pipeline.plan import FieldWrite, comparable, get_value
from sync.pipeline.records import Reader, last_word, paired_link, ticket_id
from sync.procedure import pending
from sync.store.database import Link, StoreSession
from sync.systems import registry as systems

log = structlog.get_logger("escalation_sync.engine")


class EscalationPort(Protocol):
    """How the engine reaches the escalation policy and its ledger (see `PolicyEscalation`)."""

    def decide(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """Decide for an ITSM ticket and record the decision in the ledger (and outbox)."""
        ...

    def decide_quietly(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision | None:
        """The decision when recording it would change nothing (`tx` may be read-only);
        None when it must be decided and recorded with `decide`."""
        ...

    def engineering_created(self, tx: StoreSession, ticket: Ticket, engineering: str) -> None:
        """Remember which engineering record the escalation created."""
        ...


# What carrying out a decision leaves: the decision, the ITSM and engineering records as they
# are now, the id of a record created, and the writes made.
Carried = tuple[Decision, Ticket, Ticket | None, str | None, int]


def _targets_elsewhere(eng: Ticket, action: CreateEngineeringRecord) -> bool:
    """The level escalates to another project of the engineering record's system than the one
    the paired engineering record is in (when its id names its project, as a Jira key does)."""
    if eng.ref.system is not action.target_system:
        return False
    project = systems.get(eng.ref.system).container_of(ticket_id(eng))
    return project is not None and project.casefold() != action.project_or_table.casefold()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Escalator:
    """Runs the escalation step of a pass and carries out what it decided."""

    def __init__(
        self, context: SyncContext, reader: Reader, pairing: Pairing, applier: Applier
    ) -> None:
        self.context = context
        self.reader = reader
        self.pairing = pairing
        self.applier = applier

    def run(
        self, port: EscalationPort, itsm: Ticket, eng: Ticket | None, link: Link | None
    ) -> Carried:
        """Decide, record, then carry out the decision's actions (and any left from before)."""
        store = self.context.store
        now = self.context.clock()
        engineering = None
        if eng is not None:
            said = self.resolution_notes(eng)
            engineering = EngineeringStatus(
                ref=eng.ref,
                status=eng.status,
                resolution=said.body.strip() if said is not None else None,
                resolution_public=said is not None and said.visibility is Visibility.PUBLIC,
                assignee=eng.assignee,
            )
        # Most tickets are outside the procedure or in it with nothing new: decided without
        # the write lock.
        with store.reading() as tx:
            quiet = port.decide_quietly(tx, itsm, engineering, now)
            waiting = pending.parked(tx, itsm) if quiet is not None else []
        if quiet is not None and not waiting:
            decision, merged = quiet, []
        else:
            with store.session() as tx:
                decision = port.decide(tx, itsm, engineering, now)
                waiting = pending.parked(tx, itsm)
                todo = [a for a in decision.actions if pending.carried_out_by_engine(a)]
                merged = waiting + [a for a in todo if a not in waiting]
                if merged:
                    pending.park(tx, itsm, merged)
        for reason in decision.blocked:
            log.info(
                "command refused", ticket=ticket_id(itsm), rule=reason.rule, reason=reason.detail
            )
        itsm_new, eng_new, created, writes = self.carry_out(port, itsm, eng, link, merged)
        if merged:
            with store.session() as tx:
                pending.park(tx, itsm, [])
        if created is not None and eng_new is not None and decision.awaits_engineering_record:
            # The record exists now: what waited for it (a chat room named after it) is
            # decided at once rather than on the ticket's next change.
            _, itsm_new, eng_new, _, more = self.run(port, itsm_new, eng_new, link)
            writes += more
        return decision, itsm_new, eng_new, created, writes

    def resolution_notes(self, eng: Ticket) -> Comment | None:
        """What engineering last said: the newest comment written there by a person."""
        return last_word(self.context, eng)

    def carry_out(
        self,
        port: EscalationPort,
        itsm: Ticket,
        eng: Ticket | None,
        link: Link | None,
        actions: Sequence[Action],
    ) -> tuple[Ticket, Ticket | None, str | None, int]:
        """Carry out `actions`; returns the records as they are now, a created record's id,
        and the writes made."""
        itsm, writes = self._set_fields(itsm, eng, actions)
        present = {m for c in itsm.comments if (m := find_marker(c.body)) is not None}
        writes += self._add_notes(itsm, actions, present)
        created: str | None = None
        for action in actions:
            if isinstance(action, CreateEngineeringRecord) and eng is None and link is None:
                fields, overrides = self.engineering_seed(itsm, action)
                eng, n = self.pairing.create(
                    itsm,
                    action.target_system,
                    fields,
                    action.project_or_table,
                    action.issue_type,
                    f"escalation {action.level}",
                    overrides,
                )
                created = ticket_id(eng)
                writes += n
                with self.context.store.session() as tx:
                    port.engineering_created(tx, itsm, created)
        if eng is not None and any(isinstance(a, PostLinks) for a in actions):
            writes += self.pairing.post_links(itsm, eng)
        if eng is not None:
            writes += self._engineering_comments(eng, actions)
        # A further level whose target is another project than the paired record's.
        for action in actions:
            if (
                isinstance(action, CreateEngineeringRecord)
                and eng is not None
                and created is None
                and _targets_elsewhere(eng, action)
            ):
                writes += self.escalate_further(itsm, eng, action, present)
        return itsm, eng, created, writes

    def set_status(
        self, ticket: Ticket, status: Status, peer: Ticket | None = None
    ) -> tuple[Ticket, int]:
        """Move a record to `status` as a decision does (audited; fields the status requires
        come from `peer`, its paired record); returns it as it is now and the writes made (a
        customer's reply confirming or reopening moves records this way)."""
        return self._set_fields(ticket, peer, [MoveStatus(status)])

    def _set_fields(
        self, itsm: Ticket, eng: Ticket | None, actions: Sequence[Action]
    ) -> tuple[Ticket, int]:
        """Labels, priority and status on the ITSM record; returns it as it is now. A status
        the ITSM system requires fields with takes them from the engineering record."""
        labels = list(itsm.labels)
        values: dict[str, Any] = {}
        for action in actions:
            if isinstance(action, AddLabel) and action.label not in labels:
                labels.append(action.label)
            elif isinstance(action, RemoveLabel) and action.label in labels:
                labels.remove(action.label)
            elif isinstance(action, SetPriority):
                values["priority"] = action.priority
            elif isinstance(action, MoveStatus):
                values["status"] = action.status
        if tuple(labels) != itsm.labels:
            values["labels"] = tuple(labels)
        changed = {
            k: v for k, v in values.items() if comparable(k, v) != comparable(k, get_value(itsm, k))
        }
        if not changed:
            return itsm, 0
        system = itsm.ref.system
        fw = [
            FieldWrite(system, k, get_value(itsm, k), v, "escalation decision")
            for k, v in changed.items()
        ]
        notes: list[AuditNote] = []
        try:
            peer = eng if eng is not None else itsm
            writes = self.applier.write_fields(itsm, fw, peer, notes, why="escalation decision")[0]
        finally:
            if notes:
                with self.context.store.session() as tx:
                    record_audit(tx, notes)
        # What the record holds now (a system may ignore or normalise a value).
        return self.reader.read(system, ticket_id(itsm)), writes

    def _add_notes(self, itsm: Ticket, actions: Sequence[Action], present: set[Marker]) -> int:
        """The decision's notes, each written once (its marker is its idempotency key)."""
        system = itsm.ref.system
        adapter = self.context.adapters[system]
        iid = ticket_id(itsm)
        writes = 0
        for action in actions:
            if not isinstance(action, AddNote):
                continue
            marker = Marker(system, iid, f"{action.kind.value}-{_digest(action.body)}")
            if marker in present or adapter.find_comment_by_marker(iid, marker) is not None:
                continue
            public = action.visibility is Visibility.PUBLIC
            adapter.add_comment(iid, action.body, public=public, marker=marker)
            self.context.metrics.write(system.value, "comment")
            self.context.after_write(f"note {marker.text()}")
            self.context.store.audit(
                system.value,
                iid,
                "work_note" if not public else "comment",
                None,
                marker.text(),
                reason=f"escalation {action.kind.value} note",
            )
            writes += 1
        return writes

    def _engineering_comments(self, eng: Ticket, actions: Sequence[Action]) -> int:
        """The decision's comments on the engineering record (a chat channel's link), each
        written once (its marker is its idempotency key)."""
        system = eng.ref.system
        eid = ticket_id(eng)
        adapter = self.context.adapters[system]
        present = {m for c in eng.comments if (m := find_marker(c.body)) is not None}
        writes = 0
        for action in actions:
            if not isinstance(action, AddEngineeringComment):
                continue
            marker = Marker(system, eid, f"note-{_digest(action.body)}")
            if marker in present or adapter.find_comment_by_marker(eid, marker) is not None:
                continue
            public = action.visibility is Visibility.PUBLIC
            adapter.add_comment(eid, action.body, public=public, marker=marker)
            self.context.metrics.write(system.value, "comment")
            self.context.after_write(f"engineering comment {marker.text()}")
            self.context.store.audit(
                system.value,
                eid,
                "comment" if public else "work_note",
                None,
                marker.text(),
                reason="escalation comment",
            )
            writes += 1
        return writes

    def engineering_seed(
        self, itsm: Ticket, action: CreateEngineeringRecord
    ) -> tuple[list[str], dict[str, Any]]:
        """The ITSM fields an engineering record is created with, and the decision's texts."""
        overrides: dict[str, Any] = {
            "summary": action.summary,
            "description": action.description,
            "labels": tuple(dict.fromkeys([*itsm.labels, *action.labels])),
        }
        return self.pairing.seed_fields(itsm), overrides

    def escalate_further(
        self,
        itsm: Ticket,
        eng: Ticket,
        action: CreateEngineeringRecord,
        present: set[Marker],
    ) -> int:
        """Open the level's own record in its target project, linked to both records.

        The ITSM record stays paired with the engineering record it has: pairs never change
        (every worker keeps the pairs it has seen), and the team that escalated further keeps
        working the case. The new record carries the gathered context; the ITSM work note that
        names it is its idempotency key, so a retry finds it and creates nothing.
        """
        context = self.context
        system = itsm.ref.system
        iid = ticket_id(itsm)
        marker = Marker(system, iid, f"further-{action.level}")
        if marker in present or context.adapters[system].find_comment_by_marker(iid, marker):
            return 0
        fields, overrides = self.engineering_seed(itsm, action)
        made, _ = self.pairing.create_record(
            itsm,
            action.target_system,
            fields,
            action.project_or_table,
            action.issue_type,
            overrides,
        )
        context.after_write(f"create {action.target_system.value} for {action.level}")
        key = made.key or made.ticket_id
        there_url = (
            browse_url(context.mapping, action.target_system, made.record_id or key, key) or key
        )
        links = (
            (made.ticket_id, *paired_link(itsm)),
            (made.ticket_id, paired_link(eng)[0], f"Escalated from {ticket_id(eng)}"),
            (ticket_id(eng), there_url, f"Escalated to {action.level}: {key}"),
        )
        adapter = context.adapters[action.target_system]
        for record, url, title in links:
            adapter.add_link(record, url, title)
            context.metrics.write(action.target_system.value, "link")
        body = (
            f"Escalated to {action.level}: {key} ({action.project_or_table}) "
            f"opened with the gathered context: {there_url}\n"
            f"{ticket_id(eng)} stays the paired engineering record."
        )
        context.adapters[system].add_comment(iid, body, public=False, marker=marker)
        context.metrics.write(system.value, "comment")
        with context.store.session() as tx:
            tx.audit(
                action.target_system.value,
                made.ticket_id,
                "record",
                None,
                key,
                reason=f"escalation {action.level} of {system.value} {iid}",
            )
            tx.audit(system.value, iid, "work_note", None, marker.text(), reason=body)
        return 2 + len(links)
