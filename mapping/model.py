"""The canonical ticket both systems map to, and its enums.

Frozen pydantic models: the sync engine diffs them against the last-synced snapshot, so a ticket
never changes once built; use `model_copy(update=...)` to derive another.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class System(StrEnum):
    """The systems the product speaks to."""

    JIRA = "jira"
    SERVICENOW = "servicenow"


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
