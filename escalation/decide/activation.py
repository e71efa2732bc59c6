"""Activation: an approved (or approval-free) request becomes an active escalation.

The limits are checked first, unless the ticket is already active (a further level keeps its
slot); within them the level moves up, a slot is reserved for the ledger to take under its lock,
and the on-approval actions follow.
"""

from __future__ import annotations

from escalation.decide.context import Run
from escalation.decide.limits import limit_checks, refuse
from escalation.decide.on_approval import approval_actions
from escalation.decide.times import day_start
from escalation.decision import Reservation
from escalation.wording import limit_count
from mapping.model import EscalationState

S = EscalationState


def activate(run: Run, who: str | None, note: str) -> None:
    """Start the escalation to the next level if the limits allow.

    `who` approved it (None: approval was not required) and `note` is what they wrote.
    """
    target = run.target()
    assert target is not None
    failed: list[str] = []
    if run.already_active:
        run.why(
            "limits",
            "info",
            "further escalation of an active escalation: it keeps its slot",
            {"level": run.level},
        )
    for name, n, limit, ok in [] if run.already_active else limit_checks(run):
        run.why(
            f"limit.{name}",
            "pass" if ok else "fail",
            f"{limit_count(name, n)}, limit {limit}",
            {"count": n, "limit": limit},
        )
        if not ok:
            failed.append(f"{name} ({limit_count(name, n)}, limit {limit})")
    if failed:
        refuse(
            run,
            "refused:" + ",".join(f.split(" ")[0] for f in failed),
            "Escalation refused: limit reached: " + "; ".join(failed) + ".",
            None,
            {},
        )
        return
    previous = run.level
    run.state = S.APPROVED
    run.level = target.name
    if not run.already_active:
        lim = run.policy.limits
        run.reservation = Reservation(
            max_per_day=lim.max_per_day,
            max_active=lim.max_active,
            max_active_per_assignee=lim.max_active_per_assignee,
            assignee=run.assignee,
            day_start=day_start(run.now, run.policy.timezone),
        )
    approval_actions(run, previous, target, who, note)
