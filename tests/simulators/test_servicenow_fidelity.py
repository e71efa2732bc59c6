"""The ServiceNow simulator answers like the real Table API bodies printed in ServiceNow's docs."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators.common import FaultConfig
from simulators.servicenow import ServiceNowSimulator
from tests.conftest import VENDOR

FIXTURES = VENDOR / "servicenow" / "samples"
AUTH = ("admin", "admin")
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# Values that differ between any two records: identity, time, who.
VOLATILE = {
    "sys_id", "number", "sys_created_on", "sys_updated_on", "opened_at", "opened_by",
    "sys_created_by", "sys_updated_by",
}  # fmt: skip


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["result"]


def ref(sample_record: dict[str, Any], name: str) -> str:
    return str(sample_record[name]["value"])


@pytest.fixture(scope="module")
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as running:
        yield running


def shape(value: Any) -> Any:
    """str, or the sorted keys of an object (a reference is ('link', 'value'))."""
    if isinstance(value, dict):
        return tuple(sorted(value))
    return type(value).__name__


# Columns of current releases the documented bodies' older release lacks ("On hold reason",
# c_IncidentManagementStateModel).
NEWER_COLUMNS = ["hold_reason"]


def assert_same_shape(real: dict[str, Any], simulated: dict[str, Any], base_url: str) -> None:
    newer = [k for k in NEWER_COLUMNS if k in simulated and k not in real]
    assert list(simulated) == list(real) + newer, "same keys in the same order"
    for key, real_value in real.items():
        got = simulated[key]
        assert shape(got) == shape(real_value), key
        if isinstance(real_value, dict):
            table = real_value["link"].split("/api/now/table/")[1].split("/")[0]
            assert got["link"] == f"{base_url}/api/now/table/{table}/{got['value']}", key
        elif DATETIME.match(real_value) and got:
            assert DATETIME.match(got), key


def create(sim: ServiceNowSimulator, body: dict[str, Any], **params: str) -> requests.Response:
    return requests.post(
        f"{sim.url}/api/now/table/incident",
        json=body,
        headers=JSON_HEADERS,
        auth=AUTH,
        params=params,
        timeout=10,
    )


def test_post_matches_the_documented_response(sim: ServiceNowSimulator) -> None:
    """The documented POST body gives the documented answer: keys, shapes and stable values."""
    real = sample("POST_incident.response.json")
    response = create(
        sim,
        {
            "short_description": "Unable to connect to office wifi",
            "assignment_group": "287ebd7da9fe198100f92cc8d1d2154e",
            "urgency": "2",
            "impact": "2",
        },
    )
    assert response.status_code == 201
    assert response.headers["Content-Type"].startswith("application/json")
    got = response.json()["result"]
    assert response.headers["Location"] == f"{sim.url}/api/now/table/incident/{got['sys_id']}"
    assert_same_shape(real, got, sim.url)
    differing = {
        k for k in real if k not in VOLATILE and shape(real[k]) == "str" and real[k] != got[k]
    }
    assert differing == set()
    assert re.fullmatch(r"INC\d{7}", got["number"])
    assert re.fullmatch(r"[0-9a-f]{32}", got["sys_id"])


def test_get_matches_the_documented_response(sim: ServiceNowSimulator) -> None:
    """A record with the sample's references set reads back with the sample's keys and shapes."""
    real = sample("GET_incident_by_sysid.response.json")
    fields = {
        name: ref(real, name)
        for name in ("location", "assignment_group", "caller_id", "problem_id", "cmdb_ci")
    }
    created = create(sim, {**fields, "impact": "1", "urgency": "3", "category": "software"}).json()[
        "result"
    ]
    response = requests.get(
        f"{sim.url}/api/now/table/incident/{created['sys_id']}", auth=AUTH, timeout=10
    )
    assert response.status_code == 200
    got = response.json()["result"]
    for name, real_value in real.items():
        if isinstance(real_value, dict) and not isinstance(got[name], dict):
            pytest.fail(f"{name} should be a reference object")
    assert_same_shape(real, got, sim.url)
    assert got["priority"] == real["priority"] == "3"


def test_patch_matches_the_documented_response(sim: ServiceNowSimulator) -> None:
    """The documented PATCH (assignee, urgency, a comment) answers in the sample's shape."""
    real = sample("PATCH_incident.response.json")
    created = create(
        sim,
        {
            name: ref(real, name)
            for name in ("location", "company", "assignment_group", "caller_id", "cmdb_ci")
        }
        | {"impact": "1", "urgency": "3", "category": "hardware", "state": "2"},
    ).json()["result"]
    response = requests.patch(
        f"{sim.url}/api/now/table/incident/{created['sys_id']}",
        json={
            "assigned_to": "681b365ec0a80164000fb0b05854a0cd",
            "urgency": "1",
            "comments": "Elevating urgency, this is a blocking issue",
        },
        headers=JSON_HEADERS,
        auth=AUTH,
        timeout=10,
    )
    assert response.status_code == 200
    got = response.json()["result"]
    assert_same_shape(real, got, sim.url)
    assert got["priority"] == real["priority"] == "1"
    assert got["comments"] == "" and got["sys_mod_count"] == "1"
    [entry] = sim.journal(created["sys_id"])
    assert entry["element"] == "comments"
    assert entry["value"] == "Elevating urgency, this is a blocking issue"


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("1", "1", "1"), ("1", "2", "2"), ("1", "3", "3"),
        ("2", "1", "2"), ("2", "2", "3"), ("2", "3", "4"),
        ("3", "1", "3"), ("3", "2", "4"), ("3", "3", "5"),
    ],
)  # fmt: skip
def test_priority_follows_the_default_lookup(
    sim: ServiceNowSimulator, impact: str, urgency: str, priority: str
) -> None:
    """Impact x urgency gives the base system's priority, and a written priority is recomputed."""
    created = create(sim, {"impact": impact, "urgency": urgency, "priority": "1"}).json()
    assert created["result"]["priority"] == priority


