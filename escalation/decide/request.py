"""The request path: a request is refused, held by the gate, sent for approval, or activated.

A request starts from a command, a label, a field or a trigger; from then on it advances the
same way: refused at the top level or for low impact, held until the gate's items are there,
then waiting for approval when the policy wants one, else activated at once.
"""

from __future__ import annotations

from escalation.decide import duplicates, notices
from escalation.decide.activation import activate
from escalation.decide.authorise import not_honoured
from escalation.decide.commands import Command
from escalation.decide.context import FINISHED, RESTARTABLE, Flow, Run
from escalation.decide.gate import missing_items
from escalation.decide.limits import low_impact, refuse
from escalation.decide.reading import person_key, who
from escalation.decide.times import stamp
from escalation.decision import CustomerEvent, EmailCustomer, NoteKind
from escalation.policy import Level
from mapping.model import Comment, EscalationState

S = EscalationState


def start(
    run: Run, by: str | None, reason: str, comment: Comment | None, aim: Level | None = None
) -> None:
    """A new request, by `by` (None: not a person) for `reason`, asked in `comment` if any.

    `aim` is the level asked for when it is not the next one (a leadership level). A request
    after the escalation ended asks again for the level the policy's reopen.level names.
    """
    if run.state in FINISHED:
        _start_over(run)
    run.state = S.REQUESTED
    run.requested_by = by
    run.requester = who(comment.author) if comment is not None else None
    run.request_reason = reason
    run.requested_at = run.now
    run.request_started = True
    run.approved_by = None
    run.target_level = aim.name if aim is not None else None
    if not run.already_active and duplicates.join_open(run):
        return
    advance(run)


def _start_over(run: Run) -> None:
    """After an escalation ended, a new one starts below the level it asks for."""
    levels = run.policy.levels
    if run.policy.reopen.level == "first":
        run.level = levels[0].name
    else:
        reached = run.policy.level_index(run.level)
        technical = [i for i, lv in enumerate(levels) if lv.kind == "technical"]
        # A leadership escalation that ended asks again for the top technical level.
        reached = min(reached, technical[-1])
        run.level = levels[max(0, reached - 1)].name
    run.priority = None
    run.priority_asked = None
    asked = run.policy.next_level(run.level)
    run.why(
        "reopen.request",
        "info",
        f"a new request after the escalation ended: it asks for {asked.name if asked else '-'}",
        {"from_level": run.level, "reopen_level": run.policy.reopen.level},
    )


def resume(run: Run) -> Flow:
    """Stage: a request an earlier decision held at the gate is checked again."""
    if run.state is S.INCOMPLETE and not run.request_started:
        advance(run)
    return Flow.NEXT


def advance(run: Run) -> None:
    """From a request: refusal at the top or for low impact, the gate, approval or activation."""
    target = run.target()
    if target is None:
        refuse(
            run,
            "refused:top-level",
            f"Escalation refused: the ticket is already at the highest level ({run.level}).",
            "level",
            {"level": run.level},
        )
        return
    low = low_impact(run)
    if low is not None:
        refuse(
            run,
            "refused:low-impact",
            f"Escalation refused: low-impact issue ({low}). Low-impact issues are not "
            "accepted as escalations.",
            "limit.low_impact",
            {"matched": low},
        )
        return
    missing = missing_items(run)
    if missing:
        _hold(run, target, missing)
        return
    if _approval_required(run):
        _ask_approval(run, target)
        notices.tell(run, "requested")
        return
    run.why(
        "approval.required",
        "info",
        "approval is not required for this ticket"
        + (f" ({run.ticket.priority.value})" if run.ticket.priority else ""),
        {"priority": run.ticket.priority.value if run.ticket.priority else None},
    )
    activate(run, None, "")


