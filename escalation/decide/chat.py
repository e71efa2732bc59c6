"""The escalation's chat room: made once the escalation is approved, its people invited, its key
events posted, archived when the policy says, and its link written into both records.

What the room is and who is in it is the policy's (`[escalation.chat]`); how a room is made is
each chat notifier's. This stage compares what the escalation is now with what the notifiers
did so far (`ChatStatus`: the room made or why not, who was invited, the facts last posted) and
asks only for the difference, so deciding an unchanged ticket again asks for nothing.

A room the policy shares with the customer never receives anything internal: its messages are
built from the ticket's public facts only (no reason, no approver, no internal resolution, no
links to the agents' records).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from escalation.chat import (
    ArchiveChat,
    ChatRoomState,
    ChatStatus,
    InviteToChat,
    OpenChat,
    Pairs,
    PostChat,
    RoomSpec,
    room_key,
)
from escalation.decide.context import Flow, Run
from escalation.decide.reading import defang, field_value, our_note
from escalation.decision import (
    AWAITS_ENGINEERING_RECORD,
    AddEngineeringComment,
    AddNote,
    NoteKind,
    SetPriority,
)
from escalation.policy import Chat
from mapping.model import EscalationState, Person, Priority, Status

S = EscalationState

_CONTACT_LINE = re.compile(r"(?im)^\s*contact\s*:\s*(?P<who>.+?)\s*$")
_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_TRAILING_NUMBER = re.compile(r"(\d+)$")
# Notes this stage writes, by the words that tell them apart in the record.
COULD_NOT = "channel for this escalation could not be"
NOT_INVITED = "so not invited to"


def chat_room(run: Run) -> Flow:
    """Stage (after the procedure): what the escalation's chat room needs now."""
    chat = run.policy.chat
    if not chat.enabled:
        return Flow.NEXT
    if run.chat is None:
        run.why("chat", "info", "no chat notifier is configured ([notify.slack], [notify.teams])")
        return Flow.NEXT
    approved_at = _approved_at(run)
    if approved_at is None or run.state not in (S.APPROVED, S.RESOLVED, S.CLOSED):
        return Flow.NEXT
    status = run.chat
    room = _room(run, chat, approved_at)
    if not status.opened:
        if run.state is S.APPROVED and _open(run, chat, room):
            # A chat service known to refuse us is told at once, not after a first try.
            for state in status.rooms:
                _announce(run, chat, state)
        return Flow.NEXT
    if run.state is S.APPROVED:
        _invite_newcomers(run, chat, room, status)
        _changes(run, chat, room, status)
    else:
        _ending(run, chat, room, status)
    for state in status.rooms:
        _announce(run, chat, state)
    return Flow.NEXT


# --- the room --------------------------------------------------------------------------------


def _approved_at(run: Run) -> datetime | None:
    """When this escalation became active: now, when this decision approves it."""
    if run.reservation is not None:
        return run.now
    return run.entry.approved_at


def _number(key: str) -> str:
    found = _TRAILING_NUMBER.search(key)
    return found.group(1) if found else key


def _priority(run: Run) -> Priority | None:
    """The ticket's priority as this decision leaves it."""
    for action in run.actions:
        if isinstance(action, SetPriority):
            return action.priority
    return run.ticket.priority


def _room(run: Run, chat: Chat, approved_at: datetime) -> RoomSpec:
    t = run.ticket
    itsm_key = t.ref.key or t.ref.id
    eng = run.engineering
    key = itsm_key
    if eng is not None and eng.ref is not None:
        key = eng.ref.key or eng.ref.id
    priority = _priority(run)
    fields = {
        "key": key,
        "number": _number(key),
        "itsm_key": itsm_key,
        "itsm_number": _number(itsm_key),
        "summary": t.summary or "",
        "level": run.level,
        "priority": priority.value if priority else "",
    }
    links: Pairs = ()
    if not chat.shared_with_customer:
        found = [("ITSM record", t.ref.url)]
        if eng is not None and eng.ref is not None:
            found.append(("Engineering record", eng.ref.url))
        links = tuple((title, url) for title, url in found if url and url.startswith("http"))
    return RoomSpec(
        key=room_key(itsm_key, approved_at),
        ticket=itsm_key,
        name=chat.channel,
        fields=tuple(fields.items()),
        topic=chat.topic.format(**fields),
        links=links,
        join=chat.join,
        private=chat.private,
        shared=chat.shared_with_customer,
    )


def _needs_engineering_record(run: Run) -> bool:
    """The level opens an engineering record and it does not exist yet (the room is named
    after it and links to it)."""
    if not run.policy.on_approval.create_engineering_record:
        return False
    level = next((lv for lv in run.policy.levels if lv.name == run.level), None)
    if level is None or level.target_system is None:
        return False
    return run.engineering is None or run.engineering.ref is None


