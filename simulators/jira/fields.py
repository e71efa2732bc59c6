"""The site's field catalogue: system fields, custom fields and what a value of each must be.

Shapes follow Atlassian's Jira Cloud platform REST OpenAPI spec (`FieldDetails` for `GET /field`,
`FieldMetadata` / `FieldCreateMetadata` for create and edit metadata, `JsonTypeBean` for a
field's schema) and the real create metadata of Cloud sites (mattermost-plugin-jira's
`webapp/src/testdata`: custom fields carry `custom` = the type's plugin key and `customId`).

A value of the wrong type for the field's schema is refused with the message Jira answers
(messages as sites answer them; the spec documents only "400: the request is invalid"):
- a string field given anything else: "Operation value must be a string";
- a number field: "Operation value must be a number";
- an array field given a scalar: "data was not an array";
- an option field given a scalar: "data was not an object"; an object naming no option:
  "Could not find valid 'id' or 'value' in the Parent Option object."; an unknown option:
  "Option value '<v>' is not valid" (or "Option id '<id>' is not valid").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CUSTOM_PLUGIN = "com.atlassian.jira.plugin.system.customfieldtypes"
# Jira's text field limit (jira.text.field.character.limit, 32,767 by default), which applies to
# comment bodies, descriptions, environments and multi-line text custom fields; the spec states
# it for text areas ("The maximum length is 32767 characters",
# CustomFieldContextDefaultValueTextArea).
TEXT_LIMIT = 32767
TOO_LONG = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
# The Summary field is limited to 255 characters.
SUMMARY_LIMIT = 255
SUMMARY_TOO_LONG = "Summary must be less than 255 characters."

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?([+-]\d{2}:?\d{2}|Z)?$")


class FieldValueError(ValueError):
    """A value the field's schema does not take; `str(exc)` is Jira's message for it."""


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a select-list style custom field."""

    id: str
    value: str


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field of the site: id, display name, schema and the operations an edit may use."""

    id: str
    name: str
    schema: Mapping[str, Any]
    operations: tuple[str, ...] = ("set",)
    clause_names: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    navigable: bool = True
    orderable: bool = True
    searchable: bool = True
    # Multi-line text (description, environment, text areas): ADF on v3, limited in length.
    rich_text: bool = False

    @property
    def custom(self) -> bool:
        """Whether an admin added this field (`customfield_NNNNN`)."""
        return self.id.startswith("customfield_")

    @property
    def kind(self) -> str:
        """The value's type (`string`, `number`, `option`, `array`, `user`, ...)."""
        return str(self.schema.get("type", "any"))

    def details_json(self) -> dict[str, Any]:
        """The field as `GET /field` lists it (FieldDetails)."""
        data: dict[str, Any] = {
            "id": self.id,
            "key": self.id,
            "name": self.name,
            "custom": self.custom,
            "orderable": self.orderable,
            "navigable": self.navigable,
            "searchable": self.searchable,
            "clauseNames": list(self.clause_names),
            "schema": dict(self.schema),
        }
        return data

    def meta_json(
        self,
        *,
        required: bool,
        base_url: str,
        allowed: Sequence[Mapping[str, Any]] | None = None,
        default: Mapping[str, Any] | None = None,
        field_id: bool = False,
    ) -> dict[str, Any]:
        """The field as create/edit/transition metadata lists it (FieldMetadata; with
        `field_id`, FieldCreateMetadata as the paged create-metadata endpoint does)."""
        data: dict[str, Any] = {
            "required": required,
            "schema": dict(self.schema),
            "name": self.name,
            "key": self.id,
            "operations": list(self.operations),
            "hasDefaultValue": default is not None,
        }
        if field_id:
            data["fieldId"] = self.id
        if default is not None:
            data["defaultValue"] = dict(default)
        if allowed is not None:
            data["allowedValues"] = [dict(a) for a in allowed]
        elif self.options:
            data["allowedValues"] = [option_json(self, o, base_url) for o in self.options]
        if self.kind == "user":
            data["autoCompleteUrl"] = f"{base_url}/rest/api/2/user/search?query="
        if self.schema.get("items") == "string" and "add" in self.operations:
            data["autoCompleteUrl"] = f"{base_url}/rest/api/1.0/labels/suggest?query="
        return data


