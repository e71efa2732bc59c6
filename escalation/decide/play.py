"""Commands in comments, played in the order they were written, each comment once.

The ledger keeps the ids of the comments read, so deciding the same ticket twice plays nothing
twice. A command that is read but not authorised is still consumed: it is refused once, with a
reason, and not again on every sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from escalation.decide import approval, request, withdraw
from escalation.decide.authorise import authorised
from escalation.decide.commands import Command, unread_commands
from escalation.decide.context import Flow, Run
from escalation.wording import plural

# What each kind of command does once authorised. A new command is its word in
# commands.command_words, its rule in authorise, and a line here.
HANDLERS: Mapping[str, Callable[[Run, Command], None]] = {
    "request": request.on_command,
    "leadership": request.on_leadership,
    "withdraw": withdraw.on_command,
    "approve": approval.on_command,
    "reject": approval.on_command,
}


def play_commands(run: Run) -> Flow:
    """Stage: each unread command, if authorised, does what its kind does."""
    for cmd in _unread(run):
        run.processed.append(cmd.comment.id)
        if authorised(run, cmd):
            HANDLERS[cmd.kind](run, cmd)
    return Flow.NEXT


def _unread(run: Run) -> tuple[Command, ...]:
    unread = unread_commands(run.policy, run.ticket, run.entry.processed_command_ids)
    if unread.comments_read_before:
        n = unread.comments_read_before
        run.why(
            "commands.already_processed",
            "info",
            f"{plural(n, 'comment')} with commands handled earlier, not re-read",
            {"comments": n},
        )
    return unread.commands
