"""Auto-replies, bounces, loops, strangers, commands and malformed mail never become comments."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.decide import decide
from escalation.decision import LedgerView
from escalation.policy import load_policy
from inbound_mail import (
    Limits,
    LoopLimits,
    MailKind,
    Placement,
    ReplyOptions,
    Standing,
    defang,
    parse_message,
    placement,
    read_reply,
    standing,
)
from inbound_mail.html import html_to_text
from mapping.model import Comment, Person, Priority, Ref, System, Ticket, Visibility
from tests.inbound_mail.samples import CUSTOMER, all_sent, gmail_reply, sent_mail

SENT = sent_mail("public_update")
OURS = {s.message_id: s.ticket for s in all_sent()}


def lookup(message_id: str) -> str | None:
    """The outbox lookup."""
    return OURS.get(message_id)


def _with_headers(raw: bytes, *headers: str) -> bytes:
    return "".join(f"{h}\r\n" for h in headers).encode() + raw


# --- auto-replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        ("Auto-Submitted: auto-replied",),
        ("Auto-Submitted: auto-generated; owner-email=x@acme.example",),
        ("X-Autoreply: yes",),
        ("X-Autorespond: Out of office",),
        ("Precedence: bulk",),
        ("Precedence: auto_reply",),
        ("Precedence: list",),
        ("X-Auto-Response-Suppress: All",),
        ("X-Auto-Response-Suppress: DR, OOF, AutoReply",),
    ],
)
def test_auto_reply_headers(headers):
    """Each header robots set makes the mail an auto-reply, even though it is in the thread."""
    reply = read_reply(
        _with_headers(gmail_reply(SENT, "I am out of office"), *headers), sent_lookup=lookup
    )
    assert reply.kind is MailKind.AUTO_REPLY
    assert reply.match.ticket == "INC0010001"
    assert not reply.postable


def test_auto_submitted_no_is_a_person():
    """`Auto-Submitted: no` is what RFC 3834 says a person's mail carries."""
    reply = read_reply(
        _with_headers(gmail_reply(SENT, "Hello"), "Auto-Submitted: no"), sent_lookup=lookup
    )
    assert reply.kind is MailKind.REPLY


def test_exchange_out_of_office():
    """Exchange's OOF: "Automatic reply:" subject, Auto-Submitted and the suppress header."""
    msg = EmailMessage()
    msg["From"] = f"Anna Berg <{CUSTOMER}>"
    msg["To"] = "replies@example.com"
    msg["Subject"] = f"Automatic reply: {SENT.subject}"
    msg["In-Reply-To"] = SENT.message_id
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Message-ID"] = "<oof@acme.example>"
    msg.set_content("I am out of the office until Monday.")
    reply = read_reply(msg.as_bytes(), sent_lookup=lookup)
    assert reply.kind is MailKind.AUTO_REPLY
    assert "out-of-office subject" in reply.classification.reasons


def test_subject_alone_marks_an_old_style_out_of_office():
    """An autoresponder that sets no header is still caught by its subject."""
    raw = (
        f"From: {CUSTOMER}\r\nSubject: Out of Office: {SENT.subject}\r\n"
        f"In-Reply-To: {SENT.message_id}\r\n\r\nAway\r\n"
    ).encode()
    assert read_reply(raw, sent_lookup=lookup).kind is MailKind.AUTO_REPLY


# --- bounces --------------------------------------------------------------------------------


def postfix_bounce(action: str = "failed", status: str = "5.1.1") -> bytes:
    """A Postfix DSN (RFC 3464) returning the headers of our mail to the customer."""
    original = SENT.message
    returned = "".join(
        f"{name}: {original[name]}\r\n"
        for name in ("From", "To", "Subject", "Message-ID", "X-Escalation-Sync-Ticket")
    )
    return (
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "Message-ID: <20261103100300.ABC@mx.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.com.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"<{CUSTOMER}>: host mx.acme.example said: 550 5.1.1 User unknown\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n"
        "Arrival-Date: Mon,  3 Nov 2026 10:02:01 +0000 (UTC)\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\n"
        f"Original-Recipient: rfc822;{CUSTOMER}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        "Remote-MTA: dns; mx.acme.example\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <anna.berg@acme.example>: Recipient address\r\n"
        " rejected: User unknown in virtual mailbox table\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--B--\r\n"
    ).encode()


