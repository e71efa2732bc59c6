"""The Graph reader against a strict double answering in Microsoft's documented shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from connectors.errors import NotFound
from connectors.mailbox import InboundSettings, MailState
from connectors.mailbox.graph import CLAIMED, DONE, GraphMailbox
from connectors.retry import RetryPolicy
from tests.connectors.graph_mailbox_double import TOKEN, GraphMailboxDouble, fixture


@pytest.fixture()
def graph() -> Iterator[GraphMailboxDouble]:
    """The double, registered on a strict `responses` mock."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield GraphMailboxDouble(rsps)


def reader(**extra: object) -> GraphMailbox:
    """A reader of the double's Inbox with a fixed token and instant retries."""
    settings = InboundSettings.model_validate(
        {
            "kind": "graph",
            "folder": "Inbox",
            "processed_folder": "Processed",
            "refused_folder": "Inbox/Refused",
            **extra,
            "graph": {
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "not-used-here",
                "mailbox": "replies@example.com",
            },
        }
    )
    return GraphMailbox(settings, token=lambda: TOKEN, retry=RetryPolicy(attempts=3, max_delay=0))


def mime(n: int, body: str = "hello") -> bytes:
    """A small message."""
    return (
        f"From: anna@acme.example\r\nSubject: [INC0010001] {n}\r\n"
        f"Message-ID: <{n}@acme.example>\r\n\r\n{body}\r\n"
    ).encode()


def test_documented_mime_is_read_with_its_message_id(graph):
    """The MIME of Microsoft's own example comes through with its Message-ID."""
    graph.add(fixture("message_get_mime.response.eml"))
    (fetched,) = reader().fetch()
    assert fetched.message_id == "<4aade2547798441eab5188a7a2436bc1@contoso.com>"
    assert fetched.state is MailState.NEW
    assert b"The attachment is an email." in fetched.raw


def test_fetch_claim_settle_moves_and_a_restart_reads_nothing_again(graph):
    """Processed goes to a created top-level folder, refused to a created Inbox sub-folder."""
    graph.add(mime(1))
    graph.add(mime(2))
    box = reader()
    first, second = box.fetch()
    box.claim(first.ref)
    assert CLAIMED in graph.messages[first.ref.id].categories
    box.settle(first.ref, "processed")
    box.claim(second.ref)
    box.settle(second.ref, "refused")
    assert box.fetch() == []
    assert reader().fetch() == []
    assert graph.in_folder("Processed") == ["<1@acme.example>"]
    assert graph.in_folder("Refused") == ["<2@acme.example>"]
    processed = graph.messages[first.ref.id]
    assert processed.is_read and processed.categories == [DONE["processed"]]
    refused_folder = next(f for f in graph.folders.values() if f["displayName"] == "Refused")
    assert refused_folder["parent"] == "inbox-id"


def test_existing_folders_are_reused(graph):
    """A folder that exists is found by name, not created twice."""
    graph.folders["existing"] = {"displayName": "Processed", "parent": "root-id"}
    graph.add(mime(3))
    box = reader()
    (fetched,) = box.fetch()
    box.settle(fetched.ref, "processed")
    assert sum(f["displayName"] == "Processed" for f in graph.folders.values()) == 1
    assert graph.messages[fetched.ref.id].folder == "existing"


def test_crash_after_claim_is_maybe_processed(graph):
    """A claimed message comes back MAYBE_PROCESSED with its Message-ID after a restart."""
    graph.add(mime(4), categories=["Customer", CLAIMED])
    (fetched,) = reader().fetch()
    assert fetched.state is MailState.MAYBE_PROCESSED
    assert fetched.message_id == "<4@acme.example>"


def test_crash_between_marking_and_moving_is_finished(graph):
    """A message marked processed but not moved is moved by the next fetch, not given out."""
    graph.add(mime(5), categories=[DONE["processed"]])
    assert reader().fetch() == []
    assert graph.in_folder("Processed") == ["<5@acme.example>"]


def test_paging_and_limit(graph):
    """Pages are followed through @odata.nextLink; fetch(limit) stops giving out at the limit."""
    for n in range(60):
        graph.add(mime(100 + n))
    box = reader()
    fetched = box.fetch(limit=55)
    assert len(fetched) == 55
    assert fetched[0].message_id == "<100@acme.example>"
    assert fetched[54].message_id == "<154@acme.example>"
    assert sum(1 for m, p in graph.requests if p.endswith("/messages")) == 2


def test_oversized_message_is_cut(graph):
    """A message over max_message_bytes comes with its first bytes and truncated=True."""
    graph.add(mime(6, body="x" * 100_000))
    (fetched,) = reader(max_message_bytes=65536).fetch()
    assert fetched.truncated and len(fetched.raw) == 65536


def test_throttling_is_retried(graph):
    """A 429 with Retry-After is retried and the fetch succeeds."""
    graph.add(mime(7))
    graph.throttle_next = 1
    assert [m.message_id for m in reader().fetch()] == ["<7@acme.example>"]


def test_message_gone_before_settle_is_settled(graph):
    """A message someone moved away before we settled it needs nothing more."""
    graph.add(mime(8))
    box = reader()
    (fetched,) = box.fetch()
    del graph.messages[fetched.ref.id]
    box.settle(fetched.ref, "processed")


def test_missing_source_folder_is_not_found(graph):
    """A folder to read that does not exist is reported, not created."""
    with pytest.raises(NotFound):
        reader(folder="Inbox/Replies").fetch()


def test_every_request_asks_for_immutable_ids(graph):
    """Without `Prefer: IdType="ImmutableId"` the double renumbers moved messages; ids hold."""
    message_id = graph.add(mime(9))
    box = reader()
    (fetched,) = box.fetch()
    box.settle(fetched.ref, "processed")
    assert message_id in graph.messages and fetched.ref.id == message_id
