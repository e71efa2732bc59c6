"""Customers answer our mails, end to end: SMTP into the sink, IMAP out of it, comments in
ServiceNow, copies in Jira, and the policy's customer_replies at resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from simulators.mail.sink import StoredMessage
from sync.replies import store as mails
from tests.e2e.conftest import (
    AGENT,
    COMPLETE_DESCRIPTION,
    CUSTOMER_EMAIL,
    EXAMPLE_CONFIG,
    Harness,
    step,
)
from tests.e2e.customer_mail import reply, send

pytestmark = pytest.mark.e2e

BY_MAIL = "By e-mail from Carla Customer <carla@customer.example>:"


@pytest.fixture
def harness_options(tmp_path: Path) -> dict[str, Any]:
    """The example configuration, telling the customer what the gate misses and the closure."""
    config = tmp_path / "config.toml"
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace("[escalation.gate]\n", "[escalation.gate]\nemail_customer = true\n")
    text = text.replace(
        "[escalation.closure]\n", "[escalation.closure]\nemail_customer_on_close = true\n"
    )
    config.write_text(text)
    return {"escalation": True, "echo_filter": True, "replies": True, "config": config}


def customer_mails(h: Harness, event: str) -> list[StoredMessage]:
    """What the product sent the customer for an outbox event."""
    return [
        m
        for m in h.mail.messages()
        if CUSTOMER_EMAIL in m.rcpt_tos and dict(m.headers).get("X-Escalation-Sync-Event") == event
    ]


def public_comments(h: Harness, sys_id: str) -> list[str]:
    """The incident's customer-visible comments, oldest first."""
    return [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "comments"]


def jira_texts(h: Harness, key: str) -> list[str]:
    """Every comment body on the Jira issue."""
    return [str(c.get("body")) for c in h.jira_comments(key)]


def paired_key(h: Harness, sys_id: str) -> str:
    link = h.store.get_link("servicenow", sys_id)
    assert link is not None
    return link.side("jira").ticket_id


def escalated(h: Harness, summary: str = "Checkout fails for EU customers") -> str:
    """A complete incident escalated and approved; returns its sys_id."""
    h.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    sys_id = h.incident(short_description=summary, description=COMPLETE_DESCRIPTION)
    h.servicenow.attach(sys_id, "service.log", b"500 POST /pay\n" * 20, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    step(h, sys_id)
    h.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    step(h, sys_id)
    return sys_id


def answer(h: Harness, sent: StoredMessage, words: str, **options: Any) -> None:
    """The customer answers `sent`; the product reads the mailbox once."""
    send(h, reply(sent, words, **options))
    result = h.read_replies()
    assert result.failed is None, result.failed


def assert_landed_once(h: Harness, sys_id: str, words: str, sent: StoredMessage) -> str:
    """The words are on the incident in exactly one public comment, without the history."""
    found = [c for c in public_comments(h, sys_id) if words in c]
    assert len(found) == 1, public_comments(h, sys_id)
    comment = found[0]
    assert comment.startswith(BY_MAIL)
    assert "wrote:" not in comment and "> " not in comment
    assert (sent.text or "").splitlines()[0] not in comment
    assert "Customer Inc." not in comment  # the signature
    return comment


def test_a_reply_to_every_mail_we_send_lands_once_and_reaches_jira(harness: Harness) -> None:
    """The customer answers each kind of mail the example policy sends them (needs information,
    escalated, public update, periodic update, resolved please confirm): each answer becomes one
    public comment on the incident, history and signature cut, and once the incident is paired
    the normal sync copies it to the Jira issue."""
    h = harness
    h.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    # P2: the example policy updates the customer every 24 hours.
    sys_id = h.incident(
        short_description="Checkout fails", description="It is broken.", impact="1", urgency="2"
    )
    h.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    step(h, sys_id)
    [needs] = customer_mails(h, "needs_information")
    answer(h, needs, "Here you go: it fails on Firefox 120 on Windows 11.")
    assert_landed_once(h, sys_id, "it fails on Firefox 120 on Windows 11.", needs)

    h.servicenow.update_incident(sys_id, {"description": COMPLETE_DESCRIPTION}, as_user=AGENT)
    h.servicenow.attach(sys_id, "service.log", b"500 POST /pay\n" * 20, as_user=AGENT)
    h.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    step(h, sys_id)
    h.servicenow.add_work_note(sys_id, "/approve-escalation go ahead", as_user="sme.alice")
    step(h, sys_id)
    key = paired_key(h, sys_id)
    [escalated_mail] = customer_mails(h, "escalated")
    answer(h, escalated_mail, "Thanks. We are losing orders every hour, please hurry.")
    assert_landed_once(h, sys_id, "We are losing orders every hour", escalated_mail)
    copies = [t for t in jira_texts(h, key) if "We are losing orders every hour" in t]
    assert len(copies) == 1
    assert BY_MAIL in copies[0]

    h.jira.comment(key, "We found the cause and are testing a fix.")
    h.drain()
    [update] = customer_mails(h, "public_update")
    answer(h, update, "Good to hear. Can you tell me when it will be deployed?")
    assert_landed_once(h, sys_id, "when it will be deployed?", update)
    assert sum("when it will be deployed?" in t for t in jira_texts(h, key)) == 1

    later = datetime.now(UTC) + timedelta(hours=25)
    h.engine.clock = lambda: later
    step(h, sys_id)
    [periodic] = customer_mails(h, "periodic_update")
    answer(h, periodic, "Still waiting on our side too, thanks for the update.")
    assert_landed_once(h, sys_id, "Still waiting on our side too", periodic)

    h.jira.comment(key, "Fixed in 4.2.1, deployed to production EU.")
    h.jira.transition(key, "Done")
    h.drain()
    step(h, sys_id)
    [confirm] = customer_mails(h, "resolved_please_confirm")
    answer(h, confirm, "I will check tomorrow morning and let you know.")
    assert_landed_once(h, sys_id, "I will check tomorrow morning", confirm)
    assert sum("I will check tomorrow morning" in t for t in jira_texts(h, key)) == 1

    # Read again: nothing is posted twice, and every mail was moved to Processed.
    again = h.read_replies()
    assert again.read == 0
    with h.store.reading() as tx:
        seen = mails.list_mails(tx)
    assert len(seen) == 5
    assert {m.outcome for m in seen} == {mails.PUBLIC_COMMENT}
