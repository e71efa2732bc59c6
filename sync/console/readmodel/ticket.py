"""A pair's page: both records as last synced, the escalation, every audited write on either
record, its messages and dead letters; and the decision trace `explain` prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from escalation.decide import decide
from escalation.decision import EngineeringStatus, decision_to_dict
from escalation.explain import describe_action
from escalation.policy import Policy
from mapping.model import Status
from sync.config.settings import Settings
from sync.console.readmodel.records import ReadRecords, ReadTicket
from sync.console.readmodel.shared import (
    STATE_LABELS,
    FailedEvent,
    Record,
    RecordRef,
    failed_events,
    installed,
    itsm_of,
    key_of,
    person,
    split_ref,
    title,
    url_of,
)
from sync.notify.notifier import RESOURCE
from sync.notify.outbox import OutboxEntry
from sync.notify.outbox import list_entries as outbox_entries
from sync.notify.registry import build_notifiers
from sync.procedure.ledger import LedgerRow, ledger_view
from sync.procedure.step import PolicyEscalation
from sync.store.database import AuditEntry, Link, Snapshot, SnapshotRow, Store, StoreSession

TIMELINE_LIMIT = 300
# How many snapshots of a system are searched for a key typed on the page (an unpaired record).
KEY_SEARCH_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class Side:
    """One record of a pair, as last synced."""

    system: str
    ident: str
    key: str
    url: str | None
    summary: str | None
    status: str | None
    priority: str | None
    assignee: str | None
    labels: tuple[str, ...]
    synced_at: datetime | None

    @property
    def system_name(self) -> str:
        """The system in words (its registry title)."""
        return title(self.system)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One audited write or action, on either record of the pair."""

    at: datetime
    system: str
    record: str
    field: str
    from_value: str | None
    to_value: str | None
    reason: str
    actor: str | None

    @property
    def system_name(self) -> str:
        """The system (or channel) in words."""
        return title(self.system)


@dataclass(frozen=True, slots=True)
class TicketView:
    """A pair's page: both records, the escalation, every write, messages and dead letters."""

    ref: str
    itsm: Side
    engineering: Side | None
    state: str
    level: str | None
    requested_at: datetime | None
    requested_by: str | None
    reason: str | None
    approved_at: datetime | None
    approved_by: str | None
    released_at: datetime | None
    timeline: tuple[TimelineEntry, ...]
    mails: tuple[OutboxEntry, ...]
    dead_letters: tuple[FailedEvent, ...]
    chat: tuple[tuple[str, str], ...]

    @property
    def state_label(self) -> str:
        """The escalation state in words."""
        return STATE_LABELS.get(self.state, self.state)

    @property
    def system(self) -> str:
        """The system of the record escalations are decided on."""
        return split_ref(self.ref)[0]

    @property
    def ident(self) -> str:
        """That record's id."""
        return split_ref(self.ref)[1]


@dataclass(frozen=True, slots=True)
class TraceRule:
    """One rule of a decision trace."""

    rule: str
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class Trace:
    """What `explain` prints for a ticket, decided now on the record as read from its system."""

    at: datetime
    before: str
    after: str
    level: str | None
    today: int
    active: int
    assignee: str | None
    assignee_active: int
    rules: tuple[TraceRule, ...]
    next_actions: tuple[str, ...]
    data: dict[str, Any]


def read_ticket(
    store: Store, settings: Settings, records: ReadRecords, system: str, ident: str
) -> TicketView | None:
    """A pair's page, found by either record (id, key or number); None when unknown."""
    if not installed(system):
        return None
    with store.reading() as tx:
        link = tx.get_link(system, ident)
        if link is not None:
            itsm_system, itsm_id = _itsm_side(settings, link)
        else:
            itsm_system, itsm_id = system, _stable_id(tx, system, ident)
        entry = tx.orm.scalars(
            sa.select(LedgerRow).where(LedgerRow.ticket_ref == f"{itsm_system}:{itsm_id}")
        ).first()
        itsm_snap = tx.get_snapshot(itsm_system, itsm_id)
        if itsm_snap is None and entry is None and link is None:
            return None
        itsm = _side(itsm_system, itsm_id, itsm_snap)
        if itsm_snap is None:
            read = records([(itsm_system, itsm_id)]).get((itsm_system, itsm_id))
            if read is not None:
                itsm = _side(itsm_system, itsm_id, None, read)
        engineering: Side | None = None
        mine: list[RecordRef] = [(itsm_system, itsm_id)]
        if link is not None:
            key = link.side(itsm_system).record_key
            if key and itsm.key == itsm.ident:
                itsm = replace(itsm, key=key)
            partner = link.other(itsm_system)
            engineering = _side(*partner, tx.get_snapshot(*partner))
            mine.append(partner)
        names = {itsm.key, itsm_id, *([engineering.key] if engineering else [])}
        audit = _audit(tx, mine, names - {itsm_id})
        mails = [m for name in names for m in outbox_entries(tx, ticket=name, limit=200)]
        dead = failed_events(
            tx,
            (
                d
                for d in tx.list_dead_letters(include_replayed=True)
                if (d.system, d.ticket) in set(mine) or d.ticket in names
            ),
        )
    return TicketView(
        ref=f"{itsm_system}:{itsm_id}",
        itsm=itsm,
        engineering=engineering,
        state=entry.state if entry else "none",
        level=entry.level if entry else None,
        requested_at=entry.requested_at if entry else None,
        requested_by=entry.requested_by if entry else None,
        reason=entry.reason if entry else None,
        approved_at=entry.approved_at if entry else None,
        approved_by=entry.approved_by if entry else None,
        released_at=entry.released_at if entry else None,
        timeline=tuple(
            TimelineEntry(
                a.at, a.system, a.record, a.field, a.from_value, a.to_value, a.reason, a.actor
            )
            for a in audit
        ),
        mails=tuple(sorted({m.id: m for m in mails}.values(), key=lambda m: m.id)),
        dead_letters=dead,
        # Chat channels and the like: resources a notifier created for the ticket.
        chat=tuple(
            dict.fromkeys(
                (m.channel, m.result_ref) for m in mails if m.kind == RESOURCE and m.result_ref
            )
        ),
    )