def test_bounce_names_the_failed_address_and_the_ticket():
    """A DSN is a bounce with the failed address, status, and the ticket of the returned mail."""
    reply = read_reply(postfix_bounce(), sent_lookup=lookup)
    assert reply.kind is MailKind.BOUNCE
    bounce = reply.classification.bounce
    assert bounce is not None and bounce.permanent
    assert bounce.addresses == (CUSTOMER,)
    assert bounce.failed[0].status == "5.1.1"
    assert "User unknown in virtual mailbox table" in bounce.failed[0].diagnostic
    assert bounce.original_message_id == SENT.message_id
    assert reply.match.ticket == "INC0010001"
    assert not reply.postable


def test_delay_notice_is_not_a_bounce():
    """A DSN that only reports a delay is automatic mail, not a failed address."""
    reply = read_reply(postfix_bounce(action="delayed", status="4.4.1"), sent_lookup=lookup)
    assert reply.kind is MailKind.AUTO_REPLY


def test_exim_bounce_without_a_report():
    """Exim's plain bounce: MAILER-DAEMON, a failure subject and X-Failed-Recipients."""
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.acme.example>\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n"
        f"X-Failed-Recipients: {CUSTOMER}\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n"
    ).encode()
    reply = read_reply(raw, sent_lookup=lookup)
    assert reply.kind is MailKind.BOUNCE
    assert reply.classification.bounce is not None
    assert reply.classification.bounce.addresses == (CUSTOMER,)


# --- loops ----------------------------------------------------------------------------------


def test_our_own_mail_coming_back_is_a_loop():
    """Our mail, forwarded back verbatim by a robot, is recognised by our headers and id."""
    reply = read_reply(SENT.message.as_bytes(), sent_lookup=lookup)
    assert reply.kind is MailKind.LOOP
    assert any("X-Escalation-Sync-Ticket" in r for r in reply.classification.reasons)


def test_mail_from_our_own_address_is_a_loop():
    """A mail whose sender is one of our addresses is never posted."""
    raw = gmail_reply(SENT, "hi", sender="replies@example.com")
    options = ReplyOptions(own_addresses=("support@example.com", "replies@example.com"))
    assert read_reply(raw, sent_lookup=lookup, options=options).kind is MailKind.LOOP


def test_too_many_relays_is_a_loop():
    """More Received headers than the limit means the mail is circling."""
    hops = [f"Received: from relay{i}.example by relay{i + 1}.example" for i in range(30)]
    raw = _with_headers(gmail_reply(SENT, "hi"), *hops)
    assert read_reply(raw, sent_lookup=lookup).kind is MailKind.LOOP


def test_the_same_sender_too_often_is_a_loop():
    """The N+1th mail from one sender about one ticket within the window is a loop."""
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    options = ReplyOptions(loop=LoopLimits(max_per_window=3, window=timedelta(hours=1)))
    raw = gmail_reply(SENT, "ping")
    seen: list[tuple[str, str]] = []

    def recent(sender, ticket, times):
        seen.append((sender, ticket))
        return times

    few = [now - timedelta(minutes=m) for m in (5, 10)]
    many = [*few, now - timedelta(minutes=50)]
    old = [*few, now - timedelta(hours=2)]
    for times, kind in ((few, MailKind.REPLY), (many, MailKind.LOOP), (old, MailKind.REPLY)):
        reply = read_reply(
            raw,
            sent_lookup=lookup,
            options=options,
            recent=partial(recent, times=times),
            now=now,
        )
        assert reply.kind is kind
    assert seen[0] == (CUSTOMER, "INC0010001")


# --- strangers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "policy", "expected"),
    [
        ("Anna.Berg@ACME.example", "refuse", Placement.PUBLIC_COMMENT),
        ("boss@acme.example", "refuse", Placement.PUBLIC_COMMENT),
        ("mallory@evil.example", "internal_note", Placement.INTERNAL_NOTE),
        ("mallory@evil.example", "refuse", Placement.REFUSED),
        (None, "internal_note", Placement.INTERNAL_NOTE),
    ],
)
def test_stranger_policy(sender, policy, expected):
    """Only the customer and the watchers speak publicly; a stranger per the configuration."""
    who = standing(sender, CUSTOMER, ["Boss@Acme.example"])
    assert placement(who, policy) is expected
    if sender == "mallory@evil.example":
        assert who is Standing.STRANGER


