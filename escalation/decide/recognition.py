"""Recognition without a command: a label, a field value, a trigger or the priority asks.

Only a ticket with no escalation is read this way; the signals are tried in that order and the
first that asks starts the request. A trigger may also tell management at once.
"""

from __future__ import annotations

from escalation.decide import request
from escalation.decide.context import Flow, Run
from escalation.decide.reading import as_text, field_value
from escalation.decide.triggers import fires
from escalation.decision import NotifyManagement
from mapping.model import EscalationState

S = EscalationState

# (who asked, as the ledger records it, or None when no person did; the request's reason)
Signal = tuple[str | None, str]


def recognise(run: Run) -> Flow:
    """Stage: a ticket with no escalation starts a request when a signal asks for one."""
    if run.state is not S.NONE:
        return Flow.NEXT
    signal = _label(run) or _field(run) or _trigger(run) or _priority(run)
    if signal is not None:
        request.start(run, *signal, None)
        _tell_management(run)
    return Flow.NEXT


def _label(run: Run) -> Signal | None:
    req = run.policy.request
    if not req.labels:
        return None
    labels = {lb.casefold() for lb in run.ticket.labels}
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
        value = field_value(run.ticket, cond.field)
        text = as_text(value).strip()
        values = [as_text(v).casefold() for v in value] if isinstance(value, tuple) else []
        if cond.equals:
            wanted = {e.casefold() for e in cond.equals}
            ok = text.casefold() in wanted or bool(wanted.intersection(values))
        else:
            ok = bool(text)
        run.why(
            f"recognition.field[{i}]",
            "pass" if ok else "fail",
            f"{cond.field} is {text!r}" + (" (requests escalation)" if ok else ""),
            {"field": cond.field, "value": text, "equals": list(cond.equals)},
        )
        if ok:
            return None, f"{cond.field} = {text}"
    return None


def _trigger(run: Run) -> Signal | None:
    for trig in run.policy.triggers:
        reason = fires(run, trig)
        if reason is not None:
            run.fired = trig
            return f"trigger:{trig.name}", reason
    return None


def _priority(run: Run) -> Signal | None:
    priority = run.ticket.priority
    if not run.rule.auto_request or priority is None:
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
    run.actions.append(NotifyManagement("requested", run.policy.management.recipients))
