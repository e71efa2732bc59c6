"""A reply to each kind of mail the product sends extracts to the customer's words and ticket."""

from __future__ import annotations

import pytest

from connectors.email_render import CUSTOMER_EVENTS
from inbound_mail import MailKind, MatchedBy, Verdict, read_reply
from tests.inbound_mail.samples import (
    all_sent,
    apple_reply,
    gmail_reply,
    latin1_reply,
    outlook_reply,
    outlook_web_html_only,
    sent_mail,
)

SENT = {s.event: s for s in all_sent()}
WORDS = "Thanks for the update.\nThe checkout works again on our side, tested twice."
STYLES = {
    "gmail": gmail_reply,
    "outlook": outlook_reply,
    "outlook-web-html-only": outlook_web_html_only,
    "apple": apple_reply,
}


def lookup(message_id: str) -> str | None:
    """The outbox: which ticket a Message-ID of ours was sent for."""
    return next((s.ticket for s in SENT.values() if s.message_id == message_id), None)


@pytest.mark.parametrize("event", CUSTOMER_EVENTS)
@pytest.mark.parametrize("style", sorted(STYLES))
def test_reply_to_each_mail_extracts_the_words_and_matches_the_ticket(event, style):
    """Quoted history and signature are cut, the thread header names the ticket."""
    raw = STYLES[style](SENT[event], WORDS)
    reply = read_reply(raw, sent_lookup=lookup)
    assert reply.kind is MailKind.REPLY
    assert reply.match.ticket == "INC0010001"
    assert reply.match.by is MatchedBy.IN_REPLY_TO
    assert reply.match.message_id == SENT[event].message_id
    assert reply.text == WORDS
    assert reply.quoted_removed
    assert reply.postable


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "undeclared"])
def test_iso_8859_1_reply_is_decoded(declare):
    """ISO-8859-1 bytes read right whether the charset is declared or not."""
    words = "Ja, das Problem ist jetzt gelöst. Danke für die schnelle Hilfe!"
    reply = read_reply(
        latin1_reply(SENT["public_update"], words, declare=declare), sent_lookup=lookup
    )
    assert reply.text == words
    assert reply.match.ticket == "INC0010001"


def test_references_match_when_in_reply_to_is_missing():
    """A client that keeps only References still finds the ticket (newest reference first)."""
    sent = SENT["escalated"]
    raw = gmail_reply(sent, "Noted.").replace(f"In-Reply-To: {sent.message_id}\n".encode(), b"")
    reply = read_reply(raw, sent_lookup=lookup)
    assert reply.match.by is MatchedBy.REFERENCES and reply.match.ticket == "INC0010001"


def test_subject_matches_a_new_mail_without_thread_headers():
    """A fresh mail that keeps "[INC0010001]" in its subject is matched by the subject."""
    raw = (
        b"From: anna.berg@acme.example\r\nTo: replies@example.com\r\n"
        b"Subject: More logs for [INC0010001]\r\nMessage-ID: <new@acme.example>\r\n\r\n"
        b"Here are more logs.\r\n"
    )
    reply = read_reply(raw, sent_lookup=lookup)
    assert reply.match.by is MatchedBy.SUBJECT and reply.match.ticket == "INC0010001"
    assert reply.text == "Here are more logs."


def test_nothing_matches_a_mail_about_no_ticket():
    """A mail with neither our thread ids nor a ticket number is matched to nothing."""
    raw = b"From: a@b.example\r\nSubject: Hello\r\nMessage-ID: <x@b.example>\r\n\r\nHi\r\n"
    reply = read_reply(raw, sent_lookup=lookup)
    assert not reply.match.matched and reply.match.by is MatchedBy.NONE
    assert not reply.postable


@pytest.mark.parametrize(
    ("words", "verdict"),
    [
        ("Yes, it is fixed now. Thank you!", Verdict.CONFIRMED),
        ("Works again, you can close the ticket.", Verdict.CONFIRMED),
        ("No, it still fails after the update.", Verdict.NOT_FIXED),
        ("Leider funktioniert es immer noch nicht.", Verdict.NOT_FIXED),
        ("Yes, but it still fails on the second server.", Verdict.UNCLEAR),
        ("I will test tomorrow morning.", Verdict.NONE),
    ],
)
@pytest.mark.parametrize("style", ["gmail", "outlook"])
def test_answer_to_please_confirm_is_read(words, verdict, style):
    """The answer to "resolved, please confirm" is read from the reply, never from the quote."""
    reply = read_reply(STYLES[style](SENT["resolved_please_confirm"], words), sent_lookup=lookup)
    assert reply.confirmation.verdict is verdict


def test_the_quoted_request_itself_does_not_confirm():
    """An empty reply above the quoted "please confirm" mail confirms nothing."""
    reply = read_reply(gmail_reply(SENT["resolved_please_confirm"], ""), sent_lookup=lookup)
    assert reply.text == ""
    assert reply.confirmation.verdict is Verdict.NONE


def test_each_ticket_of_two_is_told_apart():
    """Replies to mails of two tickets match their own ticket."""
    other = sent_mail("public_update", ticket="INC0020002")

    def two(message_id: str) -> str | None:
        return {other.message_id: "INC0020002", SENT["public_update"].message_id: "INC0010001"}.get(
            message_id
        )

    assert read_reply(gmail_reply(other, "ok"), sent_lookup=two).match.ticket == "INC0020002"
    first = gmail_reply(SENT["public_update"], "ok")
    assert read_reply(first, sent_lookup=two).match.ticket == "INC0010001"