# --- commands and markup --------------------------------------------------------------------

POLICY = load_policy(
    {
        "name": "commands",
        "request": {"command": "/escalate", "command_in": ["internal", "public"]},
        "approval": {"via": ["command"], "command_in": ["internal", "public"]},
        "gate": {"items": []},
        "levels": [
            {"name": "L1"},
            {
                "name": "L2",
                "target_system": "jira",
                "project": "ENG",
                "approvers": {"users": ["eng1"]},
            },
        ],
    },
    source="test.toml",
)
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _decide_on(body: str):
    ticket = Ticket(
        ref=Ref(system=System.SERVICENOW, id="sys1", key="INC0010001"),
        summary="Checkout fails with HTTP 500 on retry",
        description="Steps to reproduce: pay twice. version 4.2",
        priority=Priority.P3,
        comments=(
            Comment(
                id="c1",
                body=body,
                visibility=Visibility.INTERNAL,
                author=Person(id="eng1", name="Erin", email="erin@example.com"),
                created=NOW - timedelta(minutes=5),
            ),
        ),
    )
    return decide(ticket, LedgerView(), NOW, POLICY)


def test_commands_in_mail_are_never_read_by_the_policy_engine():
    """Defanged, `/escalate` and `/approve-escalation` are read as no command, even internally."""
    words = "/escalate now please\nAnd then: /approve-escalation\n\u00a0/reject-escalation x"
    raw = gmail_reply(SENT, words)
    text = read_reply(raw, sent_lookup=lookup).text
    assert "escalate now please" in text and "approve-escalation" in text
    # The same words as written would be honoured in an internal note: the test can tell.
    assert _decide_on(words).processed_command_ids == ("c1",)
    assert _decide_on(text).processed_command_ids == ()
    assert _decide_on(text).state == _decide_on("no command here").state


@given(
    st.text(alphabet=st.sampled_from(list("/ \n\t\u00a0\u2003ab-_<>[]!?escalatecod")), max_size=80)
)
@settings(max_examples=300, deadline=None)
def test_no_command_or_tag_survives_defang(text):
    """Whatever the text, after defang no `/word` starts a command and no `<` opens a tag."""
    out = defang(text)
    assert not re.search(r"(?:^|(?<=\s))/\w", out)
    assert not re.search(r"<[A-Za-z/!?]", out)
    assert not re.search(r"\[\s*/?\s*code\s*\]", out, re.IGNORECASE)
    assert "[escalation-sync" not in out.lower()


def test_script_and_markup_in_html_never_reach_the_text():
    """Script, style and tags are dropped; escaped tags in the text come out inert."""
    html = (
        "<html><head><script>steal()</script><style>body{}</style></head><body>"
        "<p onclick=\"x()\">Hello <b>team</b></p><iframe src='https://evil.example'>inner</iframe>"
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; [code]<img src=x onerror=alert(1)>[/code]</p>"
        '<a href="javascript:alert(1)">link</a> <svg><script>x()</script></svg>'
        "<p>[escalation-sync origin=jira:DS-1:10001]</p></body></html>"
    )
    msg = EmailMessage()
    msg["From"] = CUSTOMER
    msg["Subject"] = f"Re: {SENT.subject}"
    msg["In-Reply-To"] = SENT.message_id
    msg.set_content(html, subtype="html")
    reply = read_reply(msg.as_bytes(), sent_lookup=lookup)
    assert "steal" not in reply.text and "body{}" not in reply.text and "inner" not in reply.text
    assert "javascript" not in reply.text and "x()" not in reply.text
    assert "<" not in reply.text
    assert "[code]" not in reply.text.lower()
    assert "[escalation-sync" not in reply.text
    assert reply.text.startswith("Hello team")


# --- malformed and oversized ----------------------------------------------------------------


