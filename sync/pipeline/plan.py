"""What to write where, computed from two paired tickets and what was last synced: pure data.

`plan()` compares each side with its last-synced snapshot. A field that changed on one side only
flows to the other; a field that changed on both sides (to different values) is a conflict, won
by the field's owner or, when both sides own it, by the newer record; the loser is kept in the
plan for the audit log. A field owned by one side flows only from that side: a change made on the
other side is put back. A value equal to the snapshot is not a change, so a write we made that
comes back as a webhook plans nothing (no echo).

Comments flow both ways with their visibility kept (a public comment stays public, an internal
note stays internal). Copies we wrote carry an origin marker and are never a source themselves;
a customer's e-mail reply we posted on a record is a source like a person's comment there (its
marker names the record itself, `Marker.from_mail`), and its copy leaves that marker out.
Attachments missing on the other side (by file name and size) are listed for copying.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mapping import Mapping as SyncMapping
from mapping.model import Attachment, Comment, Person, System, Ticket, Visibility
from sync.pipeline.markers import Marker, find_marker, strip_marker

Owner = str  # a system's name, or "both"


def ticket_name(ticket: Ticket) -> str:
    """The name a marker uses for a ticket: its human key when it has one, else its id."""
    return ticket.ref.key or ticket.ref.id


@dataclass(frozen=True, slots=True)
class FieldWrite:
    """Write one canonical field on one side: `old` is that side's value now, `new` the value."""

    system: System
    field: str
    old: Any
    new: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed a field since the last sync; the loser's value is what was overwritten."""

    field: str
    winner: System
    loser: System
    winner_value: Any
    loser_value: Any
    rule: str  # "owner" or "newest-wins"


@dataclass(frozen=True, slots=True)
class CommentMirror:
    """Copy one comment to the other side with the same visibility and an origin marker."""

    source: System
    target: System
    comment_id: str
    body: str
    visibility: Visibility
    author: str | None
    marker: Marker

    @property
    def public(self) -> bool:
        """Whether the copy is a public comment (else an internal note)."""
        return self.visibility is Visibility.PUBLIC


