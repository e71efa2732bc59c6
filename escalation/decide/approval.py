"""Approval and rejection: by command, by an approval field, or by a workflow transition.

Each answer is consumed once: a command by its comment id, a field value or a transition by a
token naming the request it answers, so the same answer never counts twice and an answer to an
earlier request never answers a new one.
"""

from __future__ import annotations

from escalation.decide import notices, priority_change
from escalation.decide.activation import activate
from escalation.decide.authorise import not_honoured
from escalation.decide.commands import Command
from escalation.decide.context import Flow, Run
from escalation.decide.reading import as_text, field_value, person_key, who
from escalation.decide.signals import clear_labels
from escalation.decide.times import stamp
from escalation.decision import NoteKind
from mapping.model import EscalationState

S = EscalationState


def approve(run: Run, by: str | None, approver: str, note: str) -> None:
    """`approver` approved (`by` is their ledger key, when a person did): activate."""
    run.approved_by = by or approver
    run.why(
        "approval", "pass", f"approved by {approver}", {"approver": by or approver, "note": note}
    )
    activate(run, approver, note)


def reject(run: Run, by: str | None, approver: str, items: str) -> None:
    """`approver` rejected with action items; rejecting a further level leaves the current one."""
    target = run.target()
    run.state = S.APPROVED if run.already_active else S.REJECTED
    run.target_level = None
    run.why(
        "approval",
        "fail",
        f"rejected by {approver}",
        {"approver": by or approver, "action_items": items},
    )
    run.note(
        NoteKind.REJECTION,
        f"rejection:{run.request_key()}:{run.now.isoformat()}",
        f"Escalation to {target.name if target else '-'} rejected by {approver} at "
        f"{stamp(run.now)} (current level {run.level}).\n"
        f"Action items: {items or 'none given'}"
        + ("" if run.already_active else "\n" + _ask_again(run)),
    )
    if not run.already_active:
        clear_labels(run)
    notices.tell(run, "rejected")


def _ask_again(run: Run) -> str:
    """How to ask again after a rejection, in the ways this policy takes requests."""
    req = run.policy.request
    ways = []
    if req.command:
        ways.append(f"write {req.command} <reason>")
    if req.labels:
        ways.append(f"add the label {req.labels[0]} again")
    if req.fields:
        ways.append(f"set {req.fields[0].field} to another value")
    return "To ask again once the action items are done: " + " or ".join(ways) + "."


def on_command(run: Run, cmd: Command) -> None:
    """An authorised approve or reject command."""
    author = cmd.comment.author
    retriable = (run.notice_key or "").startswith(("refused:max", "refused:not-created"))
    if cmd.kind == "approve" and run.state is S.REFUSED and retriable:
        # A refusal by limit, or for want of the engineering record, can be retried by an
        # approver once slots are free or the cause is fixed.
        approve(run, person_key(author), who(author), cmd.argument)
        return
    if run.state is S.APPROVED and run.priority_asked is not None:
        priority_change.answer(run, cmd)
        return
    if run.state is not S.PENDING_APPROVAL:
        not_honoured(
            run,
            cmd,
            f"nothing awaits approval (the escalation is {run.state.value.replace('_', ' ')})",
            {"state": run.state.value},
            "info",
        )
        return
    if cmd.kind == "approve":
        approve(run, person_key(author), who(author), cmd.argument)
    else:
        reject(run, person_key(author), who(author), cmd.argument)


def by_field_or_transition(run: Run) -> Flow:
    """Stage: a pending request answered by the approval field, else by a transition."""
    if run.state is not S.PENDING_APPROVAL:
        return Flow.NEXT
    if not _by_field(run) and "transition" in run.policy.approval.via:
        _by_transition(run)
    return Flow.NEXT


def _by_field(run: Run) -> bool:
    """The approval field holds an approving or rejecting value not read before."""
    approval = run.policy.approval
    if "field" not in approval.via or not approval.field:
        return False
    text = as_text(field_value(run.ticket, approval.field)).strip()
    token = f"field:{approval.field}={text.casefold()}@{run.request_key()}"
    if not text or token in run.entry.processed_command_ids:
        return False
    folded = text.casefold()
    compared = {"field": approval.field, "value": text}
    if folded in {v.casefold() for v in approval.approved_values}:
        run.processed.append(token)
        run.why("approval.field", "pass", f"{approval.field} is {text!r}", compared)
        approve(run, None, f"{approval.field} set to {text!r}", "")
        return True
    if folded in {v.casefold() for v in approval.rejected_values}:
        run.processed.append(token)
        run.why("approval.field", "fail", f"{approval.field} is {text!r}", compared)
        reject(run, None, f"{approval.field} set to {text!r}", "")
        return True
    return False


def _by_transition(run: Run) -> None:
    """The record's escalation state was moved to approved or rejected by its workflow."""
    esc = run.ticket.escalation
    if esc.state not in (S.APPROVED, S.REJECTED):
        return
    # Who decided is part of the token: a refused decision does not use up the one an
    # approver makes afterwards.
    token = f"transition:{esc.state.value}:{person_key(esc.approver) or ''}@{run.request_key()}"
    if token in run.entry.processed_command_ids:
        return
    run.processed.append(token)
    approvers = run.approvers(run.target())
    if (
        esc.approver is not None
        and not approvers.empty
        and not run.policy.is_member(esc.approver, approvers)
    ):
        run.why(
            "approval.transition",
            "blocked",
            f"transition to {esc.state.value} by {who(esc.approver)} is not honoured:"
            " not among the approvers the policy names",
            {"approver": person_key(esc.approver)},
        )
        return
    approver = who(esc.approver) if esc.approver else "workflow transition"
    if esc.state is S.APPROVED:
        approve(run, person_key(esc.approver), approver, esc.reason or "")
    else:
        reject(run, person_key(esc.approver), approver, esc.reason or "")
