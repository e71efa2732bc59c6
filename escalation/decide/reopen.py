"""After the end: the ITSM record reopened under an escalation that was resolved or closed.

A record that was seen resolved or closed and is open again means the fix did not hold: the
policy starts a new request for the level the escalation had reached (`reopen.on_record_reopened
= "request"`), or writes a note saying how to escalate again (`"note"`). New requests by
command, label or field after the end are recognition's and the commands' business.
"""

from __future__ import annotations

from escalation.decide import notices, request
from escalation.decide.context import FINISHED, Flow, Run
from escalation.decide.times import stamp
from escalation.decision import NoteKind
from mapping.model import EscalationState, Status

S = EscalationState


def reopened(run: Run) -> Flow:
    """Stage: a finished escalation whose ITSM record was reopened."""
    if run.state not in FINISHED:
        return Flow.NEXT
    status = run.ticket.status
    rules = run.policy.closure
    ended = {Status.RESOLVED, Status.CLOSED, Status.CANCELLED, *rules.itsm_closed_statuses}
    if rules.move_to is not None:
        ended.add(rules.move_to)
    seen = f"seen-ended@{run.request_key()}"
    if status is None or status in ended:
        if run.state is S.RESOLVED and status is not None:
            run.once(seen)
        return Flow.NEXT
    was_ended = run.state is S.CLOSED or seen in run.entry.processed_command_ids
    if not was_ended:
        return Flow.NEXT
    run.why(
        "reopen.record",
        "pass",
        f"the record is {status.value} again after its escalation was {run.state.value}",
        {"status": status.value, "handling": run.policy.reopen.on_record_reopened},
    )
    reopen = run.policy.reopen
    if reopen.allowed and reopen.on_record_reopened == "request":
        notices.tell(run, "reopened", reopen.notify)
        request.start(run, None, f"the record was reopened ({status.value})", None)
        return Flow.NEXT
    if run.once(f"reopened@{run.request_key()}"):
        command = run.policy.request.command
        how = f" Write {command} <reason> to escalate again." if command and reopen.allowed else ""
        run.aside(
            NoteKind.REOPENED,
            f"The record was reopened at {stamp(run.now)} after its escalation at {run.level} "
            f"was {run.state.value}.{how}",
        )
        notices.tell(run, "reopened", reopen.notify)
    return Flow.NEXT
