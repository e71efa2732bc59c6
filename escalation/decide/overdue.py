"""Approval overdue: management is told once when a request waits longer than allowed."""

from __future__ import annotations

from escalation.decide.context import Flow, Run
from escalation.decide.times import aware
from escalation.decision import NotifyManagement
from mapping.model import EscalationState

S = EscalationState


def approval_overdue(run: Run) -> Flow:
    """Stage: a pending request past the priority's approval_within_hours tells management."""
    hours = run.rule.approval_within_hours
    if run.state is not S.PENDING_APPROVAL or hours is None or run.requested_at is None:
        return Flow.NEXT
    waited = (run.now - aware(run.requested_at)).total_seconds() / 3600
    late = waited > hours
    run.why(
        "priority.approval_within_hours",
        "fail" if late else "pass",
        f"approval has waited {waited:.1f} h of {hours:g} h allowed",
        {"waited_hours": round(waited, 2), "within_hours": hours},
    )
    key = f"overdue:{run.request_key()}"
    if late and run.notice_key != key:
        run.notice_key = key
        run.actions.append(NotifyManagement("approval_overdue", run.policy.management.recipients))
    return Flow.NEXT
