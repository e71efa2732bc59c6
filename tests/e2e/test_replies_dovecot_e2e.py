"""Customers' replies read from a real IMAP server: Dovecot (skipped with the reason where it
is not installed), over STARTTLS with a certificate the test made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from connectors.mailbox.imap import CLAIMED
from connectors.mailbox.settings import InboundSettings
from tests.connectors.dovecot import Dovecot, dovecot_server
from tests.e2e.conftest import Harness, make_harness, step
from tests.e2e.customer_mail import reply
from tests.e2e.test_replies_e2e import assert_landed_once, customer_mails, escalated, paired_key

pytestmark = pytest.mark.e2e


class Killed(BaseException):
    """The process dies here: nothing after this line runs."""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of its own for the test."""
    with dovecot_server() as server:
        yield server


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot) -> Iterator[Harness]:
    """The replies harness, its `[email.inbound]` reading Dovecot over STARTTLS."""
    h = make_harness(tmp_path, monkeypatch, escalation=True, echo_filter=True, replies=True)
    email = h.settings.email_settings
    assert email is not None
    inbound = InboundSettings.model_validate(
        {
            "kind": "imap",
            "imap": {
                "host": "localhost",
                "port": dovecot.port,
                "security": "starttls",
                "username": dovecot.username,
                "password": dovecot.password,
                "ca_file": str(dovecot.ca_file),
                "timeout_seconds": 10,
            },
        }
    )
    h.settings.email_settings = email.model_copy(update={"inbound": inbound})
    try:
        yield h
    finally:
        h.close()


def deliver(server: Dovecot, raw: bytes) -> None:
    """Put the mail in the replies mailbox's INBOX, as the MTA does."""
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    try:
        client.login(server.username, server.password)
        client.append("INBOX", raw)
    finally:
        client.logout()


def flags(server: Dovecot, folder: str) -> list[set[bytes]]:
    """The flags of each mail in a folder (none when the folder does not exist)."""
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    try:
        client.login(server.username, server.password)
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        return [set(d[b"FLAGS"]) for d in client.fetch(uids, ["FLAGS"]).values()]
    finally:
        client.logout()


def test_a_reply_in_dovecot_lands_once_even_across_a_crash(
    harness: Harness, dovecot: Dovecot
) -> None:
    """A reply to the escalated mail, delivered to Dovecot: the reader dies right after the
    comment is written; the next pass finds it, posts nothing more, and moves the mail to
    Processed; the copy reaches Jira once."""
    h = harness
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    [mail] = customer_mails(h, "escalated")
    words = "We see the error on every server since the update."
    deliver(dovecot, reply(mail, words))

    def die(what: str) -> None:
        if what.startswith("mail comment"):
            raise Killed(what)

    h.engine.after_write = die
    with pytest.raises(Killed):
        h.read_replies()
    assert [CLAIMED in f for f in flags(dovecot, "INBOX")] == [True]
    h.engine.after_write = lambda _what: None
    result = h.read_replies()
    assert (result.read, result.posted) == (1, 1)
    assert_landed_once(h, sys_id, words, mail)
    step(h, sys_id)
    assert sum(words in str(c.get("body")) for c in h.jira_comments(key)) == 1
    assert flags(dovecot, "INBOX") == []
    assert len(flags(dovecot, "Processed")) == 1
