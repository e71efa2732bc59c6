"""The canonical ticket every system maps to, and its enums.

Frozen pydantic models: the sync engine diffs them against the last-synced snapshot, so a ticket
never changes once built; use `model_copy(update=...)` to derive another.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

# A system's name: how it appears in configuration keys, markers, URLs and the store.
SYSTEM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class _Systems(type):
    """Iterating `System` gives every system declared so far, in the order declared."""

    def __iter__(cls) -> Iterator[System]:
        return iter(list(System._declared.values()))


class System(str, metaclass=_Systems):
    """The name of a ticket system the product speaks to: `jira`, `servicenow`, or one an
    installed system package declared (see sync/systems/). A string, compared and hashed as
    its name; there is one object per name, so `is` compares systems as it did enum members.

    `System(name)` refuses a name no package declared, as a closed enum would: a typo in a
    mapping or a route stays an error. This package never learns what the systems are; the
    registry that loads them calls `System.declare`.
    """

    __slots__ = ()
    _declared: ClassVar[dict[str, System]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    JIRA: ClassVar[System]
    SERVICENOW: ClassVar[System]

    def __new__(cls, value: str) -> System:
        if isinstance(value, System):
            return value
        known = cls._declared.get(value)
        if known is None:
            raise ValueError(f"unknown system {value!r} (known: {', '.join(cls.names())})")
        return known

    @classmethod
    def declare(cls, name: str) -> System:
        """The system named `name`, declared now if it was not (idempotent)."""
        if not SYSTEM_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a system name: lower-case letters, digits and _, "
                "starting with a letter, at most 32 characters"
            )
        with cls._lock:
            known = cls._declared.get(name)
            if known is None:
                known = str.__new__(cls, name)
                cls._declared[name] = known
        return known

    @classmethod
    def forget(cls, name: str) -> None:
        """Take back a declaration (a system package unregistered, in tests); the built-in
        systems stay."""
        if name not in (cls.JIRA, cls.SERVICENOW):
            with cls._lock:
                cls._declared.pop(name, None)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names declared, in the order declared."""
        return tuple(cls._declared)

    @property
    def value(self) -> str:
        """The name as a plain string."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"System({self.value!r})"

    def __reduce__(self) -> tuple[type[System], tuple[str]]:
        return (System, (self.value,))

    def __deepcopy__(self, memo: dict[int, Any]) -> System:
        return self

    def __copy__(self) -> System:
        return self

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                str.__str__, when_used="json"
            ),
        )


System.JIRA = System.declare("jira")
System.SERVICENOW = System.declare("servicenow")


class Status(StrEnum):
    """Canonical ticket status."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Priority(StrEnum):
    """Canonical priority, P1 the most urgent."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"

    @property
    def rank(self) -> int:
        """1 for P1 ... 5 for P5."""
        return int(self.value[1])


class Level(StrEnum):
    """Canonical impact and urgency (ServiceNow's 1/2/3)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Visibility(StrEnum):
    """Who may see a comment: public reaches the customer, internal never does."""

    PUBLIC = "public"
    INTERNAL = "internal"


class EscalationState(StrEnum):
    """Where a ticket stands in the escalation procedure."""

    NONE = "none"
    REQUESTED = "requested"
    INCOMPLETE = "incomplete"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    # A repeat of an issue whose escalation is open on another ticket: it follows that one.
    JOINED = "joined"
    RESOLVED = "resolved"
    CLOSED = "closed"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ref(_Frozen):
    """Where a ticket lives: system, stable id (issue id / sys_id), human key, browse URL."""

    system: System
    id: str
    key: str | None = None
    url: str | None = None


class Person(_Frozen):
    """A user as a system names them; `id` is the account id, user name or sys_id."""

    id: str | None = None
    name: str | None = None
    email: str | None = None


class Comment(_Frozen):
    """A comment (public) or an internal note / work note (internal)."""

    id: str
    body: str
    visibility: Visibility = Visibility.INTERNAL
    author: Person | None = None
    created: datetime | None = None


class Attachment(_Frozen):
    """Attachment metadata; content is streamed by the connectors, never held here."""

    id: str
    filename: str
    size: int | None = None
    mime_type: str | None = None
    url: str | None = None
    sha256: str | None = None


class Escalation(_Frozen):
    """The escalation sub-record carried with a ticket."""

    state: EscalationState = EscalationState.NONE
    level: str | None = None
    requested_by: Person | None = None
    reason: str | None = None
    approver: Person | None = None
    decided_at: datetime | None = None


class Ticket(_Frozen):
    """A ticket in canonical form: what mapping produces and the policy and engine consume."""

    ref: Ref
    summary: str | None = None
    description: str | None = None
    status: Status | None = None
    priority: Priority | None = None
    impact: Level | None = None
    urgency: Level | None = None
    labels: tuple[str, ...] = ()
    assignee: Person | None = None
    reporter: Person | None = None
    customer: Person | None = None
    category: str | None = None
    comments: tuple[Comment, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    escalation: Escalation = Field(default_factory=Escalation)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    updated: datetime | None = None
    version: str | None = None


# Fields an admin may map; `ref.*` and the collections are read by every mapping.
SCALAR_FIELDS: tuple[str, ...] = (
    "summary",
    "description",
    "status",
    "priority",
    "impact",
    "urgency",
    "labels",
    "assignee",
    "reporter",
    "customer",
    "category",
    "updated",
    "version",
)
