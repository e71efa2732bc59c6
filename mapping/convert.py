"""`to_canonical` and `to_vendor`: pure functions between vendor JSON and the canonical ticket."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jmespath.parser import ParsedResult

from errors import DeadLetter
from mapping.model import (
    Attachment,
    Comment,
    Escalation,
    Person,
    Ref,
    System,
    Ticket,
    Visibility,
)
from mapping.spec import CompiledField, CompiledSystem, Mapping, Route, simple_path
from mapping.transforms import TRANSFORMS


class UnmappedValue(DeadLetter, ValueError):
    """A vendor value the mapping has no canonical value for; the record cannot be mapped until
    the mapping learns it (then the event is replayed)."""

    def __init__(self, system: str, field_name: str, value: object) -> None:
        super().__init__(
            f"{system}: {field_name}: no canonical value for vendor value {value!r}", system=system
        )
        self.field_name = field_name
        self.value = value


@dataclass(frozen=True, slots=True)
class VendorWrite:
    """What to send a system: plain fields, a status to reach by transition (with the fields
    its screen takes), journal entries.

    A journal field among `fields` (a comment a status requires) is saved in the same request
    as the other fields, where the system requires them together.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    transition_to: str | None = None
    journal: tuple[tuple[str, str], ...] = ()
    transition_fields: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when there is nothing to write."""
        return not self.fields and self.transition_to is None and not self.journal


def _system(mapping: Mapping, system: System | str) -> CompiledSystem:
    try:
        return mapping.systems[System(system)]
    except (KeyError, ValueError):
        raise ValueError(f"the mapping has no section for system {system!r}") from None


def _search(expr: ParsedResult | None, data: Any) -> Any:
    if expr is None:
        return None
    path = _plain_path(expr.expression)
    if path is None:
        return expr.search(data)
    # Most reads are plain dotted paths: walking the dicts gives what JMESPath would, without
    # its interpreter, which dominates mapping a record (a backfill maps every one).
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


@functools.cache
def _plain_path(expression: str) -> tuple[str, ...] | None:
    return simple_path(expression)


def _read_field(system: System, compiled: CompiledField, raw: dict[str, Any]) -> Any:
    value = _search(compiled.read, raw)
    spec = compiled.spec
    if spec.transform is not None:
        value = TRANSFORMS[spec.transform].read(value)
    elif value == "":
        value = None
    if compiled.to_canonical or spec.values is not None:
        if value is None:
            return None
        key = str(value)
        if key not in compiled.to_canonical:
            raise UnmappedValue(system.value, compiled.name, value)
        return compiled.to_canonical[key]
    if compiled.name == "labels":
        return tuple(value or ())
    if compiled.name == "version" and value is not None:
        return str(value)
    return value


def _read_comments(compiled: CompiledSystem, raw: dict[str, Any]) -> tuple[Comment, ...]:
    spec = compiled.spec.comments
    if spec is None:
        return ()
    items = _search(compiled.paths.get("comments.path"), raw) or []
    if isinstance(items, dict):
        items = [items]
    comments: list[Comment] = []
    for item in items:
        author_raw = _search(compiled.paths.get("comments.author"), item)
        author_value = TRANSFORMS[spec.author_transform].read(author_raw)
        author = (
            author_value
            if isinstance(author_value, Person) or author_value is None
            else Person(id=str(author_value))
        )
        created_raw = _search(compiled.paths.get("comments.created"), item)
        created: datetime | None = None
        if spec.created_transform is not None:
            created = TRANSFORMS[spec.created_transform].read(created_raw)
        internal = bool(_search(compiled.paths.get("comments.internal_if"), item))
        body = TRANSFORMS[spec.body_transform].read(_search(compiled.paths["comments.body"], item))
        comments.append(
            Comment(
                id=str(_search(compiled.paths["comments.id"], item)),
                body=body or "",
                visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
                author=author,
                created=created,
            )
        )
    return tuple(comments)


def _read_attachments(compiled: CompiledSystem, raw: dict[str, Any]) -> tuple[Attachment, ...]:
    if compiled.spec.attachments is None:
        return ()
    items = _search(compiled.paths.get("attachments.path"), raw) or []
    result: list[Attachment] = []
    for item in items:
        size = _search(compiled.paths.get("attachments.size"), item)
        mime = _search(compiled.paths.get("attachments.mime_type"), item)
        url = _search(compiled.paths.get("attachments.url"), item)
        result.append(
            Attachment(
                id=str(_search(compiled.paths["attachments.id"], item)),
                filename=str(_search(compiled.paths["attachments.filename"], item)),
                size=int(size) if size not in (None, "") else None,
                mime_type=str(mime) if mime else None,
                url=str(url) if url else None,
            )
        )
    return tuple(result)


def browse_url(mapping: Mapping, system: System | str, ident: str, key: str | None) -> str | None:
    """Where a person opens the record (the system's `ref.url_template`), if configured."""
    template = _system(mapping, system).spec.ref.url_template
    return template.format(id=ident, key=key or ident) if template else None


def to_canonical(mapping: Mapping, system: System | str, raw: dict[str, Any]) -> Ticket:
    """Map one vendor record to a canonical ticket; raises UnmappedValue on unknown values."""
    compiled = _system(mapping, system)
    ident = _search(compiled.paths.get("ref.id"), raw)
    if ident in (None, ""):
        raise ValueError(f"{compiled.system.value}: record has no id at {compiled.spec.ref.id!r}")
    key = _search(compiled.paths.get("ref.key"), raw)
    url = browse_url(mapping, compiled.system, str(ident), str(key) if key else None)
    values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    escalation: dict[str, Any] = {}
    for name, field_spec in compiled.fields.items():
        value = _read_field(compiled.system, field_spec, raw)
        if name.startswith("custom."):
            custom[name.removeprefix("custom.")] = value
        elif name.startswith("escalation."):
            if value is not None:
                escalation[name.removeprefix("escalation.")] = value
        elif value is not None:
            values[name] = value
    if escalation:
        values["escalation"] = Escalation(**escalation)
    return Ticket(
        ref=Ref(
            system=compiled.system,
            id=str(ident),
            key=str(key) if key not in (None, "") else None,
            url=url,
        ),
        comments=_read_comments(compiled, raw),
        attachments=_read_attachments(compiled, raw),
        custom_fields=custom,
        **values,
    )


def stored_as_written(mapping: Mapping, system: System | str, field_name: str) -> bool:
    """Whether a write of the field reads back exactly as sent, so it needs no read-back.

    Not so for a value the system computes (a priority from impact and urgency) or reaches
    through a workflow (a status by transition), a transform the vendor re-encodes (rich text,
    datetimes, users), nor a field read from elsewhere than where it is written.
    """
    compiled = _system(mapping, system).fields.get(field_name)
    if compiled is None:
        return False
    spec = compiled.spec
    if spec.write_mode != "field" or spec.write is None:
        return False
    if spec.transform is not None and not TRANSFORMS[spec.transform].verbatim:
        return False
    return compiled.read_path is not None and spec.write in compiled.read_path


def read_path(mapping: Mapping, system: System | str, field_name: str) -> tuple[str, ...] | None:
    """Where the field is read in the vendor's record, when it is a plain dotted path."""
    compiled = _system(mapping, system).fields.get(field_name)
    return compiled.read_path if compiled is not None else None


def canonical_value(ticket: Ticket, field_name: str) -> Any:
    """A ticket's value for a canonical field name, `custom.x` included."""
    if field_name.startswith("custom."):
        return ticket.custom_fields.get(field_name.removeprefix("custom."))
    if field_name.startswith("escalation."):
        return getattr(ticket.escalation, field_name.removeprefix("escalation."))
    return getattr(ticket, field_name)


def _vendor_scalar(compiled: CompiledField, value: Any) -> Any:
    """The canonical value in the shape the field's read path sees."""
    spec = compiled.spec
    if spec.values is not None:
        value = None if value is None else compiled.to_vendor[str(value)]
    if spec.transform is not None:
        value = TRANSFORMS[spec.transform].write(value)
    elif compiled.name == "labels":
        value = list(value or ())
    return value


def _wrap(compiled: CompiledField, value: Any) -> Any:
    wrapper = compiled.spec.write_as
    if value is None or wrapper == "plain":
        return value
    return {{"name_object": "name", "value_object": "value", "id_object": "id"}[wrapper]: value}


@dataclass(frozen=True, slots=True)
class StatusContext:
    """What a status requirement's text is filled in with: `resolution` is what the paired
    record's people last wrote (the engineering resolution), `peer_key` and `peer_url` name
    that record."""

    resolution: str = ""
    peer_key: str = ""
    peer_url: str = ""

    def fill(self, text: str) -> str:
        """The text with its placeholders replaced."""
        return text.format(
            resolution=self.resolution or f"Resolved in {self.peer_key or 'the paired record'}.",
            peer_key=self.peer_key,
            peer_url=self.peer_url,
        )


def _required_with(
    compiled: CompiledSystem, field_spec: CompiledField, value: Any, context: StatusContext
) -> tuple[dict[str, Any], str | None]:
    """The vendor fields (and comment) the system requires with this status."""
    requirement = field_spec.spec.requires.get(str(value)) if value is not None else None
    if requirement is None:
        return {}, None
    extra: dict[str, Any] = {}
    for vendor_field, template in requirement.fields.items():
        if isinstance(template, dict):
            extra[vendor_field] = {k: context.fill(v) for k, v in template.items()}
        else:
            extra[vendor_field] = context.fill(template)
    comment = context.fill(requirement.comment) if requirement.comment else None
    return extra, comment


def to_vendor(
    mapping: Mapping,
    system: System | str,
    ticket: Ticket,
    fields: Iterable[str],
    *,
    context: StatusContext | None = None,
) -> VendorWrite:
    """The write that would make `system` hold the ticket's values for `fields`.

    Fields the system does not map, or maps read-only, are left out. A status the system
    requires other fields with (`requires`) brings them, filled in from `context`: into the
    same request for a field write, into the transition's screen for a transition.
    """
    compiled = _system(mapping, system)
    context = context or StatusContext()
    payload: dict[str, Any] = {}
    transition_to: str | None = None
    transition_fields: dict[str, Any] = {}
    for name in fields:
        field_spec = compiled.fields.get(name)
        if field_spec is None or not field_spec.writable:
            continue
        value = canonical_value(ticket, name)
        spec = field_spec.spec
        if spec.write_mode == "impact_urgency":
            if value is None or spec.pairs is None:
                continue
            impact, urgency = spec.pairs[str(value)]
            payload[spec.impact_field] = impact
            payload[spec.urgency_field] = urgency
            continue
        scalar = _vendor_scalar(field_spec, value)
        extra, comment = _required_with(compiled, field_spec, value, context)
        if spec.write_mode == "transition":
            if scalar is not None:
                transition_to = str(scalar)
                transition_fields.update(extra)
            continue
        if scalar is None and compiled.spec.write_null_as is not None:
            scalar = compiled.spec.write_null_as
        assert spec.write is not None  # writable() guarantees it
        payload[spec.write] = _wrap(field_spec, scalar)
        payload.update(extra)
        journal = compiled.spec.comments.public_journal if compiled.spec.comments else None
        if comment and journal:
            payload[journal] = comment
    return VendorWrite(
        fields=payload, transition_to=transition_to, transition_fields=transition_fields
    )


def as_record(
    mapping: Mapping, system: System | str, ticket: Ticket, fields: Iterable[str]
) -> dict[str, Any]:
    """A minimal vendor record that reads back as the ticket's `fields` (simple paths only).

    Used to preview what a record will look like after a write, and to test round trips.
    """
    compiled = _system(mapping, system)
    record: dict[str, Any] = {}

    def put(path: tuple[str, ...], value: Any) -> None:
        node = record
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    for attr, value in (("id", ticket.ref.id), ("key", ticket.ref.key)):
        expr = getattr(compiled.spec.ref, attr)
        if expr and value is not None:
            put(tuple(expr.split(".")), value)
    for name in fields:
        field_spec = compiled.fields.get(name)
        if field_spec is None or field_spec.read_path is None:
            continue
        put(field_spec.read_path, _vendor_scalar(field_spec, canonical_value(ticket, name)))
    return record


def journal_field(mapping: Mapping, system: System | str, visibility: Visibility) -> str | None:
    """The journal field a comment of this visibility is written to (ServiceNow), if any."""
    spec = _system(mapping, system).spec.comments
    if spec is None:
        return None
    return spec.public_journal if visibility is Visibility.PUBLIC else spec.internal_journal


def matching_routes(
    mapping: Mapping, ticket: Ticket, *, escalation_approved: bool
) -> tuple[Route, ...]:
    """The routes under which `ticket` should be paired with a record in another system."""
    found: list[Route] = []
    data = ticket.model_dump(mode="json")
    for route in mapping.routes:
        if route.source != ticket.ref.system:
            continue
        if route.when == "escalation_approved" and not escalation_approved:
            continue
        if route.filter is not None and not route.filter.search(data):
            continue
        found.append(route)
    return tuple(found)
