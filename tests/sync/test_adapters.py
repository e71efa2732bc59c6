"""Tests of the per-system adapters against strict fakes of the vendor HTTP APIs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from responses import matchers

from connectors.jira import JiraConnector
from connectors.retry import RetryPolicy
from connectors.servicenow import ServiceNowConnector
from mapping import VendorWrite
from mapping.model import System
from sync.pipeline.markers import Marker
from sync.systems.base import content_type_of
from sync.systems.jira.adapter import JiraAdapter
from sync.systems.servicenow.adapter import ServiceNowAdapter
from tests.conftest import VENDOR

JIRA = "http://jira.test"
SNOW = "http://snow.test"
ONCE = RetryPolicy(attempts=1)
MARK = Marker(System.SERVICENOW, "INC0010001", "j1")


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def jira() -> JiraAdapter:
    conn = JiraConnector(JIRA, email="bot@example.com", api_token="t", retry=ONCE)
    return JiraAdapter(conn, project="DS")


def snow(users: bool = False) -> ServiceNowAdapter:
    conn = ServiceNowConnector(SNOW, username="u", password="p", retry=ONCE)
    user_conn = (
        ServiceNowConnector(SNOW, table="sys_user", username="u", password="p", retry=ONCE)
        if users
        else None
    )
    return ServiceNowAdapter(conn, users=user_conn)


def sent_json(request: requests.PreparedRequest) -> Any:
    """The JSON body a recorded request carried; a request without one fails the test."""
    assert request.body is not None
    return json.loads(request.body)


def test_jira_labels_are_written_incrementally(rsps: responses.RequestsMock) -> None:
    """Only the difference from the current labels is sent, as add/remove operations."""
    rsps.put(
        f"{JIRA}/rest/api/2/issue/DS-1",
        status=204,
        match=[
            matchers.json_params_matcher(
                {"update": {"labels": [{"add": "ESCALATION"}, {"remove": "old"}]}}
            )
        ],
    )
    write = VendorWrite(fields={"labels": ["keep", "ESCALATION"]})
    jira().apply("DS-1", write, current_labels=["keep", "old"])


def test_jira_fields_then_transition(rsps: responses.RequestsMock) -> None:
    """Plain fields go in one edit and the status is reached by the matching transition."""
    rsps.put(
        f"{JIRA}/rest/api/2/issue/DS-1",
        status=204,
        match=[matchers.json_params_matcher({"fields": {"priority": {"name": "High"}}})],
    )
    rsps.get(
        f"{JIRA}/rest/api/2/issue/DS-1/transitions",
        json={"transitions": [{"id": "31", "name": "Finish", "to": {"id": "3", "name": "Done"}}]},
    )
    rsps.post(
        f"{JIRA}/rest/api/2/issue/DS-1/transitions",
        status=204,
        match=[matchers.json_params_matcher({"transition": {"id": "31"}})],
    )
    jira().apply("DS-1", VendorWrite(fields={"priority": {"name": "High"}}, transition_to="Done"))


def test_jira_comment_carries_marker_and_is_found_again(rsps: responses.RequestsMock) -> None:
    """An internal mirror is restricted, ends with the marker, and the marker finds it later."""
    rsps.post(f"{JIRA}/rest/api/2/issue/DS-1/comment", json={"id": "10077"})
    rsps.get(
        f"{JIRA}/rest/api/2/issue/DS-1/comment",
        json={
            "comments": [
                {"id": "1", "body": "unrelated"},
                {"id": "10077", "body": f"note\n\n{MARK.text()}"},
            ],
            "total": 2,
        },
    )
    adapter = jira()
    assert adapter.add_comment("DS-1", "note", public=False, marker=MARK) == "10077"
    sent = json.loads(rsps.calls[0].request.body or b"{}")
    assert sent["body"].endswith(MARK.text())
    assert sent["visibility"] == {"type": "role", "value": "Administrators"}
    assert adapter.find_comment_by_marker("DS-1", MARK) == "10077"


def test_jira_create_sets_project_and_type(rsps: responses.RequestsMock) -> None:
    """A created issue lands in the given project with the given type and the mapped fields."""
    rsps.post(
        f"{JIRA}/rest/api/2/issue",
        json={"id": "10050", "key": "DS-50", "self": f"{JIRA}/rest/api/2/issue/10050"},
        match=[
            matchers.json_params_matcher(
                {
                    "fields": {
                        "project": {"key": "ENG"},
                        "issuetype": {"name": "Bug"},
                        "summary": "Login fails",
                    }
                }
            )
        ],
    )
    made = jira().create(
        VendorWrite(fields={"summary": "Login fails"}), container="ENG", kind="Bug"
    )
    assert made.ticket_id == "DS-50"


def test_servicenow_fields_go_in_one_patch_whose_answer_is_returned(
    rsps: responses.RequestsMock,
) -> None:
    """Impact, urgency and other fields go in one PATCH; its answer (the record as stored, with
    the priority the instance computed) is returned with the caller for the mapping."""
    answer = json.loads(
        (VENDOR / "servicenow" / "samples" / "PATCH_incident.response.json").read_text()
    )
    record = answer["result"]
    caller = record["caller_id"]["value"]
    rsps.patch(
        f"{SNOW}/api/now/table/incident/{record['sys_id']}",
        json=answer,
        match=[matchers.json_params_matcher({"impact": "1", "urgency": "1", "state": "2"})],
    )
    rsps.get(
        f"{SNOW}/api/now/table/sys_user/{caller}",
        json={"result": {"sys_id": caller, "name": "Ana", "email": "ana@example.com"}},
    )
    stored = snow(users=True).apply(
        record["sys_id"], VendorWrite(fields={"impact": "1", "urgency": "1", "state": "2"})
    )
    assert stored is not None
    assert stored["priority"] == "1" and stored["sys_mod_count"] == record["sys_mod_count"]
    assert stored["_caller"]["email"] == "ana@example.com"


def test_servicenow_read_fields_asks_for_those_columns(rsps: responses.RequestsMock) -> None:
    """A read-back of some fields asks the Table API for those columns and the identity only."""
    rsps.get(
        f"{SNOW}/api/now/table/incident/abc",
        json={"result": {"sys_id": "abc", "number": "INC1", "state": "6"}},
        match=[
            matchers.query_param_matcher(
                {"sysparm_display_value": "false", "sysparm_fields": "sys_id,number,state"}
            )
        ],
    )
    assert snow().read_fields("abc", [("state",)])["state"] == "6"


def test_jira_read_fields_asks_for_those_fields(rsps: responses.RequestsMock) -> None:
    """A read-back of the status asks Jira for that field alone."""
    issue = json.loads((VENDOR / "jira" / "examples" / "getIssue.response.200.json").read_text())
    rsps.get(
        f"{JIRA}/rest/api/2/issue/DS-1",
        json=issue,
        match=[matchers.query_param_matcher({"fields": "status"})],
    )
    assert jira().read_fields("DS-1", [("fields", "status", "name")])["key"] == issue["key"]


def batch_reads(
    rsps: responses.RequestsMock,
    records: dict[str, dict[str, Any]],
    journal: list[dict[str, Any]] | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> list[list[str]]:
    """Answer Batch API requests of record, journal and attachment GETs from these rows; any
    other sub-request fails the test. Returns the sub-request paths of each batch."""
    batches: list[list[str]] = []

    def item(rid: str, url: str) -> dict[str, Any]:
        path = urlsplit(url).path
        body: dict[str, Any] = {"result": journal or []}
        status = 200
        if path.startswith("/api/now/table/incident/"):
            sys_id = path.rsplit("/", 1)[1]
            found = records.get(sys_id)
            status, body = (200, {"result": found}) if found else (404, {"error": {}})
        elif path == "/api/now/attachment":
            body = {"result": attachments or []}
        else:
            assert path == "/api/now/table/sys_journal_field", f"unexpected sub-request {url}"
        encoded = base64.b64encode(json.dumps(body).encode()).decode()
        return {"id": rid, "status_code": status, "body": encoded, "headers": []}

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent = json.loads(request.body)["rest_requests"]
        assert all(r["method"] == "GET" for r in sent)
        batches.append([urlsplit(r["url"]).path for r in sent])
        served = [item(r["id"], r["url"]) for r in sent]
        body = {"serviced_requests": served, "unserviced_requests": []}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    rsps.add_callback("POST", f"{SNOW}/api/now/v1/batch", callback=answer)
    return batches


def test_servicenow_read_adds_journal_attachments_and_caller(
    rsps: responses.RequestsMock,
) -> None:
    """One batch brings the record, `_journal` and `_attachments`; `_caller` is looked up."""
    batches = batch_reads(
        rsps,
        {"abc": {"sys_id": "abc", "number": "INC1", "caller_id": "u1"}},
        journal=[{"sys_id": "j1", "element": "comments", "value": "hi"}],
        attachments=[{"sys_id": "a1", "file_name": "x.log", "size_bytes": "3"}],
    )
    rsps.get(
        f"{SNOW}/api/now/table/sys_user/u1",
        json={"result": {"sys_id": "u1", "name": "Ana", "email": "ana@example.com"}},
    )
    raw = snow(users=True).read("abc")
    assert raw["_journal"][0]["sys_id"] == "j1"
    assert raw["_attachments"][0]["file_name"] == "x.log"
    assert raw["_caller"]["email"] == "ana@example.com"
    assert batches == [
        [
            "/api/now/table/incident/abc",
            "/api/now/table/sys_journal_field",
            "/api/now/attachment",
        ]
    ]


def test_servicenow_read_by_number_finds_the_sys_id_first(rsps: responses.RequestsMock) -> None:
    """An incident number is not a sys_id: the record is found by number, then read."""
    batches = batch_reads(rsps, {"abc": {"sys_id": "abc", "number": "INC1"}})
    rsps.get(
        f"{SNOW}/api/now/table/incident",
        json={"result": [{"sys_id": "abc", "number": "INC1"}]},
        match=[matchers.query_param_matcher({"sysparm_query": "number=INC1"}, strict_match=False)],
    )
    assert snow().read("INC1")["sys_id"] == "abc"
    assert [b[0] for b in batches] == [
        "/api/now/table/incident/INC1",
        "/api/now/table/incident/abc",
    ]


def test_servicenow_comment_returns_journal_id(rsps: responses.RequestsMock) -> None:
    """A public mirror goes to `comments` with its marker; its journal sys_id is returned."""
    rsps.patch(
        f"{SNOW}/api/now/table/incident/abc",
        json={"result": {"sys_id": "abc"}},
        match=[matchers.json_params_matcher({"comments": f"hello\n\n{MARK.text()}"})],
    )
    rsps.get(
        f"{SNOW}/api/now/table/sys_journal_field",
        json={"result": [{"sys_id": "j9", "element": "comments", "value": f"hello\n\n{MARK}"}]},
    )
    assert snow().add_comment("abc", "hello", public=True, marker=MARK) == "j9"


def test_servicenow_upload_streams_the_file(rsps: responses.RequestsMock) -> None:
    """An attachment is uploaded as the request body to the record's table and sys_id."""
    rsps.post(
        f"{SNOW}/api/now/attachment/file",
        json={"result": {"sys_id": "a2"}},
        match=[
            matchers.query_param_matcher(
                {"table_name": "incident", "table_sys_id": "abc", "file_name": "x.log"}
            )
        ],
    )
    snow().upload("abc", "x.log", io.BytesIO(b"abc"))
    assert rsps.calls[0].request.body is not None


