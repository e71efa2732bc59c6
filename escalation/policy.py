"""The escalation policy: what admins write in TOML, validated all at once.

A policy is either the `[escalation]` table of the main configuration or a standalone policy
file (whose top level may itself be an `[escalation]` table, as the presets are). Every key is
checked; a misspelt key is reported by name with its file and dotted path, and every problem in
the file is reported together (`ConfigInvalid.errors`).

Field paths (`summary`, `custom_fields.sla_due`, `customer.email`, ...) point into the
canonical ticket; their first part must be a field of `mapping.model.Ticket`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from mapping.errors import ConfigError, ConfigInvalid, dotted, validate_reporting_all
from mapping.model import Person, Priority, Status, System, Ticket, Visibility
from mapping.spec import Mapping as FieldMapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_path(path: str) -> str:
    head = path.split(".", 1)[0]
    if head not in Ticket.model_fields:
        known = ", ".join(sorted(Ticket.model_fields))
        raise ValueError(f"field path {path!r} does not start with a ticket field ({known})")
    if head == "custom_fields" and "." not in path:
        raise ValueError("custom_fields needs a name: custom_fields.<name>")
    return path


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def _check_command(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"/[A-Za-z][\w-]*", value):
        raise ValueError("a command is a slash and a word, e.g. /escalate")
    return value


# A key path inside the policy, as errors name it: ("levels", 1, "approvers").
Key = tuple[object, ...]

FieldPath = Annotated[str, AfterValidator(_check_path)]
Regex = Annotated[str, AfterValidator(_check_regex)]

# Who a notice goes to: "management" (management.recipients), "sponsor" (the address in
# stakeholders.sponsor_field), a RACI letter or word (every stakeholder role holding it), or a
# stakeholder role by name.
Audience = str
RACI_WORDS: Mapping[str, str] = {
    "responsible": "R",
    "accountable": "A",
    "consulted": "C",
    "informed": "I",
}


class People(_Strict):
    """Who may do something: user ids / emails, and group names defined in `groups`."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nobody is named."""
        return not self.users and not self.groups


class FieldCondition(_Strict):
    """A field value that means "escalation requested" (e.g. a checkbox or a choice)."""

    field: FieldPath
    equals: tuple[str, ...] = ()
    # With no `equals`, any non-empty value matches.


