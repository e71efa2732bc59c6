"""Closure: engineering resolved the escalation, or the ITSM record closed under it.

An active escalation resolves when its engineering record reaches a resolved status (the
resolution is written back, the customer asked to confirm) and closes early when the ITSM
record is closed first. A resolved escalation closes with its ITSM record; a request still
waiting lapses when its record closes.
"""

from __future__ import annotations

from escalation.decide import notices
from escalation.decide.context import WAITING, Flow, Run
from escalation.decide.signals import clear_labels
from escalation.decide.times import stamp
from escalation.decision import (
    CloseFurtherRecords,
    CustomerEvent,
    EmailCustomer,
    EngineeringStatus,
    MoveStatus,
    NoteKind,
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
        notices.tell(run, "closed")
        return Flow.DONE
    if run.state in WAITING and itsm_closed:
        run.state = S.CLOSED
        run.target_level = None
        clear_labels(run)
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
        _further_records(
            run,
            f"the source record {t.ref.key or t.ref.id} was {t.status.value} at {stamp(run.now)}",
        )
        clear_labels(run)
        run.target_level = None
        run.actions.append(ReleaseEscalation())
        notices.tell(run, "closed")
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
    notices.management(run, "resolved", rules.notify_management)
    tag = run.policy.on_approval.tag
    if rules.remove_tag and tag and tag.casefold() in {lb.casefold() for lb in t.labels}:
        run.actions.append(RemoveLabel(tag))
    clear_labels(run)
    run.target_level = None
    _further_records(run, f"engineering resolved {ref} at {stamp(run.now)}")
    run.actions.append(ReleaseEscalation())


def _further_records(run: Run, what: str) -> None:
    """Close or tell the records opened for further levels, as the policy says."""
    mode = run.policy.closure.further_records
    # Only a level beyond the first escalation target can have opened a record of its own.
    if mode == "keep" or run.policy.level_index(run.level) < 2:
        return
    t = run.ticket
    body = f"The escalation of {t.ref.key or t.ref.id} ended: {what}." + (
        " This record is resolved with it." if mode == "close" else ""
    )
    run.actions.append(CloseFurtherRecords(mode, body))
