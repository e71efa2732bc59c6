"""What follows an escalation's start, each on its own switch in the policy's on_approval.

The approval note, the tag, request labels removed, a priority change, the level field, a status
move, the engineering record (with the context engineering needs) and its links, management and
the customer told.
"""

from __future__ import annotations

from escalation.decide import notices
from escalation.decide.context import Run
from escalation.decide.reading import as_text, defang, field_value
from escalation.decide.times import stamp
from escalation.decision import (
    AddLabel,
    CreateEngineeringRecord,
    CustomerEvent,
    EmailCustomer,
    MoveStatus,
    NoteKind,
    PostLinks,
    RemoveLabel,
    SetLevel,
    SetPriority,
)
from escalation.policy import Level
from mapping.model import Priority


def approval_actions(run: Run, previous: str, target: Level, who: str | None, note: str) -> None:
    """Write the approval note and add the actions the policy takes on approval."""
    on = run.policy.on_approval
    t = run.ticket
    if who is None:
        head = (
            f"Escalation from {previous} to {target.name} started at {stamp(run.now)} "
            "without approval (not required by the policy for this ticket)."
        )
    else:
        head = f"Escalation approved by {who} at {stamp(run.now)}: {previous} -> {target.name}."
    body = head + f"\nReason: {run.request_reason or 'not given'}"
    if note:
        body += f"\nApprover note: {note}"
    run.note(NoteKind.APPROVAL, f"approval:{target.name}:{run.request_key()}", body)
    if on.tag and on.tag.casefold() not in {lb.casefold() for lb in t.labels}:
        run.actions.append(AddLabel(on.tag))
    if run.policy.request.remove_labels_on_approval:
        present = {lb.casefold(): lb for lb in t.labels}
        for lb in run.policy.request.labels:
            if lb.casefold() in present:
                run.actions.append(RemoveLabel(present[lb.casefold()]))
    new_prio = _new_priority(run)
    if new_prio is not None and new_prio != t.priority:
        run.actions.append(SetPriority(new_prio))
    run.priority = new_prio or run.priority or t.priority
    run.priority_asked = None
    run.target_level = None
    if on.set_level:
        run.actions.append(SetLevel(target.name))
    if on.status is not None and t.status != on.status:
        run.actions.append(MoveStatus(on.status))
    if on.create_engineering_record and target.target_system is not None:
        run.actions.append(_engineering_record(run, target, who, note))
        if on.post_links:
            run.actions.append(PostLinks())
    management = on.notify_management or run.rule.notify_management
    audiences = (*(("management",) if management else ()), *target.notify)
    notices.tell(run, "leadership" if target.kind == "leadership" else "escalated", audiences)
    if on.email_customer:
        run.actions.append(EmailCustomer(CustomerEvent.ESCALATED))


def _new_priority(run: Run) -> Priority | None:
    on = run.policy.on_approval
    if on.set_priority is not None:
        return on.set_priority
    if on.priority_bump and run.ticket.priority is not None:
        rank = max(1, run.ticket.priority.rank - on.priority_bump)
        return Priority(f"P{rank}")
    return None


def _engineering_record(
    run: Run, target: Level, who: str | None, note: str
) -> CreateEngineeringRecord:
    assert target.target_system is not None
    project = target.project_for(run.ticket.category)
    assert project is not None
    tag = run.policy.on_approval.tag
    region_field = run.policy.region_field
    region = as_text(field_value(run.ticket, region_field)).strip() if region_field else ""
    dispatch = target.dispatch_for(region or None)
    return CreateEngineeringRecord(
        target_system=target.target_system,
        project_or_table=project,
        level=target.name,
        summary=_engineering_summary(run),
        description=_engineering_description(run, target, who, note),
        queue=dispatch.get("queue"),
        issue_type=target.issue_type,
        labels=(tag,) if tag else (),
        dispatch=tuple(sorted(dispatch.items())),
    )


def _engineering_summary(run: Run) -> str:
    key = run.ticket.ref.key or run.ticket.ref.id
    return f"[{key}] {run.ticket.summary or '(no summary)'}"


def _engineering_description(run: Run, target: Level, who: str | None, note: str) -> str:
    """The ticket's description and the context engineering needs, never readable as commands."""
    t = run.ticket
    lines = [
        t.description or "(no description)",
        "",
        "Escalation context",
        f"- Source record: {t.ref.key or t.ref.id}" + (f" ({t.ref.url})" if t.ref.url else ""),
        f"- Level: {target.name}",
        f"- Priority: {t.priority.value if t.priority else 'unset'}",
        f"- Category: {t.category or 'unset'}",
        f"- Reason: {run.request_reason or 'not given'}",
        f"- Requested by: {run.requester or run.requested_by or 'not recorded'}",
        f"- Approved by: {who or 'not required'}",
    ]
    if note:
        lines.append(f"- Approver note: {note}")
    if t.attachments:
        lines.append("- Attachments: " + ", ".join(a.filename for a in t.attachments))
    return defang("\n".join(lines), run.words)
