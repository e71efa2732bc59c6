"""Customer updates while an escalation is active: engineering's news, else on a cadence.

Each update is its own outbox message, keyed by the notice key: the newest engineering comment
it reports, or the cadence slot it fills, so no update goes out twice.
"""

from __future__ import annotations

from escalation.cadence import periodic_update
from escalation.decide.context import Flow, Run
from escalation.decide.reading import COPY_MARK, our_note
from escalation.decide.times import aware, stamp
from escalation.decision import CustomerEvent, EmailCustomer
from escalation.wording import plural
from mapping.model import EscalationState, Visibility

S = EscalationState


def customer_updates(run: Run) -> Flow:
    """Stage: an active escalation tells the customer of engineering's news, else on time."""
    if run.already_active and run.state is S.APPROVED and not _engineering_update(run):
        _cadence(run)
    return Flow.NEXT


def _engineering_update(run: Run) -> bool:
    """A public comment from engineering reached the ticket since the customer last heard."""
    if not run.policy.customer_updates.public_comments:
        return False
    last = run.entry.last_customer_update_at or run.entry.approved_at
    if last is None:
        return False
    since = aware(last)
    # ServiceNow journal times stop at the second while ours do not: a comment copied in
    # the same second as the approval or the last update must still count, so compare
    # whole seconds and let the comment id (the notice key) stop a second telling.
    floor = since.replace(microsecond=0)
    fresh = [
        c
        for c in run.ticket.comments
        if c.visibility is Visibility.PUBLIC
        and COPY_MARK in c.body
        and not our_note(run.ticket, c.body)
        and c.created is not None
        and aware(c.created) >= floor
    ]
    if not fresh or run.notice_key == f"public:{fresh[-1].id}":
        return False
    run.why(
        "customer_updates.public_comment",
        "pass",
        f"{plural(len(fresh), 'public comment')} from engineering since {stamp(since)}",
        {"comments": [c.id for c in fresh]},
    )
    run.notice_key = f"public:{fresh[-1].id}"
    run.actions.append(EmailCustomer(CustomerEvent.PUBLIC_UPDATE, comment_id=fresh[-1].id))
    return True


def _cadence(run: Run) -> None:
    """The periodic update the priority's interval asks for, when one is due."""
    interval = run.policy.customer_updates.interval(run.ticket.priority)
    if interval is None:
        return
    approved = run.entry.approved_at
    last = run.entry.last_customer_update_at
    priority = run.ticket.priority.value if run.ticket.priority else None
    due = periodic_update(
        priority=priority,
        escalated=True,
        escalated_at=aware(approved) if approved else None,
        last_public_update_at=aware(last) if last else None,
        now=run.now,
        cadence={priority or "": interval},
    )
    run.why(
        "customer_updates.cadence",
        "pass" if due.due else "info",
        due.reason,
        {"interval_hours": interval.total_seconds() / 3600, "due_at": due.slot},
    )
    if due.due:
        run.notice_key = f"periodic:{due.slot}"
        run.actions.append(EmailCustomer(CustomerEvent.PERIODIC_UPDATE))
