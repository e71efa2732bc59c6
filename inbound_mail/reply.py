"""One call from raw bytes to what the sync needs: `read_reply(raw, ...) -> InboundReply`.

```
raw bytes -> parse_message -> match_ticket -> classify -> strip_reply -> defang -> read_confirmation
```
Everything the result depends on is passed in (the outbox lookup, the earlier mails of the same
sender, the time): no I/O, no clock, so the same mail always reads the same way. The comment text
is `InboundReply.text`: the customer's words only (history, quotes and signature cut), with
commands, origin markers and markup made inert, followed by the notes a person should see (an
attachment left out, a text cut at the limit).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from inbound_mail.classify import Classification, LoopLimits, MailKind, classify
from inbound_mail.confirm import (
    DEFAULT_PATTERNS,
    Confirmation,
    ReplyPatterns,
    Verdict,
    read_confirmation,
)
from inbound_mail.defang import defang
from inbound_mail.matching import DEFAULT_SUBJECT_RES, SentLookup, TicketMatch, match_ticket
from inbound_mail.mime import Limits, ParsedMail, parse_message
from inbound_mail.quotes import DEFAULT_LANGUAGES, strip_reply

RecentMails = Callable[[str, str], Sequence[datetime]]
"""(sender, ticket) -> when earlier mails from that sender about that ticket arrived."""


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    """Everything configurable about reading a reply."""

    limits: Limits = field(default_factory=Limits)
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    subject_patterns: tuple[re.Pattern[str], ...] = DEFAULT_SUBJECT_RES
    loop: LoopLimits = field(default_factory=LoopLimits)
    own_addresses: tuple[str, ...] = ()
    patterns: ReplyPatterns = DEFAULT_PATTERNS


@dataclass(frozen=True, slots=True)
class InboundReply:
    """A mail read for the sync: what it is, which ticket, the text to post, and the verdict."""

    mail: ParsedMail
    classification: Classification
    match: TicketMatch
    text: str
    confirmation: Confirmation
    origin_key: str
    quoted_removed: bool = False
    signature_removed: bool = False

    @property
    def kind(self) -> MailKind:
        """Shortcut for `classification.kind`."""
        return self.classification.kind

    @property
    def postable(self) -> bool:
        """A person's reply about a known ticket: the only kind that becomes a comment."""
        return self.kind is MailKind.REPLY and self.match.matched


def origin_key(raw: bytes, mail: ParsedMail) -> str:
    """What identifies the mail for "posted once": its Message-ID, else a digest of the bytes."""
    if mail.message_id:
        return mail.message_id
    return f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@inbound.invalid>"


def comment_text(words: str, mail: ParsedMail) -> str:
    """The customer's words made inert, followed by the notes a person should see."""
    body = defang(words)
    notes = [n for n in mail.notes if not n.startswith("text decoded as")]
    if not body.strip() and mail.attachments:
        body = "(no text; see the attachments)"
    if notes:
        body = body.rstrip() + "\n\n" + "\n".join(f"[{defang(n)}]" for n in notes)
    return body.strip()


def read_reply(
    raw: bytes,
    *,
    sent_lookup: SentLookup,
    options: ReplyOptions | None = None,
    recent: RecentMails | None = None,
    now: datetime | None = None,
    known_ticket: Callable[[str], bool] | None = None,
) -> InboundReply:
    """Read one raw message; see the module docstring."""
    options = options or ReplyOptions()
    mail = parse_message(raw, options.limits)
    first = classify(
        mail,
        is_ours=lambda mid: sent_lookup(mid) is not None,
        own_addresses=options.own_addresses,
        limits=options.loop,
    )
    match = match_ticket(
        mail,
        sent_lookup=sent_lookup,
        subject_patterns=options.subject_patterns,
        known_ticket=known_ticket,
        bounce=first.bounce,
    )
    classification = first
    if first.kind is MailKind.REPLY and match.ticket and mail.sender and recent is not None:
        # The rate check needs the ticket, so it runs once the match is known.
        classification = classify(
            mail,
            is_ours=lambda mid: sent_lookup(mid) is not None,
            own_addresses=options.own_addresses,
            recent=recent(mail.sender, match.ticket),
            now=now,
            limits=options.loop,
        )
    stripped = strip_reply(mail.text, languages=options.languages)
    confirmation = (
        read_confirmation(stripped.text, options.patterns)
        if classification.kind is MailKind.REPLY
        else Confirmation(Verdict.NONE)
    )
    return InboundReply(
        mail=mail,
        classification=classification,
        match=match,
        text=comment_text(stripped.text, mail),
        confirmation=confirmation,
        origin_key=origin_key(raw, mail),
        quoted_removed=stripped.quoted_removed or mail.html_quote_removed,
        signature_removed=stripped.signature_removed,
    )


__all__ = [
    "InboundReply",
    "RecentMails",
    "ReplyOptions",
    "comment_text",
    "origin_key",
    "read_reply",
]
