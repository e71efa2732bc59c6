"""An escalation's past: the decisions that did something, and the escalations they make up.

Each decision the ledger records with an effect (a new state, an action, a request started)
is kept as a `PastDecision`: when, from which state to which, the rules and their reasons, and
what it did. `explain` prints them after the fact; `episodes` folds one ticket's decisions into
its escalations (requested, approved, ended) for the monthly report. Pure: the store reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from escalation.decision import Decision, decision_to_dict
from escalation.explain import describe_action
from mapping.model import EscalationState

S = EscalationState
# States an escalation ends in without having run.
NOT_RUN = frozenset({S.REJECTED, S.REFUSED, S.WITHDRAWN})


@dataclass(frozen=True, slots=True)
class PastDecision:
    """One recorded decision about one ticket."""

    ticket: str  # the ledger key, system:id
    ticket_key: str | None
    at: datetime
    state_before: EscalationState
    state: EscalationState
    level: str | None
    requested_by: str | None
    reason: str | None
    approved_by: str | None
    category: str | None
    request_started: bool
    activated: bool
    released: bool
    actions: tuple[str, ...]  # each action in words
    reasons: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "ticket": self.ticket,
            "ticket_key": self.ticket_key,
            "at": self.at.isoformat(),
            "state_before": self.state_before.value,
            "state": self.state.value,
            "level": self.level,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "approved_by": self.approved_by,
            "category": self.category,
            "request_started": self.request_started,
            "activated": self.activated,
            "released": self.released,
            "actions": list(self.actions),
            "reasons": [dict(r) for r in self.reasons],
        }


def worth_keeping(before: EscalationState, decision: Decision) -> bool:
    """Whether a decision did something a person would look for afterwards."""
    return bool(
        decision.actions
        or decision.state is not before
        or decision.request_started
        or decision.reservation is not None
    )


def past_decision(
    ticket: str, before: EscalationState, decision: Decision, at: datetime
) -> PastDecision:
    """The record of `decision`, made at `at` on a ticket that was in state `before`."""
    data = decision_to_dict(decision)
    return PastDecision(
        ticket=ticket,
        ticket_key=decision.ticket_key,
        at=at,
        state_before=before,
        state=decision.state,
        level=decision.level,
        requested_by=decision.requested_by,
        reason=decision.request_reason,
        approved_by=decision.approved_by,
        category=decision.category,
        request_started=decision.request_started,
        activated=decision.reservation is not None,
        released=decision.releases,
        actions=tuple(describe_action(a) for a in decision.actions),
        reasons=tuple(data["reasons"]),
    )


@dataclass(frozen=True, slots=True)
class Episode:
    """One escalation of one ticket, from its request to its end (or to now)."""

    ticket: str
    ticket_key: str | None
    requested_at: datetime
    requested_by: str | None
    cause: str
    category: str | None
    level: str | None
    approved_at: datetime | None = None
    approved_by: str | None = None
    ended_at: datetime | None = None
    outcome: str = "open"  # open, active, resolved, closed, rejected, refused, withdrawn, joined

    @property
    def hours_to_approve(self) -> float | None:
        """From request to approval, in hours (None when not approved)."""
        if self.approved_at is None:
            return None
        return (self.approved_at - self.requested_at).total_seconds() / 3600

    @property
    def hours_to_resolve(self) -> float | None:
        """From approval to the end of an escalation that ran, in hours."""
        if self.approved_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.approved_at).total_seconds() / 3600


def cause_of(requested_by: str | None, reason: str | None) -> str:
    """What started a request, as the report groups it: a trigger, a label, a field, a person."""
    if requested_by and requested_by.startswith(("trigger:", "priority:")):
        return requested_by
    if reason and reason.startswith("label "):
        return reason
    if reason and " = " in reason and not requested_by:
        return "field " + reason.split(" = ", 1)[0]
    if reason == "the record was reopened" or (reason or "").startswith("the record was reopened"):
        return "reopened"
    return "request by a person" if requested_by else "request"


def episodes(decisions: Iterable[PastDecision]) -> list[Episode]:
    """Each ticket's escalations, in the order they were requested."""
    by_ticket: dict[str, list[PastDecision]] = {}
    for d in sorted(decisions, key=lambda d: d.at):
        by_ticket.setdefault(d.ticket, []).append(d)
    found: list[Episode] = []
    for ticket, history in by_ticket.items():
        found.extend(_fold(ticket, history))
    return sorted(found, key=lambda e: e.requested_at)


def _ends(state: EscalationState, outcome: str) -> bool:
    """Whether reaching `state` ends an escalation whose outcome so far is `outcome`."""
    if state in NOT_RUN:
        return outcome == "open"
    return state in (S.RESOLVED, S.CLOSED) and outcome in ("open", "active", "joined")


def _fold(ticket: str, history: Sequence[PastDecision]) -> list[Episode]:
    out: list[Episode] = []
    cur: dict[str, Any] | None = None
    for d in history:
        # A request for a further level of a running escalation is part of that escalation.
        if d.request_started and (cur is None or cur["outcome"] != "active"):
            if cur is not None:
                out.append(Episode(**cur))
            cur = {
                "ticket": ticket,
                "ticket_key": d.ticket_key,
                "requested_at": d.at,
                "requested_by": d.requested_by,
                "cause": cause_of(d.requested_by, d.reason),
                "category": d.category,
                "level": d.level,
            }
        if cur is None:
            continue
        cur["level"] = d.level or cur["level"]
        cur["category"] = d.category or cur["category"]
        cur["ticket_key"] = d.ticket_key or cur["ticket_key"]
        outcome = cur.get("outcome", "open")
        if d.activated:
            cur.update(approved_at=d.at, approved_by=d.approved_by, outcome="active")
        elif d.state is S.JOINED and outcome == "open":
            cur["outcome"] = "joined"
        elif _ends(d.state, outcome):
            cur.update(outcome=d.state.value, ended_at=d.at)
        elif d.state is S.CLOSED and outcome == "resolved":
            cur["outcome"] = "closed"
    if cur is not None:
        out.append(Episode(**cur))
    return out
