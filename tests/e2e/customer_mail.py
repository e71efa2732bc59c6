"""Mail customers and their mail servers send back, built from what the sink received.

Each helper takes a message the product sent (as the SMTP sink kept it) and answers it the way
a mail client or a mail server would; `send` hands the answer to the sink over SMTP, addressed
to the support mailbox, which the product reads back over the sink's IMAP.
"""

from __future__ import annotations

import re
import smtplib
from datetime import UTC, datetime
from email import message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from simulators.mail.sink import StoredMessage
from tests.e2e.conftest import CUSTOMER_EMAIL, Harness

SUPPORT = "support@example.com"
CUSTOMER_NAME = "Carla Customer"


def support_address(h: Harness) -> str:
    """Where customers' replies go: the reply-to address of our mail, else its sender."""
    email = h.settings.email_settings
    assert email is not None
    return email.reply_to or email.from_address


def send(h: Harness, raw: bytes, *, sender: str = CUSTOMER_EMAIL) -> None:
    """Hand a message to the sink over SMTP, to the support mailbox (as the MTA delivers it)."""
    # SMTP lines end in CRLF; smtplib leaves a bytes message as it is.
    wire = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", h.mail.smtp_port, timeout=10) as smtp:
        smtp.sendmail(sender, [support_address(h)], wire)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _thread(msg: EmailMessage, sent: StoredMessage) -> None:
    assert sent.message_id
    original = message_from_string(sent.raw, policy=policy.default)
    references = str(original.get("References") or "")
    msg["Subject"] = f"Re: {sent.subject}"
    msg["In-Reply-To"] = sent.message_id
    msg["References"] = f"{references} {sent.message_id}".strip()


def reply(
    sent: StoredMessage,
    words: str,
    *,
    sender: str = CUSTOMER_EMAIL,
    name: str = CUSTOMER_NAME,
    attachments: tuple[tuple[str, bytes, str], ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A Gmail-style reply: the words, a "-- " signature, then "On ... wrote:" and the sent
    text quoted with `>`; plain and HTML parts; attachments as (name, bytes, type)."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = f"Example Support <{SUPPORT}>"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="customer.example")
    _thread(msg, sent)
    for key, value in headers:
        msg[key] = value
    header = f"On Mon, 7 Dec 2026 at 10:02, Example Support <{SUPPORT}> wrote:"
    quoted = _quoted(sent.text or "")
    msg.set_content(
        f"{words}\n\n-- \n{name}\nCustomer Inc.\n\n{header}\n\n{quoted}\n",
        cte="quoted-printable",
    )
    paragraphs = "".join(f"<div>{line}</div>" for line in words.splitlines())
    msg.add_alternative(
        f'<div dir="ltr">{paragraphs}<br>-- <br><div class="gmail_signature">{name}</div></div>'
        f'<div class="gmail_quote"><div class="gmail_attr">{header}</div>'
        f'<blockquote class="gmail_quote">{sent.text or ""}</blockquote></div>',
        subtype="html",
        cte="quoted-printable",
    )
    for filename, content, content_type in attachments:
        maintype, subtype = content_type.split("/", 1)
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def html_only_reply(sent: StoredMessage, html: str, *, sender: str = CUSTOMER_EMAIL) -> bytes:
    """Outlook on the web: one HTML part (the history after `#divRplyFwdMsg`)."""
    msg = EmailMessage()
    msg["From"] = f"{CUSTOMER_NAME} <{sender}>"
    msg["To"] = SUPPORT
    msg["Message-ID"] = make_msgid(domain="customer.example")
    _thread(msg, sent)
    msg.set_content(
        f"<html><body>{html}<div id='divRplyFwdMsg'><b>From:</b> Example Support<br>"
        f"<b>Sent:</b> Monday<br></div><div>{sent.text or ''}</div></body></html>",
        subtype="html",
        cte="quoted-printable",
    )
    return msg.as_bytes()


def latin1_reply(sent: StoredMessage, words: str) -> bytes:
    """An older client writing ISO-8859-1 bytes and declaring no charset at all."""
    assert sent.message_id
    head = (
        f"From: {CUSTOMER_NAME} <{CUSTOMER_EMAIL}>\r\n"
        f"To: {SUPPORT}\r\n"
        f"Subject: Re: {sent.subject}\r\n"
        f"Message-ID: {make_msgid(domain='customer.example')}\r\n"
        f"In-Reply-To: {sent.message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    body = f"{words}\r\n\r\nGrüße\r\n\r\n" + _quoted(sent.text or "").replace("\n", "\r\n")
    return head.encode("ascii") + body.encode("iso-8859-1", "replace")


def malformed_reply(sent: StoredMessage, words: str) -> bytes:
    """A multipart message whose boundary never closes, with a part of broken base64."""
    assert sent.message_id
    return (
        f"From: {CUSTOMER_NAME} <{CUSTOMER_EMAIL}>\r\n"
        f"To: {SUPPORT}\r\n"
        f"Subject: Re: {sent.subject}\r\n"
        f"Message-ID: {make_msgid(domain='customer.example')}\r\n"
        f"In-Reply-To: {sent.message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{words}\r\n"
        '--XX\r\nContent-Type: application/octet-stream; name="dump.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "!!!not base64@@@\r\n"
    ).encode()


def out_of_office(sent: StoredMessage, *, sender: str = CUSTOMER_EMAIL) -> bytes:
    """An Exchange out-of-office answer (RFC 3834 `Auto-Submitted`, an "Automatic reply")."""
    msg = EmailMessage()
    msg["From"] = f"{CUSTOMER_NAME} <{sender}>"
    msg["To"] = SUPPORT
    msg["Message-ID"] = make_msgid(domain="customer.example")
    _thread(msg, sent)
    del msg["Subject"]
    msg["Subject"] = f"Automatic reply: {sent.subject}"
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content("I am out of the office until Monday. /approve-escalation\n")
    return msg.as_bytes()


def bounce(sent: StoredMessage, address: str, *, status: str = "5.1.1") -> bytes:
    """A delivery status notification (RFC 3464) from the customer's mail server."""
    assert sent.message_id
    original = message_from_string(sent.raw, policy=policy.default)
    returned = "".join(f"{k}: {v}\r\n" for k, v in original.items())
    boundary = "dsn-boundary"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.customer.example')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        "\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        f"Your message to {address} could not be delivered: the mailbox does not exist.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\n"
        "Action: failed\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{address}>: Recipient address rejected\r\n"
        f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{returned}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


__all__ = [
    "CUSTOMER_NAME",
    "SUPPORT",
    "bounce",
    "html_only_reply",
    "latin1_reply",
    "malformed_reply",
    "out_of_office",
    "reply",
    "send",
    "support_address",
]
