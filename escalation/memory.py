"""An in-memory escalation ledger with the same rules as the store's (for what-if and tests).

`policy simulate` plays tickets through decide() against this ledger; the tests use it to
check sequences of decisions. The store's ledger
(`sync.procedure.ledger`) applies the same rules under a database lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from escalation.decide import day_start, fingerprint
from escalation.decide.reading import linked_ticket
from escalation.decide.times import aware
from escalation.decision import (
    Decision,
    EmailCustomer,
    FingerprintSighting,
    LedgerEntry,
    LedgerView,
    OpenEscalation,
    Reservation,
)
from escalation.policy import Policy, RepeatedTrigger
from mapping.model import EscalationState, Ticket

# A request that has not become active yet (it can be joined, as an active escalation can).
_WAITING = frozenset(
    {EscalationState.REQUESTED, EscalationState.INCOMPLETE, EscalationState.PENDING_APPROVAL}
)


def fingerprint_window(policy: Policy) -> timedelta:
    """How far back fingerprints matter: the widest repeated-occurrence window (0 if none)."""
    hours = [t.window_hours for t in policy.triggers if isinstance(t, RepeatedTrigger)]
    return timedelta(hours=max(hours, default=0))


def is_active(entry: LedgerEntry) -> bool:
    """Approved and not yet released."""
    return entry.approved_at is not None and entry.released_at is None


def is_open(entry: LedgerEntry) -> bool:
    """Waiting for the gate or approval, or active: a repeat of its issue joins it."""
    return entry.state in _WAITING or is_active(entry)


def primary_for(
    key: str,
    entry: LedgerEntry | None,
    entries: Mapping[str, LedgerEntry],
    policy: Policy,
    ticket: Ticket | None,
) -> OpenEscalation | None:
    """The escalation ticket `key` joined, else the open one of the same issue, if any.

    The same issue is another ticket with this one's fingerprint or the ticket its link field
    names (`duplicates`); an active escalation is preferred to a waiting one, then the oldest.
    Shared by the in-memory and the store ledger (which passes only the candidates).
    """
    if entry is not None and entry.joined_to:
        joined = entries.get(entry.joined_to)
        return OpenEscalation(entry.joined_to, joined) if joined is not None else None
    dup = policy.duplicates
    if not dup.join or ticket is None:
        return None
    mark = fingerprint(ticket, policy) if dup.by_fingerprint else None
    links = set(linked_ticket(ticket, policy))
    found = [
        (k, e)
        for k, e in entries.items()
        if k != key
        and is_open(e)
        and (
            (mark is not None and e.fingerprint == mark)
            or k in links
            or (e.ticket_key is not None and e.ticket_key in links)
        )
    ]
    if not found:
        return None
    floor = datetime.min.replace(tzinfo=UTC)
    found.sort(key=lambda ke: (not is_active(ke[1]), aware(ke[1].requested_at or floor)))
    return OpenEscalation(*found[0])


def refusal_by_reservation(
    reservation: Reservation, entries: list[LedgerEntry]
) -> tuple[str, int, int] | None:
    """The first limit an activation would break given the other entries, or None.

    Returns (limit name, current count, limit). Shared by the in-memory and the store ledger.
    """
    active = [e for e in entries if is_active(e)]
    if reservation.max_per_day is not None:
        today = sum(
            1
            for e in entries
            if e.approved_at is not None and e.approved_at >= reservation.day_start
        )
        if today >= reservation.max_per_day:
            return "max_per_day", today, reservation.max_per_day
    if reservation.max_active is not None and len(active) >= reservation.max_active:
        return "max_active", len(active), reservation.max_active
    if reservation.max_active_per_assignee is not None and reservation.assignee is not None:
        mine = sum(1 for e in active if e.assignee == reservation.assignee)
        if mine >= reservation.max_active_per_assignee:
            return "max_active_per_assignee", mine, reservation.max_active_per_assignee
    return None


def next_entry(entry: LedgerEntry, decision: Decision, now: datetime) -> LedgerEntry:
    """The ledger entry after a decision was applied (the reservation already granted)."""
    processed = entry.processed_command_ids | frozenset(decision.processed_command_ids)
    new = replace(
        entry,
        state=decision.state,
        level=decision.level,
        assignee=decision.assignee if decision.assignee is not None else entry.assignee,
        fingerprint=decision.fingerprint or entry.fingerprint,
        processed_command_ids=processed,
        notice_key=decision.notice_key,
        requested_by=decision.requested_by,
        reason=decision.request_reason,
        priority=decision.priority,
        priority_asked=decision.priority_asked,
        target_level=decision.target_level,
        joined_to=decision.joined_to,
    )
    if decision.request_started:
        new = replace(new, requested_at=now)
    if decision.reservation is not None:
        new = replace(new, approved_at=now, approved_by=decision.approved_by, released_at=None)
    elif decision.approved_by and decision.state is EscalationState.APPROVED:
        new = replace(new, approved_by=decision.approved_by)
    if decision.releases and new.approved_at is not None and new.released_at is None:
        new = replace(new, released_at=now)
    if any(isinstance(a, EmailCustomer) for a in decision.actions):
        new = replace(new, last_customer_update_at=now)
    if new != entry:
        # How the ticket is named, kept whenever its entry is written anyway (never a write
        # of its own: a ticket outside the procedure keeps no entry for it).
        new = replace(
            new,
            ticket_key=decision.ticket_key or entry.ticket_key,
            category=decision.category or entry.category,
        )
    return new


@dataclass
class InMemoryLedger:
    """A ledger held in a dict; single-threaded (what-if runs and tests)."""

    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    sightings: list[FingerprintSighting] = field(default_factory=list)

    def view(
        self, key: str, now: datetime, policy: Policy, ticket: Ticket | None = None
    ) -> LedgerView:
        """What decide() sees for ticket `key` at `now` (`ticket` finds a repeat's escalation)."""
        start = day_start(now, policy.timezone)
        others = [e for k, e in self.entries.items() if k != key]
        active = [e for e in others if is_active(e)]
        per_assignee = Counter(e.assignee for e in active if e.assignee is not None)
        since = now - fingerprint_window(policy)
        recent = tuple(s for s in self.sightings if s.seen_at >= since and s.ticket != key)
        return LedgerView(
            escalations_today=sum(
                1 for e in others if e.approved_at is not None and e.approved_at >= start
            ),
            active_count=len(active),
            active_by_assignee=dict(per_assignee),
            recent_fingerprints=recent,
            entry=self.entries.get(key),
            day_start=start,
            primary=primary_for(key, self.entries.get(key), self.entries, policy, ticket),
        )

    def apply(self, key: str, decision: Decision, now: datetime) -> bool:
        """Record a decision; False (nothing recorded) when its reservation no longer fits."""
        entry = self.entries.get(key, LedgerEntry())
        if decision.reservation is not None and not is_active(entry):
            others = [e for k, e in self.entries.items() if k != key]
            if refusal_by_reservation(decision.reservation, others) is not None:
                return False
        if decision.fingerprint and decision.fingerprint != entry.fingerprint:
            self.sightings.append(FingerprintSighting(decision.fingerprint, key, now))
        self.entries[key] = next_entry(entry, decision, now)
        return True