def test_servicenow_caller_is_looked_up_once_per_ttl(rsps: responses.RequestsMock) -> None:
    """Tickets of one caller share one sys_user lookup until the cache entry expires."""
    batch_reads(
        rsps,
        {
            sys_id: {"sys_id": sys_id, "caller_id": {"link": "x", "value": "u1"}}
            for sys_id in ("a", "b", "c")
        },
    )
    user = rsps.get(
        f"{SNOW}/api/now/table/sys_user/u1",
        json={"result": {"sys_id": "u1", "name": "Ana", "email": "ana@example.com"}},
    )
    now = [0.0]
    adapter = snow(users=True)
    adapter._clock = lambda: now[0]
    assert adapter.read("a")["_caller"]["email"] == "ana@example.com"
    assert adapter.read("b")["_caller"]["email"] == "ana@example.com"
    assert user.call_count == 1
    now[0] = 301.0
    adapter.read("c")
    assert user.call_count == 2


def test_servicenow_link_note_reads_the_journal_once(rsps: responses.RequestsMock) -> None:
    """Posting a link: one journal read to see it is not there yet, one PATCH, nothing more."""
    journal = rsps.get(f"{SNOW}/api/now/table/sys_journal_field", json={"result": []})
    patch = rsps.patch(f"{SNOW}/api/now/table/incident/abc", json={"result": {"sys_id": "abc"}})
    snow().add_link("abc", "https://jira.example/browse/DS-1", "jira DS-1")
    assert (journal.call_count, patch.call_count) == (1, 1)
    body = patch.calls[0].request.body
    assert b"work_notes" in body and b"escalation-sync origin=servicenow:abc:link-" in body


