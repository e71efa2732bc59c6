"""Proactive triggers: a priority, an SLA about to breach, a repeated occurrence, a category.

Each trigger is evaluated with a reason saying what it compared; one that fires names why, and
that sentence becomes the request's reason.
"""

from __future__ import annotations

from datetime import timedelta

from escalation.decide.context import Run
from escalation.decide.reading import field_value
from escalation.decide.times import aware, parse_time
from escalation.decision import ledger_key
from escalation.policy import (
    CategoryTrigger,
    PriorityTrigger,
    RepeatedTrigger,
    SlaTrigger,
    Trigger,
)
from escalation.wording import plural


def fires(run: Run, trig: Trigger) -> str | None:
    """Why `trig` asks for escalation now, or None when it does not."""
    if isinstance(trig, PriorityTrigger):
        return _priority(run, trig)
    if isinstance(trig, SlaTrigger):
        return _sla(run, trig)
    if isinstance(trig, RepeatedTrigger):
        return _repeated(run, trig)
    return _category(run, trig)


def _priority(run: Run, trig: PriorityTrigger) -> str | None:
    prio = run.ticket.priority
    ok = prio is not None and prio in trig.priorities
    run.why(
        f"trigger.{trig.name}",
        "pass" if ok else "fail",
        f"priority {prio.value if prio else 'unset'}"
        + (" is" if ok else " is not")
        + f" one of {', '.join(p.value for p in trig.priorities)}",
        {"priority": prio.value if prio else None, "priorities": list(trig.priorities)},
    )
    return f"priority {prio.value}" if ok and prio else None


def _sla(run: Run, trig: SlaTrigger) -> str | None:
    rule = f"trigger.{trig.name}"
    due = parse_time(field_value(run.ticket, trig.field))
    if due is None:
        run.why(rule, "fail", f"{trig.field} holds no SLA due time", {"field": trig.field})
        return None
    hours = (due - run.now).total_seconds() / 3600
    ok = hours <= trig.within_hours
    if not ok:
        run.wake(due - timedelta(hours=trig.within_hours))
    run.why(
        rule,
        "pass" if ok else "fail",
        f"SLA due in {hours:.1f} h (threshold {trig.within_hours:g} h)"
        if hours >= 0
        else f"SLA breached {-hours:.1f} h ago",
        {"hours_left": round(hours, 2), "within_hours": trig.within_hours},
    )
    return f"SLA breach within {trig.within_hours:g} h" if ok else None


def _repeated(run: Run, trig: RepeatedTrigger) -> str | None:
    """Tickets with this ticket's fingerprint seen within the window, this one included."""
    since = run.now - timedelta(hours=trig.window_hours)
    tickets = {
        s.ticket
        for s in run.ledger.recent_fingerprints
        if s.fingerprint == run.fingerprint and aware(s.seen_at) >= since
    }
    if run.fingerprint is not None:
        tickets.add(ledger_key(run.ticket.ref))
    count = len(tickets)
    ok = run.fingerprint is not None and count >= trig.count
    run.why(
        f"trigger.{trig.name}",
        "pass" if ok else "fail",
        f"{plural(count, 'ticket')} with this fingerprint in the last "
        f"{trig.window_hours:g} h (threshold {trig.count})",
        {"count": count, "threshold": trig.count, "window_hours": trig.window_hours},
    )
    if not ok:
        return None
    return f"repeated occurrence ({plural(count, 'ticket')} in {trig.window_hours:g} h)"


def _category(run: Run, trig: CategoryTrigger) -> str | None:
    category = run.ticket.category
    folded = (category or "").casefold()
    ok = bool(folded) and folded in {c.casefold() for c in trig.categories}
    run.why(
        f"trigger.{trig.name}",
        "pass" if ok else "fail",
        f"category {category or 'unset'!r}"
        + (" is" if ok else " is not")
        + f" one of {', '.join(trig.categories)}",
        {"category": category, "categories": list(trig.categories)},
    )
    return f"category {category}" if ok else None
