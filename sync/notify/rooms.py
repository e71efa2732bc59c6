"""Chat rooms through the outbox: the rows every chat channel drafts, and what they tell later.

A chat notifier (Slack, Teams) turns each stakeholder notice into rows of one shape, so the
escalation step can read back what any of them did:

```
resource  key = room.key                   make (or join) the room: ensure_channel, once
message   key = room.key|invite|<digest>   invite people (e-mail addresses)      -> created(room)
message   key = room.key|<event>|<version> post a message                        -> created(room)
message   key = room.key|archive           archive the room                      -> created(room)
```

Every row carries `extra["room"]` (the room's key); the resource and invite rows also carry
`extra["resync"]` (the ITSM record to sync again once they settle, so the room's link or the
reason it could not be made reaches the records). What the transport reports (the room's name
and link, who it has no account for) is kept as `extra["delivered"]`. `room_status` reads it all
back as the `ChatStatus` decide() compares the escalation with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from escalation.chat import ChatRoomState, ChatStatus
from sync.notify.notifier import RESOURCE, ChatContext, Draft, Notice, Notifier, Room, created
from sync.notify.outbox import DEAD, SENT, OutboxRow, orm_session
from sync.runtime.health import SystemHealthRow

OPEN = "chat:open"
INVITE = "chat:invite"
ARCHIVE = "chat:archive"
EVENT_PREFIX = "chat:"


def keeps_rooms(notifier: object) -> bool:
    """Whether `notifier` makes chat rooms for escalations (its class says `keeps_rooms`)."""
    return bool(getattr(notifier, "keeps_rooms", False))


def room_keepers(notifiers: Iterable[Notifier]) -> dict[str, str]:
    """The channels that keep rooms, with how notes name each ("Slack", "Microsoft Teams")."""
    return {n.channel: str(getattr(n, "title", n.channel)) for n in notifiers if keeps_rooms(n)}


def chat_context(notice: Notice) -> ChatContext | None:
    """The notice's chat context, when it is a stakeholder notice about a room."""
    if notice.audience != "stakeholders" or not isinstance(notice.context, ChatContext):
        return None
    return notice.context


def purpose(room: Room) -> str:
    """What the room is for, with the records' links (none in a room shared with the
    customer: the agents' records are internal)."""
    head = f"Escalation of {room.ticket}"
    links = "" if room.shared else " ".join(f"{title}: {url}" for title, url in room.links)
    return f"{head}. {links}".strip() if links else f"{head}."


def digest(values: Sequence[str]) -> str:
    """A short, stable name for a set of values."""
    text = "\x1f".join(sorted(v.casefold() for v in values))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def room_drafts(
    notice: Notice, *, name: str, text: str = "", html: str | None = None
) -> list[Draft]:
    """The rows for a stakeholder notice on a chat channel: the room (once per escalation,
    whatever notice comes first) and what the notice asks of it. `name` is the room's name as
    the channel makes it; `text` and `html` the message as the channel formats it."""
    context = chat_context(notice)
    if context is None:
        return []
    room = context.room
    made = created(room.key)
    drafts = [
        Draft(
            destination=(name,),
            subject=name,
            text=room.topic,
            kind=RESOURCE,
            key=room.key,
            extra={
                "room": room.key,
                "resync": room.record,
                "marker": room.marker,
                "purpose": purpose(room),
                "private": room.private,
                "join": room.join,
                "facts": dict(context.facts),
                # Who the room starts with, for a service that makes a room with its people
                # (a Teams group chat); the invitation row invites them all the same.
                "members": list(context.members) if notice.event == OPEN else [],
            },
        )
    ]
    members = list(context.members)
    if notice.event in (OPEN, INVITE) and members:
        drafts.append(
            Draft(
                destination=(made,),
                subject=f"invite to {name}",
                text=", ".join(members),
                key=f"{room.key}|invite|{digest(members)}",
                extra={
                    "room": room.key,
                    "action": "invite",
                    "members": members,
                    "resync": room.record,
                },
            )
        )
    elif notice.event == ARCHIVE:
        drafts.append(
            Draft(
                destination=(made,),
                subject=f"archive {name}",
                text="",
                key=f"{room.key}|archive",
                extra={"room": room.key, "action": "archive"},
            )
        )
    elif notice.event not in (OPEN, INVITE) and text:
        event = notice.event.removeprefix(EVENT_PREFIX)
        drafts.append(
            Draft(
                destination=(made,),
                subject=event,
                text=text,
                html=html,
                key=f"{room.key}|{event}|{notice.version}",
                extra={"room": room.key, "action": "post", "facts": dict(context.facts)},
            )
        )
    return drafts


def room_status(
    session: Any, titles: Mapping[str, str], ticket: str, key: str | None
) -> ChatStatus:
    """What the chat channels (`titles`: channel -> its name in notes) did so far for the room
    `key` of `ticket` (rows of any status: what is recorded will be done); with no key (no room
    yet), only which channels refuse us."""
    orm: Session = orm_session(session)
    rows: list[OutboxRow] = []
    if key is not None:
        rows = [
            row
            for row in orm.scalars(
                select(OutboxRow)
                .where(OutboxRow.ticket_ref == ticket, OutboxRow.channel.in_(list(titles)))
                .order_by(OutboxRow.id)
            )
            if row.idempotency_key == key or (row.extra or {}).get("room") == key
        ]
    paused = dict(
        orm.execute(
            select(SystemHealthRow.system, SystemHealthRow.paused_reason).where(
                SystemHealthRow.system.in_(list(titles)), SystemHealthRow.paused_at.is_not(None)
            )
        ).all()
    )
    facts: dict[str, str] = {}
    invited: dict[str, str] = {}
    archived = False
    for row in rows:
        extra = row.extra or {}
        facts.update({str(k): str(v) for k, v in (extra.get("facts") or {}).items()})
        action = extra.get("action")
        if action == "invite":
            for member in extra.get("members") or ():
                invited.setdefault(str(member).casefold(), str(member))
        elif action == "archive":
            archived = True
    # Every channel is reported, rows or not: one refusing our token is known before it is asked.
    rooms = tuple(
        _room_state(title, [r for r in rows if r.channel == channel], key, paused.get(channel))
        for channel, title in titles.items()
    )
    return ChatStatus(
        opened=bool(rows),
        facts=tuple(facts.items()),
        invited=frozenset(invited.values()),
        archived=archived,
        rooms=rooms,
    )


def _room_state(
    title: str, rows: Sequence[OutboxRow], key: str | None, paused: str | None
) -> ChatRoomState:
    resource = next((r for r in rows if r.idempotency_key == key), None)
    if resource is None:
        return ChatRoomState(title, problem=paused)
    delivered: Mapping[str, Any] = (resource.extra or {}).get("delivered") or {}
    made = resource.status == SENT
    problem = None
    if resource.status == DEAD:
        problem = resource.last_error
    elif not made and paused:
        problem = paused
    missing: dict[str, str] = {}
    for row in rows:
        extra = row.extra or {}
        if extra.get("action") == "invite" and row.status == SENT:
            for address in (extra.get("delivered") or {}).get("not_in_chat") or ():
                missing.setdefault(str(address).casefold(), str(address))
    return ChatRoomState(
        service=title,
        made=made,
        name=str(delivered.get("name") or "") or None,
        url=str(delivered.get("url") or "") or None,
        problem=problem,
        not_in_chat=tuple(missing.values()),
    )