def option_json(field_def: FieldDef, option: Option, base_url: str) -> dict[str, Any]:
    """An option as Jira renders it in an issue and in metadata (CustomFieldOption)."""
    return {
        "self": f"{base_url}/rest/api/2/customFieldOption/{option.id}",
        "value": option.value,
        "id": option.id,
    }


def _system(
    ident: str,
    name: str,
    kind: str,
    *,
    items: str | None = None,
    operations: tuple[str, ...] = ("set",),
    clauses: tuple[str, ...] | None = None,
    orderable: bool = True,
    rich_text: bool = False,
) -> FieldDef:
    schema: dict[str, Any] = {"type": kind, "system": ident}
    if items is not None:
        schema["items"] = items
    return FieldDef(
        id=ident,
        name=name,
        schema=schema,
        operations=operations,
        clause_names=clauses if clauses is not None else (ident,),
        orderable=orderable,
        rich_text=rich_text,
    )


# The system fields this site serves, as `GET /field` lists them on a Cloud site.
SYSTEM_FIELDS: tuple[FieldDef, ...] = (
    _system("summary", "Summary", "string"),
    _system("description", "Description", "string", rich_text=True),
    _system("environment", "Environment", "string", rich_text=True),
    _system("issuetype", "Issue Type", "issuetype", operations=(), clauses=("issuetype", "type")),
    _system("project", "Project", "project", operations=("set",)),
    _system("priority", "Priority", "priority"),
    _system("labels", "Labels", "array", items="string", operations=("add", "set", "remove")),
    _system("assignee", "Assignee", "user"),
    _system("reporter", "Reporter", "user"),
    _system("creator", "Creator", "user", operations=(), orderable=False),
    _system("status", "Status", "status", operations=(), orderable=False),
    _system(
        "statusCategory",
        "Status Category",
        "statusCategory",
        operations=(),
        orderable=False,
        clauses=("statusCategory",),
    ),
    _system("resolution", "Resolution", "resolution"),
    _system(
        "resolutiondate",
        "Resolved",
        "datetime",
        operations=(),
        orderable=False,
        clauses=("resolutiondate", "resolved"),
    ),
    _system("created", "Created", "datetime", operations=(), orderable=False),
    _system("updated", "Updated", "datetime", operations=(), orderable=False),
    _system("duedate", "Due date", "date", clauses=("duedate", "due")),
    _system(
        "components",
        "Components",
        "array",
        items="component",
        operations=("add", "set", "remove"),
        clauses=("component",),
    ),
    _system(
        "comment",
        "Comment",
        "comments-page",
        operations=("add", "edit", "remove"),
        orderable=True,
    ),
    _system("attachment", "Attachment", "array", items="attachment", operations=()),
    _system("watches", "Watchers", "watches", operations=(), orderable=False),
    _system("issuelinks", "Linked Issues", "array", items="issuelinks", operations=("add",)),
)

# Custom field types an admin can add: (schema without custom/customId, edit operations,
# multi-line).
CUSTOM_KINDS: Mapping[str, tuple[Mapping[str, Any], tuple[str, ...], bool]] = {
    "textfield": ({"type": "string"}, ("set",), False),
    "textarea": ({"type": "string"}, ("set",), True),
    "url": ({"type": "string"}, ("set",), False),
    "float": ({"type": "number"}, ("set",), False),
    "datepicker": ({"type": "date"}, ("set",), False),
    "datetime": ({"type": "datetime"}, ("set",), False),
    "select": ({"type": "option"}, ("set",), False),
    "radiobuttons": ({"type": "option"}, ("set",), False),
    "multiselect": ({"type": "array", "items": "option"}, ("add", "set", "remove"), False),
    "multicheckboxes": ({"type": "array", "items": "option"}, ("add", "set", "remove"), False),
    "labels": ({"type": "array", "items": "string"}, ("add", "set", "remove"), False),
    "userpicker": ({"type": "user"}, ("set",), False),
}


