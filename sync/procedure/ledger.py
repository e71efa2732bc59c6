"""The escalation ledger in the store: one row per ticket, fingerprint sightings, a slot lock.

decide() reads a `LedgerView`; `apply_decision` records what it decided. An escalation that
becomes active takes a slot (per day, active, per assignee). Two workers approving different
tickets at once could each see a free slot, so the slot is taken under a lock and the limits are
counted again after the lock is held:

- PostgreSQL: `SELECT ... FOR UPDATE` on the one row of `escalation_slots` (READ COMMITTED, so
  the recount sees every escalation committed before the lock was granted);
- SQLite: `BEGIN IMMEDIATE` (the store's engine starts every transaction that way; on a bare
  connection this module does it), which makes writers queue for the database lock.

Nothing here commits: the caller's transaction (`Store.session()`) commits the ledger row, its
outbox e-mails and the lock release together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from escalation.decide import day_start, decide, fingerprint
from escalation.decide.reading import linked_ticket
from escalation.decision import (
    AddNote,
    Decision,
    FingerprintSighting,
    LedgerEntry,
    LedgerView,
    NoteKind,
    OpenEscalation,
    Reason,
    Reservation,
    ledger_key,
)
from escalation.memory import fingerprint_window, is_active, next_entry, primary_for
from escalation.policy import Policy
from escalation.wording import limit_count
from mapping.model import EscalationState, Priority, Ref, Ticket
from sync.procedure import history
from sync.store.database import UTCDateTime
from sync.store.db import Base

SLOT_ROW = "escalations"


class LedgerRow(Base):
    """One ticket's place in the escalation procedure."""

    __tablename__ = "escalation_ledger"
    __table_args__ = (sa.Index("ix_escalation_ledger_active", "approved_at", "released_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ticket_ref: Mapped[str] = mapped_column(sa.String(200), unique=True)
    state: Mapped[str] = mapped_column(sa.String(32))
    level: Mapped[str | None] = mapped_column(sa.String(64))
    assignee: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    requested_by: Mapped[str | None] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(sa.String(400))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    processed_command_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    notice_key: Mapped[str | None] = mapped_column(sa.String(400))
    engineering_ref: Mapped[str | None] = mapped_column(sa.String(200))
    last_customer_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    priority: Mapped[str | None] = mapped_column(sa.String(8))
    priority_asked: Mapped[str | None] = mapped_column(sa.String(8))
    target_level: Mapped[str | None] = mapped_column(sa.String(64))
    joined_to: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    ticket_key: Mapped[str | None] = mapped_column(sa.String(200))
    category: Mapped[str | None] = mapped_column(sa.String(200))
    # When a time-driven rule next falls due for this ticket (the scheduler's index).
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class FingerprintRow(Base):
    """A ticket seen with a fingerprint (for the repeated-occurrence trigger)."""

    __tablename__ = "escalation_fingerprints"
    __table_args__ = (sa.Index("ix_escalation_fingerprints_seen", "fingerprint", "seen_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    ticket_ref: Mapped[str] = mapped_column(sa.String(200))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SlotRow(Base):
    """The row every slot reservation locks, so reservations happen one at a time."""

    __tablename__ = "escalation_slots"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=0)


# --- helpers -------------------------------------------------------------------------------------


def _orm(session: Any) -> Session:
    """The SQLAlchemy session, given one or the store's `StoreSession` (which holds `.orm`)."""
    orm = getattr(session, "orm", session)
    if not isinstance(orm, Session):
        raise TypeError(f"expected a SQLAlchemy Session or StoreSession, got {type(session)!r}")
    return orm


def _key(ticket_ref: str | Ref | Ticket) -> str:
    if isinstance(ticket_ref, Ticket):
        return ledger_key(ticket_ref.ref)
    if isinstance(ticket_ref, Ref):
        return ledger_key(ticket_ref)
    return ticket_ref


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _entry(row: LedgerRow | sa.Row[Any] | None) -> LedgerEntry | None:
    if row is None:
        return None
    return LedgerEntry(
        state=EscalationState(row.state),
        level=row.level,
        assignee=row.assignee,
        fingerprint=row.fingerprint,
        requested_at=row.requested_at,
        requested_by=row.requested_by,
        reason=row.reason,
        approved_at=row.approved_at,
        approved_by=row.approved_by,
        released_at=row.released_at,
        processed_command_ids=frozenset(row.processed_command_ids or ()),
        notice_key=row.notice_key,
        engineering_ref=row.engineering_ref,
        last_customer_update_at=row.last_customer_update_at,
        priority=Priority(row.priority) if row.priority else None,
        priority_asked=Priority(row.priority_asked) if row.priority_asked else None,
        target_level=row.target_level,
        joined_to=row.joined_to,
        ticket_key=row.ticket_key,
        category=row.category,
    )


def _row(orm: Session, key: str) -> LedgerRow | None:
    return orm.execute(select(LedgerRow).where(LedgerRow.ticket_ref == key)).scalar_one_or_none()


_ACTIVE = sa.and_(LedgerRow.approved_at.is_not(None), LedgerRow.released_at.is_(None))


def _count(orm: Session, *conditions: Any) -> int:
    return int(
        orm.execute(select(func.count()).select_from(LedgerRow).where(*conditions)).scalar_one()
    )


# The view's queries, built once: every sync of an ITSM ticket runs them.
_LEDGER = LedgerRow.__table__
_FINGERPRINTS = FingerprintRow.__table__
_OTHERS = _LEDGER.c.ticket_ref != sa.bindparam("key")
_ACTIVE_ROW = sa.and_(_LEDGER.c.approved_at.is_not(None), _LEDGER.c.released_at.is_(None))
_TODAY_ROW = _LEDGER.c.approved_at >= sa.bindparam("start")
# Per assignee, the other escalations approved today and those active (one row per assignee
# with any, so the totals are the sums).
_VIEW_COUNTS = (
    select(_LEDGER.c.assignee, func.count().filter(_TODAY_ROW), func.count().filter(_ACTIVE_ROW))
    .where(_OTHERS, sa.or_(_TODAY_ROW, _ACTIVE_ROW))
    .group_by(_LEDGER.c.assignee)
)
_VIEW_SIGHTINGS = select(
    _FINGERPRINTS.c.fingerprint, _FINGERPRINTS.c.ticket_ref, _FINGERPRINTS.c.seen_at
).where(
    _FINGERPRINTS.c.seen_at >= sa.bindparam("since"),
    _FINGERPRINTS.c.ticket_ref != sa.bindparam("key"),
)
_VIEW_ENTRY = select(_LEDGER).where(_LEDGER.c.ticket_ref == sa.bindparam("key"))


# --- reading -------------------------------------------------------------------------------------


def get_entry(session: Any, ticket_ref: str | Ref | Ticket) -> LedgerEntry | None:
    """This ticket's ledger entry, or None when it has none."""
    return _entry(_row(_orm(session), _key(ticket_ref)))


def ledger_view(
    session: Any, ticket_ref: str | Ref | Ticket, now: datetime, policy: Policy
) -> LedgerView:
    """What decide() sees for a ticket at `now`: counts of the others, sightings, its entry.

    Counts exclude the ticket itself (its own slot is not competition for it).
    """
    orm = _orm(session)
    key = _key(ticket_ref)
    now = _utc(now)
    start = day_start(now, policy.timezone)
    counts = orm.execute(_VIEW_COUNTS, {"key": key, "start": start}).all()
    today = sum(int(n) for _, n, _ in counts)
    active = sum(int(n) for _, _, n in counts)
    per_assignee = {str(a): int(n) for a, _, n in counts if a is not None and n}
    window = fingerprint_window(policy)
    sightings: tuple[FingerprintSighting, ...] = ()
    if window.total_seconds() > 0:
        rows = orm.execute(_VIEW_SIGHTINGS, {"key": key, "since": now - window})
        sightings = tuple(FingerprintSighting(f, ref, seen) for f, ref, seen in rows)
    entry = _entry(orm.execute(_VIEW_ENTRY, {"key": key}).first())
    return LedgerView(
        escalations_today=today,
        active_count=active,
        active_by_assignee=per_assignee,
        recent_fingerprints=sightings,
        entry=entry,
        day_start=start,
        primary=_primary(orm, key, entry, ticket_ref, policy),
    )


_OPEN_STATES = (
    EscalationState.REQUESTED.value,
    EscalationState.INCOMPLETE.value,
    EscalationState.PENDING_APPROVAL.value,
)


def _primary(
    orm: Session,
    key: str,
    entry: LedgerEntry | None,
    ticket_ref: str | Ref | Ticket,
    policy: Policy,
) -> OpenEscalation | None:
    """The escalation this ticket joined, else the open one of its issue (see primary_for)."""
    if entry is not None and entry.joined_to:
        joined = _entry(orm.execute(_VIEW_ENTRY, {"key": entry.joined_to}).first())
        return OpenEscalation(entry.joined_to, joined) if joined is not None else None
    if not policy.duplicates.join or not isinstance(ticket_ref, Ticket):
        return None
    same: list[Any] = []
    mark = fingerprint(ticket_ref, policy) if policy.duplicates.by_fingerprint else None
    if mark is not None:
        same.append(_LEDGER.c.fingerprint == mark)
    links = linked_ticket(ticket_ref, policy)
    if links:
        same += [_LEDGER.c.ticket_ref.in_(links), _LEDGER.c.ticket_key.in_(links)]
    if not same:
        return None
    rows = orm.execute(
        select(_LEDGER).where(
            _LEDGER.c.ticket_ref != key,
            sa.or_(*same),
            sa.or_(_LEDGER.c.state.in_(_OPEN_STATES), _ACTIVE_ROW),
        )
    ).all()
    found = {row.ticket_ref: e for row in rows if (e := _entry(row)) is not None}
    return primary_for(key, entry, found, policy, ticket_ref)


# --- the slot lock -------------------------------------------------------------------------------


def _lock_slots(orm: Session) -> None:
    """Serialise reservations until the caller's transaction ends."""
    dialect = orm.get_bind().dialect.name
    if dialect == "sqlite":
        raw = orm.connection().connection.driver_connection
        if raw is not None and not getattr(raw, "in_transaction", True):
            orm.connection().exec_driver_sql("BEGIN IMMEDIATE")
        orm.execute(
            sqlite_insert(SlotRow).values(name=SLOT_ROW, version=0).on_conflict_do_nothing()
        )
    elif dialect == "postgresql":
        orm.execute(pg_insert(SlotRow).values(name=SLOT_ROW, version=0).on_conflict_do_nothing())
        orm.execute(select(SlotRow.version).where(SlotRow.name == SLOT_ROW).with_for_update())
    elif orm.get(SlotRow, SLOT_ROW) is None:
        orm.add(SlotRow(name=SLOT_ROW, version=0))
        orm.flush()
    orm.execute(
        sa.update(SlotRow).where(SlotRow.name == SLOT_ROW).values(version=SlotRow.version + 1)
    )


def _over_limit(orm: Session, key: str, res: Reservation) -> tuple[str, int, int] | None:
    """The first limit a new active escalation would break, counted now: (name, count, limit)."""
    others = LedgerRow.ticket_ref != key
    if res.max_per_day is not None:
        n = _count(orm, others, LedgerRow.approved_at >= res.day_start)
        if n >= res.max_per_day:
            return "max_per_day", n, res.max_per_day
    if res.max_active is not None:
        n = _count(orm, others, _ACTIVE)
        if n >= res.max_active:
            return "max_active", n, res.max_active
    if res.max_active_per_assignee is not None and res.assignee is not None:
        n = _count(orm, others, _ACTIVE, LedgerRow.assignee == res.assignee)
        if n >= res.max_active_per_assignee:
            return "max_active_per_assignee", n, res.max_active_per_assignee
    return None


# --- writing -------------------------------------------------------------------------------------


def apply_decision(
    session: Any, ticket_ref: str | Ref | Ticket, decision: Decision, now: datetime
) -> bool:
    """Record a decision in the caller's transaction; False when its slot was taken meanwhile.

    When the decision activates an escalation, the limits are re-counted under the slot lock;
    if another worker took the last slot first, nothing is written and False is returned: the
    caller decides again (the lock is still held, so the new view is exact) or uses
    `record_decision`, which does that refusal for it.
    """
    orm = _orm(session)
    key = _key(ticket_ref)
    now = _utc(now)
    row = _row(orm, key)
    entry = _entry(row) or LedgerEntry()
    if decision.reservation is not None and not is_active(entry):
        _lock_slots(orm)
        if _over_limit(orm, key, decision.reservation) is not None:
            return False
    _write(orm, key, row, entry, decision, now)
    return True


def record_decision(
    session: Any, ticket_ref: str | Ref | Ticket, decision: Decision, now: datetime
) -> Decision:
    """Record a decision; if its slot was lost to another worker, record a refusal instead.

    Returns the decision that was recorded: the same one, or the refusal (its note names the
    limit and the count found under the lock) whose actions the caller then carries out.
    """
    if apply_decision(session, ticket_ref, decision, now):
        return decision
    orm = _orm(session)
    key = _key(ticket_ref)
    row = _row(orm, key)
    entry = _entry(row) or LedgerEntry()
    assert decision.reservation is not None
    hit = _over_limit(orm, key, decision.reservation)
    name, count, limit = hit if hit is not None else ("max_active", 0, 0)
    refused = refusal_after_lost_race(decision, entry, name, count, limit, _utc(now))
    _write(orm, key, row, entry, refused, _utc(now))
    return refused


def refusal_after_lost_race(
    decision: Decision, entry: LedgerEntry, limit: str, count: int, value: int, now: datetime
) -> Decision:
    """The refusal to record when another worker took the slot between view and record."""
    requested_at = entry.requested_at or (now if decision.request_started else None)
    body = (
        f"Escalation refused: limit reached: {limit} ({limit_count(limit, count)}, limit {value})."
    )
    reason = Reason(
        f"limit.{limit}",
        "fail",
        f"another escalation took the last slot first: {limit_count(limit, count)}, limit {value}",
        {"count": count, "limit": value},
    )
    return replace(
        decision,
        state=EscalationState.REFUSED,
        level=entry.level or decision.level,
        actions=(AddNote(body, kind=NoteKind.REFUSAL),),
        reasons=(*decision.reasons, reason),
        notice_key=f"refused:{limit}@{requested_at.isoformat() if requested_at else '-'}",
        approved_by=None,
        reservation=None,
    )


def _write(
    orm: Session,
    key: str,
    row: LedgerRow | None,
    entry: LedgerEntry,
    decision: Decision,
    now: datetime,
) -> None:
    new = next_entry(entry, decision, now)
    if row is None:
        row = LedgerRow(ticket_ref=key, processed_command_ids=[])
        orm.add(row)
    row.state = new.state.value
    row.level = new.level
    row.assignee = new.assignee
    row.fingerprint = new.fingerprint
    row.requested_at = new.requested_at
    row.requested_by = new.requested_by
    row.reason = new.reason
    row.approved_at = new.approved_at
    row.approved_by = new.approved_by
    row.released_at = new.released_at
    row.processed_command_ids = sorted(new.processed_command_ids)
    row.notice_key = new.notice_key
    row.engineering_ref = new.engineering_ref
    row.last_customer_update_at = new.last_customer_update_at
    row.priority = new.priority.value if new.priority else None
    row.priority_asked = new.priority_asked.value if new.priority_asked else None
    row.target_level = new.target_level
    row.joined_to = new.joined_to
    row.ticket_key = new.ticket_key
    row.category = new.category
    row.wake_at = decision.wake_at
    row.updated_at = now
    if decision.fingerprint and decision.fingerprint != entry.fingerprint:
        orm.add(FingerprintRow(fingerprint=decision.fingerprint, ticket_ref=key, seen_at=now))
    history.keep(orm, key, entry.state, decision, now)
    orm.flush()


def open_escalations(session: Any) -> list[tuple[str, str]]:
    """(system, ticket id) of every escalation awaiting approval or active.

    Their timers (approval overdue, periodic customer updates) need a decision even when the
    ticket itself does not change, so the daemon re-queues them now and then.
    """
    orm = _orm(session)
    refs = orm.scalars(
        sa.select(LedgerRow.ticket_ref).where(
            sa.or_(
                sa.and_(LedgerRow.approved_at.is_not(None), LedgerRow.released_at.is_(None)),
                LedgerRow.state.in_(
                    (EscalationState.PENDING_APPROVAL.value, EscalationState.JOINED.value)
                ),
            )
        )
    )
    found: list[tuple[str, str]] = []
    for ref in refs:
        system, _, ident = ref.partition(":")
        if ident:
            found.append((system, ident))
    return found


@dataclass(frozen=True, slots=True)
class EscalationCounts:
    """What `status` reports: escalations active, and requests awaiting a decision."""

    active: int
    requested: int


def escalation_counts(session: Any) -> EscalationCounts:
    """Escalations active now (approved, not released: the rule the limits count by) and
    requests not yet decided."""
    orm = _orm(session)
    requested = _count(
        orm,
        LedgerRow.state == EscalationState.REQUESTED.value,
        LedgerRow.approved_at.is_(None),
    )
    return EscalationCounts(active=_count(orm, _ACTIVE), requested=requested)


def set_engineering_ref(session: Any, ticket_ref: str | Ref | Ticket, engineering: str) -> None:
    """Remember which engineering record an escalation created or linked."""
    row = _row(_orm(session), _key(ticket_ref))
    if row is not None:
        row.engineering_ref = engineering


def prune_fingerprints(session: Any, before: datetime) -> int:
    """Forget fingerprint sightings older than `before`; returns how many were removed."""
    result = _orm(session).execute(
        sa.delete(FingerprintRow).where(FingerprintRow.seen_at < _utc(before))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def decide_and_record(
    session: Any,
    ticket: Ticket,
    now: datetime,
    policy: Policy,
    **decide_kwargs: Any,
) -> Decision:
    """View, decide and record in the caller's transaction; the recorded decision is returned."""
    view = ledger_view(session, ticket, now, policy)
    decision = decide(ticket, view, now, policy, **decide_kwargs)
    return record_decision(session, ticket, decision, now)


def quiet_decision(
    session: Any,
    ticket: Ticket,
    now: datetime,
    policy: Policy,
    **decide_kwargs: Any,
) -> Decision | None:
    """The decision for the ticket when recording it would change nothing (no action, no slot
    to take, the ledger entry as it is), so a read-only transaction serves; else None.

    Most syncs of a ticket outside the procedure end here, without taking the write lock.
    """
    view = ledger_view(session, ticket, now, policy)
    decision = decide(ticket, view, now, policy, **decide_kwargs)
    if decision.actions or decision.reservation is not None:
        return None
    entry = view.entry or LedgerEntry()
    if next_entry(entry, decision, _utc(now)) != entry:
        return None
    if decision.wake_at != _wake_at(_orm(session), _key(ticket)):
        return None
    return decision


def _wake_at(orm: Session, key: str) -> datetime | None:
    """When the ledger says this ticket is next due for a decision (None: not at all)."""
    found = orm.execute(select(LedgerRow.wake_at).where(LedgerRow.ticket_ref == key)).first()
    return found[0] if found is not None else None


def due_for_decision(session: Any, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
    """(system, ticket id) of tickets a time-driven rule is due for at `now`, soonest first."""
    rows = _orm(session).scalars(
        select(LedgerRow.ticket_ref)
        .where(LedgerRow.wake_at.is_not(None), LedgerRow.wake_at <= _utc(now))
        .order_by(LedgerRow.wake_at)
        .limit(limit)
    )
    found: list[tuple[str, str]] = []
    for ref in rows:
        system, _, ident = ref.partition(":")
        if ident:
            found.append((system, ident))
    return found
