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
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

import errors
from escalation.decision import (
    Action,
    AddEngineeringComment,
    AddLabel,
    AddNote,
    CloseFurtherRecords,
    CreateEngineeringRecord,
    Decision,
    EngineeringStatus,
    JoinEscalation,
    MoveStatus,
    PostLinks,
    RemoveLabel,
    SetPriority,
)
from mapping import browse_url, to_vendor
from mapping.model import Status, Ticket, Visibility
from sync.pipeline.apply import Applier, AuditNote, record_audit
from sync.pipeline.context import SyncContext
from sync.pipeline.markers import Marker, find_marker
from sync.pipeline.pairing import Pairing
from sync.pipeline.plan import FieldWrite, comparable, get_value, set_values
from sync.pipeline.records import Reader, paired_link, ticket_id
from sync.procedure import pending
from sync.procedure.engineering import engineering_status
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

    def decide_unrecorded(
        self,
        tx: StoreSession,
        ticket: Ticket,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """The decision, recorded nowhere yet (an activation waits for its record to exist)."""
        ...

    def record(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        engineering: EngineeringStatus | None,
        now: datetime,
    ) -> Decision:
        """Record a decision from `decide_unrecorded` (ledger, notices); the one recorded."""
        ...

    def not_carried_out(
        self,
        tx: StoreSession,
        ticket: Ticket,
        decision: Decision,
        record: CreateEngineeringRecord,
        reason: str,
        now: datetime,
    ) -> Decision:
        """Record that `decision`'s engineering record could not be created, announcing nothing."""
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


def _first_record(
    decision: Decision, eng: Ticket | None, link: Link | None
) -> CreateEngineeringRecord | None:
    """The engineering record the decision needs created before anything is announced (None
    when it needs none, or the ticket already has its pair)."""
    if eng is not None or link is not None:
        return None
    return next((a for a in decision.actions if isinstance(a, CreateEngineeringRecord)), None)


# The note that names a further level's record: "Escalated to L3: VENDOR-1 (VENDOR) opened ...".
_FURTHER = re.compile(r"^Escalated to .+?: (?P<key>\S+) \(")


def _titled(link: tuple[str, str], title: str) -> tuple[str, str]:
    return link[0], title


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
        """Decide, record, then carry out the decision's actions (and any left from before).

        An escalation that needs a new engineering record gets it first: only once the record
        exists is the decision recorded (the slot taken, the customer and management told) and
        the rest carried out (tag, notes, links). When the system refuses the record, a refusal
        with its reason is recorded instead and nothing is announced.
        """
        store = self.context.store
        now = self.context.clock()
        engineering = self.engineering_status(eng)
        # Most tickets are outside the procedure or in it with nothing new: decided without
        # the write lock.
        with store.reading() as tx:
            quiet = port.decide_quietly(tx, itsm, engineering, now)
            waiting = pending.parked(tx, itsm) if quiet is not None else []
        if quiet is not None and not waiting:
            return self._finish(port, itsm, eng, link, quiet, [])
        with store.session() as tx:
            decision = port.decide_unrecorded(tx, itsm, engineering, now)
            first = _first_record(decision, eng, link)
            if first is None:
                decision = port.record(tx, itsm, decision, engineering, now)
                merged = self._park(tx, itsm, decision, pending.parked(tx, itsm))
        if first is not None:
            return self._record_first(port, itsm, link, decision, first, now)
        return self._finish(port, itsm, eng, link, decision, merged)

    def _finish(
        self,
        port: EscalationPort,
        itsm: Ticket,
        eng: Ticket | None,
        link: Link | None,
        decision: Decision,
        merged: Sequence[Action],
        created: str | None = None,
        writes: int = 0,
    ) -> Carried:
        """Carry out the parked actions and clear them."""
        for reason in decision.blocked:
            log.info(
                "command refused", ticket=ticket_id(itsm), rule=reason.rule, reason=reason.detail
            )
        itsm_new, eng_new, made, n = self.carry_out(port, itsm, eng, link, merged)
        if merged:
            with self.context.store.session() as tx:
                pending.park(tx, itsm, [])
        made = made or created
        writes += n
        if made is not None and eng_new is not None and decision.awaits_engineering_record:
            # The record exists now: what waited for it (a chat room named after it) is
            # decided at once rather than on the ticket's next change.
            _, itsm_new, eng_new, _, more = self.run(port, itsm_new, eng_new, link)
            writes += more
        return decision, itsm_new, eng_new, made, writes

    @staticmethod
    def _park(
        tx: StoreSession, itsm: Ticket, decision: Decision, waiting: list[Action]
    ) -> list[Action]:
        """Park the decision's record actions with those left from before; returns them all."""
        todo = [a for a in decision.actions if pending.carried_out_by_engine(a)]
        merged = waiting + [a for a in todo if a not in waiting]
        if merged:
            pending.park(tx, itsm, merged)
        return merged

    def _record_first(
        self,
        port: EscalationPort,
        itsm: Ticket,
        link: Link | None,
        decision: Decision,
        record: CreateEngineeringRecord,
        now: datetime,
    ) -> Carried:
        """Create the engineering record, then record and carry out the decision; a refusal
        with the system's reason when the system will not create it."""
        store = self.context.store
        fields, overrides = self.engineering_seed(itsm, record, decision.actions)
        try:
            eng, writes = self.pairing.create(
                itsm,
                record.target_system,
                fields,
                record.project_or_table,
                record.issue_type,
                f"escalation {record.level}",
                overrides,
            )
        except Exception as exc:
            if errors.action_of(exc) is not errors.Action.DEAD_LETTER:
                raise  # tried again later: nothing was recorded, so nothing was announced
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("engineering record refused", ticket=ticket_id(itsm), reason=reason)
            with store.session() as tx:
                refused = port.not_carried_out(tx, itsm, decision, record, reason, now)
                merged = self._park(tx, itsm, refused, pending.parked(tx, itsm))
            return self._finish(port, itsm, None, link, refused, merged)
        created = ticket_id(eng)
        with store.session() as tx:
            recorded = port.record(tx, itsm, decision, self.engineering_status(eng), now)
            port.engineering_created(tx, itsm, created)
            merged = self._park(tx, itsm, recorded, pending.parked(tx, itsm))
        link = self.pairing.pairs.link_of(itsm.ref.system.value, ticket_id(itsm))
        return self._finish(port, itsm, eng, link, recorded, merged, created, writes)

    def engineering_status(self, eng: Ticket | None) -> EngineeringStatus | None:
        """The engineering record as the procedure reads it (None when there is none)."""
        if eng is None:
            return None
        return engineering_status(eng, self.context.integration_users.values())

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
        for action in actions:
            if isinstance(action, JoinEscalation):
                writes += self.join(itsm, action)
            elif isinstance(action, CloseFurtherRecords):
                writes += self.close_further(itsm, action, present)
        return itsm, eng, created, writes

    def join(self, itsm: Ticket, action: JoinEscalation) -> int:
        """Link a repeat to the engineering record of the escalation it joined, both ways."""
        if action.engineering is None:
            return 0
        context = self.context
        eng_system = context.mapping.partner_of(itsm.ref.system)
        url = browse_url(context.mapping, eng_system, action.engineering, action.engineering)
        primary = action.primary_key or action.primary
        context.adapters[eng_system].add_link(
            action.engineering,
            *_titled(paired_link(itsm), f"Repeat of this issue: {ticket_id(itsm)}"),
        )
        context.adapters[itsm.ref.system].add_link(
            ticket_id(itsm),
            url or action.engineering,
            f"Joined the escalation of {primary}: {action.engineering}",
        )
        for system, record in (
            (eng_system, action.engineering),
            (itsm.ref.system, ticket_id(itsm)),
        ):
            context.metrics.write(system.value, "link")
            context.store.audit(
                system.value, record, "link", None, primary, reason="repeat joined an escalation"
            )
        return 2

    def close_further(self, itsm: Ticket, action: CloseFurtherRecords, present: set[Marker]) -> int:
        """Resolve (or tell) each record a further level opened, once: its ITSM note names it."""
        context = self.context
        system = itsm.ref.system
        iid = ticket_id(itsm)
        writes = 0
        for comment in itsm.comments:
            marker = find_marker(comment.body)
            if marker is None or marker.system is not system or marker.ticket != iid:
                continue
            if not marker.item.startswith("further-"):
                continue
            found = _FURTHER.search(comment.body)
            if found is None:
                continue
            key = found.group("key")
            target = context.mapping.partner_of(system)
            adapter = context.adapters[target]
            done = Marker(system, iid, f"further-closed-{key}")
            if adapter.find_comment_by_marker(key, done) is not None:
                continue
            if action.mode == "close":
                there = self.reader.read(target, key)
                wanted = set_values(there, {"status": Status.RESOLVED})
                write = to_vendor(context.mapping, target, wanted, ["status"])
                if not write.is_empty() and there.status not in (Status.RESOLVED, Status.CLOSED):
                    adapter.apply(key, write)
                    writes += 1
            adapter.add_comment(key, action.body, public=False, marker=done)
            context.metrics.write(target.value, "comment")
            context.store.audit(target.value, key, "comment", None, done.text(), reason=action.body)
            writes += 1
        return writes

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
        self, itsm: Ticket, action: CreateEngineeringRecord, actions: Sequence[Action] = ()
    ) -> tuple[list[str], dict[str, Any]]:
        """The ITSM fields an engineering record is created with, the decision's texts, and the
        values its other `actions` give the ITSM record (the tag, a priority), which the new
        record starts with, as the ITSM record will have them."""
        labels = list(dict.fromkeys([*itsm.labels, *action.labels]))
        overrides: dict[str, Any] = {
            "summary": action.summary,
            "description": action.description,
        }
        for other in actions:
            if isinstance(other, AddLabel) and other.label not in labels:
                labels.append(other.label)
            elif isinstance(other, RemoveLabel) and other.label in labels:
                labels.remove(other.label)
            elif isinstance(other, SetPriority):
                overrides["priority"] = other.priority
        overrides["labels"] = tuple(labels)
        # The level's routing (queue, assignment group, component, team), written where the
        # mapping maps `custom.<name>` on the target system.
        overrides.update({f"custom.{name}": value for name, value in action.dispatch})
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
