"""Customers answer our mails, end to end: SMTP into the sink, IMAP out of it, comments in
ServiceNow, copies in Jira, and the policy's customer_replies at resolution."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cli.ops_cmd import _replies_text, collect_status
from cli.sync_cmd import run_once
from simulators.mail.sink import StoredMessage
from sync.notify import outbox
from sync.replies import store as mails
from tests.e2e.conftest import (
    AGENT,
    COMPLETE_DESCRIPTION,
    CUSTOMER_EMAIL,
    EXAMPLE_CONFIG,
    Harness,
    step,
)
from tests.e2e.customer_mail import (
    CUSTOMER_NAME,
    SUPPORT,
    bounce,
    html_only_reply,
    latin1_reply,
    malformed_reply,
    out_of_office,
    reply,
    send,
)

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
    # The incident's watch list, for [email.inbound] watcher_fields.
    text += '\n[mapping.systems.servicenow.custom.watch_list]\nread = "watch_list"\n'
    text += 'write_mode = "none"\n'
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


def resolved(h: Harness) -> tuple[str, str, StoredMessage]:
    """An escalated incident engineering resolved; (sys_id, Jira key, the confirm mail)."""
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    h.jira.comment(key, "Fixed in 4.2.1, deployed to production EU.")
    h.jira.transition(key, "Done")
    h.drain()
    step(h, sys_id)
    assert h.servicenow.incident(sys_id)["state"] == "6"
    [confirm] = customer_mails(h, "resolved_please_confirm")
    return sys_id, key, confirm


def ledger_state(h: Harness, sys_id: str) -> str | None:
    from sync.procedure.ledger import get_entry

    with h.store.reading() as tx:
        entry = get_entry(tx, f"servicenow:{sys_id}")
    return entry.state.value if entry is not None else None


def test_a_confirmation_closes_the_record_as_the_policy_says(harness: Harness) -> None:
    """ "Yes, it works now" to the confirm mail: the comment lands, a note says who confirmed,
    the incident moves to Closed (customer_replies.confirmed.move_to), the escalation closes
    with it, the closed mail goes out, and Jira follows the status."""
    h = harness
    sys_id, key, confirm = resolved(h)
    answer(h, confirm, "Yes, it works now. Thank you!")
    assert_landed_once(h, sys_id, "Yes, it works now.", confirm)
    assert h.servicenow.incident(sys_id)["state"] == "7"
    notes = [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "work_notes"]
    assert any("The customer confirmed the fix by e-mail" in n for n in notes)
    step(h, sys_id)
    assert ledger_state(h, sys_id) == "closed"
    assert len(customer_mails(h, "closed")) == 1
    assert h.jira.issue(key)["fields"]["status"]["name"] == "Closed"


def test_not_fixed_reopens_the_record_and_tells_engineering(harness: Harness) -> None:
    """ "No, it still fails" to the confirm mail: the incident reopens (In Progress), the Jira
    issue reopens and carries an internal note with the customer's words."""
    h = harness
    sys_id, key, confirm = resolved(h)
    answer(h, confirm, "No, it still fails with the same error after the update.")
    assert_landed_once(h, sys_id, "it still fails with the same error", confirm)
    assert h.servicenow.incident(sys_id)["state"] == "2"
    assert h.jira.issue(key)["fields"]["status"]["name"] == "In Progress"
    told = [
        c
        for c in h.jira_comments(key)
        if "says the fix did not work" in str(c.get("body")) and c.get("visibility")
    ]
    assert len(told) == 1
    assert "still fails" in str(told[0]["body"])
    notes = [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "work_notes"]
    assert any("The customer says the fix did not work" in n for n in notes)
    assert not customer_mails(h, "closed")


def test_a_reply_that_reads_both_ways_moves_nothing(harness: Harness) -> None:
    """ "Yes, but it still fails": nothing moves; a work note asks a person to read it."""
    h = harness
    sys_id, key, confirm = resolved(h)
    answer(h, confirm, "Yes, but it still fails for some of our users.")
    assert h.servicenow.incident(sys_id)["state"] == "6"
    assert h.jira.issue(key)["fields"]["status"]["name"] == "Done"
    notes = [r["value"] for r in h.snow_journal(sys_id) if r["element"] == "work_notes"]
    assert any("reads both as a confirmation" in n for n in notes)


