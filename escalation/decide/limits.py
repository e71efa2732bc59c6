"""Limits: per day, active and per assignee, low-impact refusal, and refusing a request.

The counts come from the ledger's view; the ledger checks them again under its lock when it
records the reservation, so two workers approving at once cannot both take the last slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from escalation.decide import notices
from escalation.decide.context import Flow, Run
from escalation.decide.reading import who
from escalation.decide.signals import clear_labels
from escalation.decision import NoteKind
from escalation.wording import limit_count, plural
from mapping.model import EscalationState

S = EscalationState


def limit_checks(run: Run) -> list[tuple[str, int, int, bool]]:
    """(limit name, current count, limit, passes) for each configured limit."""
    lim = run.policy.limits
    ledger = run.ledger
    out: list[tuple[str, int, int, bool]] = []
    if lim.max_per_day is not None:
        n = ledger.escalations_today
        out.append(("max_per_day", n, lim.max_per_day, n < lim.max_per_day))
    if lim.max_active is not None:
        n = ledger.active_count
        out.append(("max_active", n, lim.max_active, n < lim.max_active))
    per_assignee = lim.max_active_per_assignee
    if per_assignee is not None and run.assignee is not None:
        n = ledger.active_by_assignee.get(run.assignee, 0)
        out.append(("max_active_per_assignee", n, per_assignee, n < per_assignee))
    return out


def preview(run: Run) -> Flow:
    """Stage: while approval is awaited, say what the limits would answer if approved now."""
    if run.state is not S.PENDING_APPROVAL:
        return Flow.NEXT
    for name, n, limit, ok in limit_checks(run):
        run.why(
            f"limit.{name}",
            "info",
            f"if approved now: {limit_count(name, n)} of {limit} allowed"
            + ("" if ok else " (would be refused)"),
            {"count": n, "limit": limit},
        )
    return Flow.NEXT


def low_impact(run: Run) -> str | None:
    """What makes the ticket a low-impact issue the policy refuses, if anything."""
    low = run.policy.limits.low_impact
    t = run.ticket
    found: str | None = None
    if t.priority is not None and t.priority in low.priorities:
        found = f"priority {t.priority.value}"
    elif t.impact is not None and t.impact.value in low.impacts:
        found = f"impact {t.impact.value}"
    elif t.category and t.category.casefold() in {c.casefold() for c in low.categories}:
        found = f"category {t.category}"
    else:
        labels = {lb.casefold() for lb in t.labels}
        hit = [lb for lb in low.labels if lb.casefold() in labels]
        if hit:
            found = f"label {hit[0]}"
    if any((low.priorities, low.impacts, low.categories, low.labels)):
        run.why(
            "limit.low_impact",
            "fail" if found else "pass",
            f"low impact: {found}" if found else "not a low-impact issue",
            {
                "priority": t.priority.value if t.priority else None,
                "impact": t.impact.value if t.impact else None,
                "category": t.category,
            },
        )
    return found


def refuse(run: Run, key: str, body: str, rule: str | None, compared: Mapping[str, Any]) -> None:
    """Refuse the request with a note; refusing a further escalation leaves the current one."""
    run.state = S.APPROVED if run.already_active else S.REFUSED
    run.target_level = None
    if rule is not None and not any(r.rule == rule for r in run.reasons):
        run.why(rule, "fail", body, compared)
    run.note(NoteKind.REFUSAL, f"{key}@{run.request_key()}", body)
    if not run.already_active and not key.startswith("refused:max"):
        # A refusal by a limit may still be approved once a slot is free: its label stays.
        clear_labels(run)
    notices.tell(run, "refused")


def engineering_assignee(run: Run) -> Flow:
    """Stage: engineering assigned the record to someone: check the per-assignee limit then."""
    lim = run.policy.limits
    limit = lim.max_active_per_assignee
    if not (run.already_active and run.state is S.APPROVED):
        return Flow.NEXT
    if lim.assignee_of != "engineering" or limit is None:
        return Flow.NEXT
    if run.assignee is None or run.assignee == run.entry.assignee:
        return Flow.NEXT
    eng = run.engineering
    person = eng.assignee if eng is not None else None
    named = who(person) if person is not None else run.assignee
    n = run.ledger.active_by_assignee.get(run.assignee, 0)
    ok = n < limit
    counted = f"{plural(n, 'other active escalation')}, limit {limit}"
    run.why(
        "limit.max_active_per_assignee",
        "pass" if ok else "fail",
        f"engineering assigned {named}, who has {counted}",
        {"assignee": run.assignee, "count": n, "limit": limit},
    )
    if not ok:
        record = eng.ref.key or eng.ref.id if eng is not None and eng.ref is not None else None
        body = (
            f"Limit max_active_per_assignee: {named} already has {counted}. "
            f"Please assign {record or 'the engineering record'} to someone else."
        )
        run.note(NoteKind.LIMIT_WARNING, f"assignee:{run.assignee}@{run.request_key()}", body)
    return Flow.NEXT