def _hold(run: Run, target: Level, missing: list[tuple[str, str]]) -> None:
    """The gate holds the request: say what is missing, once, and tell the customer if asked."""
    run.state = S.INCOMPLETE
    names = [m[0] for m in missing]
    body = (
        f"Escalation to {target.name} is on hold: the ticket is incomplete. Missing:\n"
        + "\n".join(f"- {desc}" for _, desc in missing)
        + "\nThe escalation proceeds once these are added."
    )
    key = "incomplete:" + ",".join(sorted(names))
    before = run.notice_key
    run.note(NoteKind.NEEDS_INFORMATION, key, body)
    if run.policy.gate.email_customer and before != run.notice_key:
        run.actions.append(EmailCustomer(CustomerEvent.NEEDS_INFORMATION))


def _approval_required(run: Run) -> bool:
    if run.rule.approval_required is not None:
        return run.rule.approval_required
    return run.policy.approval.required


def _ask_approval(run: Run, target: Level) -> None:
    """The request waits for approval: a note naming who may give it."""
    run.state = S.PENDING_APPROVAL
    approvers = run.approvers(target)
    named = ", ".join([*approvers.users, *(f"group {g}" for g in approvers.groups)])
    run.note(
        NoteKind.REQUEST,
        f"request:{run.requested_at.isoformat() if run.requested_at else ''}",
        f"Escalation to {target.name} requested"
        + (f" by {run.requester or run.requested_by}" if run.requested_by else "")
        + f" at {stamp(run.now)}. Reason: {run.request_reason or 'not given'}.\n"
        f"Awaiting approval ({named or 'approval field or transition'}).",
    )
    run.why(
        "approval.required",
        "info",
        f"approval by {named or 'field/transition'} is required before transfer",
        {"level": target.name, "users": list(approvers.users), "groups": list(approvers.groups)},
    )


def on_leadership(run: Run, cmd: Command) -> None:
    """An authorised leadership command: asks for the first leadership level above this one."""
    here = run.policy.level_index(run.level)
    aim = next(
        (lv for lv in run.policy.leadership_levels() if run.policy.level_index(lv.name) > here),
        None,
    )
    if aim is None:
        not_honoured(
            run,
            cmd,
            f"the escalation is already at {run.level}, the highest leadership level",
            {"level": run.level},
            "info",
        )
        return
    on_command(run, cmd, aim)


def on_command(run: Run, cmd: Command, aim: Level | None = None) -> None:
    """An authorised request command: starts a request unless one is under way."""
    further = run.already_active and run.state is S.APPROVED
    status = run.ticket.status
    closed = status is not None and status in run.policy.closure.itsm_closed_statuses
    again = run.state in FINISHED and run.policy.reopen.allowed and not closed
    if run.state not in RESTARTABLE and not further and not again:
        if run.state in FINISHED and run.policy.reopen.allowed:
            why_not = "the record is closed; reopen it to escalate again"
        elif run.state in FINISHED:
            why_not = "the escalation has ended and this policy takes no new request after it"
        elif run.state is S.JOINED:
            why_not = f"the ticket follows the escalation of {run.joined_to or 'another ticket'}"
        else:
            why_not = f"an escalation is already {run.state.value.replace('_', ' ')}"
        not_honoured(run, cmd, why_not, {"state": run.state.value}, "info")
        return
    by = person_key(cmd.comment.author)
    if run.policy.request.reason_required and not cmd.argument:
        run.why(
            "recognition.command",
            "fail",
            f"{cmd.word} in comment {cmd.comment.id} gives no reason; the policy requires one",
            {"comment": cmd.comment.id, "author": by},
        )
        run.aside(
            NoteKind.REQUEST,
            f"Escalation request in comment {cmd.comment.id} by "
            f"{who(cmd.comment.author)} not taken: say why the ticket needs "
            f"escalating ({cmd.word} <reason>).",
        )
        return
    run.why(
        "recognition.command",
        "pass",
        f"escalation requested by {who(cmd.comment.author)} in comment {cmd.comment.id}",
        {"comment": cmd.comment.id, "author": by, "reason": cmd.argument},
    )
    start(run, by, cmd.argument or "requested by command", cmd.comment, aim)