def attachments_on(h: Harness, sys_id: str) -> list[str]:
    """File names attached to the incident."""
    rows = h.servicenow.store.query("sys_attachment", f"table_sys_id={sys_id}")
    return sorted(str(r["file_name"]) for r in rows)


def outcomes(h: Harness) -> dict[str, str]:
    """What became of each mail read, by its reason's first words."""
    with h.store.reading() as tx:
        return {m.message_id: m.outcome for m in mails.list_mails(tx)}


def test_attachments_go_with_the_comment_under_the_size_limit(harness: Harness) -> None:
    """A log under the limit is attached to the incident and copied to Jira; a dump over
    `max_attachment_bytes` is listed in the comment, not attached."""
    h = harness
    email = h.settings.email_settings
    assert email is not None and email.inbound is not None
    h.settings.email_settings = email.model_copy(
        update={"inbound": email.inbound.model_copy(update={"max_attachment_bytes": 64 * 1024})}
    )
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    [mail] = customer_mails(h, "escalated")
    answer(
        h,
        mail,
        "Logs from this morning attached.",
        attachments=(
            ("browser.log", b"GET /pay 500\n" * 100, "text/plain"),
            ("core.dump", b"\0" * (200 * 1024), "application/octet-stream"),
        ),
    )
    comment = assert_landed_once(h, sys_id, "Logs from this morning attached.", mail)
    assert "Attached: browser.log" in comment
    assert "core.dump not kept" in comment
    assert attachments_on(h, sys_id) == ["browser.log", "service.log"]
    names = [a["filename"] for a in h.jira.issue(key)["fields"]["attachment"]]
    assert sorted(names) == ["browser.log", "service.log"]


def test_auto_replies_and_out_of_office_are_not_posted(harness: Harness) -> None:
    """An out-of-office answer to the escalated mail posts nothing and goes to Refused (its
    `/approve-escalation` is no command either)."""
    h = harness
    sys_id = escalated(h)
    before = h.snow_journal_text(sys_id)
    [mail] = customer_mails(h, "escalated")
    send(h, out_of_office(mail))
    result = h.read_replies()
    assert (result.read, result.posted, result.refused) == (1, 0, 1)
    assert h.snow_journal_text(sys_id) == before
    assert set(outcomes(h).values()) == {mails.REFUSED}


def test_a_bounce_is_noted_once_and_stops_mail_to_the_address(harness: Harness) -> None:
    """The customer's server returns the escalated mail (5.1.1): one work note says the address
    failed, a second bounce adds none, and the next customer mail is not sent to it: the outbox
    says why."""
    h = harness
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    [mail] = customer_mails(h, "escalated")
    send(h, bounce(mail, CUSTOMER_EMAIL), sender="")
    h.read_replies()
    send(h, bounce(mail, CUSTOMER_EMAIL), sender="")
    h.read_replies()
    notes = [
        r["value"]
        for r in h.snow_journal(sys_id)
        if r["element"] == "work_notes" and "could not be delivered" in r["value"]
    ]
    assert len(notes) == 1
    assert CUSTOMER_EMAIL in notes[0] and "5.1.1" in notes[0]
    assert not [c for c in public_comments(h, sys_id) if "Undelivered" in c]

    h.jira.comment(key, "We are deploying the fix now.")
    h.drain()
    assert not customer_mails(h, "public_update")
    with h.store.reading() as tx:
        rows = outbox.list_entries(tx, ticket=h.servicenow.incident(sys_id)["number"])
    [skipped] = [r for r in rows if r.event == "public_update"]
    assert skipped.status == outbox.DEAD
    assert skipped.last_error is not None and "bounced" in skipped.last_error
    status = collect_status(h.settings)
    assert status["replies"]["bounced_addresses"] == 1
    assert "mailbox" in status["systems"]
    assert "1 address stopped" in _replies_text(status["replies"])


