"""The escalation decision as plain data: a new state, the actions to take, and why.

The sync engine carries out the actions; the ledger records the state; `explain` prints the
reasons. Nothing here talks to a system or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal

from escalation.chat import ArchiveChat, InviteToChat, OpenChat, PostChat
from mapping.model import EscalationState, Person, Priority, Ref, Status, System, Visibility

Outcome = Literal["pass", "fail", "blocked", "info"]
# The end of a reason's rule saying a step waits for the engineering record to exist.
AWAITS_ENGINEERING_RECORD = ".awaits_engineering_record"


class CustomerEvent(StrEnum):
    """Why the customer is emailed; the email templates are keyed on these."""

    ESCALATED = "escalated"
    NEEDS_INFORMATION = "needs_information"
    PUBLIC_UPDATE = "public_update"
    PERIODIC_UPDATE = "periodic_update"
    RESOLVED_PLEASE_CONFIRM = "resolved_please_confirm"
    CONFIRMATION_REMINDER = "confirmation_reminder"
    CLOSED = "closed"


class NoteKind(StrEnum):
    """What an ITSM note written by decide() is about (also the idempotency key's prefix)."""

    REQUEST = "request"
    NEEDS_INFORMATION = "needs_information"
    APPROVAL = "approval"
    REJECTION = "rejection"
    REFUSAL = "refusal"
    LIMIT_WARNING = "limit_warning"
    RESOLUTION = "resolution"
    CLOSURE = "closure"
    WITHDRAWAL = "withdrawal"
    COMMAND_REFUSED = "command_refused"
    FOLLOW_UP = "follow_up"
    ASSIGNMENT = "assignment"
    PRIORITY = "priority"
    JOINED = "joined"
    REOPENED = "reopened"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule decide() evaluated: its outcome, a sentence, and the values it compared."""

    rule: str
    outcome: Outcome
    detail: str
    compared: Mapping[str, Any] = field(default_factory=dict)


# --- Actions -------------------------------------------------------------------------------
# Each action is applied to the ITSM record the decision was made for, unless it says otherwise.


@dataclass(frozen=True, slots=True)
class AddLabel:
    """Add a label (tag) to the ITSM record."""

    label: str


@dataclass(frozen=True, slots=True)
class RemoveLabel:
    """Remove a label (tag) from the ITSM record."""

    label: str


@dataclass(frozen=True, slots=True)
class SetPriority:
    """Change the record's priority (only when the policy asks: escalation is not severity)."""

    priority: Priority


@dataclass(frozen=True, slots=True)
class SetLevel:
    """Record the escalation level (L1/L2/L3 or the organisation's own names)."""

    level: str


@dataclass(frozen=True, slots=True)
class AddNote:
    """Write a note to the ITSM record: needs-information, approval, rejection, refusal, ..."""

    body: str
    visibility: Visibility = Visibility.INTERNAL
    kind: NoteKind = NoteKind.REQUEST


@dataclass(frozen=True, slots=True)
class CreateEngineeringRecord:
    """Create (or link, if one is already paired) the engineering record in the other system."""

    target_system: System
    project_or_table: str
    level: str
    summary: str
    description: str
    queue: str | None = None
    issue_type: str | None = None
    labels: tuple[str, ...] = ()
    # Routing inside the project: (field name, value), e.g. ("assignment_group", "EMEA L2"),
    # written as the mapping maps `custom.<field name>` on the target system.
    dispatch: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AddEngineeringComment:
    """Write a comment on the paired engineering record (the chat channel's link, say)."""

    body: str
    visibility: Visibility = Visibility.PUBLIC


@dataclass(frozen=True, slots=True)
class PostLinks:
    """Post the link of each paired record in the other one."""


@dataclass(frozen=True, slots=True)
class NotifyManagement:
    """Tell management and the stakeholders (by e-mail, To and CC) about an escalation event."""

    event: str
    recipients: tuple[str, ...]
    cc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EmailCustomer:
    """Email the customer about the escalation; never carries internal details.

    `comment_id` names the public comment a public update reports (None for other events).
    """

    event: CustomerEvent
    comment_id: str | None = None


@dataclass(frozen=True, slots=True)
class MoveStatus:
    """Move the ITSM record to a canonical status (e.g. resolved once engineering resolves)."""

    status: Status


@dataclass(frozen=True, slots=True)
class ReleaseEscalation:
    """The escalation stops counting as active (frees its slot in the limits)."""


@dataclass(frozen=True, slots=True)
class JoinEscalation:
    """This ticket repeats an issue escalated on `primary` (a ledger key): link it to that
    escalation's engineering record (`engineering`, when it has one) instead of opening one."""

    primary: str
    primary_key: str | None
    engineering: str | None


@dataclass(frozen=True, slots=True)
class CloseFurtherRecords:
    """The escalation ended: the records opened for further levels are resolved ("close")
    or told with a comment ("note"); `body` is that comment."""

    mode: Literal["close", "note"]
    body: str


Action = (
    AddLabel
    | RemoveLabel
    | SetPriority
    | SetLevel
    | AddNote
    | CreateEngineeringRecord
    | PostLinks
    | NotifyManagement
    | EmailCustomer
    | MoveStatus
    | ReleaseEscalation
    | JoinEscalation
    | CloseFurtherRecords
    | AddEngineeringComment
    | OpenChat
    | InviteToChat
    | PostChat
    | ArchiveChat
)


def ledger_key(ref: Ref) -> str:
    """The ledger's key for a ticket: `system:id` (the stable id, not the human key)."""
    return f"{ref.system.value}:{ref.id}"


# --- What decide() reads ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FingerprintSighting:
    """A ticket seen with a given fingerprint (for the repeated-occurrence trigger)."""

    fingerprint: str
    ticket: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """This ticket's row in the escalation ledger."""

    state: EscalationState = EscalationState.NONE
    level: str | None = None
    assignee: str | None = None
    fingerprint: str | None = None
    requested_at: datetime | None = None
    requested_by: str | None = None
    reason: str | None = None
    approved_at: datetime | None = None
    approved_by: str | None = None
    released_at: datetime | None = None
    # Comment ids whose commands were already acted on (or refused): never honoured twice.
    processed_command_ids: frozenset[str] = frozenset()
    # Key of the last note written, so re-deciding an unchanged ticket writes nothing new.
    notice_key: str | None = None
    engineering_ref: str | None = None
    last_customer_update_at: datetime | None = None
    # The escalation's priority (as approved, or the last change it accepted) and a change
    # waiting for an approver's word.
    priority: Priority | None = None
    priority_asked: Priority | None = None
    # The level a waiting request asks for, when not the next one (a leadership level).
    target_level: str | None = None
    # The ledger key of the escalation this ticket joined (state joined).
    joined_to: str | None = None
    # The ticket as people name it, and its category: for notes about it and the report.
    ticket_key: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class OpenEscalation:
    """Another ticket's escalation this one joins or joined, as the ledger has it."""

    key: str
    entry: LedgerEntry


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the ledger knows at decision time: counts for the limits and this ticket's entry.

    An escalation is active from approval until it is released (engineering resolved or the
    record closed). `escalations_today` counts escalations approved since `day_start` (the
    start of the policy's day); `active_count` and `active_by_assignee` count active ones.
    """

    escalations_today: int = 0
    active_count: int = 0
    active_by_assignee: Mapping[str, int] = field(default_factory=dict)
    recent_fingerprints: tuple[FingerprintSighting, ...] = ()
    entry: LedgerEntry | None = None
    day_start: datetime | None = None
    # The escalation this ticket joined (its entry's joined_to), else an open one (waiting or
    # active) of another ticket with the same fingerprint or the linked ticket.
    primary: OpenEscalation | None = None


@dataclass(frozen=True, slots=True)
class EngineeringStatus:
    """The paired engineering record as the sync engine last read it (input to closure).

    `resolution` is what engineering last wrote; `resolution_public` says whether it was a
    public comment, which is the only kind the customer may be shown. `responded_at` is when a
    person last commented there (None when nobody has).
    """

    ref: Ref | None
    status: Status | None
    resolution: str | None = None
    resolution_public: bool = False
    assignee: Person | None = None
    responded_at: datetime | None = None


# --- The decision ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    """The limits an activation must respect; the ledger re-checks them under a lock.

    None means the limit is not configured.
    """

    max_per_day: int | None
    max_active: int | None
    max_active_per_assignee: int | None
    assignee: str | None
    day_start: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """decide()'s verdict for one ticket at one moment.

    `state`, `level`, `actions` and `reasons` are the verdict. The remaining fields are what
    the ledger records: the command comments consumed, the request's origin, the fingerprint,
    the note key, and (when the escalation becomes active) the reservation to make atomically.
    """

    state: EscalationState
    level: str | None
    actions: tuple[Action, ...]
    reasons: tuple[Reason, ...]
    processed_command_ids: tuple[str, ...] = ()
    assignee: str | None = None
    fingerprint: str | None = None
    notice_key: str | None = None
    requested_by: str | None = None
    request_reason: str | None = None
    approved_by: str | None = None
    reservation: Reservation | None = None
    # True when this decision starts a new request (the ledger stamps requested_at).
    request_started: bool = False
    priority: Priority | None = None
    priority_asked: Priority | None = None
    target_level: str | None = None
    joined_to: str | None = None
    ticket_key: str | None = None
    category: str | None = None
    # The next moment a time-driven rule would decide differently for an unchanged ticket
    # (an SLA nearing, a follow-up falling due); the scheduler decides the ticket again then.
    wake_at: datetime | None = None

    @property
    def releases(self) -> bool:
        """True when this decision frees the escalation's slot."""
        return any(isinstance(a, ReleaseEscalation) for a in self.actions)

    @property
    def awaits_engineering_record(self) -> bool:
        """A step waits for the engineering record (a chat room named after it): once the
        record exists, the ticket should be decided again at once."""
        return any(r.rule.endswith(AWAITS_ENGINEERING_RECORD) for r in self.reasons)

    @property
    def blocked(self) -> tuple[Reason, ...]:
        """Reasons with outcome "blocked" (refused commands); the sync engine logs each."""
        return tuple(r for r in self.reasons if r.outcome == "blocked")


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, frozenset | set) else items
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def action_to_dict(action: Action) -> dict[str, Any]:
    """One action as JSON-ready data: {"action": "add_label", "label": "ESCALATION"}."""
    name = "".join("_" + c.lower() if c.isupper() else c for c in type(action).__name__)
    out: dict[str, Any] = {"action": name.lstrip("_")}
    for f in fields(action):
        out[f.name] = _plain(getattr(action, f.name))
    return out


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """The whole decision as JSON-ready data (for `explain --json` and the audit log)."""
    out: dict[str, Any] = {
        "state": decision.state.value,
        "level": decision.level,
        "actions": [action_to_dict(a) for a in decision.actions],
        "reasons": [
            {
                "rule": r.rule,
                "outcome": r.outcome,
                "detail": r.detail,
                "compared": _plain(r.compared),
            }
            for r in decision.reasons
        ],
    }
    for name in (
        "processed_command_ids",
        "assignee",
        "fingerprint",
        "notice_key",
        "requested_by",
        "request_reason",
        "approved_by",
        "request_started",
        "priority",
        "priority_asked",
        "target_level",
        "joined_to",
        "wake_at",
    ):
        out[name] = _plain(getattr(decision, name))
    res = decision.reservation
    out["reservation"] = None if res is None else _plain(asdict(res))
    return out
