"""Recognition without a command: a label, a field value, a trigger or the priority asks.

A ticket with no escalation running is read this way (none yet, one that ended without
running, or, when the policy allows a new one, one that ended); the signals are tried in that
order and the first that asks starts the request. A label asks while it is there (it is taken
off when its request ends), a field value once per value, a trigger and an auto-requesting
priority once per ticket. A trigger may also tell management at once.
"""

from __future__ import annotations

from escalation.decide import notices, request
from escalation.decide.context import FINISHED, RESTARTABLE, Flow, Run
from escalation.decide.reading import as_text, field_value
from escalation.decide.signals import field_token
from escalation.decide.triggers import fires
from escalation.decision import RemoveLabel
from escalation.policy import FieldCondition
from mapping.model import EscalationState

S = EscalationState

# (who asked, as the ledger records it, or None when no person did; the request's reason)
Signal = tuple[str | None, str]


def recognise(run: Run) -> Flow:
    """Stage: a ticket with no escalation starts a request when a signal asks for one."""
    status = run.ticket.status
    closed = status is not None and status in run.policy.closure.itsm_closed_statuses
    again = run.state in FINISHED and run.policy.reopen.allowed and not closed
    if run.state not in RESTARTABLE and not again:
        _consume_fields(run)
        return Flow.NEXT
    signal = _label(run) or _field(run)
    if signal is None and run.state not in FINISHED:
        # Proactive signals start a ticket's escalation; after one ran, asking again is a
        # person's (or the reopened record's) call.
        signal = _trigger(run) or _priority(run)
    if signal is not None:
        request.start(run, *signal, None)
        _tell_management(run)
        _consume_fields(run)
    return Flow.NEXT


def _consume_fields(run: Run) -> None:
    """Requesting field values present while an escalation is under way belong to it: they
    do not ask again once it ends (another value does)."""
    if run.state in RESTARTABLE or run.state in FINISHED:
        return
    for cond in run.policy.request.fields:
        text = as_text(field_value(run.ticket, cond.field)).strip()
        if text and _requests(run, cond, text):
            run.once(field_token(cond.field, text))


def _requests(run: Run, cond: FieldCondition, text: str) -> bool:
    """Whether the field's value (`text`) is one that asks for escalation."""
    if not cond.equals:
        return True
    value = field_value(run.ticket, cond.field)
    values = [as_text(v).casefold() for v in value] if isinstance(value, tuple) else []
    wanted = {e.casefold() for e in cond.equals}
    return text.casefold() in wanted or bool(wanted.intersection(values))


def _label(run: Run) -> Signal | None:
    req = run.policy.request
    if not req.labels or (run.state is not S.NONE and not req.clear_labels):
        return None
    # A label this decision takes off is no request.
    going = {a.label.casefold() for a in run.actions if isinstance(a, RemoveLabel)}
    labels = {lb.casefold() for lb in run.ticket.labels} - going
    hit = [lb for lb in req.labels if lb.casefold() in labels]
    run.why(
        "recognition.label",
        "pass" if hit else "fail",
        f"request label {hit[0]!r} present" if hit else "no request label on the ticket",
        {"labels": list(run.ticket.labels), "request_labels": list(req.labels)},
    )
    return (None, f"label {hit[0]}") if hit else None


def _field(run: Run) -> Signal | None:
    for i, cond in enumerate(run.policy.request.fields):
        text = as_text(field_value(run.ticket, cond.field)).strip()
        ok = bool(text) and _requests(run, cond, text)
        run.why(
            f"recognition.field[{i}]",
            "pass" if ok else "fail",
            f"{cond.field} is {text!r}" + (" (requests escalation)" if ok else ""),
            {"field": cond.field, "value": text, "equals": list(cond.equals)},
        )
        if ok and run.once(field_token(cond.field, text)):
            return None, f"{cond.field} = {text}"
        if ok:
            run.why(
                f"recognition.field[{i}]",
                "info",
                f"{cond.field} = {text!r} asked before; set another value to ask again",
                {"field": cond.field, "value": text},
            )
    return None


def _trigger(run: Run) -> Signal | None:
    for trig in run.policy.triggers:
        reason = fires(run, trig)
        if reason is not None and run.once(f"trigger:{trig.name}"):
            run.fired = trig
            return f"trigger:{trig.name}", reason
    return None


def _priority(run: Run) -> Signal | None:
    priority = run.ticket.priority
    if not run.rule.auto_request or priority is None:
        return None
    if not run.once(f"priority-request:{priority.value}"):
        return None
    run.why(
        f"priority.{priority.value}",
        "pass",
        f"{priority.value} tickets are escalated immediately",
        {"priority": priority.value},
    )
    return f"priority:{priority.value}", f"{priority.value} immediate escalation"


def _tell_management(run: Run) -> None:
    """Tell management at once when the trigger that started the request says so."""
    if run.fired is None or not run.fired.notify_management:
        return
    run.why(
        f"trigger.{run.fired.name}.notify_management",
        "pass",
        f"management is told now: {run.request_reason}",
        {"trigger": run.fired.name},
    )
    notices.tell(run, "requested", ("management",))