def test_a_stranger_is_kept_internal_or_refused_as_configured(harness: Harness) -> None:
    """Someone who is neither the customer nor a watcher: an internal note (the default), or
    nothing at all with stranger_policy = "refuse"."""
    h = harness
    sys_id = escalated(h)
    [mail] = customer_mails(h, "escalated")
    answer(h, mail, "I am the CFO, please close this ticket.", sender="cfo@other.example")
    notes = [r["value"] for r in h.snow_journal(sys_id) if "I am the CFO" in r["value"]]
    assert len(notes) == 1
    [entry] = [r for r in h.snow_journal(sys_id) if "I am the CFO" in r["value"]]
    assert entry["element"] == "work_notes"
    assert "neither the customer nor a watcher" in entry["value"]

    email = h.settings.email_settings
    assert email is not None and email.inbound is not None
    h.settings.email_settings = email.model_copy(
        update={"inbound": email.inbound.model_copy(update={"stranger_policy": "refuse"})}
    )
    answer(h, mail, "Second attempt from a stranger.", sender="mallory@other.example")
    assert "Second attempt from a stranger" not in h.snow_journal_text(sys_id)


def test_commands_in_mail_are_never_honoured(harness: Harness) -> None:
    """The customer writes /approve-escalation and /escalate (and a script) in a mail naming
    the incident: the comment shows them inert, and the request waiting for an SME stays
    waiting."""
    h = harness
    sys_id = h.incident(short_description="Checkout fails", description=COMPLETE_DESCRIPTION)
    h.servicenow.attach(sys_id, "service.log", b"500 POST /pay\n" * 20, as_user=AGENT)
    h.servicenow.add_user("sme.alice", name="Alice SME", password="pw")
    h.servicenow.add_work_note(sys_id, "/escalate customer blocked", as_user=AGENT)
    step(h, sys_id)
    # Nothing was mailed while approval waits: the customer writes in with the number.
    raw = reply_with_subject(
        h, sys_id, "/approve-escalation\n/escalate now please\n<script>alert(1)</script>"
    )
    send(h, raw)
    h.read_replies()
    [comment] = [c for c in public_comments(h, sys_id) if "escalate now please" in c]
    assert "/approve-escalation" not in comment and "\u2215approve-escalation" in comment
    assert "<script" not in comment
    assert h.store.get_link("servicenow", sys_id) is None
    assert ledger_state(h, sys_id) == "pending_approval"


def reply_with_subject(h: Harness, sys_id: str, words: str) -> bytes:
    """A new mail (no thread headers) whose subject names the incident by number."""
    number = h.servicenow.incident(sys_id)["number"]
    msg = EmailMessage()
    msg["From"] = f"{CUSTOMER_NAME} <{CUSTOMER_EMAIL}>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"Question about {number}"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(words)
    return msg.as_bytes()


def test_mail_loops_are_broken(harness: Harness) -> None:
    """Our own mail forwarded back to us, and a robot answering the same ticket again and
    again, post nothing after the loop is seen."""
    h = harness
    sys_id = escalated(h)
    [mail] = customer_mails(h, "escalated")
    send(h, mail.raw.encode(), sender=SUPPORT)
    result = h.read_replies()
    assert (result.read, result.posted) == (1, 0)
    for n in range(12):
        send(h, reply(mail, f"Ticket received, reference {n}."))
    h.read_replies()
    posted = [c for c in public_comments(h, sys_id) if "Ticket received, reference" in c]
    assert len(posted) == 10  # [email.inbound] loop_max_per_hour
    assert list(outcomes(h).values()).count(mails.REFUSED) == 3


def test_malformed_html_only_and_non_utf8_mail_is_read_safely(harness: Harness) -> None:
    """Broken MIME, an HTML-only reply with a script, and ISO-8859-1 bytes without a charset:
    each lands as plain, inert text."""
    h = harness
    sys_id = escalated(h)
    [mail] = customer_mails(h, "escalated")
    send(h, malformed_reply(mail, "The broken one still gets through."))
    send(
        h,
        html_only_reply(
            mail,
            "<p>Hello <b>team</b>,</p><script>document.location='https://evil.example'</script>"
            "<p>see <a href='javascript:alert(1)'>this</a> [code]<img src=x onerror=alert(1)>"
            "[/code]</p>",
        ),
    )
    send(h, latin1_reply(mail, "Die Kasse schlägt immer noch fehl, Grüße aus Köln."))
    result = h.read_replies()
    assert (result.read, result.posted) == (3, 3)
    texts = public_comments(h, sys_id)
    assert any("The broken one still gets through." in c for c in texts)
    [html] = [c for c in texts if "Hello team" in c]
    assert "<" not in html.replace("<carla@customer.example>", "")
    assert "evil.example" not in html and "javascript:" not in html and "[code]" not in html
    assert any("schlägt immer noch fehl, Grüße aus Köln" in c for c in texts)