def test_display_values_and_reference_links(sim: ServiceNowSimulator) -> None:
    """display_value true/all and exclude_reference_link change the value shapes as documented."""
    user = sim.add_user("beth.anglin", name="Beth Anglin")
    inc = sim.create_incident({"caller_id": user["sys_id"], "state": "2", "impact": "1"})
    url = f"{sim.url}/api/now/table/incident/{inc['sys_id']}"

    def get(**params: str) -> dict[str, Any]:
        answer = requests.get(url, params=params, auth=AUTH, timeout=10).json()
        return dict(answer["result"])

    shown = get(sysparm_display_value="true")
    assert shown["state"] == "In Progress" and shown["impact"] == "1 - High"
    assert shown["caller_id"] == {
        "display_value": "Beth Anglin",
        "link": f"{sim.url}/api/now/table/sys_user/{user['sys_id']}",
    }
    both = get(sysparm_display_value="all")
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert both["caller_id"]["value"] == user["sys_id"]
    assert set(both["caller_id"]) == {"display_value", "value", "link"}
    assert get(sysparm_exclude_reference_link="true")["caller_id"] == user["sys_id"]
    assert (
        get(sysparm_display_value="true", sysparm_exclude_reference_link="true")["caller_id"]
        == "Beth Anglin"
    )
    assert list(get(sysparm_fields="number,caller_id.name,bogus")) == [
        "number",
        "caller_id.name",
    ]
    assert get(sysparm_fields="caller_id.name")["caller_id.name"] == "Beth Anglin"


def test_every_value_is_a_string(sim: ServiceNowSimulator) -> None:
    """Numbers and booleans written by a client come back as strings."""
    created = create(sim, {"impact": 2, "urgency": 1, "knowledge": True}).json()["result"]
    assert created["impact"] == "2" and created["knowledge"] == "true"
    assert all(isinstance(v, str | dict) for v in created.values())


