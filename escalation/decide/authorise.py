"""Who may say what, where: a command counts only from the right people in the right place.

Identity is the comment's author as the ITSM system reports it, never a name typed in the text.
A comment that came by e-mail (a customer's reply the sync posted, or its copy) counts nowhere,
whatever it says: mail proves no one's identity. A comment mirrored from the paired record is a
copy and counts nowhere. A request counts in the
places and from the people `request` names; an answer only when the policy takes approval by
command, in the places `approval` names, from the approvers of the level asked for (and, with
four eyes, not from the requester); a withdrawal from the requester, the people `withdraw_from`
names or, when it names nobody, those who may request and the approvers. Every refusal is a
reason with outcome "blocked", and its author is told why in an internal note.
"""

from __future__ import annotations

from typing import Any

from escalation.decide.commands import Command
from escalation.decide.context import Run
from escalation.decide.reading import COPY_MARK, from_mail, person_key, who
from escalation.decide.times import stamp
from escalation.decision import NoteKind, Outcome
from escalation.policy import People
from mapping.model import Visibility


def authorised(run: Run, cmd: Command) -> bool:
    """Whether `cmd` counts: written here, in an allowed place, by someone allowed to say it."""
    if from_mail(cmd.comment.body):
        # Mail proves no one's identity: nobody is told, as nobody is known to have asked.
        run.why(
            f"command.{cmd.kind}",
            "blocked",
            f"{cmd.word} in comment {cmd.comment.id} is not honoured: the comment came by "
            "e-mail (a reply the sync posted); commands are never taken from mail",
            {
                "comment": cmd.comment.id,
                "author": person_key(cmd.comment.author),
                "source": "email",
            },
        )
        return False
    if COPY_MARK in cmd.comment.body:
        # A copy is nobody's command: its author wrote it on the other record.
        run.why(
            f"command.{cmd.kind}",
            "blocked",
            f"{cmd.word} in comment {cmd.comment.id} is not honoured: the comment is a copy "
            "mirrored from the paired record; commands count only where they were written",
            {"comment": cmd.comment.id, "author": person_key(cmd.comment.author)},
        )
        return False
    req = run.policy.request
    if cmd.kind in ("request", "leadership"):
        return _place_ok(run, cmd, req.command_in) and _person_ok(
            run, cmd, req.command_from, "requesters"
        )
    if cmd.kind == "withdraw":
        return _withdraw_ok(run, cmd)
    return _answer_ok(run, cmd)


def not_honoured(
    run: Run,
    cmd: Command,
    why_not: str,
    compared: dict[str, Any] | None = None,
    outcome: Outcome = "blocked",
) -> None:
    """Record that `cmd` was not honoured and why, and tell its author in an internal note."""
    run.why(
        f"command.{cmd.kind}",
        outcome,
        f"{cmd.word} in comment {cmd.comment.id} is not honoured: {why_not}",
        {"comment": cmd.comment.id, "author": person_key(cmd.comment.author), **(compared or {})},
    )
    if not run.policy.commands.tell_refused:
        return
    written = (
        f"written {stamp(cmd.comment.created)}"
        if cmd.comment.created
        else f"comment {cmd.comment.id}"
    )
    run.aside(
        NoteKind.COMMAND_REFUSED,
        f"To {who(cmd.comment.author)}: your {cmd.word} command ({written}) was not taken: "
        f"{why_not}.",
    )


def _answer_ok(run: Run, cmd: Command) -> bool:
    approval = run.policy.approval
    if "command" not in approval.via:
        not_honoured(
            run,
            cmd,
            f"this policy takes approval by {', '.join(approval.via)}, not by command",
            {"via": list(approval.via)},
        )
        return False
    if not _place_ok(run, cmd, approval.command_in):
        return False
    target = run.target()
    approvers = run.approvers(target)
    if approvers.empty:
        level_name = target.name if target else f"above {run.level}"
        not_honoured(run, cmd, f"no approvers are named for level {level_name}")
        return False
    if not _person_ok(run, cmd, approvers, "approvers"):
        return False
    author = person_key(cmd.comment.author)
    if cmd.kind == "approve" and approval.four_eyes and author and author == run.requested_by:
        not_honoured(
            run,
            cmd,
            "four eyes: whoever asked for the escalation may not approve it as well; another "
            "approver must",
            {"requested_by": run.requested_by},
        )
        return False
    return True


def _withdraw_ok(run: Run, cmd: Command) -> bool:
    req = run.policy.request
    places = tuple(dict.fromkeys([*req.command_in, *run.policy.approval.command_in]))
    if not _place_ok(run, cmd, places):
        return False
    author = person_key(cmd.comment.author)
    if author is not None and author == run.requested_by:
        return True
    if not req.withdraw_from.empty:
        return _person_ok(run, cmd, req.withdraw_from, "people who may withdraw a request")
    if req.command_from.empty:
        return True
    approvers = run.approvers(run.target())
    if run.policy.is_member(cmd.comment.author, req.command_from) or run.policy.is_member(
        cmd.comment.author, approvers
    ):
        return True
    not_honoured(
        run,
        cmd,
        f"its author {who(cmd.comment.author)} neither asked for the escalation nor may ask "
        "for or approve one",
        {"requested_by": run.requested_by},
    )
    return False


def _place_ok(run: Run, cmd: Command, allowed: tuple[Visibility, ...]) -> bool:
    if cmd.comment.visibility in allowed:
        return True
    not_honoured(
        run,
        cmd,
        f"it was written in a {cmd.comment.visibility.value} comment by "
        f"{who(cmd.comment.author)}, and the policy accepts it only in "
        f"{', '.join(v.value for v in allowed)} comments",
        {"visibility": cmd.comment.visibility.value, "allowed": [v.value for v in allowed]},
    )
    return False


def _person_ok(run: Run, cmd: Command, people: People, role: str) -> bool:
    if people.empty or run.policy.is_member(cmd.comment.author, people):
        return True
    not_honoured(
        run,
        cmd,
        f"its author {who(cmd.comment.author)} is not among the {role} the policy names",
        {"users": list(people.users), "groups": list(people.groups)},
    )
    return False
