"""Customers' replies read from Exchange Online through Microsoft Graph (the strict Graph
double answering in Microsoft's documented shapes), posted in the ServiceNow simulator and
copied to Jira over real HTTP: once, across a crash."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from connectors.mailbox import InboundSettings
from connectors.mailbox.graph import DONE, GraphMailbox
from connectors.retry import RetryPolicy
from sync.runtime.wiring import mail_intake
from tests.connectors.graph_mailbox_double import TOKEN, GraphMailboxDouble
from tests.e2e.conftest import Harness, step
from tests.e2e.customer_mail import reply
from tests.e2e.test_replies_e2e import assert_landed_once, customer_mails, escalated, paired_key

pytestmark = pytest.mark.e2e

GRAPH_SETTINGS = InboundSettings.model_validate(
    {
        "kind": "graph",
        "folder": "Inbox",
        "graph": {
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "not-used-here",
            "mailbox": "replies@example.com",
        },
    }
)


class Killed(BaseException):
    """The process dies here: nothing after this line runs."""


@pytest.fixture
def harness_options() -> dict[str, Any]:
    return {"escalation": True, "echo_filter": True, "replies": True}


@pytest.fixture
def graph() -> Iterator[GraphMailboxDouble]:
    """The Graph double; every other request (the simulators on loopback) goes through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+"))
        yield GraphMailboxDouble(rsps)


def read(h: Harness) -> Any:
    """One pass over the Graph mailbox, then the tickets it touched are synced."""
    intake = mail_intake(
        h.settings,
        h.engine,
        enqueue=h.queue.enqueuer("mail"),
        open_mailbox=lambda: GraphMailbox(
            GRAPH_SETTINGS, token=lambda: TOKEN, retry=RetryPolicy(attempts=3, max_delay=0)
        ),
    )
    assert intake is not None
    try:
        return intake.run_once()
    finally:
        intake.close()
        h.drain()


def test_a_reply_in_exchange_online_lands_once_across_a_crash(
    harness: Harness, graph: GraphMailboxDouble
) -> None:
    """The reader dies right after the comment is written; the next pass finds the message
    "maybe processed" (its category), finds the comment, posts nothing more, and moves the
    message to Processed with the processed category."""
    h = harness
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    [mail] = customer_mails(h, "escalated")
    words = "Exchange users see the error too."
    raw = reply(mail, words)
    message = graph.add(raw)

    def die(what: str) -> None:
        if what.startswith("mail comment"):
            raise Killed(what)

    h.engine.after_write = die
    with pytest.raises(Killed):
        read(h)
    h.engine.after_write = lambda _what: None
    result = read(h)
    assert (result.read, result.posted) == (1, 1)
    assert_landed_once(h, sys_id, words, mail)
    step(h, sys_id)
    assert sum(words in str(c.get("body")) for c in h.jira_comments(key)) == 1
    [moved] = graph.in_folder("Processed")
    assert moved.startswith("<") and DONE["processed"] in graph.messages[message].categories
    assert read(h).read == 0