def custom_field(
    custom_id: int, name: str, kind: str, options: Sequence[str] = (), *, option_base: int = 10000
) -> FieldDef:
    """A custom field of one of `CUSTOM_KINDS`, with its options (select lists)."""
    if kind not in CUSTOM_KINDS:
        known = ", ".join(sorted(CUSTOM_KINDS))
        raise ValueError(f"unknown custom field type {kind!r} (known: {known})")
    schema, operations, rich = CUSTOM_KINDS[kind]
    full = {**schema, "custom": f"{CUSTOM_PLUGIN}:{kind}", "customId": custom_id}
    ident = f"customfield_{custom_id}"
    return FieldDef(
        id=ident,
        name=name,
        schema=full,
        operations=operations,
        clause_names=(ident, f"cf[{custom_id}]", name),
        options=tuple(Option(str(option_base + i), v) for i, v in enumerate(options)),
        rich_text=rich,
    )


def check_custom_value(
    field_def: FieldDef, value: Any, resolve_user: Callable[[Any], str | None]
) -> Any:
    """The value as stored (options by value, users by account id), or FieldValueError."""
    if value is None:
        return None
    kind = field_def.kind
    if kind == "string":
        if not isinstance(value, str):
            raise FieldValueError("Operation value must be a string")
        if field_def.rich_text and len(value) > TEXT_LIMIT:
            raise FieldValueError(TOO_LONG)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldValueError("Operation value must be a number")
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise FieldValueError("Operation value must be a string")
        if not _DATE.match(value):
            raise FieldValueError(f"Date value '{value}' is invalid. Valid format: yyyy-MM-dd")
        return value
    if kind == "datetime":
        if not isinstance(value, str):
            raise FieldValueError("Operation value must be a string")
        if not _DATETIME.match(value):
            raise FieldValueError(
                f"Date value '{value}' is invalid. Valid format: yyyy-MM-dd'T'HH:mm:ss.SSSZ"
            )
        return value
    if kind == "option":
        return _option(field_def, value)
    if kind == "array":
        if not isinstance(value, list):
            raise FieldValueError("data was not an array")
        if field_def.schema.get("items") == "option":
            return list(dict.fromkeys(_option(field_def, v) for v in value))
        if not all(isinstance(v, str) for v in value):
            raise FieldValueError("Operation value must be a string")
        if any(" " in v for v in value):
            raise FieldValueError("Labels cannot contain spaces.")
        return list(dict.fromkeys(value))
    if kind == "user":
        if not isinstance(value, dict):
            raise FieldValueError("data was not an object")
        return resolve_user(value)
    return value


def _option(field_def: FieldDef, value: Any) -> str:
    if not isinstance(value, dict):
        raise FieldValueError("data was not an object")
    if value.get("id") is not None:
        wanted = str(value["id"])
        for option in field_def.options:
            if option.id == wanted:
                return option.value
        raise FieldValueError(f"Option id '{wanted}' is not valid")
    if value.get("value") is not None:
        wanted = str(value["value"])
        for option in field_def.options:
            if option.value == wanted:
                return option.value
        raise FieldValueError(f"Option value '{wanted}' is not valid")
    raise FieldValueError("Could not find valid 'id' or 'value' in the Parent Option object.")


def render_custom(field_def: FieldDef, stored: Any, base_url: str) -> Any:
    """A stored custom value as the issue shows it (options as CustomFieldOption objects)."""
    if stored is None:
        return None
    by_value = {o.value: o for o in field_def.options}
    if field_def.kind == "option":
        option = by_value.get(str(stored))
        return option_json(field_def, option, base_url) if option else None
    if field_def.kind == "array" and field_def.schema.get("items") == "option":
        return [option_json(field_def, by_value[v], base_url) for v in stored if v in by_value]
    return stored


@dataclass
class FieldCatalogue:
    """Every field of the site, system and custom, by id."""

    fields: dict[str, FieldDef] = field(default_factory=lambda: {f.id: f for f in SYSTEM_FIELDS})
    next_custom: int = 10050

    def add_custom(self, name: str, kind: str, options: Sequence[str] = ()) -> FieldDef:
        """Create a custom field as an admin does; returns it (its id is `customfield_N`)."""
        created = custom_field(
            self.next_custom, name, kind, options, option_base=self.next_custom * 10
        )
        self.next_custom += 1
        self.fields[created.id] = created
        return created

    def get(self, ident: str) -> FieldDef | None:
        """The field with this id."""
        return self.fields.get(ident)

    def custom_fields(self) -> list[FieldDef]:
        """The custom fields, in the order they were added."""
        return [f for f in self.fields.values() if f.custom]
