"""Reading customers' replies: parse, classify, match, strip, make inert. Pure: no I/O, no clock.

```
read_reply(raw, sent_lookup=..., options=ReplyOptions(...), recent=..., now=...) -> InboundReply
    .classification.kind   reply | auto_reply | bounce | loop   (classify)
    .classification.bounce failed addresses and status, the returned Message-ID
    .match                 ticket, by in_reply_to | references | returned_message | subject
    .text                  the comment body: history and signature cut, commands and markup inert
    .confirmation.verdict  confirmed | not_fixed | unclear | none   (confirm)
    .mail                  ParsedMail: headers, sender, attachments (kept or refused, with why)
    .origin_key            the Message-ID: the idempotency key of the comment
senders.standing(sender, customer, watchers) / senders.placement(standing, stranger_policy)
```
The mailbox readers that fetch the raw bytes live in `connectors.mailbox`; the sync decides what
to post. Like `mapping/` and `escalation/`, this package imports neither `sync/` nor
`connectors/`.
"""

from inbound_mail.classify import Bounce, Classification, LoopLimits, MailKind, classify
from inbound_mail.confirm import (
    DEFAULT_CONFIRMED,
    DEFAULT_NOT_FIXED,
    Confirmation,
    ReplyPatterns,
    Verdict,
    read_confirmation,
)
from inbound_mail.defang import defang, defang_commands, neutralise_markup
from inbound_mail.matching import (
    DEFAULT_SUBJECT_PATTERNS,
    MatchedBy,
    SentLookup,
    TicketMatch,
    compile_subject_patterns,
    match_ticket,
)
from inbound_mail.mime import Attachment, Limits, ParsedMail, RecipientStatus, parse_message
from inbound_mail.quotes import strip_reply
from inbound_mail.reply import InboundReply, RecentMails, ReplyOptions, read_reply
from inbound_mail.senders import Placement, Standing, StrangerPolicy, placement, standing

__all__ = [
    "DEFAULT_CONFIRMED",
    "DEFAULT_NOT_FIXED",
    "DEFAULT_SUBJECT_PATTERNS",
    "Attachment",
    "Bounce",
    "Classification",
    "Confirmation",
    "InboundReply",
    "Limits",
    "LoopLimits",
    "MailKind",
    "MatchedBy",
    "ParsedMail",
    "Placement",
    "RecentMails",
    "RecipientStatus",
    "ReplyOptions",
    "ReplyPatterns",
    "SentLookup",
    "Standing",
    "StrangerPolicy",
    "TicketMatch",
    "Verdict",
    "classify",
    "compile_subject_patterns",
    "defang",
    "defang_commands",
    "match_ticket",
    "neutralise_markup",
    "parse_message",
    "placement",
    "read_confirmation",
    "read_reply",
    "standing",
    "strip_reply",
]
