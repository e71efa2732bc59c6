"""Mailbox readers: customers' replies as raw RFC 5322 bytes, one interface, three servers.

```
Mailbox (base.py)        fetch / claim / settle / wait / close; states kept on the server
├── ImapMailbox          imapclient: TLS or STARTTLS, IDLE, UID + UIDVALIDITY, MOVE or COPY+EXPUNGE
├── GraphMailbox         Microsoft Graph (Exchange Online): msal + requests, immutable ids
└── EwsMailbox           exchangelib (Exchange Server on premises)
build_mailbox(InboundSettings) -> the one `[email.inbound] kind` names
```
Reading what is in a mail (quotes, bounces, tickets) is `inbound_mail`'s job, not this package's.
"""

from connectors.mailbox.base import (
    FetchedMail,
    Mailbox,
    MailboxChanged,
    MailRef,
    MailState,
    Outcome,
    header_message_id,
)
from connectors.mailbox.ews import EwsMailbox
from connectors.mailbox.factory import build_mailbox
from connectors.mailbox.graph import GraphMailbox
from connectors.mailbox.imap import ImapMailbox
from connectors.mailbox.imap import connect as connect_imap
from connectors.mailbox.settings import (
    EwsInboxSettings,
    GraphInboxSettings,
    ImapInboxSettings,
    InboundSettings,
)

__all__ = [
    "EwsInboxSettings",
    "EwsMailbox",
    "FetchedMail",
    "GraphInboxSettings",
    "GraphMailbox",
    "ImapInboxSettings",
    "ImapMailbox",
    "InboundSettings",
    "MailRef",
    "MailState",
    "Mailbox",
    "MailboxChanged",
    "Outcome",
    "build_mailbox",
    "connect_imap",
    "header_message_id",
]