# --- in bulk (backfill) ---------------------------------------------------------------------


def _bulk_answer(keys: list[str]) -> dict[str, object]:
    return {
        "issues": [
            {"id": str(10000 + n), "key": k, "self": f"{JIRA}/x"} for n, k in enumerate(keys)
        ],
        "errors": [],
    }


def test_jira_create_many_learns_the_start_transitions_once(rsps: responses.RequestsMock) -> None:
    """The first chunk is created as is and moved after; the workflow's start status and its
    transitions are read from its first issue; later chunks take the transition on create."""
    from sync.systems.base import NewRecord

    rsps.post(f"{JIRA}/rest/api/2/issue/bulk", json=_bulk_answer(["DS-1", "DS-2"]))
    rsps.get(f"{JIRA}/rest/api/2/issue/DS-1", json={"fields": {"status": {"name": "To Do"}}})
    rsps.get(
        f"{JIRA}/rest/api/2/issue/DS-1/transitions",
        json={"transitions": [{"id": "11", "name": "Start", "to": {"name": "In Progress"}}]},
    )
    rsps.post(
        f"{JIRA}/rest/api/2/issue/DS-2/transitions",
        status=204,
        match=[matchers.json_params_matcher({"transition": {"id": "11"}})],
    )
    rsps.post(f"{JIRA}/rest/api/2/issue/bulk", json=_bulk_answer(["DS-3", "DS-4"]))
    adapter = jira()

    def record(status: str) -> NewRecord:
        return NewRecord(VendorWrite(fields={"summary": "s"}, transition_to=status), kind="Bug")

    first = adapter.create_many([record("To Do"), record("In Progress")])
    second = adapter.create_many([record("In Progress"), record("To Do")])
    assert [o.created.ticket_id for o in first + second if o.created] == [
        "DS-1",
        "DS-2",
        "DS-3",
        "DS-4",
    ]
    assert all(o.problem is None for o in first + second)
    sent = sent_json(rsps.calls[-1].request)["issueUpdates"]
    assert [u.get("transition") for u in sent] == [{"id": "11"}, None]
    assert sent[0]["fields"]["issuetype"] == {"name": "Bug"}


