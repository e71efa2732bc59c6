"""Email templates: sandboxed Jinja2, autoescaped HTML, admin overrides first.

Each event has three templates in `connectors/email_templates/` (or the admin's folder, which is
searched first, file by file): `<event>.subject.j2`, `<event>.txt.j2`, `<event>.html.j2`.

What a template can see is decided by the context type, not by the template: a customer template
gets a `CustomerContext`, which has fields for the summary, key, status, priority, the customer's
name and *public* comments only. There is no field an internal note, a work note or the
approver's discussion could travel in, so an admin's template cannot leak one by accident. The
management notifications have their own `ManagementContext` and their own recipients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from connectors.email import ticket_subject
from errors import DeadLetter

PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "email_templates"

CUSTOMER_EVENTS: tuple[str, ...] = (
    "escalated",
    "needs_information",
    "public_update",
    "periodic_update",
    "resolved_please_confirm",
    "confirmation_reminder",
    "closed",
)
# One per `NotifyManagement.event` the policy engine emits, prefixed "management_".
MANAGEMENT_EVENTS: tuple[str, ...] = (
    "management_requested",
    "management_escalated",
    "management_approval_overdue",
    "management_resolved",
    "management_rejected",
    "management_refused",
    "management_withdrawn",
    "management_joined",
    "management_unassigned",
    "management_no_response",
    "management_sla_imminent",
    "management_priority_changed",
    "management_leadership",
    "management_closed",
    "management_reopened",
    "management_unconfirmed",
)
# Template names an admin folder may still hold from earlier versions, and what replaced them.
RETIRED_TEMPLATES: dict[str, str] = {
    "management_p1": "management_escalated",
}
EVENTS: tuple[str, ...] = CUSTOMER_EVENTS + MANAGEMENT_EVENTS


@dataclass(frozen=True, slots=True)
class PublicComment:
    """A comment the customer may read: author's display name, text, when."""

    author: str
    body: str
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class CustomerContext:
    """Everything a customer template may show. Build it with `sync.procedure.email_context`."""

    ticket_key: str
    summary: str
    status: str
    priority: str | None = None
    customer_name: str | None = None
    # Public comments only, oldest first; `latest_comment` is the one this mail is about.
    comments: tuple[PublicComment, ...] = ()
    latest_comment: PublicComment | None = None
    ticket_url: str | None = None
    company: str = "Support"
    # Needs-information: the names of what is missing ("steps to reproduce", "logs", ...).
    missing_information: tuple[str, ...] = ()
    # Periodic update: the interval in hours the customer can expect the next update in.
    next_update_hours: int | None = None
    # Resolved, please confirm: `mailto:` links that compose the answer ("yes, fixed" / "not
    # fixed") to the replies mailbox, when the product reads one; None: no buttons.
    confirm_link: str | None = None
    not_fixed_link: str | None = None


@dataclass(frozen=True, slots=True)
class ManagementContext:
    """A notification for management: internal readers, so level, reason and people are shown.

    `level` is the level the escalation reached, or for an overdue approval the level it asks
    for. `approvers`, `waited_hours` and `allowed_hours` describe an overdue approval;
    `resolution` is engineering's resolution (which may be internal: these are internal mails).
    `detail` is the note the procedure wrote on the ticket about this event (a follow-up, a
    rejection with its action items, a priority change), internal like the mail.
    """

    ticket_key: str
    summary: str
    status: str
    priority: str | None = None
    level: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    approver: str | None = None
    customer_name: str | None = None
    ticket_url: str | None = None
    linked_ticket: str | None = None
    company: str = "Support"
    approvers: str | None = None
    waited_hours: float | None = None
    allowed_hours: float | None = None
    resolution: str | None = None
    detail: str | None = None


