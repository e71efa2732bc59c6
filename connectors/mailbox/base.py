"""The one interface every mailbox reader has, and what "processed" means on the server.

```
Mailbox.fetch(limit)            -> [FetchedMail(ref, raw, state, message_id, size, truncated)]
Mailbox.claim(ref)              mark "being processed" before anything is posted
Mailbox.settle(ref, outcome)    mark processed (or refused) and move to the configured folder
Mailbox.wait(timeout, stop)     block until new mail may be there (IMAP IDLE) or the timeout
Mailbox.close()
```
The state lives on the server, with the mail, so a restart (or a second deployment) reads
nothing twice and loses nothing:

    in the folder, no mark of ours          -> NEW              (never posted)
    in the folder, claimed                  -> MAYBE_PROCESSED  (a run died after claiming: the
                                               poster looks for the comment by Message-ID first)
    in the folder, marked processed/refused -> moved on by the next fetch, not given out again
    in the processed / refused folder       -> done

Claiming before posting is what makes "posted once" hold: a crash between posting and marking
leaves the mail claimed, so it comes back as MAYBE_PROCESSED with its Message-ID (the comment's
origin key), never as NEW.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from connectors.errors import RetryableError

SYSTEM = "mailbox"
Outcome = Literal["processed", "refused"]


class MailState(StrEnum):
    """Whether the mail may already have been posted."""

    NEW = "new"
    MAYBE_PROCESSED = "maybe_processed"


@dataclass(frozen=True, slots=True)
class MailRef:
    """A mail in the folder being read: `id` is stable while it stays there.

    IMAP: `<folder>;<UIDVALIDITY>;<UID>`; Graph: the immutable message id; EWS: the item id.
    """

    id: str
    folder: str


@dataclass(frozen=True, slots=True)
class FetchedMail:
    """One mail as the server holds it: the raw RFC 5322 bytes (cut at the size limit)."""

    ref: MailRef
    raw: bytes
    state: MailState
    message_id: str | None
    size: int
    truncated: bool = False


class MailboxChanged(RetryableError):
    """The folder was recreated (IMAP UIDVALIDITY changed): fetch again before settling."""


@runtime_checkable
class Mailbox(Protocol):
    """Reads one folder of one mailbox; see the module docstring for the states."""

    def fetch(self, limit: int = 50) -> list[FetchedMail]:
        """Mails not yet settled, oldest first; finishes the move of mails settled earlier."""
        ...

    def claim(self, ref: MailRef) -> None:
        """Mark the mail as being processed; call before posting anything for it."""
        ...

    def settle(self, ref: MailRef, outcome: Outcome) -> None:
        """Mark the mail processed (or refused) and move it to the configured folder."""
        ...

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block up to `timeout` seconds; True when the server announced new mail."""
        ...

    def close(self) -> None:
        """Log out and release the connection."""
        ...


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID in the header of `raw` (with angle brackets), or None."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:256_000])
        value = headers.get("Message-ID")
    except Exception:  # hostile header block: the mail still gets processed, just without id
        return None
    if not value:
        return None
    text = " ".join(str(value).split())
    start, end = text.find("<"), text.find(">")
    if 0 <= start < end:
        return text[start : end + 1]
    return None


def wait_quietly(timeout: float, stop: threading.Event | None) -> bool:
    """Polling readers' wait: sleep until the timeout or the stop event; never "new mail"."""
    if stop is not None:
        stop.wait(timeout)
    else:
        threading.Event().wait(timeout)
    return False


__all__ = [
    "SYSTEM",
    "FetchedMail",
    "MailRef",
    "MailState",
    "Mailbox",
    "MailboxChanged",
    "Outcome",
    "header_message_id",
    "wait_quietly",
]
