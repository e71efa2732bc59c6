"""The EWS reader through exchangelib against a strict SOAP double (no network)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import responses

from connectors.errors import RateLimited
from connectors.mailbox import InboundSettings, MailState
from connectors.mailbox.ews import CLAIMED, DONE, EwsMailbox
from tests.connectors.ews_mailbox_double import EwsMailboxDouble

_endpoints = itertools.count(1)


@pytest.fixture()
def exchange() -> Iterator[tuple[EwsMailboxDouble, str]]:
    """The double on a fresh endpoint (exchangelib caches protocols per endpoint)."""
    endpoint = f"https://ews{next(_endpoints)}.example.com/EWS/Exchange.asmx"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield EwsMailboxDouble(mock, endpoint), endpoint


def reader(endpoint: str, **extra: object) -> EwsMailbox:
    """A reader of the double's Inbox, basic auth, version given (no probe)."""
    settings = InboundSettings.model_validate(
        {
            "kind": "ews",
            "folder": "Inbox",
            "processed_folder": "Processed",
            "refused_folder": "Inbox/Refused",
            **extra,
            "ews": {
                "service_endpoint": endpoint,
                "username": "svc-replies",
                "password": "ews-password",
                "auth_type": "basic",
                "mailbox": "replies@example.com",
                "exchange_version": "15.1",
            },
        }
    )
    return EwsMailbox(settings)


def mime(n: int, body: str = "hello") -> bytes:
    """A small message."""
    return (
        f"From: anna@acme.example\r\nSubject: [INC0010001] {n}\r\n"
        f"Message-ID: <{n}@acme.example>\r\n\r\n{body}\r\n"
    ).encode()


def test_fetch_claim_settle_and_a_restart_reads_nothing_again(exchange):
    """Mails are read as MIME, claimed and settled into created folders, and not read again."""
    fake, endpoint = exchange
    fake.add(mime(1))
    fake.add(mime(2))
    box = reader(endpoint)
    first, second = box.fetch()
    assert first.message_id == "<1@acme.example>" and first.state is MailState.NEW
    assert first.raw == mime(1)
    box.claim(first.ref)
    assert CLAIMED in fake.items[first.ref.id].categories
    box.settle(first.ref, "processed")
    box.settle(second.ref, "refused")
    assert box.fetch() == []
    assert reader(endpoint).fetch() == []
    assert fake.in_folder("Processed") == ["<1@acme.example>"]
    assert fake.in_folder("Refused") == ["<2@acme.example>"]
    processed = next(i for i in fake.items.values() if i.message_id == "<1@acme.example>")
    assert processed.is_read and processed.categories == [DONE["processed"]]


def test_claimed_item_comes_back_maybe_processed(exchange):
    """An item claimed by a run that died is MAYBE_PROCESSED with its Message-ID."""
    fake, endpoint = exchange
    fake.add(mime(3), categories=[CLAIMED])
    (fetched,) = reader(endpoint).fetch()
    assert fetched.state is MailState.MAYBE_PROCESSED and fetched.message_id == "<3@acme.example>"


def test_marked_but_not_moved_is_moved_by_the_next_fetch(exchange):
    """An item marked processed before a crash is moved on, not given out."""
    fake, endpoint = exchange
    fake.add(mime(4), categories=[DONE["processed"]])
    assert reader(endpoint).fetch() == []
    assert fake.in_folder("Processed") == ["<4@acme.example>"]


def test_oversized_item_is_cut(exchange):
    """MIME over the limit is cut and marked truncated."""
    fake, endpoint = exchange
    fake.add(mime(5, body="y" * 100_000))
    (fetched,) = reader(endpoint, max_message_bytes=65536).fetch()
    assert fetched.truncated and len(fetched.raw) == 65536


def test_item_gone_before_settle_is_settled(exchange):
    """An item a person moved away meanwhile needs nothing more."""
    fake, endpoint = exchange
    fake.add(mime(6))
    box = reader(endpoint)
    (fetched,) = box.fetch()
    del fake.items[fetched.ref.id]
    box.settle(fetched.ref, "processed")


def test_server_busy_is_rate_limited(exchange):
    """ErrorServerBusy surfaces as RateLimited with Exchange's back-off."""
    fake, endpoint = exchange
    fake.add(mime(7))
    fake.busy_next = 1
    with pytest.raises(RateLimited):
        reader(endpoint).fetch()