# What `Renderer.check` renders management templates with: every field filled.
SAMPLE_MANAGEMENT = ManagementContext(
    ticket_key="INC0000000",
    summary="Sample summary",
    status="in_progress",
    priority="P2",
    level="L2",
    reason="Sample reason",
    requested_by="sample.requester",
    approver="sample.approver",
    customer_name="Sample Customer",
    ticket_url="https://example.com/INC0000000",
    linked_ticket="ENG-1",
    approvers="group sme",
    waited_hours=5.5,
    allowed_hours=4,
    resolution="Sample resolution",
    detail="Sample follow-up note",
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered message: one-line subject (ticket reference first), text and HTML parts."""

    subject: str
    text: str
    html: str


class TemplateMissing(DeadLetter):
    """No template for the event in the admin folder or among the packaged ones: the mail's
    event is parked until the template is there (`email check` finds this before it happens)."""


def _humanize(value: object) -> str:
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _nl2br(value: object) -> Markup:
    # Escape first, then join with <br>: the result is safe whatever the comment contained.
    lines = str(value or "").splitlines()
    return Markup("<br>\n").join(escape(line) for line in lines)


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def _datetime(value: object, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    if isinstance(value, datetime):
        return value.strftime(fmt)
    return str(value or "")


class Renderer:
    """Renders the event templates; `templates_dir` (optional) overrides packaged files."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self._templates_dir = Path(templates_dir) if templates_dir is not None else None
        loaders = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(FileSystemLoader(str(PACKAGED_TEMPLATES)))
        self._env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            humanize=_humanize, nl2br=_nl2br, one_line=_one_line, datetime=_datetime
        )

    def render(self, event: str, context: CustomerContext | ManagementContext) -> RenderedEmail:
        """Render subject, text and HTML for `event`; the subject carries "[KEY] " first."""
        if event in CUSTOMER_EVENTS and not isinstance(context, CustomerContext):
            raise TypeError(f"event {event!r} is customer mail and needs a CustomerContext")
        if event in MANAGEMENT_EVENTS and not isinstance(context, ManagementContext):
            raise TypeError(f"event {event!r} is management mail and needs a ManagementContext")
        if event not in EVENTS:
            raise TemplateMissing(f"unknown email event {event!r}; known: {', '.join(EVENTS)}")
        variables = _variables(context)
        subject = self._render(f"{event}.subject.j2", variables)
        text = self._render(f"{event}.txt.j2", variables)
        html = self._render(f"{event}.html.j2", variables)
        return RenderedEmail(
            subject=ticket_subject(context.ticket_key, subject), text=text, html=html
        )

    def check(self) -> list[str]:
        """Render every event with sample data; return the problems found (empty when fine)."""
        problems: list[str] = []
        sample_comment = PublicComment("Agent", "Sample public comment", None)
        customer = CustomerContext(
            ticket_key="INC0000000",
            summary="Sample summary",
            status="in_progress",
            priority="P1",
            customer_name="Sample Customer",
            comments=(sample_comment,),
            latest_comment=sample_comment,
            missing_information=("steps to reproduce",),
            next_update_hours=4,
            confirm_link="mailto:replies@example.com?subject=Re%3A%20%5BINC0000000%5D",
            not_fixed_link="mailto:replies@example.com?subject=Re%3A%20%5BINC0000000%5D",
        )
        for event in EVENTS:
            ctx: CustomerContext | ManagementContext = (
                SAMPLE_MANAGEMENT if event in MANAGEMENT_EVENTS else customer
            )
            try:
                self.render(event, ctx)
            except Exception as exc:
                problems.append(f"{event}: {type(exc).__name__}: {exc}")
        problems.extend(self._retired())
        return problems

    def _retired(self) -> list[str]:
        """Overrides named after a template this version no longer reads (silently ignored)."""
        if self._templates_dir is None:
            return []
        found: list[str] = []
        for old, new in RETIRED_TEMPLATES.items():
            for part in ("subject", "txt", "html"):
                if (self._templates_dir / f"{old}.{part}.j2").is_file():
                    found.append(
                        f"{old}.{part}.j2 is no longer used: rename it to {new}.{part}.j2 "
                        "(and check its wording suits that event)"
                    )
        return found

    def _render(self, name: str, variables: Mapping[str, Any]) -> str:
        try:
            template = self._env.get_template(name)
        except TemplateNotFound:
            raise TemplateMissing(f"email template {name!r} not found") from None
        return template.render(**variables)


def _variables(context: CustomerContext | ManagementContext) -> dict[str, Any]:
    return {f.name: getattr(context, f.name) for f in fields(context)}
