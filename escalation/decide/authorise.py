"""Who may say what, where: a command counts only from the right people in the right place.

Identity is the comment's author as the ITSM system reports it, never a name typed in the text.
A comment that came by e-mail (a customer's reply the sync posted, or its copy) counts nowhere,
whatever it says: mail proves no one's identity. A comment mirrored from the paired record is a
copy and counts nowhere. A request counts in the
places and from the people `request` names; an answer only when the policy takes approval by
command, in the places `approval` names, from the approvers of the level asked for. Every
refusal is a reason with outcome "blocked".
"""

from __future__ import annotations

from typing import Any

from escalation.decide.commands import Command
from escalation.decide.context import Run
from escalation.decide.reading import COPY_MARK, from_mail, person_key, who
from escalation.policy import People
from mapping.model import Visibility


def authorised(run: Run, cmd: Command) -> bool:
    """Whether `cmd` counts: written here, in an allowed place, by someone allowed to say it."""
    if from_mail(cmd.comment.body):
        _blocked(
            run,
            cmd,
            "the comment came by e-mail (a reply the sync posted); commands are never taken "
            "from mail",
            {"author": person_key(cmd.comment.author), "source": "email"},
        )
        return False
    if COPY_MARK in cmd.comment.body:
        _blocked(
            run,
            cmd,
            "the comment is a copy mirrored from the paired record; commands count only where "
            "they were written",
            {"author": person_key(cmd.comment.author)},
        )
        return False
    if cmd.kind == "request":
        req = run.policy.request
        return _place_ok(run, cmd, req.command_in) and _person_ok(
            run, cmd, req.command_from, "requesters"
        )
    return _answer_ok(run, cmd)


def _answer_ok(run: Run, cmd: Command) -> bool:
    approval = run.policy.approval
    if "command" not in approval.via:
        _blocked(
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
        _blocked(run, cmd, f"no approvers are named for level {level_name}", {})
        return False
    return _person_ok(run, cmd, approvers, "approvers")


def _place_ok(run: Run, cmd: Command, allowed: tuple[Visibility, ...]) -> bool:
    if cmd.comment.visibility in allowed:
        return True
    run.why(
        f"command.{cmd.kind}",
        "blocked",
        f"{cmd.word} in a {cmd.comment.visibility.value} comment ({cmd.comment.id}) by "
        f"{who(cmd.comment.author)} is not honoured: the policy accepts it only in "
        f"{', '.join(v.value for v in allowed)} comments",
        {
            "comment": cmd.comment.id,
            "visibility": cmd.comment.visibility.value,
            "allowed": [v.value for v in allowed],
            "author": person_key(cmd.comment.author),
        },
    )
    return False


def _person_ok(run: Run, cmd: Command, people: People, role: str) -> bool:
    if people.empty or run.policy.is_member(cmd.comment.author, people):
        return True
    run.why(
        f"command.{cmd.kind}",
        "blocked",
        f"{cmd.word} in comment {cmd.comment.id} is not honoured: its author "
        f"{who(cmd.comment.author)} is not among the {role} the policy names",
        {
            "comment": cmd.comment.id,
            "author": person_key(cmd.comment.author),
            "users": list(people.users),
            "groups": list(people.groups),
        },
    )
    return False


def _blocked(run: Run, cmd: Command, why_not: str, compared: dict[str, Any]) -> None:
    run.why(
        f"command.{cmd.kind}",
        "blocked",
        f"{cmd.word} in comment {cmd.comment.id} is not honoured: {why_not}",
        {"comment": cmd.comment.id, **compared},
    )