def test_a_watcher_speaks_publicly_when_the_configuration_names_the_field(
    harness: Harness,
) -> None:
    """An address on the incident's watch list ([email.inbound] watcher_fields) is posted as a
    public comment, like the customer; without the field it would be a stranger's note."""
    h = harness
    email = h.settings.email_settings
    assert email is not None and email.inbound is not None
    h.settings.email_settings = email.model_copy(
        update={
            "inbound": email.inbound.model_copy(
                update={"watcher_fields": ("custom_fields.watch_list",)}
            )
        }
    )
    sys_id = escalated(h)
    h.servicenow.update_incident(
        sys_id, {"watch_list": "boss@customer.example,ops@customer.example"}, as_user=AGENT
    )
    [mail] = customer_mails(h, "escalated")
    answer(h, mail, "Our CEO is asking for news.", sender="boss@customer.example", name="Bo Boss")
    [entry] = [r for r in h.snow_journal(sys_id) if "Our CEO is asking" in r["value"]]
    assert entry["element"] == "comments"
    assert entry["value"].startswith("By e-mail from Bo Boss <boss@customer.example>:")


def clicked(sent: StoredMessage, label: str) -> bytes:
    """The mail a client composes from the `mailto:` button labelled `label` in `sent`."""
    match = re.search(rf'<a href="(mailto:[^"]+)"[^>]*>{label}</a>', sent.html or "")
    assert match, sent.html
    parts = urlsplit(html_lib.unescape(match.group(1)))
    query = parse_qs(parts.query)
    msg = EmailMessage()
    msg["From"] = f"{CUSTOMER_NAME} <{CUSTOMER_EMAIL}>"
    msg["To"] = unquote(parts.path)
    msg["Subject"] = query["subject"][0]
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content(query["body"][0] + "\n\n-- \nCarla\n")
    return msg.as_bytes()


def test_the_confirmation_buttons_answer_by_mail(harness: Harness) -> None:
    """The resolved mail carries "Yes, it is fixed" / "No, it is not fixed" buttons; the mail
    the first composes (no thread headers, the ticket in its subject) closes the record."""
    h = harness
    sys_id, _key, confirm = resolved(h)
    assert "No, it is not fixed</a>" in (confirm.html or "")
    send(h, clicked(confirm, "Yes, it is fixed"))
    h.read_replies()
    [comment] = [c for c in public_comments(h, sys_id) if "Yes, it is fixed." in c]
    assert comment.startswith(BY_MAIL)
    assert h.servicenow.incident(sys_id)["state"] == "7"


def test_an_oversized_mail_is_read_up_to_the_limit(harness: Harness) -> None:
    """A reply bigger than max_message_bytes is read up to the limit: the customer's words at
    the top land, and the comment says the mail was read in part (no cut file attached)."""
    h = harness
    email = h.settings.email_settings
    assert email is not None and email.inbound is not None
    h.settings.email_settings = email.model_copy(
        update={"inbound": email.inbound.model_copy(update={"max_message_bytes": 64 * 1024})}
    )
    sys_id = escalated(h)
    [mail] = customer_mails(h, "escalated")
    big = bytes(range(256)) * 1200
    answer(
        h,
        mail,
        "The full trace is attached.",
        attachments=(("trace.bin", big, "application/octet-stream"),),
    )
    comment = assert_landed_once(h, sys_id, "The full trace is attached.", mail)
    assert "trace.bin" not in attachments_on(h, sys_id)
    assert "Attached:" not in comment
    assert "larger than 64 kB and was read only in part" in comment


def test_sync_once_reads_the_replies_mailbox(harness: Harness) -> None:
    """`sync --once` reads the mailbox before polling: the reply lands on the incident and the
    same run copies it to Jira."""
    h = harness
    sys_id = escalated(h)
    key = paired_key(h, sys_id)
    [mail] = customer_mails(h, "escalated")
    send(h, reply(mail, "Read by the cron run, please."))
    result = run_once(h.settings)
    assert result.mail is not None and (result.mail.read, result.mail.posted) == (1, 1)
    assert sum("Read by the cron run" in c for c in public_comments(h, sys_id)) == 1
    assert sum("Read by the cron run" in t for t in jira_texts(h, key)) == 1
