"""An escalation's chat channel as decide() sees it and what it asks of it, as plain data.

decide() reads a `ChatStatus` (what the chat notifiers did so far for this escalation's room:
made or not and why, who was invited, the facts last posted) and answers with chat actions
(`OpenChat`, `InviteToChat`, `PostChat`, `ArchiveChat`), which the escalation step hands to
every chat notifier through the outbox, and with notes for the records once the room exists.
Nothing here talks to a chat service or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

Pairs = tuple[tuple[str, str], ...]


def room_key(ticket: str, approved_at: datetime) -> str:
    """The outbox key of an escalation's room: one room per ticket and approval (a further
    level keeps the room; an escalation started again after closure gets a new one)."""
    moment = approved_at.astimezone(UTC) if approved_at.tzinfo else approved_at
    return f"{ticket}|room|{moment:%Y%m%dT%H%M%SZ}"


def room_marker(ticket: str) -> str:
    """What a room carries (its purpose, its description) to be found again as this ticket's,
    after a crash or with a store that was lost."""
    return f"[escalation-sync {ticket}]"


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """The room as the policy describes it; each chat service makes its own name of `name`
    (a template) with `fields`."""

    key: str
    ticket: str
    name: str
    fields: Pairs
    topic: str
    links: Pairs = ()
    join: str | None = None
    private: bool = False
    shared: bool = False

    @property
    def marker(self) -> str:
        """What the room carries to be recognised as this ticket's."""
        return room_marker(self.ticket)


@dataclass(frozen=True, slots=True)
class OpenChat:
    """Make (or join) the escalation's room and invite these people (e-mail addresses);
    `facts` are the escalation's as the room starts (later changes are told against them)."""

    room: RoomSpec
    members: tuple[str, ...] = ()
    facts: Pairs = ()


@dataclass(frozen=True, slots=True)
class InviteToChat:
    """Invite people (e-mail addresses) who joined the escalation since the room was made."""

    room: RoomSpec
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PostChat:
    """Post one of the escalation's key events in its room. `facts` are what the message
    reports (level, priority, engineering status), so the next change is told against them."""

    room: RoomSpec
    event: str
    text: str
    facts: Pairs = ()


@dataclass(frozen=True, slots=True)
class ArchiveChat:
    """Archive the room: the escalation is over."""

    room: RoomSpec


ChatAction = OpenChat | InviteToChat | PostChat | ArchiveChat


@dataclass(frozen=True, slots=True)
class ChatRoomState:
    """What one chat service did with the room: made it (its name and link), or why it could
    not (a refused token, a missing scope), and who it found no account for."""

    service: str
    made: bool = False
    name: str | None = None
    url: str | None = None
    problem: str | None = None
    not_in_chat: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatStatus:
    """The escalation's room as the chat notifiers left it (None for decide(): no chat
    notifier is configured)."""

    opened: bool = False
    facts: Pairs = ()
    invited: frozenset[str] = frozenset()
    archived: bool = False
    rooms: tuple[ChatRoomState, ...] = field(default_factory=tuple)

    def fact(self, name: str) -> str | None:
        """The value of `name` last posted, if any."""
        found = None
        for key, value in self.facts:
            if key == name:
                found = value
        return found