class Request(_Strict):
    """How a reactive escalation request is recognised."""

    labels: tuple[str, ...] = ()
    fields: tuple[FieldCondition, ...] = ()
    command: str | None = "/escalate"
    # Who may request by command; nobody named means any author in an allowed place.
    command_from: People = People()
    command_in: tuple[Visibility, ...] = (Visibility.INTERNAL,)
    # The command must say why (`/escalate <reason>`); a bare command is answered with a note.
    reason_required: bool = False
    remove_labels_on_approval: bool = False
    # A request label is taken off when its request ends without an escalation (rejected,
    # refused, withdrawn) and when the escalation ends, so adding it again asks again.
    clear_labels: bool = True
    # Ends a request still waiting (gate or approval) with a note; nobody named in
    # withdraw_from means the requester, the people who may request and the approvers.
    withdraw_command: str | None = "/withdraw-escalation"
    withdraw_from: People = People()
    # Asks for the first leadership level directly, from wherever the escalation stands.
    leadership_command: str | None = None

    @field_validator("command", "withdraw_command", "leadership_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        return _check_command(value)


class _TriggerBase(_Strict):
    # A management escalation (e.g. an SLA breach near): management hears when the trigger
    # starts a request, before anyone approves the transfer.
    notify_management: bool = False


class PriorityTrigger(_TriggerBase):
    """Escalate proactively when the ticket has one of these priorities (e.g. P1/P2)."""

    kind: Literal["priority"]
    name: str = "priority"
    priorities: tuple[Priority, ...] = Field(min_length=1)


class SlaTrigger(_TriggerBase):
    """Escalate proactively when the SLA due time (a datetime field) is within N hours."""

    kind: Literal["sla"]
    name: str = "sla"
    field: FieldPath
    within_hours: float = Field(ge=0)


class RepeatedTrigger(_TriggerBase):
    """Escalate when K tickets with the same fingerprint were seen within a window."""

    kind: Literal["repeated"]
    name: str = "repeated"
    count: int = Field(ge=2)
    window_hours: float = Field(gt=0)


class CategoryTrigger(_TriggerBase):
    """Escalate proactively for these categories (e.g. security, data impact)."""

    kind: Literal["category"]
    name: str = "category"
    categories: tuple[str, ...] = Field(min_length=1)


Trigger = Annotated[
    PriorityTrigger | SlaTrigger | RepeatedTrigger | CategoryTrigger, Field(discriminator="kind")
]


class Fingerprint(_Strict):
    """Which fields identify "the same issue" for the repeated-occurrence trigger."""

    fields: tuple[FieldPath, ...] = ("category", "summary")


TextSource = Literal["summary", "description", "comments", "internal_comments", "public_comments"]


class _ItemBase(_Strict):
    name: str
    description: str = ""
    # Required only when escalating to one of these levels (all levels when empty).
    levels: tuple[str, ...] = ()


class FieldItem(_ItemBase):
    """Required item recognised by a non-empty field (optionally a minimum length)."""

    check: Literal["field"]
    field: FieldPath
    min_length: int = Field(default=1, ge=1)


class TextItem(_ItemBase):
    """Required item recognised by a regular expression in the description and/or comments."""

    check: Literal["text"]
    pattern: Regex
    search: tuple[TextSource, ...] = ("description", "comments")


class AttachmentItem(_ItemBase):
    """Required item recognised by attachments (optionally whose file name matches)."""

    check: Literal["attachment"]
    min_count: int = Field(default=1, ge=1)
    filename: Regex | None = None


class ContactItem(_ItemBase):
    """A named contact: a person field with a name or email, or a "Contact: ..." line."""

    check: Literal["contact"]
    field: FieldPath | None = None
    pattern: Regex | None = r"(?im)^\s*contact\s*:\s*\S+"
    search: tuple[TextSource, ...] = ("description", "comments")

    @model_validator(mode="after")
    def _one_way(self) -> ContactItem:
        if self.field is None and self.pattern is None:
            raise ValueError("a contact item needs a field, a pattern or both")
        return self


GateItem = Annotated[
    FieldItem | TextItem | AttachmentItem | ContactItem, Field(discriminator="check")
]


class Gate(_Strict):
    """The completeness gate: an incomplete ticket is not escalated."""

    enabled: bool = True
    items: tuple[GateItem, ...] = ()
    email_customer: bool = False

    @field_validator("items")
    @classmethod
    def _unique(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [i.name for i in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gate item names must be unique: {', '.join(dupes)}")
        return value


ApprovalWay = Literal["command", "field", "transition"]


class Approval(_Strict):
    """How approval and rejection are given; the approvers themselves are named per level."""

    required: bool = True
    via: tuple[ApprovalWay, ...] = ("command",)
    approve_command: str = "/approve-escalation"
    reject_command: str = "/reject-escalation"
    command_in: tuple[Visibility, ...] = (Visibility.INTERNAL,)
    field: FieldPath | None = None
    approved_values: tuple[str, ...] = ("approved",)
    rejected_values: tuple[str, ...] = ("rejected",)
    # Four eyes: whoever asked for the escalation may not approve it as well.
    four_eyes: bool = False

    @field_validator("approve_command", "reject_command")
    @classmethod
    def _commands(cls, value: str) -> str:
        _check_command(value)
        return value

    @model_validator(mode="after")
    def _field_needed(self) -> Approval:
        if "field" in self.via and self.field is None:
            raise ValueError("approval via 'field' needs approval.field")
        if self.approve_command == self.reject_command:
            raise ValueError("approve_command and reject_command must differ")
        return self


class LowImpact(_Strict):
    """What counts as low impact (refused as an escalation); any match refuses."""

    priorities: tuple[Priority, ...] = ()
    impacts: tuple[Literal["high", "medium", "low"], ...] = ()
    labels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


class Limits(_Strict):
    """Caps on escalations; a refused escalation's note names the limit and its count."""

    max_per_day: int | None = Field(default=None, ge=1)
    max_active: int | None = Field(default=None, ge=1)
    max_active_per_assignee: int | None = Field(default=None, ge=1)
    # Whose assignee the per-assignee limit counts: the ITSM record's, checked when the
    # escalation is accepted, or the engineering record's, checked when engineering assigns it
    # (the engineer is not known before); an engineer over the limit gets an ITSM note asking
    # for another assignee.
    assignee_of: Literal["itsm", "engineering"] = "itsm"
    low_impact: LowImpact = LowImpact()


class Dispatch(_Strict):
    """Where a level's engineering record is routed inside its project or table.

    Each value is written on the record as the mapping maps the field of that name on the
    target system (`custom.queue`, `custom.assignment_group`, `custom.component`,
    `custom.team`); `policy check --config` says when the mapping has no such field.
    """

    queue: str | None = None
    assignment_group: str | None = None
    component: str | None = None
    team: str | None = None

    def values(self) -> dict[str, str]:
        """The routing values set, by field name."""
        return {k: v for k, v in self.model_dump().items() if v}


DISPATCH_FIELDS: tuple[str, ...] = tuple(Dispatch.model_fields)


class Level(_Strict):
    """An escalation level and where tickets escalated to it go."""

    name: str = Field(min_length=1)
    description: str = ""
    # Technical levels move the ticket to another team; a leadership level (after all the
    # technical ones) brings in support leadership: it is told, with the case, and reviews it.
    kind: Literal["technical", "leadership"] = "technical"
    target_system: System | None = None
    project: str | None = None
    queue: str | None = None
    assignment_group: str | None = None
    component: str | None = None
    team: str | None = None
    # Per region (the value of the policy's region_field), routing that replaces the above.
    regions: dict[str, Dispatch] = {}
    issue_type: str | None = None
    # A different project/table for some categories (e.g. hardware -> HW), same system.
    category_projects: dict[str, str] = {}
    approvers: People = People()
    # Who is told when an escalation reaches this level (audiences, see Stakeholders).
    notify: tuple[Audience, ...] = ()

    def project_for(self, category: str | None) -> str | None:
        """The project (or table) a ticket of `category` escalates to at this level."""
        if category:
            for name, project in self.category_projects.items():
                if name.casefold() == category.casefold():
                    return project
        return self.project

    def dispatch_for(self, region: str | None) -> dict[str, str]:
        """The routing values for a ticket of `region`: the region's, over the level's own."""
        values = Dispatch(
            queue=self.queue,
            assignment_group=self.assignment_group,
            component=self.component,
            team=self.team,
        ).values()
        if region:
            for name, dispatch in self.regions.items():
                if name.casefold() == region.casefold():
                    values.update(dispatch.values())
        return values

    @model_validator(mode="after")
    def _target(self) -> Level:
        if self.target_system is not None and not self.project:
            raise ValueError("a level with a target_system needs project (Jira key or table)")
        return self


class PriorityRule(_Strict):
    """Priority handling, e.g. P1 immediate with management notified, P3 after L1 confirms."""

    auto_request: bool = False
    approval_required: bool | None = None
    gate_required: bool = True
    notify_management: bool = False
    extra_gate_items: tuple[str, ...] = ()
    # Raise a management notification when approval has waited longer than this.
    approval_within_hours: float | None = Field(default=None, gt=0)
    # Who approves tickets of this priority instead of the level's approvers (e.g. a manager
    # for an emergency that skips the gate).
    approvers: People = People()


class OnApproval(_Strict):
    """What happens when an escalation is approved (each action on its own switch)."""

    tag: str | None = "ESCALATION"
    set_priority: Priority | None = None
    priority_bump: int = Field(default=0, ge=0, le=4)
    set_level: bool = True
    create_engineering_record: bool = True
    post_links: bool = True
    notify_management: bool = False
    email_customer: bool = True
    status: Status | None = None

    @model_validator(mode="after")
    def _one_priority_rule(self) -> OnApproval:
        if self.set_priority is not None and self.priority_bump:
            raise ValueError("use set_priority or priority_bump, not both")
        return self


class Management(_Strict):
    """Who management notifications go to."""

    recipients: tuple[str, ...] = ()


class Closure(_Strict):
    """What happens when the engineering record is resolved, and when the ITSM record closes."""

    engineering_statuses: tuple[Status, ...] = (Status.RESOLVED, Status.CLOSED)
    write_resolution: bool = True
    move_to: Status | None = Status.RESOLVED
    ask_customer_to_confirm: bool = True
    notify_management: bool = False
    remove_tag: bool = False
    itsm_closed_statuses: tuple[Status, ...] = (Status.CLOSED, Status.CANCELLED)
    email_customer_on_close: bool = False
    # Records opened for further levels (an L3 vendor record beside the L2 pair) when the
    # escalation ends: "close" resolves them with a comment, "note" comments that the case
    # closed, "keep" leaves them alone.
    further_records: Literal["close", "note", "keep"] = "note"


class CustomerUpdates(_Strict):
    """Periodic customer updates while an escalation is active, in hours per priority.

    `cadence` names an interval per priority (P1 = 4, P2 = 24); `cadence_hours` covers the
    priorities it does not name. With neither, the customer hears on public comments only. A
    public update restarts the interval, so nobody gets a "still working on it" mail right after
    an engineer wrote to them.
    """

    cadence: dict[Priority, float] = {}
    cadence_hours: float | None = Field(default=None, gt=0)
    # E-mail the customer when engineering writes a public comment; off where another team
    # owns all communication with affected parties.
    public_comments: bool = True
    # Engineering comments matching this (e.g. completion estimates) never reach the customer:
    # mirrored as internal notes and left out of the update e-mails.
    withhold_pattern: Regex | None = None

    @field_validator("cadence")
    @classmethod
    def _positive(cls, value: dict[Priority, float]) -> dict[Priority, float]:
        for priority, hours in value.items():
            if hours <= 0:
                raise ValueError(f"the {priority.value} interval must be more than 0 hours")
        return value

    def interval(self, priority: Priority | None) -> timedelta | None:
        """The update interval for a ticket of this priority, if it gets periodic updates."""
        hours = self.cadence.get(priority) if priority is not None else None
        hours = hours if hours is not None else self.cadence_hours
        return timedelta(hours=hours) if hours else None


class FollowUp(_Strict):
    """A follow-up that fires once when something has not happened within a time.

    `after_hours` applies to every priority `by_priority` does not name; with neither for a
    ticket's priority, the follow-up is off for it. Firing writes an internal note and tells
    the audiences in `notify`.
    """

    after_hours: float | None = Field(default=None, gt=0)
    by_priority: dict[Priority, float] = {}
    notify: tuple[Audience, ...] = ("management",)

    @field_validator("by_priority")
    @classmethod
    def _positive(cls, value: dict[Priority, float]) -> dict[Priority, float]:
        for priority, hours in value.items():
            if hours <= 0:
                raise ValueError(f"the {priority.value} time must be more than 0 hours")
        return value

    def within(self, priority: Priority | None) -> timedelta | None:
        """How long a ticket of this priority may wait, or None when it is not followed up."""
        hours = self.by_priority.get(priority) if priority is not None else None
        hours = hours if hours is not None else self.after_hours
        return timedelta(hours=hours) if hours else None


class SlaWatch(_Strict):
    """While an escalation runs, tell people when the SLA due time is this close."""

    field: FieldPath
    within_hours: float = Field(ge=0)
    notify: tuple[Audience, ...] = ("management",)


class Unconfirmed(_Strict):
    """The customer was asked to confirm the resolution and has not answered.

    After `remind_after_hours` the customer is reminded (once); after `close_after_hours` the
    record moves to `close_status`. A public comment from the customer stops both: someone
    reads it and decides.
    """

    remind_after_hours: float | None = Field(default=None, gt=0)
    close_after_hours: float | None = Field(default=None, gt=0)
    close_status: Status = Status.CLOSED
    notify: tuple[Audience, ...] = ()

    @model_validator(mode="after")
    def _order(self) -> Unconfirmed:
        remind, close = self.remind_after_hours, self.close_after_hours
        if remind is not None and close is not None and close <= remind:
            raise ValueError("close_after_hours must be later than remind_after_hours")
        return self


class Timers(_Strict):
    """Rules driven by time alone: evaluated on a schedule, each firing once."""

    # A request waiting for approval longer than this.
    approval_overdue: FollowUp | None = None
    # The engineering record not assigned to anyone this long after the escalation started.
    unassigned: FollowUp | None = None
    # No comment from engineering on its record this long after the escalation started.
    no_response: FollowUp | None = None
    # The SLA due time this close while the escalation runs.
    sla_imminent: SlaWatch | None = None
    # The customer has not confirmed the resolution.
    unconfirmed: Unconfirmed | None = None


NOTICE_EVENTS: tuple[str, ...] = (
    "requested",
    "escalated",
    "rejected",
    "refused",
    "withdrawn",
    "joined",
    "approval_overdue",
    "unassigned",
    "no_response",
    "sla_imminent",
    "priority_changed",
    "leadership",
    "resolved",
    "closed",
    "reopened",
    "unconfirmed",
)
NoticeEvent = Literal[
    "requested",
    "escalated",
    "rejected",
    "refused",
    "withdrawn",
    "joined",
    "approval_overdue",
    "unassigned",
    "no_response",
    "sla_imminent",
    "priority_changed",
    "leadership",
    "resolved",
    "closed",
    "reopened",
    "unconfirmed",
]


class Role(_Strict):
    """A stakeholder role: its RACI letters for escalation management, and its addresses."""

    raci: tuple[Literal["R", "A", "C", "I"], ...] = Field(min_length=1)
    emails: tuple[str, ...] = Field(min_length=1)


class Notice(_Strict):
    """Who hears of which events (To and CC), optionally only for some priorities."""

    events: tuple[NoticeEvent, ...] = Field(min_length=1)
    priorities: tuple[Priority, ...] = ()
    to: tuple[Audience, ...] = Field(min_length=1)
    cc: tuple[Audience, ...] = ()


class Stakeholders(_Strict):
    """The RACI of an escalation: roles with addresses, the customer's sponsor, the notices."""

    roles: dict[str, Role] = {}
    # The account's sponsor (an e-mail address, or a person with one) on the ticket.
    sponsor_field: FieldPath | None = None
    notices: tuple[Notice, ...] = ()


PriorityHandling = Literal["keep", "ask", "follow"]


class PriorityChange(_Strict):
    """The ticket's priority changed while its escalation runs.

    "keep" puts the escalation's priority back, "ask" puts it back until an approver of the
    level confirms the change (the approve command), "follow" takes it. Each writes a note.
    """

    lowered: PriorityHandling = "follow"
    raised: PriorityHandling = "follow"
    notify: tuple[Audience, ...] = ()


class Duplicates(_Strict):
    """One escalation for one issue: a repeat joins the escalation already open.

    A ticket that asks for escalation while another with the same fingerprint (or the ticket
    named in `link_field`) has one waiting or active joins it: no second engineering record,
    no second slot; it follows the escalation it joined to its end.
    """

    join: bool = False
    by_fingerprint: bool = True
    link_field: FieldPath | None = None


class Reopen(_Strict):
    """After an escalation was resolved or closed."""

    # A new request (command, label, field) starts a new escalation.
    allowed: bool = True
    # The level the new escalation asks for: the one reached before ("same") or the first.
    level: Literal["same", "first"] = "same"
    # The ITSM record reopened after its escalation resolved: "request" starts a new request
    # (gate and approval as any), "note" only writes a note saying how to re-escalate.
    on_record_reopened: Literal["request", "note"] = "request"
    notify: tuple[Audience, ...] = ()


class Commands(_Strict):
    """How commands read from comments are answered."""

    # An internal note tells the author of a command that was not honoured why.
    tell_refused: bool = True


def _no_status(value: Any) -> Any:
    """TOML has no null: "none" (or "") says "do not move the record"."""
    if isinstance(value, str) and value.strip().casefold() in ("", "none"):
        return None
    return value


MaybeStatus = Annotated[Status | None, BeforeValidator(_no_status)]


class ReplyConfirmed(_Strict):
    """A customer's reply that confirms the fix, while the escalation waits for it."""

    # Regular expressions (case-insensitive) searched in the first lines of the reply, its
    # quoted history cut; none: the built-in English and German phrases ("yes", "it works now").
    patterns: tuple[Regex, ...] | None = None
    # Where the ITSM record moves; a status of closure.itsm_closed_statuses closes the
    # escalation with it. "none" leaves the record where it is (a person closes it).
    move_to: MaybeStatus = Status.CLOSED
    # An internal note on the ITSM record: who confirmed, when, with which words.
    note: bool = True


class ReplyNotFixed(_Strict):
    """A customer's reply that says the fix did not work, while the escalation waits."""

    # As `confirmed.patterns`; none: the built-in phrases ("still fails", "not fixed").
    patterns: tuple[Regex, ...] | None = None
    # The ITSM record reopens to this status ("none": it stays; the note still says so).
    move_to: MaybeStatus = Status.IN_PROGRESS
    # Engineering is told in an internal note on its record, with the customer's words.
    tell_engineering: bool = True
    # The engineering record reopens to this status ("none": engineering is only told).
    engineering_move_to: MaybeStatus = Status.IN_PROGRESS
    # An internal note on the ITSM record: who said so, when, with which words.
    note: bool = True


class CustomerReplies(_Strict):
    """What a customer's e-mail reply does while the escalation waits for their confirmation.

    The mail intake (`[email.inbound]`) posts every reply as a comment; this table says what a
    reply to "resolved, please confirm" moves. It applies while the escalation is resolved
    (engineering resolved it, the customer was asked) and only to the ticket's customer (and
    its watchers with `watchers_may_confirm`). A reply that reads both ways ("yes, but it still
    fails") moves nothing: with `unclear_note`, an internal note asks a person to read it.
    """

    enabled: bool = True
    # "Yes, it is fixed" / "No, it is not fixed" buttons in the "resolved, please confirm" mail
    # (mailto: links composing the answer to the replies mailbox, when one is read).
    buttons: bool = True
    # How many non-empty lines at the top of the reply are read for the verdict.
    read_lines: int = Field(default=3, ge=1, le=20)
    watchers_may_confirm: bool = False
    unclear_note: bool = True
    confirmed: ReplyConfirmed = ReplyConfirmed()
    not_fixed: ReplyNotFixed = ReplyNotFixed()


ChatRole = Literal[
    "reporter",
    "assignee",
    "customer",
    "contact",
    "requester",
    "approver",
    "approvers",
    "engineering_assignee",
]
ChatEvent = Literal["approved", "level", "priority", "engineering_status", "resolved", "closed"]
# The fields a chat channel's name and topic may use.
CHAT_FIELDS = ("key", "number", "itsm_key", "itsm_number", "summary", "level", "priority")


def _check_template(template: str) -> str:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template {template!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in CHAT_FIELDS:
            known = ", ".join(f"{{{f}}}" for f in CHAT_FIELDS)
            raise ValueError(f"unknown field {{{name}}} in {template!r} (known: {known})")
        if spec or conversion:
            raise ValueError(f"{{{name}}} takes no format in {template!r}")
    return template


ChatTemplate = Annotated[str, AfterValidator(_check_template)]


class Chat(_Strict):
    """A chat channel for each escalation (Slack, Microsoft Teams): what it is called, who is
    in it and what is posted there. The channels themselves are configured as notifiers
    ([notify.slack], [notify.teams]); without one, nothing here happens.

    The channel is made once the escalation is approved (and, when the level opens an
    engineering record, once that record exists, so the name can carry its number); `join`
    names an existing channel to use instead. People are invited by e-mail address: a person a
    system names without one (a ServiceNow user name, say) is looked up in `addresses`.
    """

    enabled: bool = False
    # The name of a channel made for the escalation; `{key}` and `{number}` are the
    # engineering record's (the DS issue's) once it exists, else the ITSM record's.
    channel: ChatTemplate = "esc-{key}-{summary}"
    join: str | None = None
    topic: ChatTemplate = "{key}: {summary}"
    invite: tuple[ChatRole, ...] = ("assignee", "requester", "approver", "engineering_assignee")
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    addresses: dict[str, str] = {}
    # Where the Contact is read: a person or address field; else a "Contact: ..." line in the
    # description or the comments.
    contact_field: FieldPath | None = None
    events: tuple[ChatEvent, ...] = (
        "approved",
        "level",
        "priority",
        "engineering_status",
        "resolved",
    )
    # The channel's link as a comment on the engineering record and an internal note on the
    # ITSM record, once the channel exists.
    post_link: bool = True
    link_visibility: Visibility = Visibility.PUBLIC
    archive: Literal["never", "resolved", "closed"] = "never"
    # The customer is in the channel (Slack Connect, a shared team): nothing internal is posted.
    shared_with_customer: bool = False
    private: bool = False

    @field_validator("join")
    @classmethod
    def _join(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().lstrip("#"):
            raise ValueError("join names a channel: its name, e.g. sre-escalations")
        return value.strip().lstrip("#") if value is not None else None

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name, address in value.items() if "@" not in address)
        if bad:
            raise ValueError(f"not an e-mail address for {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _joined_channels_stay(self) -> Chat:
        if self.join is not None and self.archive != "never":
            raise ValueError("a channel joined (join) belongs to others: archive must be 'never'")
        return self

    def address_of(self, name: str | None) -> str | None:
        """The e-mail address of a person named by id, user name or display name."""
        if not name:
            return None
        if "@" in name:
            return name.strip()
        folded = name.strip().casefold()
        for known, address in self.addresses.items():
            if known.casefold() == folded:
                return address
        return None


class Policy(_Strict):
    """A whole escalation policy."""

    name: str = "escalation"
    description: str = ""
    timezone: str = "UTC"
    groups: dict[str, tuple[str, ...]] = {}
    request: Request = Request()
    triggers: tuple[Trigger, ...] = ()
    fingerprint: Fingerprint = Fingerprint()
    gate: Gate = Gate()
    approval: Approval = Approval()
    limits: Limits = Limits()
    levels: tuple[Level, ...] = (
        Level(name="L1"),
        Level(name="L2", target_system=System.JIRA, project="ENG"),
    )
    priorities: dict[Priority, PriorityRule] = {}
    on_approval: OnApproval = OnApproval()
    management: Management = Management()
    closure: Closure = Closure()
    customer_updates: CustomerUpdates = CustomerUpdates()
    timers: Timers = Timers()
    stakeholders: Stakeholders = Stakeholders()
    priority_change: PriorityChange = PriorityChange()
    duplicates: Duplicates = Duplicates()
    reopen: Reopen = Reopen()
    commands: Commands = Commands()
    # Where a ticket's region is read for the levels' per-region routing.
    region_field: FieldPath | None = None
    customer_replies: CustomerReplies = CustomerReplies()
    chat: Chat = Chat()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: tuple[Level, ...]) -> tuple[Level, ...]:
        if len(value) < 2:
            raise ValueError("at least two levels are needed (where tickets start and escalate to)")
        names = [lv.name for lv in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"level names must be unique: {', '.join(dupes)}")
        if value[0].kind == "leadership":
            raise ValueError("the first level is where tickets start: it cannot be leadership")
        kinds = [lv.kind for lv in value]
        if "leadership" in kinds and "technical" in kinds[kinds.index("leadership") :]:
            raise ValueError("leadership levels come after every technical level")
        return value

    # Cross-references are checked here so each error points at the key that names the unknown.
    def cross_check(self, file: str, prefix: str) -> list[ConfigError]:
        """Errors that need the whole policy: unknown groups, gate items, missing approvers."""
        errs: list[ConfigError] = []

        def key(*parts: object) -> str:
            return dotted(parts, prefix)

        def groups_of(people: People, *where: object) -> None:
            for i, g in enumerate(people.groups):
                if g not in self.groups:
                    errs.append(ConfigError(file, key(*where, "groups", i), f"unknown group {g!r}"))

        groups_of(self.request.command_from, "request", "command_from")
        for i, g in enumerate(self.chat.groups):
            if g not in self.groups:
                errs.append(ConfigError(file, key("chat", "groups", i), f"unknown group {g!r}"))
        item_names = {i.name for i in self.gate.items}
        # Escalations go to every level but the first, so only those can scope a gate item.
        targets = {lv.name for lv in self.levels[1:]}
        for i, gate_item in enumerate(self.gate.items):
            for j, level_name in enumerate(gate_item.levels):
                if level_name not in targets:
                    errs.append(
                        ConfigError(
                            file,
                            key("gate", "items", i, "levels", j),
                            f"no level {level_name!r} to escalate to "
                            f"(levels above the first: {', '.join(sorted(targets))})",
                        )
                    )
        for i, lv in enumerate(self.levels):
            groups_of(lv.approvers, "levels", i, "approvers")
            needs_people = i > 0 and self.approval.required and "command" in self.approval.via
            if needs_people and lv.approvers.empty:
                errs.append(
                    ConfigError(
                        file,
                        key("levels", i, "approvers"),
                        f"level {lv.name!r} names no approvers, so no approval command "
                        "would ever be honoured",
                    )
                )
        for prio, rule in self.priorities.items():
            groups_of(rule.approvers, "priorities", prio.value, "approvers")
            for j, item in enumerate(rule.extra_gate_items):
                if item not in item_names:
                    errs.append(
                        ConfigError(
                            file,
                            key("priorities", prio.value, "extra_gate_items", j),
                            f"no gate item named {item!r}",
                        )
                    )
        groups_of(self.request.withdraw_from, "request", "withdraw_from")
        errs.extend(self._check_replies(file, key))
        notifies = self.on_approval.notify_management or self.closure.notify_management
        notifies = notifies or any(r.notify_management for r in self.priorities.values())
        notifies = notifies or any(t.notify_management for t in self.triggers)
        audiences = list(self._audiences())
        notifies = notifies or any(name == "management" for _, name in audiences)
        if notifies and not self.management.recipients:
            errs.append(
                ConfigError(
                    file,
                    key("management", "recipients"),
                    "management notifications are switched on but nobody receives them",
                )
            )
        roles = self.stakeholders.roles
        for where, name in audiences:
            if name == "sponsor" and self.stakeholders.sponsor_field is None:
                errs.append(
                    ConfigError(
                        file,
                        key(*where),
                        "the sponsor is told but stakeholders.sponsor_field names no field",
                    )
                )
            elif name.casefold() in RACI_WORDS or name in ("R", "A", "C", "I"):
                letter = RACI_WORDS.get(name.casefold(), name)
                if not any(letter in role.raci for role in roles.values()):
                    errs.append(
                        ConfigError(
                            file, key(*where), f"no stakeholder role is {name!r} (RACI {letter})"
                        )
                    )
            elif name not in ("management", "sponsor") and name not in roles:
                known = ["management", "sponsor", *RACI_WORDS, *sorted(roles)]
                errs.append(
                    ConfigError(
                        file,
                        key(*where),
                        f"unknown audience {name!r} (one of: {', '.join(known)})",
                    )
                )
        errs.extend(self._command_errors(file, prefix))
        for i, lv in enumerate(self.levels):
            if lv.regions and self.region_field is None:
                errs.append(
                    ConfigError(
                        file,
                        key("levels", i, "regions"),
                        "per-region routing needs region_field (where the region is read)",
                    )
                )
        if self.request.leadership_command and not self.leadership_levels():
            errs.append(
                ConfigError(
                    file,
                    key("request", "leadership_command"),
                    'there is no leadership level to ask for (levels[].kind = "leadership")',
                )
            )
        return errs

    def _audiences(self) -> list[tuple[Key, str]]:
        """(key path, audience) for every audience the policy names."""
        found: list[tuple[Key, str]] = []

        def add(where: Key, names: tuple[str, ...]) -> None:
            found.extend(((*where, j), name) for j, name in enumerate(names))

        for i, lv in enumerate(self.levels):
            add(("levels", i, "notify"), lv.notify)
        timers = self.timers
        for name in (
            "approval_overdue",
            "unassigned",
            "no_response",
            "sla_imminent",
            "unconfirmed",
        ):
            rule = getattr(timers, name)
            if rule is not None:
                add(("timers", name, "notify"), rule.notify)
        for i, notice in enumerate(self.stakeholders.notices):
            add(("stakeholders", "notices", i, "to"), notice.to)
            add(("stakeholders", "notices", i, "cc"), notice.cc)
        add(("priority_change", "notify"), self.priority_change.notify)
        add(("reopen", "notify"), self.reopen.notify)
        return found

    def _command_errors(self, file: str, prefix: str) -> list[ConfigError]:
        """Two kinds of command with the same word: which one was meant could not be told."""
        errs: list[ConfigError] = []
        seen: dict[str, Key] = {}
        for where, word in (
            (("request", "command"), self.request.command),
            (("request", "withdraw_command"), self.request.withdraw_command),
            (("request", "leadership_command"), self.request.leadership_command),
            (("approval", "approve_command"), self.approval.approve_command),
            (("approval", "reject_command"), self.approval.reject_command),
        ):
            if word is None:
                continue
            if word.casefold() in seen:
                errs.append(
                    ConfigError(
                        file,
                        dotted(where, prefix),
                        f"{word} is already the command of {dotted(seen[word.casefold()])}",
                    )
                )
            seen.setdefault(word.casefold(), where)
        return errs

    def _check_replies(self, file: str, key: Callable[..., str]) -> list[ConfigError]:
        """A confirmation must be able to close the escalation; "not fixed" must reopen."""
        file_errs: list[tuple[str, str]] = []
        replies, closure = self.customer_replies, self.closure
        closed = closure.itsm_closed_statuses
        confirmed_to = replies.confirmed.move_to
        if confirmed_to is not None and confirmed_to not in closed:
            file_errs.append(
                (
                    key("customer_replies", "confirmed", "move_to"),
                    f"{confirmed_to.value!r} is not one of closure.itsm_closed_statuses "
                    f"({', '.join(s.value for s in closed)}), so a confirmation would never "
                    "close the escalation",
                )
            )
        reopen_to = replies.not_fixed.move_to
        ended = {*closed, Status.RESOLVED, *((closure.move_to,) if closure.move_to else ())}
        if reopen_to is not None and reopen_to in ended:
            file_errs.append(
                (
                    key("customer_replies", "not_fixed", "move_to"),
                    f"{reopen_to.value!r} is a resolved or closed status; a reply saying the fix "
                    "did not work must reopen the record",
                )
            )
        return [ConfigError(file, where, why) for where, why in file_errs]

    # --- lookups decide() uses ---------------------------------------------------------------

    def level_index(self, name: str | None) -> int:
        """Position of a level by name (0, the starting level, when unknown or None)."""
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        return 0

    def next_level(self, current: str | None) -> Level | None:
        """The level an escalation from `current` goes to (None at the top)."""
        i = self.level_index(current)
        return self.levels[i + 1] if i + 1 < len(self.levels) else None

    def level(self, name: str | None) -> Level | None:
        """A level by name (None when there is none of that name)."""
        return next((lv for lv in self.levels if lv.name == name), None)

    def leadership_levels(self) -> tuple[Level, ...]:
        """The leadership levels, in order (after every technical level)."""
        return tuple(lv for lv in self.levels if lv.kind == "leadership")

    def is_member(self, person: Person | None, people: People) -> bool:
        """Whether the system-reported author is among `people` (by user id or email)."""
        if person is None:
            return False
        ids = {v.casefold() for v in (person.id, person.email) if v}
        if not ids:
            return False
        named = {u.casefold() for u in people.users}
        for g in people.groups:
            named.update(m.casefold() for m in self.groups.get(g, ()))
        return not ids.isdisjoint(named)

    def priority_rule(self, priority: Priority | None) -> PriorityRule:
        """Priority handling for a priority (defaults when none is configured)."""
        if priority is None:
            return PriorityRule()
        return self.priorities.get(priority, PriorityRule())


# --- against the mapping ------------------------------------------------------------------------


def _canonical(path: str) -> str:
    """The mapping's name for the field a path starts at (`custom_fields.x` -> `custom.x`)."""
    head, _, rest = path.partition(".")
    if head == "custom_fields":
        return f"custom.{rest.split('.', 1)[0]}"
    return head


def _text_reads(sources: tuple[TextSource, ...]) -> list[str]:
    return sorted({"comments" if "comments" in src else src for src in sources})


def policy_reads(policy: Policy) -> list[tuple[Key, str]]:
    """(key path, canonical field) for every rule that reads a ticket field to decide.

    Custom fields are named as the mapping names them (`custom.<name>`); `comments` and
    `attachments` stand for the mapping's comment and attachment sections.
    """
    reads: list[tuple[Key, str]] = []
    req = policy.request
    if req.labels:
        reads.append((("request", "labels"), "labels"))
    for i, cond in enumerate(req.fields):
        reads.append((("request", "fields", i, "field"), _canonical(cond.field)))
    if req.command:
        reads.append((("request", "command"), "comments"))
    for i, trig in enumerate(policy.triggers):
        if isinstance(trig, PriorityTrigger):
            reads.append((("triggers", i, "priorities"), "priority"))
        elif isinstance(trig, SlaTrigger):
            reads.append((("triggers", i, "field"), _canonical(trig.field)))
        elif isinstance(trig, CategoryTrigger):
            reads.append((("triggers", i, "categories"), "category"))
        else:
            for j, path in enumerate(policy.fingerprint.fields):
                reads.append((("fingerprint", "fields", j), _canonical(path)))
    if policy.gate.enabled:
        for i, item in enumerate(policy.gate.items):
            where: Key = ("gate", "items", i)
            if isinstance(item, FieldItem | ContactItem) and item.field is not None:
                reads.append(((*where, "field"), _canonical(item.field)))
            if isinstance(item, TextItem) or (isinstance(item, ContactItem) and item.pattern):
                reads.extend(((*where, "search"), name) for name in _text_reads(item.search))
            if isinstance(item, AttachmentItem):
                reads.append((where, "attachments"))
    approval = policy.approval
    if "command" in approval.via:
        reads.append((("approval", "via"), "comments"))
    if "field" in approval.via and approval.field is not None:
        reads.append((("approval", "field"), _canonical(approval.field)))
    if "transition" in approval.via:
        reads.append((("approval", "via"), "escalation.state"))
    limits = policy.limits
    if limits.max_active_per_assignee is not None and limits.assignee_of == "itsm":
        reads.append((("limits", "max_active_per_assignee"), "assignee"))
    low = limits.low_impact
    for name, values, read in (
        ("priorities", low.priorities, "priority"),
        ("impacts", low.impacts, "impact"),
        ("labels", low.labels, "labels"),
        ("categories", low.categories, "category"),
    ):
        if values:
            reads.append((("limits", "low_impact", name), read))
    for i, level in enumerate(policy.levels):
        if level.category_projects:
            reads.append((("levels", i, "category_projects"), "category"))
    for prio in policy.priorities:
        reads.append((("priorities", prio.value), "priority"))
    if policy.customer_updates.cadence:
        reads.append((("customer_updates", "cadence"), "priority"))
    if policy.on_approval.priority_bump:
        reads.append((("on_approval", "priority_bump"), "priority"))
    if policy.region_field is not None:
        reads.append((("region_field",), _canonical(policy.region_field)))
    if policy.stakeholders.sponsor_field is not None:
        reads.append(
            (("stakeholders", "sponsor_field"), _canonical(policy.stakeholders.sponsor_field))
        )
    dup = policy.duplicates
    if dup.join and dup.link_field is not None:
        reads.append((("duplicates", "link_field"), _canonical(dup.link_field)))
    if dup.join and dup.by_fingerprint:
        for j, path in enumerate(policy.fingerprint.fields):
            reads.append((("fingerprint", "fields", j), _canonical(path)))
    timers = policy.timers
    if timers.sla_imminent is not None:
        reads.append((("timers", "sla_imminent", "field"), _canonical(timers.sla_imminent.field)))
    if timers.unconfirmed is not None:
        reads.append((("timers", "unconfirmed"), "comments"))
    if policy.priority_change.lowered != "follow" or policy.priority_change.raised != "follow":
        reads.append((("priority_change",), "priority"))
    chat = policy.chat
    if chat.enabled and "contact" in chat.invite and chat.contact_field is not None:
        reads.append((("chat", "contact_field"), _canonical(chat.contact_field)))
    return list(dict.fromkeys(reads))


def _readable(mapping: FieldMapping, system: System) -> frozenset[str]:
    compiled = mapping.systems[system]
    names = {name for name, f in compiled.fields.items() if f.read is not None}
    if compiled.spec.comments is not None:
        names.add("comments")
    if compiled.spec.attachments is not None:
        names.add("attachments")
    return frozenset(names | {"ref"})


def _gap(field: str, system: str) -> str:
    what = (
        f"custom field {field.removeprefix('custom.')!r}" if field.startswith("custom.") else field
    )
    if field.startswith("escalation."):
        part = field.removeprefix("escalation.")
        what = f"the escalation record's {part}"
        where = f"[mapping.systems.{system}.escalation.{part}] is missing"
    elif field.startswith("custom.") or field in ("comments", "attachments"):
        where = f"[mapping.systems.{system}.{field}] is missing"
    else:
        where = f"[mapping.systems.{system}.fields.{field}] is missing or has no read path"
    return (
        f"reads {what}, which the mapping does not read from {system} (the ITSM system): "
        f"{where}, so this rule can never fire"
    )


def mapping_gaps(
    policy: Policy, mapping: FieldMapping, *, source: str, prefix: str = ""
) -> list[ConfigError]:
    """Policy rules that read a field the mapping does not read from the ITSM system.

    The policy decides on the ITSM record (a route's source; ServiceNow when no route names
    one), so a rule reading a field that record never carries can never fire. `source` and
    `prefix` place each error in the policy's own file.
    """
    itsm = sorted(mapping.itsm_systems())
    errors: list[ConfigError] = []
    for system in itsm:
        if system not in mapping.systems:
            continue
        readable = _readable(mapping, system)
        for key, field in policy_reads(policy):
            if field not in readable:
                errors.append(ConfigError(source, dotted(key, prefix), _gap(field, system.value)))
    return errors


@dataclass(frozen=True)
class Scope:
    """Where a configuration works in one system: the projects (or tables) it creates records
    in and follows, where those are configured, and how to add one."""

    title: str  # "Jira"
    noun: str  # "project", "table"
    containers: frozenset[str]
    configured_in: str  # "[jira].project, [jira].jql and the routes"
    # How to widen the scope to `all` of these containers, as the error's advice.
    widen: Callable[[Sequence[str]], str] = lambda _all: "add it to the configuration"

    def covers(self, container: str) -> bool:
        """Whether records in `container` are within this scope."""
        return container.casefold() in {c.casefold() for c in self.containers}


def _targets(policy: Policy) -> list[tuple[Key, System, str]]:
    """(key path, system, project or table) of every place a level escalates to."""
    found: list[tuple[Key, System, str]] = []
    for i, lv in enumerate(policy.levels):
        if lv.target_system is None:
            continue
        found.append((("levels", i, "project"), lv.target_system, lv.project or ""))
        found += [
            (("levels", i, "category_projects", cat), lv.target_system, proj)
            for cat, proj in lv.category_projects.items()
        ]
    return found


def target_gaps(
    policy: Policy,
    mapping: FieldMapping,
    scopes: Mapping[System, Scope | None],
    *,
    source: str,
    prefix: str = "",
) -> list[ConfigError]:
    """Levels whose records could not be created, followed or routed as configured.

    `scopes` says, per system, which projects or tables the configuration works in (None, or
    no entry: it does not bound them). A level escalating outside them, or routing by a field
    the mapping does not write on its target system, would fail when someone is waiting for it.
    """
    errors: list[ConfigError] = []

    def error(reason: str, *key: object) -> None:
        errors.append(ConfigError(source, dotted(key, prefix), reason))

    targets = _targets(policy)
    for key, system, container in targets:
        scope = scopes.get(system)
        if scope is None or scope.covers(container):
            continue
        wanted = sorted(
            {*scope.containers, *(c for _, s, c in targets if s is system and c)},
            key=str.casefold,
        )
        known = ", ".join(sorted(scope.containers)) or "none"
        error(
            f"{scope.title} {scope.noun} {container} is not one this configuration works in "
            f"({known}: {scope.configured_in}): its records would not be polled; "
            f"{scope.widen(wanted)}",
            *key,
        )
    for i, lv in enumerate(policy.levels):
        if lv.target_system is None:
            continue
        compiled = mapping.systems.get(lv.target_system)
        wanted_fields = dict.fromkeys(
            name
            for values in (lv.dispatch_for(None), *(d.values() for d in lv.regions.values()))
            for name in values
        )
        for name in wanted_fields:
            field = compiled.fields.get(f"custom.{name}") if compiled is not None else None
            if field is None or not field.writable:
                target = lv.target_system.value
                where = "levels", i, name if name in Level.model_fields else "regions"
                error(
                    f"routes records by {name}, which the mapping does not write on {target}: "
                    f"[mapping.systems.{target}.custom.{name}] is missing or read-only",
                    *where,
                )
    return errors


# Tagged unions put the tag into the error location (`triggers[0].sla.field`); admins never
# wrote that key, so it is dropped, as is pydantic's "Value error, " preamble.
_TAG_IN_PATH = re.compile(
    r"((?:triggers|items)\[\d+\])\.(?:priority|sla|repeated|category|field|text|attachment|contact)"
    r"(?=\.|$)"
)


def _tidy(error: ConfigError) -> ConfigError:
    reason = error.reason.removeprefix("Value error, ")
    return ConfigError(error.file, _TAG_IN_PATH.sub(r"\1", error.key), reason)


def key_prefix(data: Mapping[str, Any], prefix: str = "") -> str:
    """The key path a policy table's errors start with (`escalation` in the preset layout)."""
    if set(data) == {"escalation"} and isinstance(data["escalation"], Mapping):
        return f"{prefix}.escalation" if prefix else "escalation"
    return prefix


def load_policy(data: Mapping[str, Any], *, source: str, prefix: str = "") -> Policy:
    """Validate a policy; raise ConfigInvalid with every (file, key path, reason) found.

    `data` is the policy table itself, or a whole file whose only table is `[escalation]`
    (the preset layout); in the latter case key paths start with `escalation.`.
    """
    body: Mapping[str, Any] = data
    if key_prefix(data) == "escalation":
        body = data["escalation"]
    prefix = key_prefix(data, prefix)
    policy, shape_errors = validate_reporting_all(Policy.model_validate, body, source, prefix)
    tidied = [_tidy(e) for e in shape_errors]
    if policy is None:
        raise ConfigInvalid(tidied)
    errors = tidied + list(policy.cross_check(source, prefix))
    if errors:
        raise ConfigInvalid(errors)
    return policy
