"""The notifier seam: what every channel (email, chat, a pager) does, in small typed pieces.

```
Notice       what happened and who is told, from the policy's decision (channel-neutral)
  -> Notifier.compose(notice) -> [Draft]     how it reads on this channel; pure, no I/O
  -> outbox.enqueue_drafts(...)              rows, in the decision's own transaction
  -> OutboxWorker, one row at a time:
       Notifier.send(Outgoing) -> Delivered               the transport acts once per key
       Notifier.was_sent(Outgoing) -> Delivered | False | None   after a crash, if it can tell
```

The policy says *what* happens and *who* is told; a notifier says *how*. A channel that needs a
resource made once (a chat channel for an incident) drafts it with `kind = "resource"` and a key
of its own (once per ticket, say); its messages address it as `created(key)`, and the outbox
hands them over only once the resource exists, with what the transport called it (the chat
channel's id) in place of the reference. Every row, message or resource, is done at most once
per (channel, key): the outbox records the key before the transport is called and what the
transport answered after.

Errors are those of the root `errors` module: `Retry` (tried again later), `DeadLetter` (the
message is parked, `email requeue` after the fix), `PauseSystem` (credentials refused: the
channel is paused, no message is spent). A transport that may have acted and cannot say raises
`errors.InDoubt` (SMTP's `DeliveryUncertain` is one), and the row is settled like a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    # Types only: the seam is imported by the configuration loader, which must stay light.
    from pydantic import BaseModel

    from connectors.email import EmailSettings
    from connectors.email_render import CustomerContext, ManagementContext

# Customers hear by e-mail; management by e-mail or a chat; the stakeholders of an escalation
# (the people working it) in its chat room.
Audience = Literal["customer", "management", "stakeholders"]
Kind = Literal["message", "resource"]
MESSAGE: Kind = "message"
RESOURCE: Kind = "resource"
CREATED_PREFIX = "created:"


class ChannelSettings(Protocol):
    """What a channel's `build` reads of the configuration (the settings offer it)."""

    @property
    def email_settings(self) -> EmailSettings | None:
        """The `[email]` section, validated; None when it was never loaded."""
        ...

    @property
    def notify_settings(self) -> Mapping[str, BaseModel]:
        """Each `[notify.<channel>]` table as its channel's validated model."""
        ...


@dataclass(frozen=True, slots=True)
class Room:
    """An escalation's chat room as the policy describes it, for every chat channel alike.

    `key` is the outbox key its resource row is drafted under (one room per escalation), and
    what the room's messages address (`created(key)`). `name` is a template over `fields`; each
    channel makes a valid name of it in its own way (Slack slugs it, Teams drops the characters
    it refuses). `join` names an existing room to use instead of making one. `marker` is what
    the room carries (a purpose, a description) so the channel finds it again after a crash
    instead of making a second one. `shared`: the customer is in it (the policy then sends
    nothing internal; a channel leaves internal links out too). `record` is the ITSM record
    ("system:id") to sync again once the room is made or refused, so its link or the reason
    reaches the records.
    """

    key: str
    ticket: str
    name: str
    fields: Mapping[str, str]
    topic: str
    marker: str
    record: str = ""
    links: tuple[tuple[str, str], ...] = ()
    join: str | None = None
    private: bool = False
    shared: bool = False

    def display_name(self) -> str:
        """The name template with its fields filled in, before a channel's own rules."""
        if self.join:
            return self.join
        return self.name.format(**self.fields)


@dataclass(frozen=True, slots=True)
class ChatContext:
    """What a stakeholder notice carries: its room, the message (empty when the notice makes,
    invites to or archives the room), the people to invite (e-mail addresses), and the facts the
    message reports (kept with the outbox row, so the next change is told against them)."""

    room: Room
    text: str = ""
    members: tuple[str, ...] = ()
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the policy decided to tell someone: the same for every channel.

    `event` is what the outbox keys the update by ("escalated", "management:requested"),
    `template` the name a channel renders it under ("escalated", "management_requested").
    `recipients` are the people the policy or the ticket names (e-mail addresses); a channel
    may add its own configured destinations. `copies` are people told for information (the
    stakeholders the policy copies, CC in an e-mail).
    """

    audience: Audience
    event: str
    template: str
    ticket: str
    version: str
    context: CustomerContext | ManagementContext | ChatContext
    recipients: tuple[str, ...] = ()
    copies: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The update's idempotency key: "ticket|event|version" (one per channel)."""
        return f"{self.ticket}|{self.event}|{self.version}"


@dataclass(frozen=True, slots=True)
class Draft:
    """One thing a channel will do for a notice: a message, or a resource made once.

    `key` overrides the notice's key (a resource made once per ticket has a key of its own);
    `part` tells several drafts of one notice apart. `message_id` is the id the channel fixes
    for it up front (an e-mail's Message-ID), `thread` what ties one ticket's messages together,
    `extra` anything else the channel's transport needs (JSON).
    """

    destination: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    kind: Kind = MESSAGE
    key: str | None = None
    part: str = ""
    message_id: str | None = None
    thread: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key_for(self, notice: Notice) -> str:
        """The row's idempotency key for this draft of `notice`."""
        base = self.key or notice.key
        return f"{base}|{self.part}" if self.part else base


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbox row as a transport receives it."""

    id: int
    channel: str
    kind: str
    key: str
    ticket: str
    event: str
    destination: tuple[str, ...]
    subject: str
    text: str
    message_id: str
    html: str | None = None
    thread: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the transport did: `ref` is its name for it (a Message-ID, a chat message's
    timestamp, a created channel's id); `details` what else it reports (a channel's name and
    link, who it has no account for), kept with the row as JSON."""

    ref: str
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Notifier(Protocol):
    """One channel: how notices read there, and how they are sent."""

    @property
    def channel(self) -> str:
        """The channel's name ("email", "slack"): its rows, its health, its configuration."""
        ...

    def compose(self, notice: Notice) -> Sequence[Draft]:
        """What to send for `notice` (nothing when this channel does not carry it); pure."""
        ...

    def send(self, item: Outgoing) -> Delivered:
        """Do `item` once; raise an `errors` error saying what the outbox should do."""
        ...

    def was_sent(self, item: Outgoing) -> Delivered | Literal[False] | None:
        """After a crash: Delivered when the transport has it, False when it has not, None when
        it cannot tell (an operator decides)."""
        ...


def created(key: str) -> str:
    """The destination meaning "the resource drafted under `key`, once it exists"."""
    return f"{CREATED_PREFIX}{key}"


def created_key(destination: str) -> str | None:
    """The resource key a `created(key)` destination names, or None for a plain one."""
    if destination.startswith(CREATED_PREFIX):
        return destination[len(CREATED_PREFIX) :]
    return None


class Notifiers:
    """The notifiers in force, by channel."""

    def __init__(self, notifiers: Iterable[Notifier] = ()) -> None:
        self._by_channel: dict[str, Notifier] = {}
        for notifier in notifiers:
            if notifier.channel in self._by_channel:
                raise ValueError(f"two notifiers for channel {notifier.channel!r}")
            self._by_channel[notifier.channel] = notifier

    @property
    def channels(self) -> tuple[str, ...]:
        """The channel names, in the order they were given."""
        return tuple(self._by_channel)

    def get(self, channel: str) -> Notifier | None:
        """The notifier of `channel`, if one is configured."""
        return self._by_channel.get(channel)

    def __iter__(self) -> Iterator[Notifier]:
        return iter(self._by_channel.values())

    def __len__(self) -> int:
        return len(self._by_channel)
