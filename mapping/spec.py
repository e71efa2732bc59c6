"""The mapping file's schema (what admins write) and its compilation into a checked `Mapping`.

Validation collects every problem before refusing: pydantic finds shape errors and typo'd keys,
then the semantic pass checks field names, transforms, paths, value maps, ownership and routes.
"""

from __future__ import annotations

import string
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mapping.errors import ConfigError, ConfigInvalid, validate_reporting_all
from mapping.model import SCALAR_FIELDS, EscalationState, Level, Priority, Status, System
from mapping.transforms import TRANSFORMS

ENUM_FIELDS: dict[str, type[StrEnum]] = {
    "status": Status,
    "priority": Priority,
    "impact": Level,
    "urgency": Level,
}
# The ticket's escalation record, read (never written) for policies that approve by a field or
# a workflow step: its parts and the enum a part's values map to.
ESCALATION_PARTS: dict[str, type[StrEnum] | None] = {
    "state": EscalationState,
    "level": None,
    "requested_by": None,
    "reason": None,
    "approver": None,
    "decided_at": None,
}


def _owner(value: str) -> str:
    if value == "both" or value in System.names():
        return value
    raise ValueError(f"expected 'both' or a system name ({', '.join(System.names())})")


# Who owns a field: "both", or the name of a system.
Owner = Annotated[str, AfterValidator(_owner)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What a status requirement's text may name, filled in by the caller at write time.
STATUS_PLACEHOLDERS = ("resolution", "peer_key", "peer_url")


class StatusRequirement(_Strict):
    """What a system requires written together with one status (a data policy's mandatory
    fields, a transition screen's required fields): vendor fields, with `{resolution}`,
    `{peer_key}` and `{peer_url}` filled in, and a customer-visible comment saved with it."""

    fields: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    comment: str | None = None


class FieldSpec(_Strict):
    """How one canonical field is read from and written to one system."""

    read: str | None = None
    transform: str | None = None
    values: dict[str, str] | None = None
    read_values: dict[str, str] = Field(default_factory=dict)
    write: str | None = None
    write_as: Literal["plain", "name_object", "value_object", "id_object"] = "plain"
    write_mode: Literal["field", "transition", "impact_urgency", "none"] = "field"
    pairs: dict[str, tuple[str, str]] | None = None
    impact_field: str = "impact"
    urgency_field: str = "urgency"
    # Status only: canonical status -> what the system requires written with it.
    requires: dict[str, StatusRequirement] = Field(default_factory=dict)


class CommentSpec(_Strict):
    """Where a system keeps its comments and how public and internal ones are told apart."""

    path: str
    id: str = "id"
    body: str = "body"
    body_transform: str = "text"
    author: str | None = None
    author_transform: str = "string"
    created: str | None = None
    created_transform: str | None = None
    internal_if: str | None = None
    public_journal: str | None = None
    internal_journal: str | None = None


class AttachmentSpec(_Strict):
    """Where a system lists attachment metadata."""

    path: str
    id: str = "id"
    filename: str = "filename"
    size: str | None = "size"
    mime_type: str | None = None
    url: str | None = None


class RefSpec(_Strict):
    """How a record's identity is read."""

    id: str
    key: str | None = None
    url_template: str | None = None


class SystemSpec(_Strict):
    """Everything the mapping knows about one system."""

    ref: RefSpec
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    custom: dict[str, FieldSpec] = Field(default_factory=dict)
    escalation: dict[str, FieldSpec] = Field(default_factory=dict)
    comments: CommentSpec | None = None
    attachments: AttachmentSpec | None = None
    write_null_as: str | None = None


class RouteSpec(_Strict):
    """Which records pair up, in which direction, and when."""

    name: str
    source: str
    target: str
    when: Literal["always", "escalation_approved"] = "escalation_approved"
    target_project: str | None = None
    target_table: str | None = None
    issue_type: str | None = None
    filter: str | None = None


class MappingSpec(_Strict):
    """The `[mapping]` section (or a standalone mapping file)."""

    systems: dict[str, SystemSpec]
    ownership: dict[str, Owner] = Field(default_factory=dict)
    default_owner: Owner = "both"
    conflict: Literal["newest-wins"] = "newest-wins"
    routes: list[RouteSpec] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompiledField:
    """A FieldSpec with its paths compiled and its value maps inverted."""

    name: str
    spec: FieldSpec
    read: ParsedResult | None
    read_path: tuple[str, ...] | None
    to_vendor: AbcMapping[str, str]
    to_canonical: AbcMapping[str, str]

    @property
    def writable(self) -> bool:
        """Whether this system accepts writes of the field."""
        if self.spec.write_mode == "none":
            return False
        if self.spec.write_mode == "field":
            return self.spec.write is not None
        return True


@dataclass(frozen=True, slots=True)
class CompiledSystem:
    """A system's compiled mapping."""

    system: System
    spec: SystemSpec
    paths: AbcMapping[str, ParsedResult]
    fields: AbcMapping[str, CompiledField]


@dataclass(frozen=True, slots=True)
class Route:
    """A validated route."""

    name: str
    source: System
    target: System
    when: str
    target_project: str | None
    target_table: str | None
    issue_type: str | None
    filter: ParsedResult | None


@dataclass(frozen=True, slots=True)
class Mapping:
    """The validated mapping every pure function in this package takes."""

    source: str
    systems: AbcMapping[System, CompiledSystem]
    ownership: AbcMapping[str, str]
    default_owner: str
    conflict: str
    routes: tuple[Route, ...] = field(default_factory=tuple)

    def owner(self, field_name: str) -> str:
        """The owning system's name, or `both`, for a canonical field name (custom as
        `custom.x`)."""
        return self.ownership.get(field_name, self.default_owner)

    def itsm_systems(self) -> frozenset[System]:
        """The systems escalations are decided in: where the routes start (ServiceNow when no
        route names one)."""
        return frozenset(r.source for r in self.routes) or frozenset({System.SERVICENOW})

    def partner_of(self, system: System) -> System:
        """The system records of `system` pair with: where its routes lead (or come from),
        else the one other system mapped. ValueError when that is not one system."""
        ends = {r.target for r in self.routes if r.source == system}
        ends |= {r.source for r in self.routes if r.target == system}
        if not ends:
            ends = {s for s in self.systems if s != system}
        if len(ends) != 1:
            names = ", ".join(sorted(ends)) or "none"
            raise ValueError(f"{system.value} records pair with no single system ({names})")
        return next(iter(ends))

    def field_names(self) -> tuple[str, ...]:
        """Every canonical field name mapped by at least one system."""
        names: list[str] = []
        for compiled in self.systems.values():
            for name in compiled.fields:
                if name not in names:
                    names.append(name)
        return tuple(names)


def template_problem(text: str | None) -> str | None:
    """Why a requirement's text cannot be filled in (an unknown placeholder), or None."""
    if text is None:
        return None
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return f"bad placeholder in {text!r}: {exc}"
    unknown = [n for n in names if n not in STATUS_PLACEHOLDERS]
    if unknown:
        known = ", ".join("{" + n + "}" for n in STATUS_PLACEHOLDERS)
        return f"unknown placeholder {{{unknown[0]}}} (known: {known})"
    return None


def simple_path(expression: str) -> tuple[str, ...] | None:
    """The keys of a plain dotted path (`fields.status.name`), None for richer expressions."""
    parts = expression.split(".")
    if all(p.replace("_", "").replace("-", "").isalnum() for p in parts):
        return tuple(parts)
    return None


class _Checker:
    def __init__(self, file: str, prefix: str) -> None:
        self.file = file
        self.prefix = prefix
        self.errors: list[ConfigError] = []

    def error(self, key: str, reason: str) -> None:
        full = f"{self.prefix}.{key}" if self.prefix else key
        self.errors.append(ConfigError(self.file, full, reason))

    def path(self, key: str, expression: str | None) -> ParsedResult | None:
        if expression is None:
            return None
        try:
            return jmespath.compile(expression)
        except JMESPathError as exc:
            self.error(key, f"bad path {expression!r}: {str(exc).splitlines()[0]}")
            return None

    def transform(self, key: str, name: str | None) -> None:
        if name is not None and name not in TRANSFORMS:
            known = ", ".join(sorted(TRANSFORMS))
            self.error(key, f"unknown transform {name!r} (known: {known})")


def _compile_field(
    check: _Checker, key: str, name: str, spec: FieldSpec, enum: type[StrEnum] | None
) -> CompiledField:
    read = check.path(f"{key}.read", spec.read)
    check.transform(f"{key}.transform", spec.transform)
    to_vendor: dict[str, str] = dict(spec.values or {})
    to_canonical: dict[str, str] = {}
    if enum is not None:
        allowed = {m.value for m in enum}
        if name.startswith("escalation."):
            # Read only: the vendor values that mean each state, and no others, are listed.
            if not spec.read_values and spec.transform is None and spec.read is not None:
                check.error(f"{key}.read_values", f"a read_values map is required for {name}")
        elif spec.values is None and spec.transform is None and spec.read is not None:
            check.error(f"{key}.values", f"a value map is required for {name}")
        for canonical in to_vendor:
            if canonical not in allowed:
                check.error(f"{key}.values.{canonical}", f"not a canonical {name} value")
        if spec.values is not None:
            for missing in sorted(allowed - set(to_vendor)):
                check.error(f"{key}.values", f"value map is missing canonical value {missing!r}")
        for vendor, canonical in spec.read_values.items():
            if canonical not in allowed:
                check.error(f"{key}.read_values.{vendor}", f"{canonical!r} is not a {name} value")
    elif spec.values is not None:
        check.error(f"{key}.values", f"{name} takes no value map; use a transform")
    for canonical, vendor in to_vendor.items():
        to_canonical.setdefault(vendor, canonical)
    to_canonical.update(spec.read_values)
    if spec.write_mode == "impact_urgency":
        if name != "priority":
            check.error(f"{key}.write_mode", "impact_urgency writes only apply to priority")
        pairs = spec.pairs or {}
        for missing in sorted({p.value for p in Priority} - set(pairs)):
            check.error(f"{key}.pairs", f"missing impact/urgency pair for {missing}")
        for canonical in pairs:
            if canonical not in {p.value for p in Priority}:
                check.error(f"{key}.pairs.{canonical}", "not a canonical priority")
    elif spec.pairs is not None:
        check.error(f"{key}.pairs", "pairs only apply with write_mode = 'impact_urgency'")
    if spec.write_mode == "transition" and name != "status":
        check.error(f"{key}.write_mode", "transition writes only apply to status")
    if spec.requires and name != "status":
        check.error(f"{key}.requires", "only status takes requires (fields written with a status)")
    for status, requirement in spec.requires.items():
        rkey = f"{key}.requires.{status}"
        if status not in {s.value for s in Status}:
            check.error(rkey, f"{status!r} is not a canonical status")
        texts = [(f"{rkey}.comment", requirement.comment)] if requirement.comment else []
        for vendor_field, value in requirement.fields.items():
            leaves = value.items() if isinstance(value, dict) else [("", value)]
            for inner, text in leaves:
                where = f"{rkey}.fields.{vendor_field}" + (f".{inner}" if inner else "")
                texts.append((where, text))
        for where, text in texts:
            problem = template_problem(text)
            if problem:
                check.error(where, problem)
    return CompiledField(
        name=name,
        spec=spec,
        read=read,
        read_path=simple_path(spec.read) if spec.read else None,
        to_vendor=to_vendor,
        to_canonical=to_canonical,
    )


def _compile_system(check: _Checker, name: str, spec: SystemSpec) -> CompiledSystem | None:
    key = f"systems.{name}"
    try:
        system = System(name)
    except ValueError as exc:
        check.error(key, str(exc))
        return None
    paths: dict[str, ParsedResult] = {}
    for attr in ("id", "key"):
        expr = getattr(spec.ref, attr)
        compiled = check.path(f"{key}.ref.{attr}", expr)
        if compiled is not None:
            paths[f"ref.{attr}"] = compiled
    if spec.comments is not None:
        c = spec.comments
        for attr in ("path", "id", "body", "author", "created", "internal_if"):
            compiled = check.path(f"{key}.comments.{attr}", getattr(c, attr))
            if compiled is not None:
                paths[f"comments.{attr}"] = compiled
        for attr in ("body_transform", "author_transform", "created_transform"):
            check.transform(f"{key}.comments.{attr}", getattr(c, attr))
    if spec.attachments is not None:
        a = spec.attachments
        for attr in ("path", "id", "filename", "size", "mime_type", "url"):
            compiled = check.path(f"{key}.attachments.{attr}", getattr(a, attr))
            if compiled is not None:
                paths[f"attachments.{attr}"] = compiled
    fields: dict[str, CompiledField] = {}
    for field_name, field_spec in spec.fields.items():
        fkey = f"{key}.fields.{field_name}"
        if field_name not in SCALAR_FIELDS:
            known = ", ".join(SCALAR_FIELDS)
            check.error(fkey, f"unknown canonical field {field_name!r} (known: {known})")
            continue
        fields[field_name] = _compile_field(
            check, fkey, field_name, field_spec, ENUM_FIELDS.get(field_name)
        )
    for custom_name, field_spec in spec.custom.items():
        fkey = f"{key}.custom.{custom_name}"
        fields[f"custom.{custom_name}"] = _compile_field(
            check, fkey, f"custom.{custom_name}", field_spec, None
        )
    for part, part_spec in spec.escalation.items():
        fkey = f"{key}.escalation.{part}"
        if part not in ESCALATION_PARTS:
            known = ", ".join(ESCALATION_PARTS)
            check.error(fkey, f"unknown part of the escalation record {part!r} (known: {known})")
            continue
        if (
            part_spec.write is not None
            or part_spec.write_mode not in ("field", "none")
            or part_spec.values is not None
        ):
            check.error(
                fkey,
                "the escalation record is read, never written: give read (with read_values "
                "for state), not write, write_mode or values",
            )
            continue
        fields[f"escalation.{part}"] = _compile_field(
            check, fkey, f"escalation.{part}", part_spec, ESCALATION_PARTS[part]
        )
    status_field = fields.get("status")
    if status_field is not None:
        journal = spec.comments.public_journal if spec.comments is not None else None
        for status, requirement in status_field.spec.requires.items():
            if requirement.comment is not None and journal is None:
                check.error(
                    f"{key}.fields.status.requires.{status}.comment",
                    "a comment saved with a status needs comments.public_journal",
                )
    priority = fields.get("priority")
    if priority is not None and priority.spec.write_mode == "impact_urgency":
        for other in ("impact", "urgency"):
            written = fields.get(other)
            if written is not None and written.writable:
                check.error(
                    f"{key}.fields.{other}",
                    f"ownership conflict: priority is written through {other}, so {other} "
                    "must be read-only here (write_mode = 'none')",
                )
    return CompiledSystem(system=system, spec=spec, paths=paths, fields=fields)


def _check_ownership(
    check: _Checker, spec: MappingSpec, systems: dict[System, CompiledSystem]
) -> None:
    mapped = {name for compiled in systems.values() for name in compiled.fields}
    for field_name, owner in spec.ownership.items():
        key = f"ownership.{field_name}"
        if field_name not in mapped:
            check.error(key, f"ownership of {field_name!r}, which no system maps")
            continue
        if owner == "both":
            continue
        owning = systems.get(System(owner))
        if owning is None or field_name not in owning.fields:
            check.error(key, f"ownership conflict: {owner} owns {field_name!r} but does not map it")
            continue
        if owning.fields[field_name].read is None:
            check.error(key, f"ownership conflict: {owner} owns {field_name!r} but cannot read it")
        for other_system, other in systems.items():
            if other_system.value == owner or field_name not in other.fields:
                continue
            if not other.fields[field_name].writable:
                check.error(
                    key,
                    f"ownership conflict: {owner} owns {field_name!r} but "
                    f"{other_system.value} cannot write it",
                )


def _compile_routes(
    check: _Checker, spec: MappingSpec, systems: dict[System, CompiledSystem]
) -> tuple[Route, ...]:
    routes: list[Route] = []
    for index, route in enumerate(spec.routes):
        key = f"routes[{index}]"
        ends: list[System] = []
        for attr in ("source", "target"):
            name = getattr(route, attr)
            try:
                end = System(name)
            except ValueError:
                check.error(f"{key}.{attr}", f"route names unknown system {name!r}")
                continue
            if end not in systems:
                check.error(f"{key}.{attr}", f"route names system {name!r} with no mapping")
                continue
            ends.append(end)
        if len(ends) == 2 and ends[0] == ends[1]:
            check.error(key, "a route pairs two different systems")
        compiled_filter = check.path(f"{key}.filter", route.filter)
        if len(ends) == 2:
            routes.append(
                Route(
                    name=route.name,
                    source=ends[0],
                    target=ends[1],
                    when=route.when,
                    target_project=route.target_project,
                    target_table=route.target_table,
                    issue_type=route.issue_type,
                    filter=compiled_filter,
                )
            )
    return tuple(routes)


def load_mapping(data: dict[str, Any], *, source: str, prefix: str = "") -> Mapping:
    """Validate a mapping section and compile it; raise ConfigInvalid listing every error."""
    spec, shape_errors = validate_reporting_all(MappingSpec.model_validate, data, source, prefix)
    if spec is None:
        raise ConfigInvalid(shape_errors)
    check = _Checker(source, prefix)
    check.errors.extend(shape_errors)
    systems: dict[System, CompiledSystem] = {}
    for name, system_spec in spec.systems.items():
        compiled = _compile_system(check, name, system_spec)
        if compiled is not None:
            systems[compiled.system] = compiled
    _check_ownership(check, spec, systems)
    routes = _compile_routes(check, spec, systems)
    if check.errors:
        raise ConfigInvalid(check.errors)
    return Mapping(
        source=source,
        systems=systems,
        ownership=dict(spec.ownership),
        default_owner=spec.default_owner,
        conflict=spec.conflict,
        routes=routes,
    )
