"""The product writes what real instances require, against simulators as strict as the vendors:
resolution code and notes, hold reason and its comment, Jira's resolve screen, internal comments
under a role the integration user holds, attachments keeping their type, and closures seen by
polling. Where the configuration is wrong the vendor's refusal is dead-lettered with its words.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jira import JiraConnector
from tests.e2e.conftest import AGENT, EXAMPLE_CONFIG, Harness, make_harness


def _config(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_CONFIG.read_text()
    assert old in text
    path = tmp_path / "config.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    made: list[Harness] = []

    def build(config: Path = EXAMPLE_CONFIG) -> Harness:
        harness = make_harness(tmp_path, monkeypatch, config=config)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()


def test_engineering_resolution_writes_resolution_code_and_notes(harness: Harness) -> None:
    """Jira Done resolves the incident with close_code and close_notes, the notes being what
    engineering last wrote; a bare state write would be refused by the data policy."""
    sys_id, key = harness.pair(short_description="Checkout fails")
    harness.jira.comment(key, "Root cause: expired TLS certificate; renewed it.", public=False)
    harness.jira.transition(key, "Done")
    harness.drain()
    incident = harness.servicenow.incident(sys_id)
    assert incident["state"] == "6"
    assert incident["close_code"] == "Solution provided"
    assert incident["close_notes"] == "Root cause: expired TLS certificate; renewed it."
    assert harness.store.list_dead_letters() == []


def test_waiting_in_jira_puts_the_incident_on_hold_awaiting_the_caller(harness: Harness) -> None:
    """On Hold is written with its hold reason and, for Awaiting Caller, the comment the data
    policy requires, in one save."""
    sys_id, key = harness.pair(short_description="Need the VPN log")
    harness.jira.transition(key, "Waiting")
    harness.drain()
    incident = harness.servicenow.incident(sys_id)
    assert (incident["state"], incident["hold_reason"]) == ("3", "1")
    comments = [r for r in harness.snow_journal(sys_id) if r["element"] == "comments"]
    assert [c["value"] for c in comments] == [
        "Our engineers need more information from you to continue. Please reply to this "
        "message with the details requested."
    ]
    assert not [c for c in harness.jira_comments(key) if "more information" in c["body"]], (
        "our own comment is not mirrored back"
    )
    assert harness.store.list_dead_letters() == []


def test_servicenow_resolution_reaches_jira_through_the_resolve_screen(harness: Harness) -> None:
    """An incident resolved in ServiceNow takes the Jira issue through its resolve screen, with
    the resolution the mapping names."""
    sys_id, key = harness.pair(short_description="Resolved at L1")
    harness.servicenow.update_incident(
        sys_id,
        {"state": "6", "close_code": "Workaround provided", "close_notes": "Cleared cache"},
        as_user=AGENT,
    )
    harness.drain()
    fields = harness.jira.issue(key)["fields"]
    assert fields["status"]["name"] == "Done" and fields["resolution"]["name"] == "Done"


def test_a_missing_requirement_is_dead_lettered_with_the_instances_reason(
    tmp_path: Path, make: object
) -> None:
    """Without the resolution fields in the mapping the instance refuses the save; the event is
    dead-lettered with its Data Policy Exception, and other tickets keep syncing."""
    config = _config(
        tmp_path,
        'fields = { close_code = "Solution provided", close_notes = "{resolution}" }\n\n'
        "[mapping.systems.servicenow.fields.status.requires.closed]",
        "\n[mapping.systems.servicenow.fields.status.requires.closed]",
    )
    harness = make(config)  # type: ignore[operator]
    sys_id, key = harness.pair(short_description="Unconfigured resolution")
    harness.jira.transition(key, "Done")
    harness.drain()
    (dead,) = harness.store.list_dead_letters()
    assert "Data Policy Exception" in dead.reason
    assert "Resolution code, Resolution notes" in dead.reason
    assert harness.servicenow.incident(sys_id)["state"] == "1"
    other_sys_id, other_key = harness.pair(short_description="Unrelated")
    harness.jira.transition(other_key, "In Progress")
    harness.drain()
    assert harness.servicenow.incident(other_sys_id)["state"] == "2"


def test_internal_comments_use_a_role_the_integration_user_holds(harness: Harness) -> None:
    """A ServiceNow work note reaches Jira restricted to the configured role."""
    sys_id, key = harness.pair(short_description="Internal note")
    harness.servicenow.add_work_note(sys_id, "Customer is a reseller", as_user=AGENT)
    harness.drain()
    (note,) = [c for c in harness.jira_comments(key) if "Customer is a reseller" in c["body"]]
    assert note["visibility"] == {"type": "role", "value": "Administrators"}


@pytest.mark.parametrize(
    ("role", "members", "words"),
    [
        ("Support Leads", None, "Role with id: Support Leads does not exist."),
        ("Support Leads", ["557058:engineer"], "not a member of the project role: Support Leads"),
    ],
)
def test_an_internal_comment_role_jira_refuses_is_dead_lettered(
    tmp_path: Path, make: object, role: str, members: list[str] | None, words: str
) -> None:
    """A role that does not exist in the project, or that the integration user does not hold,
    is refused by Jira; the note is dead-lettered with Jira's words, nothing is posted publicly."""
    config = _config(
        tmp_path,
        'internal_comment_role = "Administrators"',
        f'internal_comment_role = "{role}"',
    )
    harness = make(config)  # type: ignore[operator]
    if members is not None:
        harness.jira.add_role("DS", role, members)
    sys_id, key = harness.pair(short_description="Role check")
    harness.servicenow.add_work_note(sys_id, "Internal only", as_user=AGENT)
    harness.drain()
    (dead,) = harness.store.list_dead_letters()
    assert words in dead.reason
    assert not [c for c in harness.jira_comments(key) if "Internal only" in c["body"]]


