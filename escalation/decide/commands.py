"""Commands in comments: the words the policy knows, and the unread ones in the order written.

Reading finds commands; it does not judge them. Whether a command counts (where it was written,
by whom) is `authorise`'s question, and what it does is its stage's.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from escalation.decide.times import aware
from escalation.policy import Policy
from mapping.model import Comment, Ticket

# The kinds of command that ask for an escalation (the others answer or end a request).
ASKING = frozenset({"request", "leadership"})


@dataclass(frozen=True, slots=True)
class Command:
    """One command word found in a comment, with the text after it on its line."""

    kind: str  # a kind from command_words(): request, leadership, withdraw, approve, reject
    word: str
    argument: str
    comment: Comment


def command_words(policy: Policy) -> tuple[tuple[str, str], ...]:
    """(kind, word) for each command the policy takes, in the order they are looked for."""
    words: list[tuple[str, str]] = []
    req = policy.request
    if req.command:
        words.append(("request", req.command))
    if req.leadership_command:
        words.append(("leadership", req.leadership_command))
    if req.withdraw_command:
        words.append(("withdraw", req.withdraw_command))
    words.append(("approve", policy.approval.approve_command))
    words.append(("reject", policy.approval.reject_command))
    return tuple(words)


def _command_re(word: str) -> re.Pattern[str]:
    # A command is the word at the start of the text or after whitespace, not a longer word.
    return re.compile(rf"(?:^|(?<=\s)){re.escape(word)}(?![\w-])[ \t]*(?P<arg>[^\r\n]*)")


@dataclass(frozen=True, slots=True)
class Unread:
    """The commands not read before, in time order, and how many comments were read before."""

    commands: tuple[Command, ...]
    comments_read_before: int


def unread_commands(policy: Policy, ticket: Ticket, read: Collection[str]) -> Unread:
    """Commands in comments whose ids are not in `read`, in the order they were written."""
    patterns = [(kind, _command_re(word), word) for kind, word in command_words(policy)]
    floor = datetime.min.replace(tzinfo=UTC)
    per_comment: list[tuple[datetime, int, int, list[Command]]] = []
    seen_before = 0
    for index, comment in enumerate(ticket.comments):
        hits: list[tuple[int, Command]] = []
        for kind, rx, word in patterns:
            for m in rx.finditer(comment.body):
                hits.append((m.start(), Command(kind, word, m.group("arg").strip(), comment)))
        if not hits:
            continue
        if comment.id in read:
            seen_before += 1
            continue
        cmds = [cmd for _, cmd in sorted(hits, key=lambda h: h[0])]
        # Journals stamp to the second and list newest first: within one timestamp a
        # request goes before the answer to it.
        answers_only = int(all(cmd.kind not in ASKING for cmd in cmds))
        created = aware(comment.created or floor)
        per_comment.append((created, answers_only, index, cmds))
    per_comment.sort(key=lambda item: item[:3])
    found = tuple(cmd for *_, cmds in per_comment for cmd in cmds)
    return Unread(found, seen_before)
