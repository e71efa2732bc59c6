"""The mail sink's IMAP side answers as RFC 3501 says, and serves what the sink received."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator

import pytest

from simulators.mail import MailSink
from simulators.mail.imap import BadCommand, sequence, tokenize


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    """A sink with IMAP on a free port."""
    with MailSink(imap_port=0, imap_password="pw") as running:
        yield running


def send(sink: MailSink, to: str, n: int) -> None:
    """One message through the sink's SMTP side."""
    with smtplib.SMTP("127.0.0.1", sink.smtp_port) as smtp:
        smtp.sendmail(
            "anna@acme.example",
            [to],
            f"From: anna@acme.example\r\nTo: {to}\r\nSubject: m{n}\r\n"
            f"Message-ID: <{n}@acme.example>\r\n\r\nbody {n}\r\n",
        )


def login(sink: MailSink, user: str = "replies@example.com") -> imaplib.IMAP4:
    """A logged-in stdlib IMAP client."""
    client = imaplib.IMAP4("127.0.0.1", sink.imap_port)
    client.login(user, "pw")
    return client


def test_each_recipient_reads_only_its_own_mail(sink):
    """Mail sent to an address is in that address's INBOX, not in another's."""
    send(sink, "replies@example.com", 1)
    send(sink, "other@example.com", 2)
    client = login(sink)
    assert client.select("INBOX") == ("OK", [b"1"])
    typ, data = client.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK" and b"<1@acme.example>" in data[0][1]
    client.logout()


def test_wrong_password_and_commands_before_login_are_refused(sink):
    """LOGIN with a wrong password is NO; SELECT before LOGIN is refused."""
    client = imaplib.IMAP4("127.0.0.1", sink.imap_port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login("replies@example.com", "wrong")
    with pytest.raises(imaplib.IMAP4.error):
        client.select("INBOX")


def test_unknown_commands_and_search_keys_are_bad(sink):
    """What the subset does not know is answered BAD, never ignored."""
    client = login(sink)
    client.select("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match="unknown command XLIST"):
        client.xatom("XLIST", '""', '"*"')
    with pytest.raises(imaplib.IMAP4.error):
        client.uid("SEARCH", "LARGER 10")
    client.logout()


def test_fetch_without_peek_marks_seen_and_noop_reports_new_mail(sink):
    """BODY[] sets \\Seen, BODY.PEEK[] does not; NOOP reports mail that arrived meanwhile."""
    send(sink, "replies@example.com", 1)
    client = login(sink)
    client.select("INBOX")
    client.uid("FETCH", "1", "(BODY.PEEK[])")
    assert b"\\Seen" not in client.uid("FETCH", "1", "(FLAGS)")[1][0]
    client.uid("FETCH", "1", "(BODY[])")
    assert b"\\Seen" in client.uid("FETCH", "1", "(FLAGS)")[1][0]
    send(sink, "replies@example.com", 2)
    client.noop()
    assert client.untagged_responses["EXISTS"][-1] == b"2"
    client.logout()


def test_move_and_copy_answer_with_copyuid_and_expunge(sink):
    """UID MOVE removes from the source with EXPUNGE; the destination gets new UIDs."""
    send(sink, "replies@example.com", 1)
    client = login(sink)
    client.create("Processed")
    assert client.create("Processed")[0] == "NO"
    client.select("INBOX")
    typ, _ = client.uid("MOVE", "1", "Processed")
    assert typ == "OK"
    assert client.select("INBOX") == ("OK", [b"0"])
    assert client.select("Processed") == ("OK", [b"1"])
    assert client.uid("MOVE", "1", "Nowhere")[0] == "NO"
    client.logout()


def test_tokenizer_and_sequence_sets():
    """Quoted strings, lists, section brackets and sequence sets parse as RFC 3501 writes them."""
    assert tokenize(b'"INBOX" (\\Seen $Kw) BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]<0.10>') == [
        "INBOX",
        ["\\Seen", "$Kw"],
        "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]<0.10>",
    ]
    assert sequence("1:3,7,9:*", 10) == {1, 2, 3, 7, 9, 10}
    with pytest.raises(BadCommand):
        tokenize(b"(unbalanced")
    with pytest.raises(BadCommand):
        sequence("1-3", 5)
