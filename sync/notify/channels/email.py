"""E-mail, the first notifier: the `[email]` section, its templates and its three transports.

Composing renders the event's sandboxed templates (`connectors.email_render`) for the customer
or for management; sending hands one message to SMTP, EWS or Graph (`connectors.email`). A
message in doubt after a crash is looked up in Sent Items by its Message-ID where the transport
keeps them (EWS, Graph); plain SMTP cannot tell, so an operator decides (`email resolve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import structlog

from connectors.email import (
    EmailSender,
    EmailSettings,
    InvalidAddress,
    OutgoingEmail,
    SentLookup,
    build_sender,
    make_message_id,
    thread_root_id,
    validate_address,
)
from connectors.email_render import Renderer
from sync.notify.notifier import ChannelSettings, ChatContext, Delivered, Draft, Notice, Outgoing

CHANNEL = "email"

log = structlog.get_logger("escalation_sync.notify.email")


class EmailNotifier:
    """Customer and management mail through the configured transport."""

    channel = CHANNEL

    def __init__(
        self,
        sender: EmailSender,
        *,
        id_domain: str | None = None,
        management_recipients: Sequence[str] = (),
        templates_dir: Any = None,
    ) -> None:
        self.sender = sender
        self._id_domain = id_domain
        self._management = tuple(management_recipients)
        self._templates_dir = templates_dir
        self._renderer: Renderer | None = None

    @classmethod
    def from_settings(
        cls, email: EmailSettings, sender: EmailSender | None = None
    ) -> EmailNotifier:
        """The notifier of an `[email]` section (its transport unless `sender` is given)."""
        return cls(
            sender if sender is not None else build_sender(email),
            id_domain=email.id_domain,
            management_recipients=email.management_recipients,
            templates_dir=email.templates_dir,
        )

    # -- composing

    def compose(self, notice: Notice) -> list[Draft]:
        """The rendered mail for `notice`, to the customer or to management; none without a
        recipient. Stakeholder notices are for chat rooms, not mail."""
        if notice.audience not in ("customer", "management"):
            return []
        to = notice.recipients
        if notice.audience == "management" and not to:
            to = self._management
        if not to:
            log.info("e-mail skipped: no address", ticket=notice.ticket, event=notice.event)
            return []
        rendered = self._render(notice)
        domain = self._domain()
        copies = [a for a in notice.copies if a not in to]
        return [
            Draft(
                destination=tuple(to),
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                message_id=make_message_id(notice.key, domain),
                thread=thread_root_id(notice.ticket, domain),
                extra={"cc": copies} if copies else {},
            )
        ]

    def _render(self, notice: Notice) -> Any:
        if isinstance(notice.context, ChatContext):
            raise TypeError("a chat room's notice is not rendered as mail")
        if self._renderer is None:
            self._renderer = Renderer(self._templates_dir)
        return self._renderer.render(notice.template, notice.context)

    def _domain(self) -> str:
        if not self._id_domain:
            raise ValueError("e-mail is not configured: no Message-ID domain")
        return self._id_domain

    # -- sending

    def send(self, item: Outgoing) -> Delivered:
        """Hand the message to the transport; its Message-ID is what it is known by."""
        message = outgoing_email(item)
        # Checked here for every transport, so a bad address is dead-lettered the same way.
        check_recipients(message)
        return Delivered(self.sender.send(message) or message.message_id)

    def was_sent(self, item: Outgoing) -> Delivered | Literal[False] | None:
        """Sent Items by Message-ID where the transport keeps them; None for plain SMTP."""
        if not isinstance(self.sender, SentLookup):
            return None
        found = self.sender.was_sent(item.message_id)
        if found is None:
            return None
        return Delivered(item.message_id) if found else False


def outgoing_email(item: Outgoing) -> OutgoingEmail:
    """The e-mail an outbox row stands for, with its thread headers and our X- headers."""
    thread = (item.thread,) if item.thread else ()
    cc = item.extra.get("cc") if item.extra else None
    return OutgoingEmail(
        to=item.destination,
        cc=tuple(str(a) for a in cc) if isinstance(cc, list | tuple) else (),
        subject=item.subject,
        text=item.text,
        html=item.html,
        message_id=item.message_id,
        in_reply_to=item.thread,
        references=thread,
        headers=(
            ("X-Escalation-Sync-Ticket", item.ticket),
            ("X-Escalation-Sync-Event", item.event),
        ),
    )


def check_recipients(message: OutgoingEmail) -> None:
    """Refuse a message without a usable recipient (InvalidAddress says which and why)."""
    if not message.to:
        raise InvalidAddress("message has no recipient (the ticket names no customer email)")
    for address in (*message.to, *message.cc):
        validate_address(address)


def build(settings: ChannelSettings) -> EmailNotifier | None:
    """The e-mail notifier of the `[email]` section; None when e-mail is off."""
    email = settings.email_settings
    if email is None or not email.enabled:
        return None
    return EmailNotifier.from_settings(email)
