"""Activation: an approved (or approval-free) request becomes an active escalation.

The limits are checked first, unless the ticket is already active (a further level keeps its
slot); within them the level moves up, a slot is reserved for the ledger to take under its lock,
and the on-approval actions follow.
"""

from __future__ import annotations

from dataclasses import replace

from escalation.decide.commands import command_words
from escalation.decide.context import Run
from escalation.decide.limits import limit_checks, refuse
from escalation.decide.on_approval import approval_actions
from escalation.decide.reading import defang
from escalation.decide.times import day_start
from escalation.decision import (
    Action,
    AddNote,
    CreateEngineeringRecord,
    Decision,
    LedgerEntry,
    NoteKind,
    Reason,
    RemoveLabel,
    Reservation,
)
from escalation.policy import Policy
from escalation.wording import limit_count
from mapping.model import EscalationState, Ticket

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


def not_carried_out(
    decision: Decision,
    policy: Policy,
    ticket: Ticket,
    entry: LedgerEntry | None,
    record: CreateEngineeringRecord,
    reason: str,
) -> Decision:
    """The decision to record instead of an activation whose engineering record could not be
    created: nothing is announced (no tag, no e-mail, no slot), the request is refused with an
    internal note giving the system's reason, and its request label comes off; an approver's
    approve command (or a new request) tries again once the cause is fixed.
    """
    requested = entry.requested_at if entry is not None else None
    key = f"refused:not-created@{requested.isoformat() if requested else '-'}"
    where = f"{record.project_or_table} ({record.target_system.value})"
    approve = policy.approval.approve_command
    body = (
        f"Escalation to {record.level} not carried out: its engineering record could not be "
        f"created in {where}: {reason}\n"
        "Nothing was announced: no tag, no e-mail, and it does not count as active. Once the "
        f"cause is fixed, {approve} tries again."
    )
    words = tuple(word for _, word in command_words(policy))
    actions: list[Action] = [AddNote(defang(body, words), kind=NoteKind.REFUSAL)]
    if policy.request.clear_labels:
        present = {lb.casefold(): lb for lb in ticket.labels}
        actions += [
            RemoveLabel(present[lb.casefold()])
            for lb in policy.request.labels
            if lb.casefold() in present
        ]
    level = (entry.level if entry is not None else None) or policy.levels[0].name
    return replace(
        decision,
        state=EscalationState.REFUSED,
        level=level,
        actions=tuple(actions),
        reasons=(
            *decision.reasons,
            Reason(
                "activation.engineering_record",
                "fail",
                f"the engineering record could not be created in {where}: {reason}",
                {"project": record.project_or_table, "system": record.target_system.value},
            ),
        ),
        notice_key=key,
        approved_by=None,
        reservation=None,
        priority=None,
        wake_at=None,
    )
