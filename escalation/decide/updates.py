"""Customer updates while an escalation is active: engineering's news, else on a cadence.

Each update is its own outbox message, keyed by the notice key: the newest engineering comment
it reports, or the cadence slot it fills, so no update goes out twice.
"""

from __future__ import annotations

import re

from escalation.cadence import periodic_update
from escalation.decide.context import WAITING, Flow, Run
from escalation.decide.reading import COPY_MARK, our_note
from escalation.decide.times import aware, stamp
from escalation.decision import CustomerEvent, EmailCustomer
from escalation.wording import plural
from mapping.model import EscalationState, Visibility

S = EscalationState


def customer_updates(run: Run) -> Flow:
    """Stage: an active escalation tells the customer of engineering's news, else on time.

    A request for a further level waiting for approval holds nothing back: the level working
    the case goes on talking to the customer.
    """
    running = run.state is S.APPROVED or run.state in WAITING
    if not run.already_active or not running:
        return Flow.NEXT
    if _engineering_update(run):
        # The customer just heard: the next periodic update is an interval from now.
        interval = run.policy.customer_updates.interval(run.ticket.priority)
        if interval is not None:
            run.wake(run.now + interval)
    else:
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
    withhold = run.policy.customer_updates.withhold_pattern
    if withhold is not None:
        kept = [c for c in fresh if re.search(withhold, c.body)]
        if kept:
            run.why(
                "customer_updates.withhold",
                "info",
                f"{plural(len(kept), 'public comment')} matching the withhold pattern not e-mailed",
                {"comments": [c.id for c in kept]},
            )
        fresh = [c for c in fresh if c not in kept]
    # Each comment is told once: a later decision (its notice key moved on by another note)
    # must not take a comment of the same second as the last update for a new one.
    fresh = [c for c in fresh if f"told:{c.id}" not in run.entry.processed_command_ids]
    if not fresh or run.notice_key == f"public:{fresh[-1].id}":
        return False
    for comment in fresh:
        run.once(f"told:{comment.id}")
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
    if due.due_at is not None and not due.due:
        run.wake(due.due_at)
    if due.due:
        run.wake(run.now + interval)
        run.notice_key = f"periodic:{due.slot}"
        run.actions.append(EmailCustomer(CustomerEvent.PERIODIC_UPDATE))
