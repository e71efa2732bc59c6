"""Mails the product sends (rendered from the packaged templates) and customers' replies to them.

The replies are laid out the way the common clients lay them out: Gmail (plain and HTML parts,
"On ... wrote:" and `>` quotes, `div.gmail_quote`), Outlook for Windows (a "From: / Sent:" block,
no quote marks), Outlook on the web (HTML only, `#divRplyFwdMsg`), Apple Mail, and an older client
writing ISO-8859-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from connectors.email import Identity, OutgoingEmail, build_mime, make_message_id, thread_root_id
from connectors.email_render import CUSTOMER_EVENTS, CustomerContext, PublicComment, Renderer

DOMAIN = "support.example.com"
IDENTITY = Identity("support@example.com", "Example Support", reply_to="replies@example.com")
CUSTOMER = "anna.berg@acme.example"
T0 = datetime(2026, 11, 3, 10, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    """A mail the product sent: the ticket, the event, the MIME message and its Message-ID."""

    ticket: str
    event: str
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


def sent_mail(event: str, ticket: str = "INC0010001", version: str = "1") -> Sent:
    """Render `event` with the packaged templates and build it as the outbox sends it."""
    context = CustomerContext(
        ticket_key=ticket,
        summary="Checkout fails with HTTP 500",
        status="resolved" if event == "resolved_please_confirm" else "in_progress",
        priority="P2",
        customer_name="Anna Berg",
        comments=(PublicComment("Engineering", "We deployed a fix for the checkout.", T0),),
        latest_comment=PublicComment("Engineering", "We deployed a fix for the checkout.", T0),
        company="Example Support",
        missing_information=("steps to reproduce",),
        next_update_hours=24,
    )
    rendered = Renderer().render(event, context)
    key = f"{ticket}|{event}|{version}"
    root = thread_root_id(ticket, DOMAIN)
    outgoing = OutgoingEmail(
        to=(CUSTOMER,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=make_message_id(key, DOMAIN),
        in_reply_to=root,
        references=(root,),
        headers=(("X-Escalation-Sync-Ticket", ticket), ("X-Escalation-Sync-Event", event)),
    )
    return Sent(ticket, event, build_mime(outgoing, IDENTITY, now=T0))


def all_sent() -> list[Sent]:
    """One mail of every customer event."""
    return [sent_mail(event) for event in CUSTOMER_EVENTS]


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _reply_headers(msg: EmailMessage, sent: Sent, *, sender: str = CUSTOMER) -> None:
    msg["From"] = f"Anna Berg <{sender}>"
    msg["To"] = "Example Support <replies@example.com>"
    msg["Subject"] = f"Re: {sent.subject}"
    msg["Date"] = format_datetime(T0.replace(hour=11))
    msg["Message-ID"] = f"<reply-{sent.event}-{abs(hash(sent.message_id)) % 10**8}@acme.example>"
    msg["In-Reply-To"] = sent.message_id
    msg["References"] = f"{sent.message['References']} {sent.message_id}"


def gmail_reply(sent: Sent, words: str, *, sender: str = CUSTOMER) -> bytes:
    """Gmail: text and HTML parts, "On ... wrote:" and `>` quotes, a "-- " signature."""
    msg = EmailMessage()
    _reply_headers(msg, sent, sender=sender)
    header = "On Mon, 3 Nov 2026 at 10:02, Example Support <replies@example.com> wrote:"
    msg.set_content(f"{words}\n\n-- \nAnna Berg\nAcme GmbH\n\n{header}\n\n{_quoted(sent.text)}\n")
    paragraphs = "".join(f"<div>{line}</div>" for line in words.splitlines())
    msg.add_alternative(
        f'<div dir="ltr">{paragraphs}<br clear="all"><div><br></div>-- <br>'
        f'<div class="gmail_signature">Anna Berg<br>Acme GmbH</div></div><br>'
        f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">{header}<br></div>'
        f'<blockquote class="gmail_quote">{sent.text}</blockquote></div>',
        subtype="html",
    )
    return msg.as_bytes()


def outlook_reply(sent: Sent, words: str) -> bytes:
    """Outlook for Windows: plain part with a "From: / Sent:" block and no quote marks."""
    msg = EmailMessage()
    _reply_headers(msg, sent)
    msg["Thread-Index"] = "AQHZ1234567890abcdef=="
    block = (
        "________________________________\n"
        "From: Example Support <replies@example.com>\n"
        "Sent: Monday, November 3, 2026 10:02 AM\n"
        f"To: Anna Berg <{CUSTOMER}>\n"
        f"Subject: {sent.subject}\n"
    )
    signature = "Anna Berg\nHead of IT | Acme GmbH\n+49 30 1234 5678"
    msg.set_content(f"{words}\n\nBest regards,\n{signature}\n\n{block}\n{sent.text}\n")
    return msg.as_bytes()


def outlook_web_html_only(sent: Sent, words: str) -> bytes:
    """Outlook on the web: one HTML part, history after `#divRplyFwdMsg`."""
    msg = EmailMessage()
    _reply_headers(msg, sent)
    paragraphs = "".join(
        f'<div style="font-family: Calibri">{line}</div>' for line in words.splitlines()
    )
    msg.set_content(
        "<html><head><style>p {margin:0}</style>"
        "<script>document.location='https://evil.example/'</script></head><body>"
        f"{paragraphs}"
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
        '<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Example Support<br>'
        f"<b>Sent:</b> Monday, November 3, 2026 10:02<br><b>Subject:</b> {sent.subject}</div>"
        f"<div>{sent.text}</div></body></html>",
        subtype="html",
    )
    return msg.as_bytes()


def apple_reply(sent: Sent, words: str) -> bytes:
    """Apple Mail on an iPhone: "Sent from my iPhone" and a quoted "On ..., wrote:" line."""
    msg = EmailMessage()
    _reply_headers(msg, sent)
    msg.set_content(
        f"{words}\n\nSent from my iPhone\n\n"
        "> On 3 Nov 2026, at 10:02, Example Support <replies@example.com> wrote:\n>\n"
        f"{_quoted(sent.text)}\n"
    )
    return msg.as_bytes()


def latin1_reply(sent: Sent, words: str, *, declare: bool = True) -> bytes:
    """An older client: ISO-8859-1 bytes, quoted-printable, with or without a declared charset."""
    body = f"{words}\n\nMit freundlichen Grüßen\nAnna Berg\n\n" + _quoted(sent.text) + "\n"
    charset = "; charset=ISO-8859-1" if declare else ""
    head = (
        f"From: Anna Berg <{CUSTOMER}>\r\n"
        "To: replies@example.com\r\n"
        f"Subject: Re: {sent.subject}\r\n"
        f"Message-ID: <latin1-{sent.event}@acme.example>\r\n"
        f"In-Reply-To: {sent.message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain{charset}\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    return head.encode("ascii") + body.replace("\n", "\r\n").encode("iso-8859-1", "replace")