def test_garbage_bytes_do_not_raise():
    """Random bytes parse to something; nothing matches, nothing is posted."""
    reply = read_reply(bytes(range(256)) * 10, sent_lookup=lookup)
    assert not reply.postable


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_any_bytes_are_read_without_an_exception(raw):
    """Whatever arrives, reading it never raises."""
    read_reply(raw, sent_lookup=lookup)


def test_broken_mime_still_gives_the_text():
    """A multipart without its closing boundary, bad base64 and a lying charset still read."""
    raw = (
        (
            f"From: {CUSTOMER}\r\nSubject: Re: {SENT.subject}\r\nIn-Reply-To: {SENT.message_id}\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="X"\r\n\r\n'
            "--X\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + "Grüße aus Köln, es geht wieder.\r\n".encode("latin-1")
        + (
            b"--X\r\nContent-Type: application/octet-stream; name=log.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n%%%not base64%%%\r\n"
        )
    )
    reply = read_reply(raw, sent_lookup=lookup)
    assert reply.kind is MailKind.REPLY and reply.match.ticket == "INC0010001"
    assert reply.text.startswith("Grüße aus Köln, es geht wieder.")
    assert [a.filename for a in reply.mail.attachments] == ["log.bin"]


def test_deeply_nested_mime_is_bounded():
    """Thousands of nested multiparts are read to a limit, with a note, in little time."""
    depth = 3000
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    raw = (
        f"From: {CUSTOMER}\r\nSubject: x\r\n" + head + "Content-Type: text/plain\r\n\r\nhi\r\n"
    ).encode()
    started = time.perf_counter()
    mail = parse_message(raw)
    assert time.perf_counter() - started < 5
    assert mail.notes


def test_oversized_body_and_attachments_are_cut_with_a_note():
    """The text is cut at the limit and attachments over it are listed, not kept."""
    msg = EmailMessage()
    msg["From"] = CUSTOMER
    msg["Subject"] = f"Re: {SENT.subject}"
    msg["In-Reply-To"] = SENT.message_id
    msg.set_content("word " * 10_000)
    msg.add_attachment(b"x" * 5000, maintype="application", subtype="zip", filename="big.zip")
    msg.add_attachment(
        b"log line\n" * 10, maintype="text", subtype="plain", filename="../../etc/app.log"
    )
    limits = Limits(max_text_chars=1000, max_attachment_bytes=1000)
    reply = read_reply(msg.as_bytes(), sent_lookup=lookup, options=ReplyOptions(limits=limits))
    big, log = reply.mail.attachments
    assert big.filename == "big.zip" and big.content is None and big.size == 5000
    assert big.refused and "limit" in big.refused
    assert log.filename == "app.log" and log.content == b"log line\n" * 10
    assert log.content_type == "text/plain"
    assert "[the text was cut at 1000 characters]" in reply.text
    assert "attachment big.zip not kept" in reply.text
    assert len(reply.text) < 1300


def test_long_hostile_lines_are_read_quickly():
    """Lines built to make reply-header expressions backtrack do not stall the reader."""
    body = "\n".join(["On " + "x " * 5000] * 50)
    msg = EmailMessage()
    msg["From"] = CUSTOMER
    msg["Subject"] = "Re: [INC0010001] x"
    msg.set_content(body)
    started = time.perf_counter()
    read_reply(msg.as_bytes(), sent_lookup=lookup)
    assert time.perf_counter() - started < 3


def test_html_list_and_link_text():
    """Lists keep their items on lines, links keep an address that differs from the text."""
    text, removed = html_to_text(
        "<ul><li>one</li><li>two</li></ul><p>see <a href='https://x.example/a'>the page</a></p>"
    )
    assert text == "- one\n- two\n\nsee the page (https://x.example/a)"
    assert not removed


def test_a_message_without_message_id_gets_a_stable_origin_key():
    """The idempotency key of a mail without Message-ID is a digest of its bytes."""
    raw = f"From: {CUSTOMER}\r\nSubject: [INC0010001] x\r\n\r\nhi\r\n".encode()
    first = read_reply(raw, sent_lookup=lookup).origin_key
    assert first == read_reply(raw, sent_lookup=lookup).origin_key
    assert first.endswith("@inbound.invalid>")
