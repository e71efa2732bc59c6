"""Withdrawal: a request still waiting (at the gate or for approval) ends with a note.

A request for a further level of an active escalation is withdrawn alone: the escalation
stays active where it is. An active escalation is not withdrawn: it ends when engineering
resolves its record or the ticket closes.
"""

from __future__ import annotations

from escalation.decide import notices
from escalation.decide.authorise import not_honoured
from escalation.decide.commands import Command
from escalation.decide.context import WAITING, Run
from escalation.decide.reading import who
from escalation.decide.signals import clear_labels
from escalation.decide.times import stamp
from escalation.decision import NoteKind
from mapping.model import EscalationState

S = EscalationState


def on_command(run: Run, cmd: Command) -> None:
    """An authorised withdraw command."""
    if run.state not in WAITING:
        if run.already_active:
            why_not = (
                "an active escalation is not withdrawn; it ends when engineering resolves its "
                "record or the ticket closes"
            )
        else:
            why_not = (
                f"no escalation request is waiting (state {run.state.value.replace('_', ' ')})"
            )
        not_honoured(run, cmd, why_not, {"state": run.state.value}, "info")
        return
    target = run.target()
    asked = target.name if target else "-"
    run.state = S.APPROVED if run.already_active else S.WITHDRAWN
    run.target_level = None
    reason = cmd.argument or "none given"
    run.why(
        "request.withdrawn",
        "pass",
        f"the request for {asked} was withdrawn by {who(cmd.comment.author)}",
        {"comment": cmd.comment.id, "level": asked},
    )
    stays = f" The escalation stays active at {run.level}." if run.already_active else ""
    run.note(
        NoteKind.WITHDRAWAL,
        f"withdrawn:{run.request_key()}",
        f"Escalation request to {asked} withdrawn by {who(cmd.comment.author)} at "
        f"{stamp(run.now)}. Reason: {reason}.{stays}",
    )
    if not run.already_active:
        clear_labels(run)
    notices.tell(run, "withdrawn")