def _open(run: Run, chat: Chat, room: RoomSpec) -> bool:
    """Ask for the room (False while it waits for the engineering record)."""
    if _needs_engineering_record(run):
        run.why(
            f"chat{AWAITS_ENGINEERING_RECORD}",
            "info",
            "the chat channel is made once the engineering record exists (it carries its "
            "number and link)",
        )
        return False
    members, unknown = members_of(run, chat)
    run.actions.append(OpenChat(room, members, _facts(run)))
    what = f"join #{room.join}" if room.join else "make the chat channel"
    run.why(
        "chat.room",
        "pass",
        f"{what} and invite {len(members)} people"
        + (f"; no e-mail address known for {', '.join(unknown)}" if unknown else ""),
        {"members": list(members), "no_address": list(unknown)},
    )
    if "approved" in chat.events:
        _post(run, room, "approved", _approved_text(run, chat, room))
    return True


def _invite_newcomers(run: Run, chat: Chat, room: RoomSpec, status: ChatStatus) -> None:
    members, _ = members_of(run, chat)
    folded = {m.casefold() for m in status.invited}
    new = tuple(m for m in members if m.casefold() not in folded)
    if new:
        run.actions.append(InviteToChat(room, new))
        run.why("chat.invite", "pass", f"invite {', '.join(new)}", {"members": list(new)})


def _changes(run: Run, chat: Chat, room: RoomSpec, status: ChatStatus) -> None:
    """Level, priority and engineering status changes since the room was last told."""
    now = dict(_facts(run))
    said = {name: status.fact(name) for name in now}
    level, before = now.get("level"), said.get("level")
    if "level" in chat.events and before and level and level != before:
        text = f"Escalation level changed: {before} → {level}."
        approver = run.approved_by
        if approver and not chat.shared_with_customer:
            text += f" Approved by {approver}."
        if run.request_reason and not chat.shared_with_customer:
            text += f"\nReason: {run.request_reason}"
        _post(run, room, "level", text)
    priority, before = now.get("priority"), said.get("priority")
    if "priority" in chat.events and before and priority and priority != before:
        _post(run, room, "priority", f"Priority changed: {before} → {priority}.")
    status_now, before = now.get("engineering_status"), said.get("engineering_status")
    if "engineering_status" in chat.events and status_now and status_now != before:
        eng = run.engineering
        name = "Engineering"
        if eng is not None and eng.ref is not None and not chat.shared_with_customer:
            name = f"Engineering record {eng.ref.key or eng.ref.id}"
        was = f" (was {_words(before)})" if before else ""
        _post(run, room, "engineering_status", f"{name} is now {_words(status_now)}{was}.")


def _ending(run: Run, chat: Chat, room: RoomSpec, status: ChatStatus) -> None:
    """Resolved, then closed: told once each, and the room archived when the policy says."""
    told = status.fact("state")
    resolved_now = run.state is S.RESOLVED and told not in ("resolved", "closed")
    if resolved_now and "resolved" in chat.events:
        _post(run, room, "resolved", _resolved_text(run, chat), state="resolved")
    if run.state is S.CLOSED and told != "closed" and "closed" in chat.events:
        status_text = run.ticket.status.value if run.ticket.status else "closed"
        _post(
            run,
            room,
            "closed",
            f"The escalation is closed: the record is {_words(status_text)}.",
            state="closed",
        )
    ends = run.state is S.CLOSED or (run.state is S.RESOLVED and chat.archive == "resolved")
    if chat.archive != "never" and ends and not status.archived and room.join is None:
        run.actions.append(ArchiveChat(room))
        run.why("chat.archive", "pass", f"archive the chat channel: the escalation is {run.state}")


# --- messages --------------------------------------------------------------------------------


def _facts(run: Run, **extra: str) -> Pairs:
    facts = {"level": run.level}
    priority = _priority(run)
    if priority is not None:
        facts["priority"] = priority.value
    eng = run.engineering
    if eng is not None and eng.status is not None:
        facts["engineering_status"] = eng.status.value
    facts["state"] = extra.pop("state", "approved")
    facts.update(extra)
    return tuple(facts.items())


def _post(run: Run, room: RoomSpec, event: str, text: str, *, state: str = "approved") -> None:
    if room.join and event != "approved":
        # A channel shared by many escalations: each message names its record.
        text = f"{room.ticket}: {text}"
    run.actions.append(PostChat(room, event, defang(text, run.words), _facts(run, state=state)))
    run.why("chat.post", "pass", f"post the {event.replace('_', ' ')} message in the chat channel")


def _words(value: str | Status | None) -> str:
    text = value.value if isinstance(value, Status) else (value or "")
    return text.replace("_", " ")


def _approved_text(run: Run, chat: Chat, room: RoomSpec) -> str:
    t = run.ticket
    itsm = t.ref.key or t.ref.id
    title = f'{itsm} "{t.summary}"' if t.summary else itsm
    priority = _priority(run)
    if chat.shared_with_customer:
        return f"{title} has been escalated to {run.level}. Updates will be posted here."
    approver = run.approved_by or run.entry.approved_by or "nobody (not required)"
    lines = [f"Escalation approved: {title} is escalated to {run.level}, approved by {approver}."]
    if run.request_reason:
        lines.append(f"Reason: {run.request_reason}")
    if priority is not None:
        lines.append(f"Priority: {priority.value}")
    lines.extend(f"{title}: {url}" for title, url in room.links)
    return "\n".join(lines)


