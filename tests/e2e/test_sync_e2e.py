"""End to end over real HTTP: the engine between the Jira and ServiceNow simulators."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Harness

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
