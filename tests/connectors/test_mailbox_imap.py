"""The IMAP reader against a real Dovecot and the mail sink's IMAP: fetch, claim, settle, move,
restart and crash windows. Every contract test runs on both servers; TLS only on Dovecot."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from imapclient import IMAPClient

from connectors.errors import AuthFailed, TransportFailed
from connectors.mailbox import (
    ImapMailbox,
    InboundSettings,
    MailboxChanged,
    MailState,
    connect_imap,
)
from connectors.mailbox.imap import CLAIMED, DONE
from inbound_mail import MailKind, MatchedBy, read_reply
from simulators.mail import MailSink
from tests.connectors.dovecot import Dovecot, dovecot_server
from tests.inbound_mail.samples import gmail_reply, sent_mail


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the module (each test empties the folders it uses)."""
    with dovecot_server() as server:
        yield server


@pytest.fixture(scope="module")
def sink() -> Iterator[Dovecot]:
    """The mail sink serving IMAP, described like the Dovecot server (no TLS: loopback only)."""
    with MailSink(imap_port=0, imap_password="sink-pass") as mail_sink:
        yield Dovecot(
            "127.0.0.1", mail_sink.imap_port, "replies@example.com", "sink-pass", None, None
        )


def settings(server: Dovecot, **extra: Any) -> InboundSettings:
    """`[email.inbound]` for the server: STARTTLS to Dovecot, plain IMAP to the sink."""
    imap: dict[str, Any] = {
        "host": "localhost",
        "port": server.port,
        "security": "starttls",
        "username": server.username,
        "password": server.password,
        "ca_file": str(server.ca_file),
        "timeout_seconds": 10,
    }
    if server.ca_file is None:
        imap.update(security="none", ca_file=None, host="127.0.0.1")
    imap.update(extra.pop("imap", {}))
    return InboundSettings.model_validate(
        {"kind": "imap", "folder": "INBOX", "processed_folder": "Processed", **extra, "imap": imap}
    )


def admin(server: Dovecot) -> IMAPClient:
    """A second, independent connection: the mail server's other clients."""
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    client.login(server.username, server.password)
    return client


@pytest.fixture(params=["dovecot", "sink"])
def server(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """Each server in turn, with INBOX, Processed and Refused emptied."""
    chosen: Dovecot = request.getfixturevalue(request.param)
    client = admin(chosen)
    for folder in ("INBOX", "Processed", "Refused"):
        if client.folder_exists(folder):
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids)
                client.expunge()
    client.logout()
    yield chosen


def deliver(server: Dovecot, raw: bytes, folder: str = "INBOX") -> None:
    """Put a message in a folder, as the MTA would."""
    client = admin(server)
    client.append(folder, raw)
    client.logout()


def folder_ids(server: Dovecot, folder: str) -> list[str]:
    """The Message-IDs in a folder."""
    client = admin(server)
    client.select_folder(folder, readonly=True)
    uids = client.search(["ALL"])
    found = []
    for data in client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).values():
        raw = next(v for k, v in data.items() if k.startswith(b"BODY["))
        found.append(raw.decode().split(":", 1)[1].strip())
    client.logout()
    return found


def mail(n: int, body: str = "hello") -> bytes:
    """A small message with Message-ID <n@acme.example>."""
    return (
        f"From: anna@acme.example\r\nTo: replies@example.com\r\nSubject: [INC0010001] {n}\r\n"
        f"Message-ID: <{n}@acme.example>\r\n\r\n{body}\r\n"
    ).encode()


