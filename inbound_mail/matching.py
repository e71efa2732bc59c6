"""Which ticket a mail is about.

In order, the first that gives an answer wins:

1. `In-Reply-To`: the Message-ID the customer's client answered. Every mail the product sends
   has a Message-ID the outbox keeps, so `sent_lookup(message_id)` names its ticket.
2. `References`, newest first: a client that dropped `In-Reply-To`, or a reply to a reply.
3. For a bounce, the Message-ID of the returned message (the mail that could not be delivered).
4. The subject: a ticket number found by one of the configured patterns (by default the
   bracketed key every mail of ours starts its subject with, `[INC0010001]`, and a bare
   ServiceNow number such as INC0012345). `known_ticket` may refuse a number that names no
   ticket of ours; the next match is tried then. A bare Jira key (`DS-12`) is not in the
   defaults: "UTF-8" or "ISO-9001" in a subject would match it.

The thread beats the subject: a customer may edit the subject, not the headers their client
fills in. When both name a ticket and they differ, `subject_ticket` keeps the subject's for the
record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from inbound_mail.classify import Bounce
from inbound_mail.mime import ParsedMail

SentLookup = Callable[[str], str | None]
"""Message-ID (with angle brackets) -> the ticket the product sent it for, or None."""

DEFAULT_SUBJECT_PATTERNS: tuple[str, ...] = (
    r"\[(?P<ticket>[A-Z][A-Z0-9_]*-?[0-9]+)\]",
    r"\b(?P<ticket>(?:INC|RITM|REQ|PRB|CHG|SCTASK|TASK|CS)[0-9]{7,})\b",
)


class MatchedBy(StrEnum):
    """How the ticket was found."""

    IN_REPLY_TO = "in_reply_to"
    REFERENCES = "references"
    RETURNED_MESSAGE = "returned_message"
    SUBJECT = "subject"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TicketMatch:
    """The ticket (None when nothing matched), how, and the Message-ID of ours it answers."""

    ticket: str | None
    by: MatchedBy
    message_id: str | None = None
    subject_ticket: str | None = None

    @property
    def matched(self) -> bool:
        """Whether a ticket was found."""
        return self.ticket is not None


def compile_subject_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Compile the patterns; ValueError lists every bad one (each needs a `ticket` group)."""
    compiled: list[re.Pattern[str]] = []
    errors: list[str] = []
    for index, pattern in enumerate(patterns):
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            errors.append(f"subject_patterns[{index}] {pattern!r}: {exc}")
            continue
        if "ticket" not in rx.groupindex:
            errors.append(
                f"subject_patterns[{index}] {pattern!r}: needs a named group (?P<ticket>...)"
            )
            continue
        compiled.append(rx)
    if errors:
        raise ValueError("; ".join(errors))
    return tuple(compiled)


DEFAULT_SUBJECT_RES = compile_subject_patterns(DEFAULT_SUBJECT_PATTERNS)


def subject_tickets(subject: str, patterns: Sequence[re.Pattern[str]]) -> tuple[str, ...]:
    """Every ticket number the patterns find in `subject`, in order of appearance."""
    found: list[tuple[int, str]] = []
    for rx in patterns:
        for m in rx.finditer(subject[:1000]):
            if m.group("ticket"):
                found.append((m.start(), m.group("ticket")))
    return tuple(dict.fromkeys(ticket for _, ticket in sorted(found)))


def match_ticket(
    mail: ParsedMail,
    *,
    sent_lookup: SentLookup,
    subject_patterns: Sequence[re.Pattern[str]] = DEFAULT_SUBJECT_RES,
    known_ticket: Callable[[str], bool] | None = None,
    bounce: Bounce | None = None,
) -> TicketMatch:
    """Find the ticket `mail` is about; see the module docstring for the order."""
    subject = bounce.original_subject if bounce is not None and bounce.original_subject else ""
    candidates = subject_tickets(subject or mail.subject, subject_patterns)
    if known_ticket is not None:
        candidates = tuple(c for c in candidates if known_ticket(c))
    subject_ticket = candidates[0] if candidates else None
    for message_id in mail.in_reply_to:
        ticket = sent_lookup(message_id)
        if ticket:
            return TicketMatch(ticket, MatchedBy.IN_REPLY_TO, message_id, subject_ticket)
    for message_id in reversed(mail.references):
        ticket = sent_lookup(message_id)
        if ticket:
            return TicketMatch(ticket, MatchedBy.REFERENCES, message_id, subject_ticket)
    if bounce is not None and bounce.original_message_id:
        ticket = sent_lookup(bounce.original_message_id)
        if ticket:
            return TicketMatch(
                ticket, MatchedBy.RETURNED_MESSAGE, bounce.original_message_id, subject_ticket
            )
    if subject_ticket is not None:
        return TicketMatch(subject_ticket, MatchedBy.SUBJECT, None, subject_ticket)
    return TicketMatch(None, MatchedBy.NONE)


__all__ = [
    "DEFAULT_SUBJECT_PATTERNS",
    "DEFAULT_SUBJECT_RES",
    "MatchedBy",
    "SentLookup",
    "TicketMatch",
    "compile_subject_patterns",
    "match_ticket",
    "subject_tickets",
]