@dataclass(frozen=True, slots=True)
class AttachmentCopy:
    """Copy one attachment from `source` to `target`."""

    source: System
    target: System
    attachment: Attachment
    source_ticket: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one sync pass writes; empty when the sides agree with their snapshots."""

    writes: tuple[FieldWrite, ...] = ()
    comments: tuple[CommentMirror, ...] = ()
    attachments: tuple[AttachmentCopy, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    create_in: System | None = None

    @property
    def empty(self) -> bool:
        """True when nothing is to be written."""
        return not (self.writes or self.comments or self.attachments or self.create_in)

    def writes_to(self, system: System) -> tuple[FieldWrite, ...]:
        """The field writes for one side, in plan order."""
        return tuple(w for w in self.writes if w.system is system)

    def comments_to(self, system: System) -> tuple[CommentMirror, ...]:
        """The comment copies for one side, in source order."""
        return tuple(c for c in self.comments if c.target is system)


@dataclass(frozen=True, slots=True)
class SyncRules:
    """What the mapping says about syncing: which fields each side accepts, and who owns what.

    `writable[system]` lists the canonical fields (custom ones as `custom.<name>`) that system
    can be written; `mapped[system]` the fields it reads (default: the writable ones). Only a
    field both sides read is synced: a field one side does not know would otherwise read as
    blank there and wipe the other. `owner(field)` answers a system's name or "both".
    `ignore_authors` names the integration users, whose comments are never a source.
    `withhold[system]` is a pattern: a public comment written in that system (engineering's)
    matching it is copied as an internal note, so it never reaches the customer (the policy's
    customer_updates.withhold_pattern, e.g. completion estimates).
    """

    writable: Mapping[System, frozenset[str]]
    owner: Callable[[str], Owner] = field(default=lambda _name: "both")
    ignore_authors: frozenset[str] = frozenset()
    mapped: Mapping[System, frozenset[str]] | None = None
    withhold: Mapping[System, str] = field(default_factory=dict)

    def partner_of(self, system: System) -> System:
        """The one other system these rules sync with `system` (a record's pair lives there)."""
        others = [s for s in self.writable if s != system]
        if len(others) != 1:
            raise ValueError(f"no single system to pair {system.value} records with: {others}")
        return others[0]

    def synced_fields(self) -> tuple[str, ...]:
        """Fields read on both sides and written on at least one, sorted for a stable order."""
        readable = self.mapped if self.mapped is not None else self.writable
        sides = list(readable.values())
        shared: set[str] = set(sides[0]) if sides else set()
        for fields in sides[1:]:
            shared &= fields
        written: set[str] = set()
        for fields in self.writable.values():
            written |= fields
        return tuple(sorted((shared & written) - _NEVER_SYNCED))


def sync_rules(mapping: SyncMapping, ignore_authors: Iterable[str] = ()) -> SyncRules:
    """Which fields each system reads and writes, and who owns them, from the mapping."""
    writable: dict[System, frozenset[str]] = {}
    mapped: dict[System, frozenset[str]] = {}
    for system, compiled in mapping.systems.items():
        mapped[system] = frozenset(compiled.fields)
        writable[system] = frozenset(n for n, f in compiled.fields.items() if f.writable)
    return SyncRules(
        writable=writable,
        mapped=mapped,
        owner=mapping.owner,
        ignore_authors=frozenset(a for a in ignore_authors if a),
    )


# Identity and bookkeeping: read for the snapshot, never written across.
_NEVER_SYNCED = frozenset({"updated", "version", "ref", "comments", "attachments", "escalation"})


def get_value(ticket: Ticket, name: str) -> Any:
    """A canonical field's value (custom fields as `custom.<name>`)."""
    if name.startswith("custom."):
        return ticket.custom_fields.get(name.removeprefix("custom."))
    return getattr(ticket, name, None)


def set_values(ticket: Ticket, values: Mapping[str, Any]) -> Ticket:
    """A copy of the ticket with some canonical fields replaced."""
    update: dict[str, Any] = {}
    custom = dict(ticket.custom_fields)
    for name, value in values.items():
        if name.startswith("custom."):
            custom[name.removeprefix("custom.")] = value
        else:
            update[name] = tuple(value) if name == "labels" and value is not None else value
    if custom != ticket.custom_fields:
        update["custom_fields"] = custom
    return ticket.model_copy(update=update)


def comparable(name: str, value: Any) -> Any:
    """A value reduced to what both systems can agree on, for change and conflict tests.

    People are compared by e-mail, then name, then id (the two systems number users
    differently); labels as a set; blank strings as None.
    """
    if value is None:
        return None
    if isinstance(value, Person):
        for part in (value.email, value.name, value.id):
            if part:
                return part.strip().lower()
        return None
    if name == "labels" or isinstance(value, tuple | list | set | frozenset):
        return tuple(sorted({str(v) for v in value})) or None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


def _changed(name: str, ticket: Ticket, snapshot: Ticket | None) -> bool:
    if snapshot is None:
        return True
    return comparable(name, get_value(ticket, name)) != comparable(name, get_value(snapshot, name))


def _newer(a: Ticket, b: Ticket, origin: System) -> System:
    """Which side's record was updated last; the side being processed wins a tie or unknown."""
    if a.updated is not None and b.updated is not None and a.updated != b.updated:
        return a.ref.system if a.updated > b.updated else b.ref.system
    return origin


def mirrored_origins(comments: Iterable[Comment]) -> set[tuple[System, str]]:
    """(source system, source comment id) of every marked copy among these comments."""
    found: set[tuple[System, str]] = set()
    for comment in comments:
        marker = find_marker(comment.body)
        if marker is not None:
            found.add((marker.system, marker.item))
    return found


def _from_mail(comment: Comment, system: System) -> bool:
    """A customer's e-mail reply posted on this record (by the integration user, for them)."""
    marker = find_marker(comment.body)
    return marker is not None and marker.from_mail and marker.system is system


def _is_source_comment(
    comment: Comment, ignore_authors: frozenset[str], system: System | None = None
) -> bool:
    if comment.id in ("", "None") or not comment.body.strip():
        # Nothing to mirror (and no id to mark it with): an empty container read as a comment.
        return False
    if system is not None and _from_mail(comment, system):
        return True
    if find_marker(comment.body) is not None:
        return False
    author = comment.author
    if author is not None and ignore_authors:
        names = {p.lower() for p in (author.id, author.name, author.email) if p}
        if names & {a.lower() for a in ignore_authors}:
            return False
    return True


def _comment_mirrors(
    source: Ticket,
    target: Ticket | None,
    target_system: System,
    rules: SyncRules,
    comment_links: Collection[tuple[System, str]],
) -> list[CommentMirror]:
    done = set(comment_links)
    if target is not None:
        done |= mirrored_origins(target.comments)
    out: list[CommentMirror] = []
    system = source.ref.system
    withhold = rules.withhold.get(system)
    for comment in source.comments:
        if (system, comment.id) in done or not _is_source_comment(
            comment, rules.ignore_authors, system
        ):
            continue
        author = comment.author.name or comment.author.id if comment.author else None
        visibility = comment.visibility
        if withhold and visibility is Visibility.PUBLIC and re.search(withhold, comment.body):
            visibility = Visibility.INTERNAL
        mailed = _from_mail(comment, system)
        out.append(
            CommentMirror(
                source=system,
                target=target_system,
                comment_id=comment.id,
                body=strip_marker(comment.body) if mailed else comment.body,
                visibility=visibility,
                author=author,
                marker=Marker(system, ticket_name(source), comment.id),
            )
        )
    return out


def _attachment_copies(
    source: Ticket, target: Ticket | None, target_system: System
) -> list[AttachmentCopy]:
    present = set()
    if target is not None:
        present = {(a.filename, a.size) for a in target.attachments}
    out: list[AttachmentCopy] = []
    for att in source.attachments:
        if (att.filename, att.size) in present:
            continue
        present.add((att.filename, att.size))
        out.append(
            AttachmentCopy(
                source=source.ref.system,
                target=target_system,
                attachment=att,
                source_ticket=ticket_name(source),
            )
        )
    return out


def plan(
    source: Ticket,
    target: Ticket | None,
    source_snapshot: Ticket | None,
    target_snapshot: Ticket | None,
    rules: SyncRules,
    *,
    comment_links: Collection[tuple[System, str]] = (),
    sync_attachments: bool = True,
    repair: bool = False,
    target_system: System | None = None,
) -> Plan:
    """Plan one sync pass between a ticket (`source`, the side an event came from) and its pair.

    With no `target` the plan asks for the paired record to be created in `target_system` (by
    default the one other system of the rules) with every field that side accepts, every
    comment and every attachment. `comment_links` holds the
    (system, comment id) pairs already mirrored according to the store; marked copies found in
    either ticket count as mirrored too. With `repair` (the reconciliation pass), a field that
    differs although neither side changed it since the snapshot (a write that never landed) is
    put right from its owner, or from the newer record; without it such a field is left alone,
    so a lossy mapping can never make two records write to each other forever.
    """
    if target is None:
        there = target_system or rules.partner_of(source.ref.system)
        return _plan_create(source, there, rules, comment_links, sync_attachments)
    origin = source.ref.system
    writes: list[FieldWrite] = []
    conflicts: list[Conflict] = []
    sides = {
        source.ref.system: (source, source_snapshot),
        target.ref.system: (target, target_snapshot),
    }
    for name in rules.synced_fields():
        s_val, t_val = get_value(source, name), get_value(target, name)
        if comparable(name, s_val) == comparable(name, t_val):
            continue
        s_changed = _changed(name, source, source_snapshot)
        t_changed = _changed(name, target, target_snapshot)
        if not s_changed and not t_changed:
            if not repair:
                continue
            s_changed = t_changed = True
        owner = rules.owner(name)
        winner: System
        rule = "owner"
        if owner != "both" and owner in sides:
            winner = System(owner)
        elif s_changed and t_changed:
            winner = _newer(source, target, origin)
            rule = "newest-wins"
        else:
            winner = source.ref.system if s_changed else target.ref.system
        loser = target.ref.system if winner == source.ref.system else source.ref.system
        win_ticket, _ = sides[winner]
        lose_ticket, _ = sides[loser]
        win_val, lose_val = get_value(win_ticket, name), get_value(lose_ticket, name)
        if name not in rules.writable.get(loser, frozenset()):
            continue
        loser_changed = s_changed if loser is source.ref.system else t_changed
        winner_changed = s_changed if winner is source.ref.system else t_changed
        if loser_changed:
            conflicts.append(Conflict(name, winner, loser, win_val, lose_val, rule))
            why = (
                f"{winner.value} owns {name}"
                if rule == "owner"
                else f"{name} changed on both sides; {winner.value} is newer"
            )
            if not winner_changed:
                why = f"{winner.value} owns {name}; change on {loser.value} put back"
        else:
            why = f"{name} changed on {winner.value}"
        writes.append(FieldWrite(loser, name, lose_val, win_val, why))
    here, there = source.ref.system, target.ref.system
    comments = _comment_mirrors(source, target, there, rules, comment_links) + _comment_mirrors(
        target, source, here, rules, comment_links
    )
    attachments: list[AttachmentCopy] = []
    if sync_attachments:
        attachments = _attachment_copies(source, target, there) + _attachment_copies(
            target, source, here
        )
    return Plan(
        writes=tuple(writes),
        comments=tuple(comments),
        attachments=tuple(attachments),
        conflicts=tuple(conflicts),
    )


def _plan_create(
    source: Ticket,
    target_system: System,
    rules: SyncRules,
    comment_links: Collection[tuple[System, str]],
    sync_attachments: bool,
) -> Plan:
    accepted = rules.writable.get(target_system, frozenset())
    writes = tuple(
        FieldWrite(target_system, name, None, get_value(source, name), "paired record created")
        for name in rules.synced_fields()
        if name in accepted and comparable(name, get_value(source, name)) is not None
    )
    return Plan(
        writes=writes,
        comments=tuple(_comment_mirrors(source, None, target_system, rules, comment_links)),
        attachments=tuple(
            _attachment_copies(source, None, target_system) if sync_attachments else ()
        ),
        create_in=target_system,
    )


def apply_writes(ticket: Ticket, writes: Iterable[FieldWrite]) -> Ticket:
    """The ticket as it will read after this side's writes land (the next snapshot)."""
    values = {w.field: w.new for w in writes if w.system is ticket.ref.system}
    return set_values(ticket, values) if values else ticket
