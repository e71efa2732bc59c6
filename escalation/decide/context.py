"""The run: what one decision reads, and the decision as its stages build it.

Every stage takes the run and may change it: move the state and level, add actions and notes,
record a reason for each rule it evaluates. The run lives only while decide() runs; what leaves
it is the frozen Decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from escalation.chat import ChatStatus
from escalation.decide.commands import command_words
from escalation.decide.reading import defang, fingerprint, person_key
from escalation.decision import (
    Action,
    AddNote,
    Decision,
    EngineeringStatus,
    LedgerEntry,
    LedgerView,
    NoteKind,
    Outcome,
    Reason,
    Reservation,
)
from escalation.policy import Level, People, Policy, PriorityRule, Trigger
from mapping.model import EscalationState, Priority, Ticket

S = EscalationState

# States from which a fresh request (a new command) starts the procedure again.
RESTARTABLE = frozenset({S.NONE, S.REJECTED, S.REFUSED, S.WITHDRAWN})
# States of a request that has not become active yet.
WAITING = frozenset({S.REQUESTED, S.INCOMPLETE, S.PENDING_APPROVAL})
# States of an escalation that ended after running (a new request may start another).
FINISHED = frozenset({S.RESOLVED, S.CLOSED})


class Flow(Enum):
    """What a stage tells decide(): go on with the next stage, or the decision is made."""

    NEXT = "next"
    DONE = "done"


@dataclass(kw_only=True)
class Run:
    """One decision in the making (mutable on purpose: the stages build it in turn)."""

    # --- what the decision reads; no stage changes these ---
    ticket: Ticket
    ledger: LedgerView
    entry: LedgerEntry  # the ledger's entry for the ticket; an empty one before any request
    now: datetime
    policy: Policy
    engineering: EngineeringStatus | None  # the paired engineering record, as last read
    rule: PriorityRule  # the policy's handling of the ticket's priority
    fingerprint: str | None
    # Approved and not released when the decision began. A further escalation (L2 -> L3) of an
    # active ticket keeps its slot, so it is neither limited again nor reserved twice.
    already_active: bool
    words: tuple[str, ...]  # the command words, quoted out of the notes we write
    chat: ChatStatus | None = None  # the escalation's chat room so far; None: no chat notifier

    # --- the escalation as the stages move it ---
    state: EscalationState
    level: str
    assignee: str | None  # whom the per-assignee limit counts this escalation under
    notice_key: str | None  # the key of the last note written; the same note is not repeated
    requested_by: str | None
    requester: str | None = None  # the requester as notes name them, when a comment asked
    request_reason: str | None
    requested_at: datetime | None
    request_started: bool = False
    fired: Trigger | None = None  # the proactive trigger that started the request, if one did
    approved_by: str | None = None
    reservation: Reservation | None = None
    priority: Priority | None = None  # the escalation's priority, once active
    priority_asked: Priority | None = None  # a change waiting for an approver
    target_level: str | None = None  # the level asked for, when not the next one
    joined_to: str | None = None
    wake_at: datetime | None = None

    # --- what the decision says ---
    actions: list[Action] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)  # command comments and tokens consumed

    def why(
        self, rule: str, outcome: Outcome, detail: str, compared: Mapping[str, Any] | None = None
    ) -> None:
        """Record that `rule` was evaluated, its outcome, and the values it compared."""
        self.reasons.append(Reason(rule, outcome, detail, dict(compared or {})))

    def note(self, kind: NoteKind, key: str, body: str) -> None:
        """Write an internal note unless the same note was the last one written."""
        if key == self.notice_key:
            return
        self.notice_key = key
        self.actions.append(AddNote(defang(body, self.words), kind=kind))

    def aside(self, kind: NoteKind, body: str) -> None:
        """Write an internal note that another rule keeps from repeating (a consumed comment
        or a fired timer), leaving the last note's key to the procedure's own notes."""
        self.actions.append(AddNote(defang(body, self.words), kind=kind))

    def once(self, token: str) -> bool:
        """True the first time `token` is seen for this ticket (it is then consumed)."""
        if token in self.entry.processed_command_ids or token in self.processed:
            return False
        self.processed.append(token)
        return True

    def wake(self, at: datetime) -> None:
        """A time-driven rule will decide differently at `at`: decide the ticket again then."""
        if at > self.now and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at

    def target(self) -> Level | None:
        """The level an escalation from the current level goes to (None at the top)."""
        if self.target_level is not None:
            asked = self.policy.level(self.target_level)
            if asked is not None:
                return asked
        return self.policy.next_level(self.level)

    def approvers(self, target: Level | None) -> People:
        """Who may approve escalating to `target`: the priority's approvers, else the level's."""
        if target is None:
            return People()
        return target.approvers if self.rule.approvers.empty else self.rule.approvers

    def request_key(self) -> str:
        """The current request's moment, which keys its notes and approval tokens."""
        return self.requested_at.isoformat() if self.requested_at else "-"

    def decision(self) -> Decision:
        """The decision as the stages left it."""
        return Decision(
            state=self.state,
            level=self.level,
            actions=tuple(self.actions),
            reasons=tuple(self.reasons),
            processed_command_ids=tuple(dict.fromkeys(self.processed)),
            assignee=self.assignee,
            fingerprint=self.fingerprint,
            notice_key=self.notice_key,
            requested_by=self.requested_by,
            request_reason=self.request_reason,
            approved_by=self.approved_by,
            reservation=self.reservation,
            request_started=self.request_started,
            priority=self.priority,
            priority_asked=self.priority_asked,
            target_level=self.target_level,
            joined_to=self.joined_to,
            ticket_key=self.ticket.ref.key or self.ticket.ref.id,
            category=self.ticket.category,
            wake_at=self.wake_at,
        )