def test_list_paging_headers(sim: ServiceNowSimulator) -> None:
    """sysparm_limit/offset page the list with X-Total-Count and first/prev/next/last links."""
    marker = "paging-check"
    sim.seed_incidents(5, fields={"short_description": marker})
    params = {
        "sysparm_query": f"short_description={marker}^ORDERBYnumber",
        "sysparm_limit": "2",
        "sysparm_offset": "2",
    }
    response = requests.get(
        f"{sim.url}/api/now/table/incident", params=params, auth=AUTH, timeout=10
    )
    assert response.headers["X-Total-Count"] == "5"
    assert len(response.json()["result"]) == 2
    links = dict(
        (rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"])
    )
    assert set(links) == {"first", "prev", "next", "last"}
    assert "sysparm_offset=4" in links["next"] and "sysparm_offset=4" in links["last"]
    assert "sysparm_offset=0" in links["prev"]
    last = requests.get(links["last"], auth=AUTH, timeout=10)
    assert len(last.json()["result"]) == 1 and 'rel="next"' not in last.headers["Link"]


def test_name_value_pairs_filter_like_a_query(sim: ServiceNowSimulator) -> None:
    """`&field=value` query parameters filter like sysparm_query conditions."""
    inc = sim.create_incident({"short_description": "pair-filter"})
    response = requests.get(
        f"{sim.url}/api/now/table/incident",
        params={"number": inc["number"]},
        auth=AUTH,
        timeout=10,
    )
    assert [r["sys_id"] for r in response.json()["result"]] == [inc["sys_id"]]


def test_versioned_list_urls(sim: ServiceNowSimulator) -> None:
    """An empty query answers [] on v2 and the default URL, 404 on v1, as documented."""
    query = {"sysparm_query": "number=INC9999999"}
    for version, status in (("", 200), ("v2/", 200), ("v1/", 404)):
        response = requests.get(
            f"{sim.url}/api/now/{version}table/incident", params=query, auth=AUTH, timeout=10
        )
        assert response.status_code == status, version
        if status == 200:
            assert response.json() == {"result": []}


def test_sys_fields_are_maintained(sim: ServiceNowSimulator) -> None:
    """Saved updates count in sys_mod_count; an update changing nothing is not saved."""
    sim.freeze_time(datetime(2026, 2, 1, 9, 0, 0, tzinfo=UTC))
    try:
        inc = sim.create_incident({"short_description": "counting"})
        assert inc["sys_mod_count"] == "0" and inc["sys_updated_on"] == "2026-02-01 09:00:00"
        url = f"{sim.url}/api/now/table/incident/{inc['sys_id']}"
        sim.freeze_time(datetime(2026, 2, 1, 9, 0, 5, tzinfo=UTC))
        same = requests.patch(
            url,
            json={"short_description": "counting"},
            headers=JSON_HEADERS,
            auth=AUTH,
            timeout=10,
        ).json()["result"]
        assert same["sys_mod_count"] == "0" and same["sys_updated_on"] == "2026-02-01 09:00:00"
        changed = requests.patch(
            url,
            json={
                "state": "6",
                "close_code": "Solution provided",
                "close_notes": "fixed",
                "sys_mod_count": "99",
            },
            headers=JSON_HEADERS,
            auth=AUTH,
            timeout=10,
        ).json()["result"]
        assert changed["sys_mod_count"] == "1"
        assert changed["sys_updated_on"] == "2026-02-01 09:00:05"
        assert changed["incident_state"] == "6" and changed["resolved_at"] == "2026-02-01 09:00:05"
        assert changed["resolved_by"]["value"] == sim.store.user_sys_id("admin")
    finally:
        sim.freeze_time(None)


def test_journal_rows_are_readable_through_the_table_api(sim: ServiceNowSimulator) -> None:
    """comments and work_notes land in sys_journal_field and never on the record."""
    inc = sim.create_incident({"short_description": "journal"})
    sim.add_comment(inc["sys_id"], "customer visible")
    sim.add_work_note(inc["sys_id"], "internal only")
    record = sim.incident(inc["sys_id"])
    assert record["comments"] == "" and record["work_notes"] == ""
    assert record["sys_mod_count"] == "2"
    response = requests.get(
        f"{sim.url}/api/now/table/sys_journal_field",
        params={"sysparm_query": f"element_id={inc['sys_id']}^ORDERBYsys_created_on"},
        auth=AUTH,
        timeout=10,
    )
    entries = response.json()["result"]
    assert [(e["element"], e["value"], e["name"]) for e in entries] == [
        ("comments", "customer visible", "incident"),
        ("work_notes", "internal only", "incident"),
    ]
    assert set(entries[0]) == {
        "sys_id", "sys_created_on", "name", "element_id", "sys_tags", "value",
        "sys_created_by", "element",
    }  # fmt: skip


def test_errors_are_servicenow_shaped(sim: ServiceNowSimulator) -> None:
    """404, bad tables, bad bodies and missing auth answer with ServiceNow's error object."""
    missing = requests.get(f"{sim.url}/api/now/table/incident/nope", auth=AUTH, timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval",
        },
        "status": "failure",
    }
    bad_table = requests.get(f"{sim.url}/api/now/table/bogus", auth=AUTH, timeout=10)
    assert bad_table.status_code == 400 and "Invalid table" in bad_table.json()["error"]["message"]
    bad_body = requests.post(
        f"{sim.url}/api/now/table/incident",
        data=b"{nope",
        headers=JSON_HEADERS,
        auth=AUTH,
        timeout=10,
    )
    assert bad_body.status_code == 400
    anonymous = requests.get(f"{sim.url}/api/now/table/incident", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"] == "User Not Authenticated"


def test_attachment_api(sim: ServiceNowSimulator) -> None:
    """Upload with the file as body, list by table_sys_id, download the same bytes."""
    inc = sim.create_incident()
    content = b"\x00\x01log line\n" * 100
    uploaded = requests.post(
        f"{sim.url}/api/now/attachment/file",
        params={"table_name": "incident", "table_sys_id": inc["sys_id"], "file_name": "app.log"},
        data=content,
        headers={"Content-Type": "text/plain", "Accept": "application/json"},
        auth=AUTH,
        timeout=10,
    )
    assert uploaded.status_code == 201
    meta = uploaded.json()["result"]
    assert meta["size_bytes"] == str(len(content)) and meta["content_type"] == "text/plain"
    assert meta["download_link"] == f"{sim.url}/api/now/attachment/{meta['sys_id']}/file"
    listed = requests.get(
        f"{sim.url}/api/now/attachment",
        params={"sysparm_query": f"table_sys_id={inc['sys_id']}"},
        auth=AUTH,
        timeout=10,
    ).json()["result"]
    assert [m["file_name"] for m in listed] == ["app.log"]
    download = requests.get(meta["download_link"], auth=AUTH, timeout=10)
    assert download.content == content
    assert json.loads(download.headers["X-Attachment-Metadata"])["sys_id"] == meta["sys_id"]


def test_batch_api_runs_each_request(sim: ServiceNowSimulator) -> None:
    """Batch sub-requests run through the Table API with base64 bodies and their own status."""

    def b64(data: Any) -> str:
        return base64.b64encode(json.dumps(data).encode()).decode()

    headers = [
        {"name": "Content-Type", "value": "application/json"},
        {"name": "Accept", "value": "application/json"},
    ]
    payload = {
        "batch_request_id": "b1",
        "rest_requests": [
            {"id": "1", "method": "POST", "url": "/api/now/table/incident", "headers": headers,
             "body": b64({"short_description": "from batch"})},
            {"id": "2", "method": "GET", "url": "/api/now/table/incident/nope", "headers": headers},
        ],
    }  # fmt: skip
    response = requests.post(
        f"{sim.url}/api/now/v1/batch", json=payload, headers=JSON_HEADERS, auth=AUTH, timeout=10
    )
    body = response.json()
    assert body["batch_request_id"] == "b1" and body["unserviced_requests"] == []
    first, second = body["serviced_requests"]
    assert first["status_code"] == 201
    created = json.loads(base64.b64decode(first["body"]))["result"]
    assert created["short_description"] == "from batch"
    assert second["status_code"] == 404


def _batch(sim: ServiceNowSimulator, items: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {"batch_request_id": "b2", "rest_requests": items}
    response = requests.post(
        f"{sim.url}/api/now/v1/batch", json=payload, headers=JSON_HEADERS, auth=AUTH, timeout=10
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_batch_get_answers_as_the_request_sent_alone(sim: ServiceNowSimulator) -> None:
    """A GET sub-request answers what the same GET answers alone (batch-api: the body base64,
    its own status and headers, none when `exclude_response_headers`)."""
    made = sim.create_incident({"short_description": "batched read"}, as_user="admin")
    sim.add_comment(made["sys_id"], "first", as_user="admin")
    record_url = f"/api/now/table/incident/{made['sys_id']}?sysparm_fields=number,priority"
    journal_url = (
        "/api/now/table/sys_journal_field?sysparm_limit=1&sysparm_query="
        f"element_id%3D{made['sys_id']}%5EORDERBYsys_created_on"
    )
    body = _batch(
        sim,
        [
            {"id": "r", "method": "GET", "url": record_url, "exclude_response_headers": True},
            {"id": "j", "method": "GET", "url": journal_url, "headers": [
                {"name": "Accept", "value": "application/json"}]},
            {"id": "x", "method": "GET", "url": "/api/now/table/incident/nope"},
        ],
    )  # fmt: skip
    assert body["unserviced_requests"] == []
    served = {item["id"]: item for item in body["serviced_requests"]}
    for rid, url in (("r", record_url), ("j", journal_url)):
        alone = requests.get(f"{sim.url}{url}", headers=JSON_HEADERS, auth=AUTH, timeout=10)
        assert served[rid]["status_code"] == alone.status_code == 200
        assert served[rid]["status_text"] == "OK"
        assert json.loads(base64.b64decode(served[rid]["body"])) == alone.json()
    assert served["r"]["headers"] == []
    headers = {h["name"]: h["value"] for h in served["j"]["headers"]}
    assert headers["X-Total-Count"] == "1"
    assert headers["Content-Type"].startswith("application/json")
    assert served["x"]["status_code"] == 404
    assert json.loads(base64.b64decode(served["x"]["body"]))["error"]["message"]


def test_batch_items_need_id_method_and_url(sim: ServiceNowSimulator) -> None:
    """An item missing a required member (id, method, url) is not run."""
    body = _batch(
        sim,
        [
            {"id": "1", "url": "/api/now/table/incident?sysparm_limit=1"},
            {"id": "2", "method": "GET"},
            {"id": "3", "method": "GET", "url": "/api/now/table/incident?sysparm_limit=1"},
        ],
    )
    assert body["unserviced_requests"] == ["1", "2"]
    assert [item["id"] for item in body["serviced_requests"]] == ["3"]


def test_batch_sub_requests_are_counted_apart() -> None:
    """The batch counts as one request; what it carried is counted under `batched`."""
    with ServiceNowSimulator() as fresh:
        _batch(
            fresh,
            [
                {"id": "1", "method": "GET", "url": "/api/now/table/incident?sysparm_limit=1"},
                {"id": "2", "method": "GET", "url": "/api/now/attachment?sysparm_limit=1"},
            ],
        )
        # The request counter is bumped once the answer has gone out: wait for it.
        deadline = time.monotonic() + 5
        while fresh.stats()["total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = fresh.stats()
    assert stats["requests"] == {"POST /api/now/v1/batch": 1}
    assert stats["batched"] == {"GET /api/now/table/{table}": 1, "GET /api/now/attachment": 1}


def test_oauth_token_endpoint(sim: ServiceNowSimulator) -> None:
    """Client credentials get a bearer token that authenticates as the client's user."""
    sim.add_user("svc.oauth", name="OAuth Integration")
    sim.add_oauth_client("cid", "csecret", user_name="svc.oauth")
    token = requests.post(
        f"{sim.url}/oauth_token.do",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"},
        timeout=10,
    ).json()
    assert token["token_type"] == "Bearer" and int(token["expires_in"]) > 0
    created = requests.post(
        f"{sim.url}/api/now/table/incident",
        json={"short_description": "via oauth"},
        headers={**JSON_HEADERS, "Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    ).json()["result"]
    assert created["sys_created_by"] == "svc.oauth"
    refused = requests.post(
        f"{sim.url}/oauth_token.do",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "wrong"},
        timeout=10,
    )
    assert refused.status_code == 401


def test_hibernating_instance_answers_html(sim: ServiceNowSimulator) -> None:
    """A sleeping instance answers API calls with a 200 HTML page."""
    sim.hibernate(True)
    try:
        page = requests.get(f"{sim.url}/api/now/table/incident", auth=AUTH, timeout=10)
    finally:
        sim.hibernate(False)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")


def test_faults_and_stats(sim: ServiceNowSimulator) -> None:
    """Injected 429s without Retry-After are counted in /_sim/stats by route template."""
    requests.post(f"{sim.url}/_sim/reset", timeout=10)
    sim.configure_faults(FaultConfig(rate_429_no_retry_after=1.0, seed=1))
    try:
        limited = requests.get(f"{sim.url}/api/now/table/incident", auth=AUTH, timeout=10)
    finally:
        sim.configure_faults(FaultConfig())
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    real = json.loads((FIXTURES / "rate_limited.response.json").read_text())
    assert limited.json() == real
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=10).json()
    assert stats["faults"]["429-no-retry-after"] == 1


class _Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.posts.append((dict(self.headers.items()), self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def test_business_rule_posts_signed_changes_and_skips_the_integration_user(
    sim: ServiceNowSimulator,
) -> None:
    """Each change is posted, signed as the shipped script signs it, unless the sync made it."""
    import hashlib
    import hmac

    _Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sim.add_user("svc.integration")
        sim.set_webhook(
            f"http://127.0.0.1:{server.server_address[1]}/hook",
            "shh",
            integration_user="svc.integration",
        )
        inc = sim.create_incident({"short_description": "hooked"})
        sim.update_incident(inc["sys_id"], {"urgency": "1"}, as_user="svc.integration")
        sim.add_comment(inc["sys_id"], "customer says hi")
        assert sim.wait_for_webhooks(10)
    finally:
        sim.set_webhook(None)
        server.shutdown()
        server.server_close()
    bodies = [json.loads(body) for _, body in _Receiver.posts]
    assert [(b["operation"], b["sys_mod_count"]) for b in bodies] == [
        ("insert", "0"),
        ("update", "2"),
    ]
    assert set(bodies[0]) == {
        "table", "sys_id", "number", "sys_mod_count", "sys_updated_on", "sys_updated_by",
        "operation",
    }  # fmt: skip
    headers, body = _Receiver.posts[1]
    timestamp = headers["X-Escalation-Sync-Timestamp"]
    expected = base64.b64encode(
        hmac.new(b"shh", timestamp.encode() + b"." + body, hashlib.sha256).digest()
    ).decode()
    assert headers["X-Escalation-Sync-Signature"] == expected


def test_runs_standalone_as_a_module() -> None:
    """`python -m simulators.servicenow --port 0 --seed 2` serves seeded incidents."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.servicenow", "--port", "0", "--seed", "2"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None, line
        listed = requests.get(f"{url.group(0)}/api/now/table/incident", auth=AUTH, timeout=10)
        assert listed.headers["X-Total-Count"] == "2"
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0


def test_custom_column_added_by_an_admin_is_stored_and_returned() -> None:
    """A `u_*` column added to the table is written, read back and defaults to an empty string."""
    from simulators.servicenow import ServiceNowSimulator

    sim = ServiceNowSimulator()
    before = sim.create_incident({"short_description": "x"})
    sim.add_column("incident", "u_labels")
    after = sim.create_incident({"short_description": "y", "u_labels": "ESCALATION"})
    assert sim.incident(before["sys_id"])["u_labels"] == ""
    assert after["u_labels"] == "ESCALATION"
    updated = sim.update_incident(before["sys_id"], {"u_labels": "a,b"})
    assert updated["u_labels"] == "a,b"
    with pytest.raises(ValueError):
        sim.add_column("incident", "labels")


def test_journal_query_by_record_matches_a_full_scan() -> None:
    """The element_id index gives the same rows, in the same order, as filtering every row."""
    from simulators.servicenow import ServiceNowSimulator

    sim = ServiceNowSimulator()
    a = sim.create_incident({"short_description": "a"})["sys_id"]
    b = sim.create_incident({"short_description": "b"})["sys_id"]
    for i in range(3):
        sim.add_comment(a, f"public {i}")
        sim.add_work_note(b, f"note {i}")
        sim.add_work_note(a, f"note {i}")
    query = f"element_id={a}^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id"
    fast = sim.store.query("sys_journal_field", query)
    widened = sim.store.query("sys_journal_field", f"element_idSTARTSWITH{a}^ORelement_id={a}")
    assert [r["sys_id"] for r in fast] == [
        r["sys_id"]
        for r in sim.store.query(
            "sys_journal_field",
            f"element_idSTARTSWITH{a}^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id",
        )
    ]
    assert len(fast) == 6 and {r["element_id"] for r in widened} == {a}
    assert sim.store.query("sys_journal_field", f"element_id={b}^element=comments") == []


def test_in_queries_on_indexed_columns_match_a_full_scan() -> None:
    """`IN` lists on sys_id, a journal row's element_id and an attachment's table_sys_id give
    what filtering every row gives, other conditions included."""
    from simulators.servicenow import ServiceNowSimulator

    sim = ServiceNowSimulator()
    a, b, c = (sim.create_incident({"short_description": n})["sys_id"] for n in "abc")
    for sys_id in (a, b, c):
        sim.add_comment(sys_id, "public")
        sim.add_work_note(sys_id, "internal")
        sim.attach(sys_id, "log.txt", b"log")
    scanned = f"STARTSWITH{a}^ORDERBYsys_created_on^ORDERBYsys_id"

    def ids(table: str, query: str) -> list[str]:
        return [r["sys_id"] for r in sim.store.query(table, query)]

    journal = "sys_journal_field"
    assert ids(journal, f"element_idIN{a},{b}^element=work_notes^ORDERBYsys_id") == ids(
        journal,
        f"element_idSTARTSWITH{a}^ORelement_idSTARTSWITH{b}^element=work_notes^ORDERBYsys_id",
    )
    assert ids("incident", f"sys_idIN{c},nosuch,{a}^ORDERBYsys_id") == sorted([a, c])
    attachments = "sys_attachment"
    assert ids(attachments, f"table_sys_idIN{a}^ORDERBYsys_created_on^ORDERBYsys_id") == ids(
        attachments, f"table_sys_id{scanned}"
    )
    (first,) = sim.store.query(attachments, f"table_sys_id={b}")
    sim.store.delete_attachment(first["sys_id"])
    assert ids(attachments, f"table_sys_idIN{a},{b}") == ids(attachments, f"table_sys_id={a}")
