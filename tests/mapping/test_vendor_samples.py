"""Vendor records from tests/fixtures/vendor map to the expected canonical tickets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mapping import Mapping, load_mapping, to_canonical
from mapping.model import Person, Priority, Status, System, Visibility
from sync.config.settings import read_toml


@pytest.fixture(scope="module")
def mapping(example_config: Path) -> Mapping:
    """The example configuration's mapping."""
    return load_mapping(read_toml(example_config)["mapping"], source=str(example_config))


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


INCIDENT_SAMPLES = {
    "GET_incident_by_sysid": ("Can't access SFA software", Status.NEW, Priority.P3),
    "POST_incident": ("Unable to connect to office wifi", Status.NEW, Priority.P3),
    "PATCH_incident": (
        "Can't access Exchange server - is it down?",
        Status.IN_PROGRESS,
        Priority.P1,
    ),
    "PUT_incident": ("Can't access Exchange server - is it down?", Status.IN_PROGRESS, Priority.P1),
}


@pytest.mark.parametrize("name", sorted(INCIDENT_SAMPLES))
def test_servicenow_incident_samples(mapping: Mapping, vendor_dir: Path, name: str) -> None:
    """Every incident body in the Table API docs maps with its summary, status, priority, people."""
    raw = _load(vendor_dir / "servicenow" / "samples" / f"{name}.response.json")["result"]
    ticket = to_canonical(mapping, System.SERVICENOW, raw)
    summary, status, priority = INCIDENT_SAMPLES[name]
    assert (ticket.summary, ticket.status, ticket.priority) == (summary, status, priority)
    assert ticket.ref.id == raw["sys_id"] and ticket.ref.key == raw["number"]
    assert ticket.version == raw["sys_mod_count"]
    caller = raw["caller_id"]["value"] if raw["caller_id"] else None
    assert (ticket.customer.id if ticket.customer else None) == caller
    assigned = raw["assigned_to"]["value"] if raw["assigned_to"] else None
    assert (ticket.assignee.id if ticket.assignee else None) == assigned


def test_servicenow_problem_sample_with_problem_states(mapping: Mapping, vendor_dir: Path) -> None:
    """The problem-table sample maps once its table's state codes are in the value map."""
    raw = _load(vendor_dir / "servicenow" / "samples" / "GET_problem_list_limit1.response.json")
    record = raw["result"][0]
    data = read_toml(Path(__file__).resolve().parents[2] / "config.example.toml")["mapping"]
    data["systems"]["servicenow"]["fields"]["status"]["read_values"] = {"4": "closed"}
    ticket = to_canonical(load_mapping(data, source="problem"), System.SERVICENOW, record)
    assert ticket.summary == "Switch occasionally drops connections"
    assert (ticket.status, ticket.priority) == (Status.CLOSED, Priority.P4)


def test_servicenow_journal_marks_work_notes_internal(mapping: Mapping) -> None:
    """Journal rows become comments: `comments` public, `work_notes` internal."""
    raw = {
        "sys_id": "abc",
        "number": "INC0010001",
        "state": "2",
        "priority": "2",
        "_journal": [
            {
                "sys_id": "j1",
                "element": "comments",
                "value": "We are on it",
                "sys_created_by": "l1",
                "sys_created_on": "2026-11-23 10:00:00",
            },
            {
                "sys_id": "j2",
                "element": "work_notes",
                "value": "/escalate db locks",
                "sys_created_by": "l1",
                "sys_created_on": "2026-11-23 10:01:00",
            },
        ],
    }
    ticket = to_canonical(mapping, System.SERVICENOW, raw)
    assert [(c.id, c.visibility) for c in ticket.comments] == [
        ("j1", Visibility.PUBLIC),
        ("j2", Visibility.INTERNAL),
    ]
    assert ticket.comments[1].author == Person(id="l1")


JIRA_EXAMPLES = ["getIssue.response.200.json"]
JIRA_SEARCH_EXAMPLES = [
    "searchForIssuesUsingJql.response.200.json",
    "searchAndReconsileIssuesUsingJql.response.200.json",
]


def test_jira_get_issue_example(mapping: Mapping, vendor_dir: Path) -> None:
    """Atlassian's getIssue example maps: key, ADF description as text, internal comment."""
    raw = _load(vendor_dir / "jira" / "examples" / "getIssue.response.200.json")
    ticket = to_canonical(mapping, System.JIRA, raw)
    assert ticket.ref.key == "ED-1"
    assert ticket.description == "Main order flow broken"
    assert ticket.summary is None and ticket.status is None and ticket.priority is None
    assert ticket.comments[0].visibility is Visibility.INTERNAL  # restricted to a role
    assert ticket.comments[0].author == Person(id="5b10a2844c20165700ede21g", name="Mia Krystof")
    assert ticket.attachments[0].filename == "picture.jpg"


@pytest.mark.parametrize("name", JIRA_SEARCH_EXAMPLES)
def test_jira_search_examples(mapping: Mapping, vendor_dir: Path, name: str) -> None:
    """Every issue in the search examples maps to a canonical ticket."""
    raw = _load(vendor_dir / "jira" / "examples" / name)
    tickets = [to_canonical(mapping, System.JIRA, issue) for issue in raw["issues"]]
    assert [t.ref.key for t in tickets] == [i["key"] for i in raw["issues"]]


def _webhook_issues(vendor: Path) -> list[Path]:
    return sorted(p for p in (vendor / "jira" / "webhooks").glob("*.json") if "issue" in _load(p))


def test_jira_webhook_issue_shapes(mapping: Mapping, vendor_dir: Path) -> None:
    """Every issue object in the real webhook captures maps with summary, status and people."""
    checked = 0
    for path in _webhook_issues(vendor_dir):
        issue = _load(path)["issue"]
        fields = issue["fields"]
        ticket = to_canonical(mapping, System.JIRA, issue)
        assert ticket.ref.key == issue["key"], path.name
        assert ticket.summary == fields["summary"], path.name
        status = fields["status"]["name"]
        expected_status = {
            "To Do": Status.NEW,
            "In Progress": Status.IN_PROGRESS,
            "Done": Status.RESOLVED,
            "Closed": Status.CLOSED,
            "Reopened": Status.IN_PROGRESS,
        }[status]
        assert ticket.status is expected_status, path.name
        if fields.get("priority"):
            names = {"Highest": "P1", "High": "P2", "Medium": "P3", "Low": "P4", "Lowest": "P5"}
            assert ticket.priority == Priority(names[fields["priority"]["name"]]), path.name
        if fields.get("assignee"):
            assignee = fields["assignee"]
            assert ticket.assignee is not None
            assert ticket.assignee.id == (assignee.get("accountId") or assignee.get("name"))
        if fields.get("reporter"):
            assert ticket.reporter is not None and ticket.reporter.id
        checked += 1
    assert checked >= 30


def test_jira_issue_without_comments_has_none(mapping: Mapping) -> None:
    """An empty comment block reads as no comments, not as one empty comment."""
    raw = {"id": "1", "key": "DS-1", "fields": {"summary": "x", "comment": {"comments": []}}}
    assert to_canonical(mapping, System.JIRA, raw).comments == ()