def test_fetch_settle_move_and_not_again_after_restart(server):
    """A mail is fetched as new, processed, moved, and a new reader does not see it again."""
    deliver(server, mail(1))
    deliver(server, mail(2))
    with ImapMailbox(settings(server)) as box:
        fetched = box.fetch()
        assert [m.message_id for m in fetched] == ["<1@acme.example>", "<2@acme.example>"]
        assert all(m.state is MailState.NEW for m in fetched)
        assert fetched[0].raw.startswith(b"From: anna@acme.example")
        box.claim(fetched[0].ref)
        box.settle(fetched[0].ref, "processed")
        box.claim(fetched[1].ref)
        box.settle(fetched[1].ref, "refused")
        assert box.fetch() == []
    with ImapMailbox(settings(server)) as restarted:
        assert restarted.fetch() == []
    assert folder_ids(server, "Processed") == ["<1@acme.example>"]
    assert folder_ids(server, "Refused") == ["<2@acme.example>"]
    assert folder_ids(server, "INBOX") == []


def test_crash_after_claim_gives_the_mail_as_maybe_processed(server):
    """A run that died after claiming (maybe after posting) does not give the mail out as new."""
    deliver(server, mail(3))
    first = ImapMailbox(settings(server))
    (fetched,) = first.fetch()
    first.claim(fetched.ref)
    first._drop()  # the process dies: no logout, no settle
    with ImapMailbox(settings(server)) as second:
        (again,) = second.fetch()
        assert again.state is MailState.MAYBE_PROCESSED
        assert again.message_id == "<3@acme.example>"
        second.settle(again.ref, "processed")
        assert second.fetch() == []


def test_crash_between_marking_and_moving_is_finished_by_the_next_fetch(server):
    """A mail marked processed but still in the folder is moved on, not given out again."""
    deliver(server, mail(4))
    client = admin(server)
    client.select_folder("INBOX")
    client.add_flags(client.search(["ALL"]), [CLAIMED, DONE["processed"]])
    client.logout()
    with ImapMailbox(settings(server)) as box:
        assert box.fetch() == []
    assert folder_ids(server, "Processed") == ["<4@acme.example>"]
    assert folder_ids(server, "INBOX") == []


class _NoMove(IMAPClient):
    """A client that pretends the server lacks MOVE, to drive the COPY + EXPUNGE path."""

    def has_capability(self, capability: str) -> bool:
        return capability.upper() != "MOVE" and super().has_capability(capability)


def _no_move_factory(imap_settings):
    client = _NoMove(imap_settings.host, port=imap_settings.effective_port, ssl=False, timeout=10)
    client.login(imap_settings.username, imap_settings.password_value())
    return client


def test_copy_and_expunge_when_the_server_has_no_move(server):
    """Without MOVE the mail is copied, deleted and expunged; an interrupted copy is not doubled."""
    deliver(server, mail(5))
    deliver(server, mail(6))
    plain = settings(server, imap={"security": "none", "host": "127.0.0.1", "ca_file": None})
    with ImapMailbox(plain, client_factory=_no_move_factory) as box:
        first, _second = box.fetch()
        box.settle(first.ref, "processed")
        # The second was copied before the process died, and marked: finishing must not copy again.
        client = admin(server)
        client.select_folder("INBOX")
        uid = client.search(["HEADER", "Message-ID", "<6@acme.example>"])
        client.copy(uid, "Processed")
        client.add_flags(uid, [DONE["processed"]])
        client.logout()
        assert box.fetch() == []
    assert sorted(folder_ids(server, "Processed")) == ["<5@acme.example>", "<6@acme.example>"]
    assert folder_ids(server, "INBOX") == []


def test_idle_wakes_on_new_mail_and_times_out_otherwise(server):
    """wait() returns True soon after a mail arrives, False after the timeout, and obeys stop."""
    with ImapMailbox(settings(server)) as box:
        box.fetch()
        started = time.monotonic()
        assert box.wait(0.5) is False
        assert time.monotonic() - started >= 0.4
        timer = threading.Timer(0.3, deliver, args=(server, mail(7)))
        timer.start()
        started = time.monotonic()
        assert box.wait(10) is True
        assert time.monotonic() - started < 5
        timer.join()
        stop = threading.Event()
        stop.set()
        started = time.monotonic()
        box.wait(10, stop)
        assert time.monotonic() - started < 2
        assert [m.message_id for m in box.fetch()] == ["<7@acme.example>"]


