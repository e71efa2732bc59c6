"""End to end over real HTTP: the engine between the Jira and ServiceNow simulators."""

from __future__ import annotations

import time

import pytest

from simulators.common import FaultConfig
from tests.e2e.conftest import AGENT, SNOW_SECRET, Harness

pytestmark = pytest.mark.e2e


def test_pairing_copies_fields_comments_and_attachments(harness: Harness) -> None:
    """A new pair carries the incident's summary, priority, comments and attachments to Jira."""
    sys_id = harness.incident(short_description="VPN drops", impact="1", urgency="2")
    harness.servicenow.add_comment(sys_id, "Customer: it drops every hour", as_user="beth.anglin")
    harness.servicenow.add_work_note(sys_id, "Internal: seen on 3 sites", as_user="beth.anglin")
    harness.servicenow.attach(sys_id, "vpn.log", b"line\n" * 100, as_user="beth.anglin")
    key = harness.engine.create_pair("servicenow", sys_id)
    issue = harness.jira.issue(key)["fields"]
    assert issue["summary"] == "VPN drops"
    assert issue["priority"]["name"] == "High"
    comments = harness.jira_comments(key)
    # Same-second journal entries have no defined order: compare as a set.
    assert {(c["body"].split("\n")[0], bool(c.get("visibility"))) for c in comments} == {
        ("Customer: it drops every hour", False),
        ("Internal: seen on 3 sites", True),
    }
    assert [(a["filename"], a["size"]) for a in issue["attachment"]] == [("vpn.log", 500)]


def test_webhook_from_jira_reaches_servicenow(harness: Harness) -> None:
    """A transition, a public comment, an internal note and a file in Jira reach the incident."""
    assert harness.webhooks_url is not None
    sys_id, key = harness.pair(short_description="Login loop")
    harness.jira.transition(key, "Waiting")
    harness.jira.comment(key, "Please send the HAR file", public=True)
    harness.jira.comment(key, "Suspect the SSO cookie", public=False)
    harness.jira.attach(key, "trace.har", b"{}" * 50)
    harness.drain()
    incident = harness.servicenow.incident(sys_id)
    assert incident["state"] == "3"
    journal = {(r["element"], r["value"].split("\n")[0]) for r in harness.snow_journal(sys_id)}
    assert ("comments", "Please send the HAR file") in journal
    assert ("work_notes", "Suspect the SSO cookie") in journal
    files = harness.servicenow.store.query("sys_attachment", f"table_sys_id={sys_id}")
    assert [(f["file_name"], f["size_bytes"]) for f in files] == [("trace.har", "100")]


def test_webhook_from_servicenow_reaches_jira(harness: Harness) -> None:
    """Priority (via impact/urgency), a work note and a file in ServiceNow reach Jira."""
    sys_id, key = harness.pair(short_description="Payments slow")
    harness.servicenow.update_incident(sys_id, {"impact": "1", "urgency": "1"}, as_user=AGENT)
    harness.servicenow.add_work_note(sys_id, "Customer is a reseller", as_user=AGENT)
    harness.servicenow.attach(sys_id, "screen.png", b"\x89PNG" + b"0" * 60, as_user=AGENT)
    harness.drain()
    fields = harness.jira.issue(key)["fields"]
    assert fields["priority"]["name"] == "Highest"
    notes = [c for c in harness.jira_comments(key) if "Customer is a reseller" in c["body"]]
    assert len(notes) == 1 and notes[0].get("visibility")
    assert [(a["filename"], a["size"]) for a in fields["attachment"]] == [("screen.png", 64)]


def test_our_own_write_coming_back_writes_nothing(harness: Harness) -> None:
    """The webhook our write to ServiceNow causes is processed and makes zero writes anywhere."""
    _, key = harness.pair(short_description="Echo check")
    harness.jira.edit(key, {"summary": "Echo check"})  # unchanged value: nothing to do
    harness.jira.transition(key, "In Progress")
    harness.jira.comment(key, "Working on it", public=True)
    deliveries_before = len(harness.servicenow.deliveries())
    harness.drain()
    # One PATCH for the state, one for the comment: that is all.
    assert harness.writes("servicenow") == 2
    assert harness.writes("jira") == 0
    # ServiceNow posted the webhooks of our own writes back; processing them wrote nothing.
    assert len(harness.servicenow.deliveries()) > deliveries_before
    harness.reset_stats()
    harness.drain()
    harness.poll()
    assert harness.writes() == 0