def _resolved_text(run: Run, chat: Chat) -> str:
    eng = run.engineering
    shared = chat.shared_with_customer
    if eng is not None and eng.ref is not None and not shared:
        head = f"Engineering resolved {eng.ref.key or eng.ref.id}."
    else:
        head = "Engineering resolved the issue."
    resolution = eng.resolution if eng is not None else None
    if resolution and (not shared or (eng is not None and eng.resolution_public)):
        return f"{head}\nResolution: {resolution}"
    return head


# --- people ----------------------------------------------------------------------------------


def members_of(run: Run, chat: Chat) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The e-mail addresses of the people the policy invites, and who has none known."""
    found: list[str] = []
    unknown: list[str] = []

    def person(value: Person | str | None, role: str) -> None:
        if value is None:
            return
        if isinstance(value, str):
            names: tuple[str | None, ...] = (value,)
        else:
            names = (value.email, value.id, value.name)
        for name in names:
            address = chat.address_of(name)
            if address:
                found.append(address)
                return
        label = value if isinstance(value, str) else (value.name or value.id)
        if label and not label.startswith(("trigger:", "priority:")):
            unknown.append(f"{role} {label}")

    t = run.ticket
    eng = run.engineering
    for role in chat.invite:
        if role == "reporter":
            person(t.reporter, "reporter")
        elif role == "assignee":
            person(t.assignee, "assignee")
        elif role == "customer":
            person(t.customer, "customer")
        elif role == "contact":
            person(_contact(run, chat), "contact")
        elif role == "requester":
            person(run.requested_by, "requester")
        elif role == "approver":
            person(run.approved_by or run.entry.approved_by, "approver")
        elif role == "approvers":
            level = next((lv for lv in run.policy.levels if lv.name == run.level), None)
            people = run.approvers(level)
            for name in _people(run, people.users, people.groups):
                person(name, "approver")
        elif role == "engineering_assignee" and eng is not None:
            person(eng.assignee, "engineering assignee")
    for name in _people(run, chat.users, chat.groups):
        person(name, "member")
    return _unique(found), _unique(unknown)


def _people(run: Run, users: Iterable[str], groups: Iterable[str]) -> list[str]:
    named = list(users)
    for group in groups:
        named.extend(run.policy.groups.get(group, ()))
    return named


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return tuple(seen.values())


def _contact(run: Run, chat: Chat) -> Person | str | None:
    """The Contact: a field when the policy names one, else the last "Contact: ..." line."""
    if chat.contact_field is not None:
        value = field_value(run.ticket, chat.contact_field)
        if isinstance(value, Person | str):
            return value
        return None
    texts = [run.ticket.description or ""]
    texts += [c.body for c in run.ticket.comments if not our_note(run.ticket, c.body)]
    found: str | None = None
    for text in texts:
        for match in _CONTACT_LINE.finditer(text):
            found = match.group("who")
    if found is None:
        return None
    address = _ADDRESS.search(found)
    if address is not None:
        return address.group(0)
    return found.split(",")[0].strip() or None


# --- notes in the records --------------------------------------------------------------------


def _written(run: Run, *phrases: str) -> bool:
    """One of our own notes on the ITSM record says all of these."""
    return any(
        our_note(run.ticket, c.body) and all(p in c.body for p in phrases)
        for c in run.ticket.comments
    )


def _announce(run: Run, chat: Chat, state: ChatRoomState) -> None:
    """The room's link in both records, once; why it could not be made, once; who is not in
    the chat service, once each."""
    service = state.service
    channel = f"#{state.name}" if state.name else "the channel"
    if state.made and state.url and chat.post_link and not _written(run, state.url):
        _, unknown = members_of(run, chat)
        body = f"{service} channel {channel} for this escalation: {state.url}"
        if unknown:
            body += f"\nNo e-mail address known, so not invited: {', '.join(unknown)}."
        run.actions.append(AddNote(defang(body, run.words), kind=NoteKind.CHAT))
        if run.engineering is not None and run.engineering.ref is not None:
            comment = f"{service} channel for this escalation: {channel} {state.url}"
            run.actions.append(
                AddEngineeringComment(defang(comment, run.words), chat.link_visibility)
            )
        run.why("chat.link", "pass", f"post the link of {channel} in the records")
    if state.problem and not state.made and not _written(run, f"{service} {COULD_NOT}"):
        verb = "joined" if chat.join else "made"
        body = (
            f"The {service} {COULD_NOT} {verb}: {state.problem}\n"
            "The escalation goes on without it; once this is fixed the channel is "
            f"{verb} and its link posted here."
        )
        run.actions.append(AddNote(defang(body, run.words), kind=NoteKind.CHAT))
        run.why("chat.problem", "fail", f"the {service} channel could not be {verb}")
    missing = [a for a in state.not_in_chat if not _written(run, NOT_INVITED, a)]
    if missing:
        body = f"Not in {service}, {NOT_INVITED} {channel}: {', '.join(missing)}."
        run.actions.append(AddNote(defang(body, run.words), kind=NoteKind.CHAT))
        run.why("chat.not_in_chat", "info", body)
