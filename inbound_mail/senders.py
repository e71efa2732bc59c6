"""Who wrote the mail, as far as the ticket is concerned, and where their words may go.

Only the ticket's customer and its watchers speak publicly on it. Anyone else (a colleague
copied in, a forwarded thread, a spoofed or mistyped address) is a stranger: their mail becomes
an internal note or is refused, as `[email.inbound] stranger_policy` says. Addresses are compared
case-insensitively (the local part is case-sensitive in theory, never in practice).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

StrangerPolicy = Literal["internal_note", "refuse"]


class Standing(StrEnum):
    """The sender's relation to the ticket."""

    CUSTOMER = "customer"
    WATCHER = "watcher"
    STRANGER = "stranger"


class Placement(StrEnum):
    """Where the text of the mail goes."""

    PUBLIC_COMMENT = "public_comment"
    INTERNAL_NOTE = "internal_note"
    REFUSED = "refused"


def standing(sender: str | None, customer: str | None, watchers: Iterable[str] = ()) -> Standing:
    """The sender's standing on a ticket with this customer and these watchers."""
    if not sender:
        return Standing.STRANGER
    who = sender.strip().lower()
    if customer and who == customer.strip().lower():
        return Standing.CUSTOMER
    if who in {w.strip().lower() for w in watchers if w}:
        return Standing.WATCHER
    return Standing.STRANGER


def placement(who: Standing, stranger_policy: StrangerPolicy) -> Placement:
    """A customer or watcher is posted publicly; a stranger per the policy."""
    if who is not Standing.STRANGER:
        return Placement.PUBLIC_COMMENT
    return Placement.INTERNAL_NOTE if stranger_policy == "internal_note" else Placement.REFUSED


__all__ = ["Placement", "Standing", "StrangerPolicy", "placement", "standing"]