def test_jira_create_many_reports_a_status_it_cannot_reach(rsps: responses.RequestsMock) -> None:
    """An issue made but not moved is created, with the vendor's reason as its problem."""
    from sync.systems.base import NewRecord

    rsps.post(f"{JIRA}/rest/api/2/issue/bulk", json=_bulk_answer(["DS-1"]))
    rsps.get(f"{JIRA}/rest/api/2/issue/DS-1", json={"fields": {"status": {"name": "To Do"}}})
    rsps.get(f"{JIRA}/rest/api/2/issue/DS-1/transitions", json={"transitions": []})
    rsps.get(f"{JIRA}/rest/api/2/issue/DS-1/transitions", json={"transitions": []})
    rsps.get(f"{JIRA}/rest/api/2/issue/DS-1", json={"fields": {"status": {"name": "To Do"}}})
    (outcome,) = jira().create_many([NewRecord(VendorWrite(fields={}, transition_to="Done"))])
    assert outcome.created is not None and outcome.created.key == "DS-1"
    assert outcome.problem is not None and "not moved to 'Done'" in outcome.problem


def _batch_served(answers: list[tuple[int, dict[str, object]]]) -> dict[str, object]:
    return {
        "batch_request_id": "b",
        "serviced_requests": [
            {
                "id": str(n),
                "status_code": status,
                "body": base64.b64encode(json.dumps(body).encode()).decode(),
                "headers": [],
            }
            for n, (status, body) in enumerate(answers)
        ],
        "unserviced_requests": [],
    }


