"""Rules driven by time alone: each fires once, with a note and the notices the policy names.

Nobody needs to touch the ticket: the scheduler decides it again at the moment the decision
said (`Decision.wake_at`), and the rule compares the time with what the ticket and the ledger
hold. Each firing consumes a token naming the rule and the request, so it fires once per
request however often the ticket is decided.

- approval overdue: a request waiting for approval longer than its priority allows
  (`priorities.<P>.approval_within_hours`) or `timers.approval_overdue` says;
- unassigned: the engineering record has nobody assigned this long after activation (and, in
  any case, who engineering assigned is noted on the ITSM record);
- no response: nobody commented on the engineering record this long after activation;
- SLA imminent: the SLA due time is this close while the escalation runs;
- unconfirmed: the customer asked to confirm the resolution has not answered: a reminder,
  then the record is closed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from escalation.decide import notices
from escalation.decide.context import WAITING, Flow, Run
from escalation.decide.reading import field_value, person_key, who
from escalation.decide.times import aware, parse_time, stamp
from escalation.decision import CustomerEvent, EmailCustomer, MoveStatus, NoteKind
from escalation.policy import Audience, SlaTrigger
from mapping.model import EscalationState, Visibility

S = EscalationState


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


def _fire(
    run: Run,
    rule: str,
    due: datetime,
    body: str,
    event: str,
    audiences: tuple[Audience, ...],
    compared: dict[str, object],
) -> bool:
    """Fire `rule` once when `due` has come (note and notices), else wake at `due`."""
    if run.now < due:
        run.wake(due)
        run.why(rule, "pass", f"not due before {stamp(due)}", compared)
        return False
    if not run.once(f"timer:{rule}@{run.request_key()}"):
        run.why(rule, "info", f"fired at or after {stamp(due)}, once", compared)
        return False
    run.why(rule, "fail", f"due at {stamp(due)}: fired", compared)
    run.aside(NoteKind.FOLLOW_UP, body)
    notices.tell(run, event, audiences)
    return True


def follow_ups(run: Run) -> Flow:
    """Stage: the follow-ups of a waiting request and of an active escalation."""
    if run.state is S.PENDING_APPROVAL:
        _approval_overdue(run)
    if run.already_active and (run.state is S.APPROVED or run.state in WAITING):
        _assignment(run)
        _no_response(run)
        _sla_imminent(run)
    return Flow.NEXT


def _approval_overdue(run: Run) -> None:
    timer = run.policy.timers.approval_overdue
    legacy = run.rule.approval_within_hours
    within = timedelta(hours=legacy) if legacy is not None else None
    if within is None and timer is not None:
        within = timer.within(run.ticket.priority)
    if within is None or run.requested_at is None:
        return
    audiences = timer.notify if timer is not None else ("management",)
    requested = aware(run.requested_at)
    due = requested + within
    waited = (run.now - requested).total_seconds() / 3600
    # The priority's own window keeps its rule name (management e-mails quote it).
    rule = "priority.approval_within_hours" if legacy is not None else "timers.approval_overdue"
    target = run.target()
    approvers = run.approvers(target)
    named = ", ".join([*approvers.users, *(f"group {g}" for g in approvers.groups)])
    _fire(
        run,
        rule,
        due,
        f"Approval overdue: the request for {target.name if target else '-'} has waited "
        f"{waited:.1f} h of the {_hours(within)} allowed (requested {stamp(requested)}). "
        f"Awaiting {named or 'approval'}.",
        "approval_overdue",
        audiences,
        {"waited_hours": round(waited, 2), "within_hours": within.total_seconds() / 3600},
    )


def _assignment(run: Run) -> None:
    """Who engineering assigned, noted once each; nobody assigned in time, followed up."""
    eng = run.engineering
    if eng is None or eng.ref is None:
        return
    record = eng.ref.key or eng.ref.id
    if eng.assignee is not None:
        key = person_key(eng.assignee) or who(eng.assignee)
        if run.once(f"assigned:{key}@{run.request_key()}"):
            run.why("assignment", "info", f"engineering assigned {record} to {who(eng.assignee)}")
            run.aside(
                NoteKind.ASSIGNMENT,
                f"Escalation record {record} ({run.level}) is assigned to {who(eng.assignee)} "
                f"(seen {stamp(run.now)}).",
            )
        return
    timer = run.policy.timers.unassigned
    within = timer.within(run.ticket.priority) if timer is not None else None
    approved = run.entry.approved_at
    if timer is None or within is None or approved is None:
        return
    since = aware(approved)
    _fire(
        run,
        "timers.unassigned",
        since + within,
        f"Follow-up: escalation record {record} ({run.level}) has not been assigned within "
        f"{_hours(within)} of the escalation ({stamp(since)}). Ask the team's dispatcher to "
        "assign it.",
        "unassigned",
        timer.notify,
        {"record": record, "within_hours": within.total_seconds() / 3600},
    )


def _no_response(run: Run) -> None:
    timer = run.policy.timers.no_response
    eng = run.engineering
    approved = run.entry.approved_at
    if timer is None or eng is None or eng.ref is None or approved is None:
        return
    within = timer.within(run.ticket.priority)
    if within is None:
        return
    since = aware(approved)
    if eng.responded_at is not None and aware(eng.responded_at) >= since:
        run.why("timers.no_response", "pass", f"engineering responded {stamp(eng.responded_at)}")
        return
    record = eng.ref.key or eng.ref.id
    _fire(
        run,
        "timers.no_response",
        since + within,
        f"Follow-up: no response from engineering on {record} ({run.level}) within "
        f"{_hours(within)} of the escalation ({stamp(since)}).",
        "no_response",
        timer.notify,
        {"record": record, "within_hours": within.total_seconds() / 3600},
    )


def _sla_imminent(run: Run) -> None:
    watch = run.policy.timers.sla_imminent
    if watch is None:
        return
    due = parse_time(field_value(run.ticket, watch.field))
    if due is None:
        return
    asked_by_sla = any(
        isinstance(t, SlaTrigger)
        and t.field == watch.field
        and run.requested_by == f"trigger:{t.name}"
        for t in run.policy.triggers
    )
    if asked_by_sla:
        # The SLA nearing is what asked for this escalation: its request already said so.
        run.why("timers.sla_imminent", "info", "the escalation was asked for by this SLA")
        return
    within = timedelta(hours=watch.within_hours)
    _fire(
        run,
        "timers.sla_imminent",
        due - within,
        f"SLA breach imminent: {watch.field} is due {stamp(due)} while the escalation runs at "
        f"{run.level}.",
        "sla_imminent",
        watch.notify,
        {"sla_due": due.isoformat(), "within_hours": watch.within_hours},
    )


def unconfirmed(run: Run) -> Flow:
    """Stage: a resolution the customer was asked to confirm: remind, then close."""
    timer = run.policy.timers.unconfirmed
    resolved = run.entry.released_at
    if run.state is not S.RESOLVED or timer is None or resolved is None:
        return Flow.NEXT
    if not run.policy.closure.ask_customer_to_confirm:
        return Flow.NEXT
    since = aware(resolved)
    if _customer_replied(run, since):
        if run.once(f"timer:unconfirmed-replied@{run.request_key()}"):
            run.aside(
                NoteKind.FOLLOW_UP,
                "The customer replied after the resolution; closing the record is left to "
                "the engineer.",
            )
        run.why("timers.unconfirmed", "pass", "the customer replied after the resolution")
        return Flow.NEXT
    if timer.remind_after_hours is not None:
        within = timedelta(hours=timer.remind_after_hours)
        if _fire(
            run,
            "timers.unconfirmed.remind",
            since + within,
            f"The customer has not confirmed the resolution within {_hours(within)} "
            f"(resolved {stamp(since)}): reminded.",
            "unconfirmed",
            timer.notify,
            {"remind_after_hours": timer.remind_after_hours},
        ):
            run.actions.append(EmailCustomer(CustomerEvent.CONFIRMATION_REMINDER))
    if timer.close_after_hours is not None:
        within = timedelta(hours=timer.close_after_hours)
        if (
            _fire(
                run,
                "timers.unconfirmed.close",
                since + within,
                f"The customer has not confirmed the resolution within {_hours(within)} "
                f"(resolved {stamp(since)}): the record moves to {timer.close_status.value}.",
                "unconfirmed",
                (),
                {"close_after_hours": timer.close_after_hours},
            )
            and run.ticket.status != timer.close_status
        ):
            run.actions.append(MoveStatus(timer.close_status))
    return Flow.NEXT


def _customer_replied(run: Run, since: datetime) -> bool:
    customer = run.ticket.customer
    if customer is None:
        return False
    ids = {v.casefold() for v in (customer.id, customer.email) if v}
    for c in run.ticket.comments:
        if c.visibility is not Visibility.PUBLIC or c.created is None or c.author is None:
            continue
        author = {v.casefold() for v in (c.author.id, c.author.email) if v}
        if ids & author and aware(c.created) >= since:
            return True
    return False