def test_attachments_keep_their_content_type_both_ways(harness: Harness) -> None:
    """A text log attached in ServiceNow is text/plain in Jira; a PNG attached in Jira is
    image/png in ServiceNow."""
    sys_id, key = harness.pair(short_description="Attachments")
    harness.servicenow.attach(
        sys_id, "vpn.log", b"ERROR tunnel closed\n", "text/plain", as_user=AGENT
    )
    harness.jira.attach(key, "screen.png", b"\x89PNG\r\n\x1a\n" + b"0" * 56, mime_type="image/png")
    harness.drain()
    in_jira = {
        a["filename"]: a["mimeType"] for a in harness.jira.issue(key)["fields"]["attachment"]
    }
    assert in_jira["vpn.log"] == "text/plain"
    in_servicenow = {
        a["file_name"]: a["content_type"]
        for a in harness.servicenow.store.query("sys_attachment", f"table_sys_id={sys_id}")
    }
    assert in_servicenow["screen.png"] == "image/png"


def test_a_file_without_a_declared_type_is_typed_by_its_name(harness: Harness) -> None:
    """A file its source types only as application/octet-stream (or not at all) is typed by its
    extension, so a .log uploaded without a type still arrives as text."""
    jira = JiraConnector(
        harness.jira.url,
        email=harness.jira.engineer.email,
        api_token=harness.jira.engineer.api_token,
    )
    sys_id, key = harness.pair(short_description="Untyped")
    jira.add_attachment(key, "trace.log", io.BytesIO(b"trace\n"), "")
    harness.drain()
    found = harness.servicenow.store.query("sys_attachment", f"table_sys_id={sys_id}")
    assert {a["file_name"]: a["content_type"] for a in found}["trace.log"] == "text/plain"


def test_polling_sees_an_incident_closed_while_its_webhook_was_lost(harness: Harness) -> None:
    """The example configuration's poll query keeps closed incidents in view, so a closure whose
    webhook never arrived still reaches Jira."""
    sys_id, key = harness.pair(short_description="Closed quietly")
    harness.servicenow.set_webhook(None)
    harness.servicenow.update_incident(
        sys_id,
        {"state": "7", "close_code": "Solution provided", "close_notes": "Closed by the caller"},
        as_user=AGENT,
    )
    assert harness.servicenow.incident(sys_id)["active"] == "false"
    harness.poll()
    assert harness.jira.issue(key)["fields"]["status"]["name"] == "Closed"


def test_closing_without_itil_admin_is_dead_lettered_with_the_acl_exception(
    harness: Harness,
) -> None:
    """An integration user without itil_admin cannot close an incident: Jira's Closed is
    refused with the instance's ACL Exception and dead-lettered; resolving still works."""
    from tests.e2e.conftest import SNOW_USER

    harness.servicenow.revoke_roles(SNOW_USER, "itil_admin")
    sys_id, key = harness.pair(short_description="Close me")
    harness.jira.transition(key, "Closed")
    harness.drain()
    (dead,) = harness.store.list_dead_letters()
    assert "ACL Exception Update Failed due to security constraints" in dead.reason
    assert harness.servicenow.incident(sys_id)["state"] == "1"