def test_same_webhook_delivered_twice_writes_once(harness: Harness) -> None:
    """A delivery posted again (same id) is acknowledged and dropped; one write in total."""
    import requests

    sys_id, key = harness.pair(short_description="Duplicate check")
    harness.servicenow.update_incident(sys_id, {"short_description": "Duplicate check 2"})
    harness.servicenow.wait_for_webhooks()
    delivery = harness.servicenow.deliveries()[-1]
    again = requests.post(
        f"{harness.webhooks_url}/webhooks/servicenow",
        data=delivery.body,
        headers=delivery.headers,
        timeout=5,
    )
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    harness.drain()
    assert harness.jira.issue(key)["fields"]["summary"] == "Duplicate check 2"
    assert harness.writes("jira") == 1
    # Processing the same ticket again (a redelivery with a new id) still writes nothing.
    harness.queue.enqueue_ticket("servicenow", sys_id)
    harness.drain()
    assert harness.writes("jira") == 1


def test_reordered_deliveries_converge_to_latest(harness: Harness) -> None:
    """ServiceNow's three webhooks delivered newest first still leave Jira at the latest values."""
    import requests

    sys_id, key = harness.pair(short_description="Order check")
    # Let the Business Rule post to a dead end (404, not retried) to capture the deliveries.
    harness.servicenow.set_webhook(f"{harness.webhooks_url}/captured", SNOW_SECRET)
    captured_from = len(harness.servicenow.deliveries())
    harness.servicenow.update_incident(sys_id, {"state": "2"}, as_user=AGENT)
    harness.servicenow.update_incident(sys_id, {"state": "3", "hold_reason": "4"}, as_user=AGENT)
    harness.servicenow.update_incident(sys_id, {"short_description": "Order check v3"})
    harness.servicenow.wait_for_webhooks()
    captured = harness.servicenow.deliveries()[captured_from:]
    assert len(captured) == 3
    for delivery in reversed(captured):
        answer = requests.post(
            f"{harness.webhooks_url}/webhooks/servicenow",
            data=delivery.body,
            headers=delivery.headers,
            timeout=5,
        )
        assert answer.status_code == 202
    harness.drain()
    fields = harness.jira.issue(key)["fields"]
    assert fields["status"]["name"] == "Waiting"
    assert fields["summary"] == "Order check v3"
    assert harness.writes("jira") == 2  # one edit and one transition, not one per delivery


def test_conflicting_edits_owner_and_newest_win_with_audit(harness: Harness) -> None:
    """Summary (owned by ServiceNow) keeps ServiceNow's value; status goes to the newer edit."""
    sys_id, key = harness.pair(short_description="Conflict check")
    harness.servicenow.set_webhook(None)
    harness.jira.edit(key, {"summary": "Jira's wording"})
    harness.servicenow.update_incident(
        sys_id,
        {"short_description": "ServiceNow's wording", "state": "3", "hold_reason": "4"},
        as_user=AGENT,
    )
    time.sleep(1.1)  # ServiceNow keeps seconds: make the Jira status change clearly newer
    harness.jira.transition(key, "Done")
    harness.drain()
    assert harness.jira.issue(key)["fields"]["summary"] == "ServiceNow's wording"
    assert harness.servicenow.incident(sys_id)["state"] == "6"
    audit = harness.store.list_audit(limit=50)
    lost = {(a.system, a.from_value) for a in audit if a.field == "conflict"}
    assert ("jira", "Jira's wording") in lost
    assert ("servicenow", "on_hold") in lost


def test_crash_between_comment_write_and_record_leaves_one_copy(harness: Harness) -> None:
    """A worker dying right after posting a mirrored comment does not post it twice on retry."""
    sys_id, key = harness.pair(short_description="Crash check")
    crashed: list[str] = []

    def die_once(what: str) -> None:
        if what.startswith("comment") and not crashed:
            crashed.append(what)
            raise RuntimeError("worker killed after the write")

    harness.engine.after_write = die_once
    harness.jira.comment(key, "Only once, please", public=True)
    harness.drain()  # the task fails, the queue runs it again, the retry finds the marker
    assert crashed
    copies = [r for r in harness.snow_journal(sys_id) if "Only once, please" in r["value"]]
    assert len(copies) == 1
    assert harness.store.list_dead_letters() == []