Stage = Callable[[Run], Flow]


def begin(
    ticket: Ticket,
    ledger: LedgerView,
    now: datetime,
    policy: Policy,
    engineering: EngineeringStatus | None,
    chat: ChatStatus | None = None,
) -> Run:
    """A run that starts where the ledger says the escalation stands."""
    entry = ledger.entry or LedgerEntry()
    return Run(
        ticket=ticket,
        ledger=ledger,
        entry=entry,
        now=now,
        policy=policy,
        engineering=engineering,
        rule=policy.priority_rule(ticket.priority),
        fingerprint=fingerprint(ticket, policy),
        already_active=entry.approved_at is not None and entry.released_at is None,
        words=tuple(word for _, word in command_words(policy)),
        chat=chat,
        state=entry.state,
        level=entry.level or ticket.escalation.level or policy.levels[0].name,
        assignee=_counted_assignee(entry, ticket, policy, engineering),
        notice_key=entry.notice_key,
        requested_by=entry.requested_by,
        request_reason=entry.reason,
        requested_at=entry.requested_at,
        priority=entry.priority,
        priority_asked=entry.priority_asked,
        target_level=entry.target_level,
        joined_to=entry.joined_to,
    )


def _counted_assignee(
    entry: LedgerEntry, ticket: Ticket, policy: Policy, engineering: EngineeringStatus | None
) -> str | None:
    """The assignee the per-assignee limit counts this escalation under."""
    if policy.limits.assignee_of == "itsm":
        return person_key(ticket.assignee)
    if engineering is not None and engineering.assignee is not None:
        return person_key(engineering.assignee)
    # Unassigned in engineering (or not yet read): keep what the ledger counted.
    return entry.assignee


def where_it_stands(run: Run) -> Flow:
    """Stage: the state, level and fingerprint the decision starts from, as the first reason."""
    run.why(
        "state",
        "info",
        f"escalation state is {run.state.value} at level {run.level}",
        {"state": run.state.value, "level": run.level, "fingerprint": run.fingerprint},
    )
    return Flow.NEXT
