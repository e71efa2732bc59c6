"""The decision trace for one ticket: where it stands, every rule and why, what happens next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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

_MARK = {"pass": "PASS", "fail": "FAIL", "blocked": "BLOCKED", "info": "info"}


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
    ticket: Ticket, view: LedgerView, decision: Decision, now: datetime
) -> dict[str, Any]:
    """The trace as JSON-ready data (`explain --json`)."""
    before = view.entry.state if view.entry else EscalationState.NONE
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
            "escalations_today": view.escalations_today,
            "active": view.active_count,
            "active_by_assignee": dict(view.active_by_assignee),
        },
        "decision": decision_to_dict(decision),
        "next": [describe_action(a) for a in decision.actions],
    }


def render_text(ticket: Ticket, view: LedgerView, decision: Decision, now: datetime) -> str:
    """The trace for a terminal."""
    before = view.entry.state if view.entry else EscalationState.NONE
    name = ticket.ref.key or ticket.ref.id
    lines = [
        f"{ticket.ref.system.value} {name} at {now.isoformat()}",
        f"state: {before.value} -> {decision.state.value}   level: {decision.level or '-'}",
        f"counts: {view.escalations_today} escalated today, {view.active_count} active"
        + (
            f", {view.active_by_assignee.get(decision.assignee, 0)} for assignee "
            f"{decision.assignee}"
            if decision.assignee
            else ""
        ),
        "",
        "rules:",
    ]
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
