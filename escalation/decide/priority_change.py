"""The ticket's priority changed while its escalation runs: keep it, ask, or follow.

The escalation's priority is the one it was approved with (after any on_approval change), or
the last change it took. A different priority on the ticket is a change made by someone: the
policy keeps the escalation's (set back), asks an approver of the current level (set back until
one confirms with the approve command, or keeps it with the reject command), or follows it.
Every change writes a note.
"""

from __future__ import annotations

from escalation.decide import notices
from escalation.decide.commands import Command
from escalation.decide.context import WAITING, Flow, Run
from escalation.decide.reading import who
from escalation.decide.times import stamp
from escalation.decision import NoteKind, SetPriority
from mapping.model import EscalationState

S = EscalationState


def follow(run: Run) -> Flow:
    """Stage: an active escalation whose ticket's priority changed."""
    if not run.already_active or (run.state is not S.APPROVED and run.state not in WAITING):
        return Flow.NEXT
    now = run.ticket.priority
    if now is None:
        return Flow.NEXT
    was = run.priority
    if was is None:
        # An escalation recorded before the ledger kept its priority: take the ticket's.
        run.priority = now
        return Flow.NEXT
    if now == was or any(isinstance(a, SetPriority) for a in run.actions):
        # Unchanged, or this decision writes the priority itself (approval, an answer).
        return Flow.NEXT
    lowered = now.rank > was.rank
    direction = "lowered" if lowered else "raised"
    rules = run.policy.priority_change
    handling = rules.lowered if lowered else rules.raised
    run.why(
        "priority_change",
        "info",
        f"priority {direction} from {was.value} to {now.value} during the escalation: {handling}",
        {"from": was.value, "to": now.value, "handling": handling},
    )
    head = (
        f"Priority {direction} from {was.value} to {now.value} at {stamp(run.now)} while the "
        f"escalation runs at {run.level}."
    )
    key = f"priority:{was.value}->{now.value}@{run.request_key()}"
    if handling == "follow":
        run.priority = now
        run.priority_asked = None
        run.note(NoteKind.PRIORITY, key, f"{head} The escalation takes {now.value}.")
    elif handling == "keep":
        run.actions.append(SetPriority(was))
        run.note(
            NoteKind.PRIORITY,
            key,
            f"{head} This escalation keeps {was.value}, so the priority was set back.",
        )
    else:
        run.actions.append(SetPriority(was))
        run.priority_asked = now
        approvers = run.approvers(run.policy.level(run.level))
        named = ", ".join([*approvers.users, *(f"group {g}" for g in approvers.groups)])
        approval = run.policy.approval
        run.note(
            NoteKind.PRIORITY,
            key,
            f"{head} The escalation keeps {was.value} until an approver of {run.level} "
            f"({named or 'nobody named'}) answers: {approval.approve_command} takes "
            f"{now.value}, {approval.reject_command} keeps {was.value}.",
        )
    notices.tell(run, "priority_changed", rules.notify)
    return Flow.NEXT


def answer(run: Run, cmd: Command) -> None:
    """An approver answered a priority change that waits for them."""
    asked, was = run.priority_asked, run.priority
    assert asked is not None
    run.priority_asked = None
    by = who(cmd.comment.author)
    if cmd.kind == "approve":
        run.priority = asked
        run.actions.append(SetPriority(asked))
        body = f"Priority change to {asked.value} confirmed by {by} at {stamp(run.now)}."
        run.why("priority_change.answer", "pass", f"{by} confirmed {asked.value}")
    else:
        body = (
            f"Priority change to {asked.value} declined by {by} at {stamp(run.now)}: the "
            f"escalation keeps {was.value if was else 'its priority'}."
        )
        run.why("priority_change.answer", "fail", f"{by} kept {was.value if was else '-'}")
    if cmd.argument:
        body += f"\nNote: {cmd.argument}"
    run.note(NoteKind.PRIORITY, f"priority-answer:{cmd.comment.id}", body)
