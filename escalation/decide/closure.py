"""Closure: engineering resolved the escalation, or the ITSM record closed under it.

An active escalation resolves when its engineering record reaches a resolved status (the
resolution is written back, the customer asked to confirm) and closes early when the ITSM
record is closed first. A resolved escalation closes with its ITSM record; a request still
waiting lapses when its record closes.
"""

from __future__ import annotations

from escalation.decide.context import WAITING, Flow, Run
from escalation.decide.times import stamp
from escalation.decision import (
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    MoveStatus,
    NoteKind,
    NotifyManagement,
    ReleaseEscalation,
    RemoveLabel,
)
from mapping.model import EscalationState

S = EscalationState


def close(run: Run) -> Flow:
    """Stage: a closure step ends the decision; otherwise an active escalation stays active."""
    if run.already_active:
        return _close_active(run)
    t = run.ticket
    itsm_closed = t.status is not None and t.status in run.policy.closure.itsm_closed_statuses
    if run.state is S.RESOLVED and itsm_closed and t.status is not None:
        run.state = S.CLOSED
        run.why("closure.itsm_closed", "pass", f"the ITSM record is {t.status.value}")
        if run.policy.closure.email_customer_on_close:
            run.actions.append(EmailCustomer(CustomerEvent.CLOSED))
        run.notice_key = f"closed:{run.request_key()}"
        return Flow.DONE
    if run.state in WAITING and itsm_closed:
        run.state = S.CLOSED
        run.why(
            "closure.itsm_closed",
            "info",
            f"the record is {t.status.value if t.status else '-'}; the pending request lapses",
        )
        return Flow.DONE
    return Flow.NEXT


def _close_active(run: Run) -> Flow:
    rules = run.policy.closure
    t = run.ticket
    eng = run.engineering
    if eng is not None and eng.status is not None and eng.status in rules.engineering_statuses:
        _resolve(run, eng)
        return Flow.DONE
    if t.status is not None and t.status in rules.itsm_closed_statuses:
        run.state = S.CLOSED
        run.why(
            "closure.itsm_closed",
            "pass",
            f"the ITSM record is {t.status.value}; the escalation is closed and stops counting "
            "as active",
        )
        run.note(
            NoteKind.CLOSURE,
            f"closure:{run.request_key()}",
            f"Escalation at {run.level} closed at {stamp(run.now)}: the record was "
            f"{t.status.value} before engineering resolved it.",
        )
        run.actions.append(ReleaseEscalation())
        return Flow.DONE
    run.why(
        "closure.engineering",
        "info",
        "engineering record "
        + (f"is {eng.status.value}" if eng and eng.status else "status not known yet")
        + "; the escalation stays active",
        {"engineering_status": eng.status.value if eng and eng.status else None},
    )
    return Flow.NEXT


def _resolve(run: Run, eng: EngineeringStatus) -> None:
    """Engineering resolved: write the resolution back, ask the customer, free the slot."""
    rules = run.policy.closure
    t = run.ticket
    run.state = S.RESOLVED
    ref = eng.ref.key or eng.ref.id if eng.ref else "the engineering record"
    run.why(
        "closure.engineering",
        "pass",
        f"engineering record {ref} is {eng.status.value if eng.status else '-'}",
        {"engineering_status": eng.status.value if eng.status else None},
    )
    if rules.write_resolution:
        run.note(
            NoteKind.RESOLUTION,
            f"resolution:{run.request_key()}",
            f"Engineering ({run.level}) resolved {ref} at {stamp(run.now)}.\n"
            f"Resolution: {eng.resolution or 'no resolution notes were given'}",
        )
    if rules.move_to is not None and t.status != rules.move_to:
        run.actions.append(MoveStatus(rules.move_to))
    if rules.ask_customer_to_confirm:
        run.actions.append(EmailCustomer(CustomerEvent.RESOLVED_PLEASE_CONFIRM))
    if rules.notify_management:
        run.actions.append(NotifyManagement("resolved", run.policy.management.recipients))
    tag = run.policy.on_approval.tag
    if rules.remove_tag and tag and tag.casefold() in {lb.casefold() for lb in t.labels}:
        run.actions.append(RemoveLabel(tag))
    run.actions.append(ReleaseEscalation())
