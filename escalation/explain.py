"""The decision trace for one ticket: how it got here, where it stands, every rule and why,
and what happens next.

The past comes from the decisions the ledger kept (each with its rules and actions); the
present is decide() run now, which records nothing. Counts include the ticket itself, as a
person counting escalations would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from escalation.decision import (
    Action,
    AddLabel,
    AddNote,
    CreateEngineeringRecord,
    Decision,
    EmailCustomer,
    LedgerView,
    MoveStatus,
    NotifyManagement,
    PostLinks,
    ReleaseEscalation,
    RemoveLabel,
    SetLevel,
    SetPriority,
    decision_to_dict,
)
from mapping.model import EscalationState, Ticket

if TYPE_CHECKING:
    from escalation.history import PastDecision

_MARK = {"pass": "PASS", "fail": "FAIL", "blocked": "BLOCKED", "info": "info"}


@dataclass(frozen=True, slots=True)
class Counts:
    """The limits' counts with this ticket included (the ledger's view leaves it out)."""

    escalated_today: int
    active: int
    assignee: str | None
    active_for_assignee: int


def counts_with_ticket(view: LedgerView, decision: Decision) -> Counts:
    """The view's counts plus this ticket where it counts (approved today, active)."""
    entry = view.entry
    active = entry is not None and entry.approved_at is not None and entry.released_at is None
    today = (
        entry is not None
        and entry.approved_at is not None
        and view.day_start is not None
        and entry.approved_at >= view.day_start
    )
    assignee = decision.assignee
    mine = view.active_by_assignee.get(assignee, 0) if assignee else 0
    return Counts(
        escalated_today=view.escalations_today + int(today),
        active=view.active_count + int(active),
        assignee=assignee,
        active_for_assignee=mine + int(active and entry is not None and entry.assignee == assignee),
    )


def _reason_line(reason: Mapping[str, Any]) -> str:
    mark = _MARK.get(str(reason.get("outcome")), "?")
    return f"{mark:<8}{reason.get('rule')}: {reason.get('detail')}"


def history_lines(history: Sequence[PastDecision]) -> list[str]:
    """Each past decision: when, the state it moved, what decided it (rules that passed,
    failed or were blocked) and what it did."""
    lines: list[str] = []
    for past in history:
        move = (
            f"{past.state_before.value} -> {past.state.value}"
            if past.state is not past.state_before
            else past.state.value
        )
        lines.append(f"  {past.at.isoformat()}  {move}  (level {past.level or '-'})")
        for reason in past.reasons:
            if reason.get("outcome") != "info" or str(reason.get("rule", "")).startswith(
                ("command.", "duplicates.", "reopen.", "priority_change", "request.")
            ):
                lines.append(f"      {_reason_line(reason)}")
        lines.extend(f"      -> {action}" for action in past.actions)
    return lines


def describe_action(action: Action) -> str:
    """One action in words."""
    if isinstance(action, AddLabel):
        return f"add label {action.label}"
    if isinstance(action, RemoveLabel):
        return f"remove label {action.label}"
    if isinstance(action, SetPriority):
        return f"set priority {action.priority.value}"
    if isinstance(action, SetLevel):
        return f"set escalation level {action.level}"
    if isinstance(action, AddNote):
        first = action.body.splitlines()[0] if action.body else ""
        return f"write {action.visibility.value} {action.kind.value} note: {first}"
    if isinstance(action, CreateEngineeringRecord):
        where = action.project_or_table + (f" / {action.queue}" if action.queue else "")
        return (
            f"create or link the {action.level} record in {action.target_system.value} {where}: "
            f"{action.summary}"
        )
    if isinstance(action, PostLinks):
        return "post each record's link in the other"
    if isinstance(action, NotifyManagement):
        return f"notify management ({action.event}): {', '.join(action.recipients) or 'nobody'}"
    if isinstance(action, EmailCustomer):
        return f"e-mail the customer: {action.event.value}"
    if isinstance(action, MoveStatus):
        return f"move the record to {action.status.value}"
    if isinstance(action, ReleaseEscalation):
        return "release the escalation (stops counting as active)"
    return repr(action)


def explain_data(
    ticket: Ticket,
    view: LedgerView,
    decision: Decision,
    now: datetime,
    history: Sequence[PastDecision] = (),
    engineering: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The trace as JSON-ready data (`explain --json`)."""
    before = view.entry.state if view.entry else EscalationState.NONE
    counts = counts_with_ticket(view, decision)
    return {
        "ticket": {
            "system": ticket.ref.system.value,
            "id": ticket.ref.id,
            "key": ticket.ref.key,
            "priority": ticket.priority.value if ticket.priority else None,
            "status": ticket.status.value if ticket.status else None,
            "assignee": (ticket.assignee.id or ticket.assignee.email) if ticket.assignee else None,
        },
        "at": now.isoformat(),
        "before": {
            "state": before.value,
            "level": view.entry.level if view.entry else None,
        },
        "counts": {
            "escalations_today": counts.escalated_today,
            "active": counts.active,
            "active_by_assignee": dict(view.active_by_assignee),
            "assignee": counts.assignee,
            "active_for_assignee": counts.active_for_assignee,
            "ticket_included": True,
        },
        "engineering": dict(engineering) if engineering is not None else None,
        "history": [p.to_dict() for p in history],
        "decision": decision_to_dict(decision),
        "next": [describe_action(a) for a in decision.actions],
    }


def render_text(
    ticket: Ticket,
    view: LedgerView,
    decision: Decision,
    now: datetime,
    history: Sequence[PastDecision] = (),
    engineering: str | None = None,
) -> str:
    """The trace for a terminal; `engineering` is the paired record's status as just read."""
    before = view.entry.state if view.entry else EscalationState.NONE
    name = ticket.ref.key or ticket.ref.id
    counts = counts_with_ticket(view, decision)
    if decision.state is before and history:
        since = next((p.at for p in reversed(history) if p.state is not p.state_before), None)
        state = f"state: {before.value}" + (f" since {since.isoformat()}" if since else "")
    else:
        state = f"state: {before.value} -> {decision.state.value}"
    lines = [
        f"{ticket.ref.system.value} {name} at {now.isoformat()}",
        f"{state}   level: {decision.level or '-'}",
        f"counts (this ticket included): {counts.escalated_today} escalated today, "
        f"{counts.active} active"
        + (
            f", {counts.active_for_assignee} for assignee {counts.assignee}"
            if counts.assignee
            else ""
        ),
    ]
    if engineering is not None:
        lines.append(f"engineering record: {engineering}")
    if history:
        lines += ["", "history:", *history_lines(history)]
    lines += ["", "rules now:"]
    width = max((len(r.rule) for r in decision.reasons), default=0)
    for r in decision.reasons:
        lines.append(f"  {_MARK[r.outcome]:<8}{r.rule:<{width + 2}}{r.detail}")
    lines.append("")
    if decision.actions:
        lines.append("would do next:")
        lines.extend(f"  - {describe_action(a)}" for a in decision.actions)
    else:
        lines.append("would do next: nothing")
    return "\n".join(lines)