def _audit(
    tx: StoreSession, records: Sequence[RecordRef], other_names: set[str]
) -> list[AuditEntry]:
    """Every audited write on the pair's records, newest first; notifier actions are audited
    under their channel and the ticket's key, so those are found by name."""
    found: list[AuditEntry] = []
    for system, record in records:
        found.extend(tx.list_audit(system=system, record=record, limit=TIMELINE_LIMIT))
    for name in other_names:
        found.extend(tx.list_audit(record=name, limit=TIMELINE_LIMIT))
    unique = {a.id: a for a in found}.values()
    return sorted(unique, key=lambda a: (a.at, a.id), reverse=True)[:TIMELINE_LIMIT]


def _itsm_side(settings: Settings, link: Link) -> RecordRef:
    """The side escalations are decided on: where the mapping's routes start."""
    itsm = itsm_of(settings)
    side = next((s for s in link.sides if s.system in itsm), link.sides[0])
    return side.system, side.ticket_id


def _stable_id(tx: StoreSession, system: str, ident: str) -> str:
    """The id snapshots use for a record typed by its key (a number an operator knows)."""
    if tx.get_snapshot(system, ident) is not None:
        return ident
    stmt = (
        sa.select(SnapshotRow.ticket_id, SnapshotRow.data)
        .where(SnapshotRow.system == system)
        .limit(KEY_SEARCH_LIMIT)
    )
    for ticket_id, data in tx.orm.execute(stmt):
        if isinstance(data, dict) and (data.get("ref") or {}).get("key") == ident:
            return str(ticket_id)
    return ident


def _side(system: str, ident: str, snap: Snapshot | None, read: Record | None = None) -> Side:
    data: Record = snap.data if snap else (read or {})
    return Side(
        system=system,
        ident=ident,
        key=key_of(data) or ident,
        url=url_of(data),
        summary=data.get("summary"),
        status=data.get("status"),
        priority=data.get("priority"),
        assignee=person(data.get("assignee")),
        labels=tuple(data.get("labels") or ()),
        synced_at=snap.synced_at if snap else None,
    )


def read_trace(
    store: Store, settings: Settings, read: ReadTicket | None, now: datetime, ref: str
) -> Trace:
    """The decision trace for the ITSM record `ref` ("system:id"), as `explain` gives it: the
    record read from its system now, decided against the ledger, nothing recorded.

    Raises what reading the record raises (the page shows it) and LookupError when no policy
    is configured.
    """
    policy: Policy | None = settings.compiled_policy
    if policy is None or read is None:
        raise LookupError("no escalation policy is configured")
    ticket = read(settings, ref)
    system, ident = split_ref(ref)
    # The escalation's chat room as the daemon's step reads it (what `explain` does too).
    step = PolicyEscalation(policy, notifiers=build_notifiers(settings))
    with store.reading() as tx:
        view = ledger_view(tx, ticket, now, policy)
        chat = step.chat_status(tx, ticket)
        link = tx.get_link(system, ident) if installed(system) else None
        engineering = None
        if link is not None:
            eng = tx.get_snapshot(*link.other(system))
            if eng is not None and eng.data.get("status"):
                engineering = EngineeringStatus(None, Status(eng.data["status"]))
    decision = decide(ticket, view, now, policy, engineering=engineering, chat=chat)
    assignee = decision.assignee
    return Trace(
        at=now,
        before=view.entry.state.value if view.entry else "none",
        after=decision.state.value,
        level=decision.level,
        today=view.escalations_today,
        active=view.active_count,
        assignee=assignee,
        assignee_active=view.active_by_assignee.get(assignee, 0) if assignee else 0,
        rules=tuple(TraceRule(r.rule, r.outcome, r.detail) for r in decision.reasons),
        next_actions=tuple(describe_action(a) for a in decision.actions),
        data=decision_to_dict(decision),
    )