def test_rate_limit_and_server_error_storm_converges(harness: Harness) -> None:
    """With 429s and 503s on half the API requests, every change still arrives exactly once."""
    pairs = [harness.pair(short_description=f"Storm {i}") for i in range(4)]
    storm = FaultConfig(rate_429=0.25, rate_5xx=0.25, seed=7, path_prefixes=("/rest", "/api"))
    harness.jira.set_faults(storm)
    harness.servicenow.configure_faults(storm.model_copy(update={"seed": 11}))
    for i, (sys_id, key) in enumerate(pairs):
        harness.jira.comment(key, f"storm comment {i}", public=True)
        harness.servicenow.update_incident(sys_id, {"state": "2"}, as_user=AGENT)
        harness.servicenow.add_work_note(sys_id, f"storm note {i}", as_user=AGENT)
    harness.drain()
    jira_faults = harness.jira.stats()["faults"]
    snow_faults = harness.servicenow.stats()["faults"]
    assert jira_faults["429"] + jira_faults["5xx"] > 0
    assert snow_faults["429"] + snow_faults["5xx"] > 0
    assert harness.store.list_dead_letters() == []
    for i, (sys_id, key) in enumerate(pairs):
        copies = [r for r in harness.snow_journal(sys_id) if f"storm comment {i}" in r["value"]]
        assert len(copies) == 1
        notes = [c for c in harness.jira_comments(key) if f"storm note {i}" in c["body"]]
        assert len(notes) == 1
        assert harness.jira.issue(key)["fields"]["status"]["name"] == "In Progress"
    # Calm again: a full poll finds nothing left to write.
    harness.jira.set_faults(FaultConfig())
    harness.servicenow.configure_faults(FaultConfig())
    harness.reset_stats()
    harness.poll()
    assert harness.writes() == 0


def test_bad_request_is_dead_lettered_and_replay_succeeds(harness: Harness) -> None:
    """A 400 on a write parks the event with the reason; after the fix a replay completes it."""
    sys_id, key = harness.pair(short_description="Dead letter check")
    too_long = "Dead letter check " + "x" * 300  # Jira refuses summaries over 255 characters
    harness.servicenow.update_incident(sys_id, {"short_description": too_long}, as_user=AGENT)
    harness.drain()
    (dead,) = harness.store.list_dead_letters()
    assert dead.ticket == sys_id and "255 characters" in dead.reason
    # Other tickets are not held up by the parked one.
    other_sys_id, other_key = harness.pair(short_description="Unrelated")
    harness.servicenow.update_incident(other_sys_id, {"state": "2"}, as_user=AGENT)
    harness.drain()
    assert harness.jira.issue(other_key)["fields"]["status"]["name"] == "In Progress"
    # The cause is fixed in ServiceNow without a webhook (the rule is switched off meanwhile).
    harness.servicenow.set_webhook(None)
    harness.servicenow.update_incident(
        sys_id, {"short_description": "Dead letter check, shorter"}, as_user=AGENT
    )
    replay(harness, dead.id)
    harness.drain()
    assert harness.jira.issue(key)["fields"]["summary"] == "Dead letter check, shorter"
    assert harness.store.list_dead_letters() == []


def replay(harness: Harness, dead_letter_id: int) -> None:
    """`escalation-sync deadletters replay ID` against this harness's state."""
    from typer.testing import CliRunner

    from cli.app import build

    result = CliRunner().invoke(build(), ["deadletters", "replay", str(dead_letter_id)])
    assert result.exit_code == 0, result.output


def test_oversized_attachment_is_listed_not_copied(harness: Harness) -> None:
    """A file over the size limit stays behind; one internal note names it, whatever happens."""
    sys_id, key = harness.pair(short_description="Big dump")
    harness.engine.copier.max_bytes = 1024
    harness.jira.attach(key, "heap.dump", b"\0" * 4096)
    harness.jira.attach(key, "small.log", b"ok\n" * 10)
    harness.drain()
    harness.queue.enqueue_ticket("jira", key)
    harness.drain()
    names = [f["file_name"] for f in harness.servicenow.store.query("sys_attachment", "")]
    assert names == ["small.log"]
    notes = [r for r in harness.snow_journal(sys_id) if "heap.dump" in r["value"]]
    assert len(notes) == 1 and notes[0]["element"] == "work_notes"
    assert "over the 1.0 KiB limit" in notes[0]["value"]


def test_reconcile_repairs_a_write_that_never_landed(harness: Harness) -> None:
    """A change lost on the way (no webhook, no poll) is found and applied by reconciliation."""
    sys_id, key = harness.pair(short_description="Drift")
    harness.servicenow.set_webhook(None)
    harness.servicenow.update_incident(sys_id, {"state": "3", "hold_reason": "4"}, as_user=AGENT)
    assert harness.engine.reconcile() == 1
    assert harness.jira.issue(key)["fields"]["status"]["name"] == "Waiting"
    assert harness.engine.reconcile() == 0


def test_labels_flow_both_ways(harness: Harness) -> None:
    """A tag added in ServiceNow's label column reaches Jira, and a Jira label comes back."""
    sys_id, key = harness.pair(short_description="Labels both ways")
    harness.servicenow.update_incident(sys_id, {"u_labels": "vip"}, as_user=AGENT)
    harness.drain()
    assert "vip" in harness.jira.issue(key)["fields"]["labels"]
    harness.jira.update(key, {"labels": [{"add": "hotfix"}]})
    harness.drain()
    assert set(harness.servicenow.incident(sys_id)["u_labels"].split(",")) == {"vip", "hotfix"}
    harness.reset_stats()
    harness.poll()
    assert harness.writes() == 0