def test_servicenow_link_notes_go_through_the_batch_api_once_each(
    rsps: responses.RequestsMock,
) -> None:
    """Notes already in a record's journal are not written again; the others are PATCHed in
    one Batch API call, each answer's sys_mod_count kept as the record's new version and a
    refused one reported with ServiceNow's message."""
    from sync.systems.base import PairLink
    from sync.systems.servicenow.adapter import _link_note

    adapter = snow()
    # Record a shows its link already (an earlier run wrote the note, marker and all).
    marker, _text = _link_note("a", "http://jira/DS-1", "Paired Jira record DS-1")
    links = [
        PairLink(
            "a",
            "http://jira/DS-1",
            "Paired Jira record DS-1",
            record={"_journal": [{"value": f"earlier note\n\n{marker.text()}"}]},
        ),
        PairLink("b", "http://jira/DS-2", "Paired Jira record DS-2"),
        PairLink("c", "http://jira/DS-3", "Paired Jira record DS-3"),
    ]
    rsps.post(
        f"{SNOW}/api/now/v1/batch",
        json=_batch_served(
            [
                (200, {"result": {"sys_id": "b", "sys_mod_count": "3"}}),
                (403, {"error": {"message": "ACL refused", "detail": "no write"}}),
            ]
        ),
    )
    outcomes = adapter.add_links(links)
    sent = sent_json(rsps.calls[0].request)["rest_requests"]
    assert [r["url"] for r in sent] == [
        "/api/now/table/incident/b?sysparm_fields=sys_id,sys_mod_count",
        "/api/now/table/incident/c?sysparm_fields=sys_id,sys_mod_count",
    ]
    body = json.loads(base64.b64decode(sent[0]["body"]))
    assert list(body) == ["work_notes"] and "http://jira/DS-2" in body["work_notes"]
    assert [(o.problem, o.version) for o in outcomes] == [
        (None, None),
        (None, "3"),
        ("ACL refused; no write", None),
    ]


def test_servicenow_scan_reads_related_rows_a_page_at_a_time(
    rsps: responses.RequestsMock,
) -> None:
    """A page of the scan comes with its journals, attachments and callers, one query each."""
    rows = [
        {"sys_id": "a", "caller_id": {"value": "u1", "link": "x"}},
        {"sys_id": "b", "caller_id": "u1"},
    ]
    rsps.get(f"{SNOW}/api/now/table/incident", json={"result": rows})
    rsps.get(
        f"{SNOW}/api/now/table/sys_journal_field",
        json={"result": [{"sys_id": "j", "element_id": "b", "value": "hi"}]},
    )
    rsps.get(
        f"{SNOW}/api/now/attachment",
        json={"result": [{"sys_id": "f", "table_sys_id": "a", "file_name": "log.txt"}]},
    )
    rsps.get(
        f"{SNOW}/api/now/table/sys_user",
        json={"result": [{"sys_id": "u1", "name": "Carla", "email": "c@example.com"}]},
    )
    (page,) = list(snow(users=True).scan(datetime(2000, 1, 1, tzinfo=UTC), {"number", "_caller"}))
    first, second = page.records
    assert [r["file_name"] for r in first["_attachments"]] == ["log.txt"]
    assert [r["value"] for r in second["_journal"]] == ["hi"]
    assert first["_caller"]["name"] == second["_caller"]["name"] == "Carla"
    query = dict(parse_qsl(urlsplit(rsps.calls[0].request.url or "").query))
    assert query["sysparm_query"] == "sys_updated_on>=2000-01-01 00:00:00^ORDERBYsys_id"
    assert query["sysparm_fields"] == "sys_id,caller_id,number"


@pytest.mark.parametrize(
    ("name", "declared", "sent"),
    [
        ("vpn.log", "text/plain", "text/plain"),
        ("vpn.log", "application/octet-stream", "text/plain"),
        ("vpn.log", None, "text/plain"),
        ("screen.png", "", "image/png"),
        ("dump.bin", None, "application/octet-stream"),
        ("report.pdf", "application/x-custom", "application/x-custom"),
    ],
)
def test_uploads_keep_a_declared_type_and_type_the_rest_by_name(
    name: str, declared: str | None, sent: str
) -> None:
    """A specific declared type is kept; a generic or missing one is taken from the file name."""
    assert content_type_of(name, declared) == sent