def test_polling_when_idle_is_off(server):
    """With idle = false, wait() sleeps the interval and reports nothing."""
    with ImapMailbox(settings(server, imap={"idle": False})) as box:
        started = time.monotonic()
        assert box.wait(0.3) is False
        assert time.monotonic() - started >= 0.25


def test_uidvalidity_change_makes_mails_maybe_processed_and_old_refs_stale(server):
    """A recreated folder re-checks its mails, and a reference from before cannot be settled."""
    deliver(server, mail(8))
    state: dict[str, str] = {}
    with ImapMailbox(settings(server), state=state) as box:
        (fetched,) = box.fetch()
        assert fetched.state is MailState.NEW
        key = next(iter(state))
        state[key] = "1"  # as if the folder had another UIDVALIDITY before
        (again,) = box.fetch()
        assert again.state is MailState.MAYBE_PROCESSED
        folder, _, uid = fetched.ref.id.split(";")
        stale = type(fetched.ref)(f"{folder};1;{uid}", folder)
        with pytest.raises(MailboxChanged):
            box.settle(stale, "processed")


def test_oversized_mail_is_read_up_to_the_limit(server):
    """A mail over max_message_bytes comes with its first bytes and truncated=True."""
    deliver(server, mail(9, body="x" * 200_000))
    with ImapMailbox(settings(server, max_message_bytes=65536)) as box:
        (fetched,) = box.fetch()
        assert fetched.truncated and len(fetched.raw) == 65536 and fetched.size > 200_000
        assert fetched.message_id == "<9@acme.example>"


def test_batch_limit(server):
    """fetch(limit) gives at most `limit` mails, the oldest first."""
    for n in range(10, 15):
        deliver(server, mail(n))
    with ImapMailbox(settings(server)) as box:
        assert [m.message_id for m in box.fetch(limit=2)] == [
            "<10@acme.example>",
            "<11@acme.example>",
        ]


def test_wrong_password_is_auth_failed(server):
    """Refused credentials are AuthFailed, and the password is not in the message."""
    box = ImapMailbox(settings(server, imap={"password": "wrong-password-xyz"}))
    with pytest.raises(AuthFailed) as caught:
        box.fetch()
    assert "wrong-password-xyz" not in str(caught.value)


def test_untrusted_certificate_is_refused(dovecot):
    """STARTTLS with a certificate the system does not trust fails; nothing is sent in clear."""
    box = ImapMailbox(settings(dovecot, imap={"ca_file": None}))
    with pytest.raises(TransportFailed, match="certificate"):
        box.fetch()


def test_implicit_tls(dovecot):
    """security = "tls" talks TLS from the first byte (IMAPS) and verifies the certificate."""
    deliver(dovecot, mail(20))
    tls = settings(dovecot, imap={"security": "tls", "port": dovecot.tls_port})
    with ImapMailbox(tls) as box:
        fetched = box.fetch()
        assert "<20@acme.example>" in [m.message_id for m in fetched]
        for item in fetched:
            box.settle(item.ref, "processed")


def test_connect_helper_logs_in(server):
    """`connect_imap` opens an authenticated connection from the settings."""
    imap = settings(server).imap
    assert imap is not None
    client = connect_imap(imap)
    assert client.select_folder("INBOX")
    client.logout()


def test_a_reply_read_from_dovecot_matches_its_ticket(server):
    """End to end on the mail side: a customer's reply in the mailbox reads to words and ticket."""
    sent = sent_mail("resolved_please_confirm")
    deliver(server, gmail_reply(sent, "Yes, it is fixed now."))
    with ImapMailbox(settings(server)) as box:
        (fetched,) = box.fetch()
        reply = read_reply(fetched.raw, sent_lookup={sent.message_id: "INC0010001"}.get)
        assert reply.kind is MailKind.REPLY and reply.match.by is MatchedBy.IN_REPLY_TO
        assert reply.text == "Yes, it is fixed now."
        assert reply.origin_key == fetched.message_id
