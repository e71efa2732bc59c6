"""The Jira simulator behaves like Jira Cloud where the product depends on it."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI, Request
from fastapi.responses import Response
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.jira_webhook import parse_webhook
from simulators.common import ServerThread
from simulators.jira import JiraSimulator
from simulators.jira.jql import JqlError, compile_jql
from tests.conftest import VENDOR

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = VENDOR / "jira" / "webhooks"
JIRA_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture()
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))


@pytest.fixture()
def sim(clock: Clock) -> Iterator[JiraSimulator]:
    with JiraSimulator(time_zone="Asia/Kolkata", clock=clock, webhook_base_delay=0.02) as s:
        yield s


@pytest.fixture()
def http(sim: JiraSimulator) -> requests.Session:
    return sim.session(sim.integration)


def test_runs_alone_from_the_command_line() -> None:
    """`python -m simulators.jira --port 0` serves on a free port until terminated."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.jira", "--port", "0", "--time-zone", "Europe/Paris"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ")[1].strip()
        assert url.startswith("http://127.0.0.1:")
        me = requests.get(
            f"{url}/rest/api/2/myself", auth=("sync@example.com", "sim-api-token"), timeout=5
        )
        assert me.json()["timeZone"] == "Europe/Paris"
    finally:
        proc.terminate()
        proc.wait(10)


def test_credentials_are_required(sim: JiraSimulator) -> None:
    """No or wrong credentials get 401; email + API token and a bearer PAT are accepted."""
    url = f"{sim.url}/rest/api/2/myself"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=("sync@example.com", "nope"), timeout=5).status_code == 401
    assert requests.get(url, auth=("sync@example.com", "sim-api-token"), timeout=5).ok
    bearer = {"Authorization": "Bearer sim-pat"}
    assert requests.get(url, headers=bearer, timeout=5).json()["accountId"] == (
        sim.integration.account_id
    )


def test_datetimes_are_in_jira_format_and_viewer_zone(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """created/updated use `...000+0530` in the viewer's zone, as Jira does."""
    key = sim.create_issue("ENG", "zone")
    fields = http.get(f"{sim.url}/rest/api/2/issue/{key}", timeout=5).json()["fields"]
    assert fields["created"] == "2026-11-23T17:30:00.000+0530"
    assert JIRA_DATETIME.match(fields["updated"])


def _search(sim: JiraSimulator, http: requests.Session, jql: str, **extra: Any) -> Any:
    body = {"jql": jql, "fields": ["summary", "updated"], "maxResults": 50, **extra}
    return http.post(f"{sim.url}/rest/api/3/search/jql", json=body, timeout=5)


def test_jql_subset(sim: JiraSimulator, http: requests.Session, clock: Clock) -> None:
    """project, key, labels, status, updated ranges (viewer's zone), AND, OR, ORDER BY."""
    keys = []
    for n in range(6):
        clock.moment = datetime(2026, 11, 23, 12, n, tzinfo=UTC)
        keys.append(sim.create_issue("ENG", f"issue {n}", labels=["odd"] if n % 2 else []))
    sim.create_issue("SUP", "elsewhere")
    sim.transition(keys[0], "In Progress")  # updated at 12:05 UTC as well

    def found(jql: str) -> list[str]:
        answer = _search(sim, http, jql)
        assert answer.status_code == 200, answer.text
        return [i["key"] for i in answer.json()["issues"]]

    assert sorted(found("project = ENG")) == sorted(keys)
    assert found(f"key = {keys[2]}") == [keys[2]]
    assert found(f"key in ({keys[1]}, {keys[2]}) ORDER BY key ASC") == keys[1:3]
    assert sorted(found("project = ENG AND labels = odd")) == [keys[1], keys[3], keys[5]]
    assert found('status = "In Progress"') == [keys[0]]
    # 17:32 in Kolkata is 12:02 UTC.
    window = 'updated >= "2026-11-23 17:32" AND updated <= "2026-11-23 17:34"'
    assert found(f"project = ENG AND {window} ORDER BY updated ASC") == keys[2:5]
    assert found("project = ENG ORDER BY updated DESC")[:2] == [keys[0], keys[5]]
    assert sorted(found("project = SUP OR labels = odd")) == sorted(
        [keys[1], keys[3], keys[5], "SUP-1"]
    )


@pytest.mark.parametrize(
    "jql",
    ["project = ", "nosuchfield = 1", 'updated >= "yesterday"', "project = ENG ORDER updated"],
)
def test_bad_jql_is_400_with_error_messages(
    sim: JiraSimulator, http: requests.Session, jql: str
) -> None:
    """Malformed or unsupported JQL is answered 400 with Jira's errorMessages."""
    answer = _search(sim, http, jql)
    assert answer.status_code == 400
    assert answer.json()["errorMessages"]


def test_search_pages_with_next_page_token(sim: JiraSimulator, http: requests.Session) -> None:
    """Pages chain by nextPageToken; the last page says isLast and has no token."""
    for n in range(120):
        sim.create_issue("ENG", f"n{n}")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        extra: dict[str, str] = {"nextPageToken": token} if token else {}
        page = _search(sim, http, "project = ENG ORDER BY created ASC", **extra).json()
        seen += [i["key"] for i in page["issues"]]
        pages += 1
        token = page.get("nextPageToken")
        if page["isLast"]:
            assert token is None
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 120
    bad = _search(sim, http, "project = ENG", nextPageToken="garbage")
    assert bad.status_code == 400


def test_old_search_endpoint_is_gone(sim: JiraSimulator, http: requests.Session) -> None:
    """The removed /search answers 410 as Jira Cloud does since 2025."""
    assert http.get(f"{sim.url}/rest/api/3/search?jql=", timeout=5).status_code == 410
    assert http.get(f"{sim.url}/rest/api/2/search?jql=", timeout=5).status_code == 410


def test_attachment_upload_needs_no_check_token(sim: JiraSimulator, http: requests.Session) -> None:
    """Without X-Atlassian-Token: no-check the upload is blocked (XSRF), with it accepted."""
    key = sim.create_issue("ENG", "files")
    url = f"{sim.url}/rest/api/2/issue/{key}/attachments"
    files = {"file": ("a.txt", b"hello", "text/plain")}
    assert http.post(url, files=files, timeout=5).status_code == 403
    ok = http.post(url, files=files, headers={"X-Atlassian-Token": "no-check"}, timeout=5)
    (meta,) = ok.json()
    assert (meta["filename"], meta["size"], meta["mimeType"]) == ("a.txt", 5, "text/plain")
    content = http.get(meta["content"], timeout=5)
    assert content.content == b"hello"


def test_field_errors_are_reported_per_field(sim: JiraSimulator, http: requests.Session) -> None:
    """An edit with an unknown field and a bad priority names both in `errors`."""
    key = sim.create_issue("ENG", "edit me")
    answer = http.put(
        f"{sim.url}/rest/api/2/issue/{key}",
        json={"fields": {"nosuch": 1, "priority": {"name": "Urgentest"}}},
        timeout=5,
    )
    assert answer.status_code == 400
    assert set(answer.json()["errors"]) == {"nosuch", "priority"}


def test_transitions_list_target_statuses(sim: JiraSimulator, http: requests.Session) -> None:
    """Available transitions depend on the current status and name their target status."""
    key = sim.create_issue("ENG", "flow")
    url = f"{sim.url}/rest/api/2/issue/{key}/transitions"
    listed = http.get(url, timeout=5).json()["transitions"]
    assert [(t["name"], t["to"]["name"]) for t in listed] == [("Start Progress", "In Progress")]
    refused = http.post(url, json={"transition": {"id": "31"}}, timeout=5)
    assert refused.status_code == 400


def test_faults_are_configured_over_http(sim: JiraSimulator, http: requests.Session) -> None:
    """POST /_sim/faults turns 429s on; /_sim/stats counts by route template."""
    url = f"{sim.url}/rest/api/2/myself"
    requests.post(
        f"{sim.url}/_sim/faults", json={"rate_429": 1.0, "retry_after_seconds": 4}, timeout=5
    )
    limited = http.get(url, timeout=5)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "4")
    requests.post(f"{sim.url}/_sim/faults", json={}, timeout=5)
    assert http.get(url, timeout=5).ok
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["requests"]["GET /rest/api/2/myself"] == 2
    assert stats["faults"]["429"] == 1


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records deliveries."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self.deliveries.append((dict(request.headers), body))
            return Response(status_code=200)

        self.server = ServerThread(app)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server.start()
    try:
        yield rec
    finally:
        rec.server.stop()


def test_webhooks_registered_over_http_are_signed_and_shaped_like_captures(
    sim: JiraSimulator, http: requests.Session, receiver: Receiver
) -> None:
    """Deliveries carry the identifier and signature, and the captures' top-level shape."""
    registered = http.post(
        f"{sim.url}/rest/webhooks/1.0/webhook",
        json={
            "name": "sync",
            "url": f"{receiver.server.url}/hook",
            "events": ["jira:issue_created", "jira:issue_updated", "comment_created"],
            "filters": {"issue-related-events-section": "project = ENG"},
            "secret": "whsec",
        },
        timeout=5,
    )
    assert registered.status_code == 201
    key = sim.create_issue("ENG", "hooked")
    sim.create_issue("SUP", "filtered out by the JQL filter")
    sim.edit(key, {"summary": "hooked again"})
    sim.comment(key, "a comment", public=True)
    assert sim.drain_webhooks(10)

    by_event: dict[str, list[dict[str, Any]]] = {}
    for headers, body in receiver.deliveries:
        assert headers["x-atlassian-webhook-identifier"]
        events = parse_webhook(headers, body, secret="whsec")
        assert events and all(e.ticket == key for e in events)
        payload = json.loads(body)
        by_event.setdefault(payload["webhookEvent"], []).append(payload)
    assert sorted(by_event) == ["comment_created", "jira:issue_created", "jira:issue_updated"]

    capture = json.loads((CAPTURES / "webhook-issue-updated-edited.json").read_text())
    edited = next(p for p in by_event["jira:issue_updated"] if "changelog" in p)
    assert set(capture) == set(edited)
    assert edited["changelog"]["items"][0]["field"] == "summary"
    cloud_comment = json.loads((CAPTURES / "webhook-cloud-comment-created.json").read_text())
    assert set(cloud_comment) == set(by_event["comment_created"][0])
    assert set(cloud_comment["comment"]) <= set(by_event["comment_created"][0]["comment"]) | {
        "jsdPublic"
    }


def test_many_changes_are_cheap(sim: JiraSimulator, http: requests.Session) -> None:
    """1,000 writes over HTTP (creates and edits) complete well within the test budget."""
    started = time.perf_counter()
    keys = []
    for n in range(500):
        answer = http.post(
            f"{sim.url}/rest/api/2/issue",
            json={
                "fields": {
                    "project": {"key": "ENG"},
                    "summary": f"s{n}",
                    "issuetype": {"name": "Task"},
                }
            },
            timeout=5,
        )
        keys.append(answer.json()["key"])
    for key in keys:
        http.put(
            f"{sim.url}/rest/api/2/issue/{key}",
            json={"update": {"labels": [{"add": "bulk"}]}},
            timeout=5,
        )
    elapsed = time.perf_counter() - started
    assert elapsed < 20
    assert (
        len(_search(sim, http, "labels = bulk", maxResults=5000, fields=["id"]).json()["issues"])
        == 500
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_jql_parser_fails_only_with_jql_errors(text: str) -> None:
    """Arbitrary query text compiles or raises JqlError, never anything else."""
    with contextlib.suppress(JqlError):
        compile_jql(text, UTC)


def test_comment_properties_endpoint(sim: JiraSimulator, http: requests.Session) -> None:
    """sd.public.comment set through the property endpoint shows in expand=properties."""
    key = sim.create_issue("SUP", "desk", issuetype="Incident")
    comment_id = sim.comment(key, "was public", public=True)
    url = f"{sim.url}/rest/api/2/comment/{comment_id}/properties/sd.public.comment"
    assert http.put(url, json={"internal": True}, timeout=5).status_code == 200
    assert http.get(url, timeout=5).json() == {
        "key": "sd.public.comment",
        "value": {"internal": True},
    }
    listed = http.get(
        f"{sim.url}/rest/api/2/issue/{key}/comment", params={"expand": "properties"}, timeout=5
    ).json()["comments"]
    assert listed[0]["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    missing = f"{sim.url}/rest/api/2/comment/{comment_id}/properties/nope"
    assert http.get(missing, timeout=5).status_code == 404


def test_create_takes_a_transition_out_of_the_start_status(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """A create with `transition` lands in that transition's status, as its own change."""
    fields = {"project": {"key": "ENG"}, "issuetype": {"name": "Bug"}, "summary": "moved"}
    made = http.post(
        f"{sim.url}/rest/api/2/issue",
        json={"fields": fields, "transition": {"id": "11"}},
        timeout=5,
    )
    assert made.status_code == 201
    key = made.json()["key"]
    assert sim.issue(key)["fields"]["status"]["name"] == "In Progress"
    changes = [
        item["field"] for entry in sim.issue_record(key).changelog for item in entry["items"]
    ]
    assert changes == ["status"]


def test_create_with_a_transition_not_from_the_start_status_creates_nothing(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """`Resolve` leaves In Progress, not To Do: the create is refused and no issue is made."""
    before = len(sim.keys())
    fields = {"project": {"key": "ENG"}, "issuetype": {"name": "Bug"}, "summary": "refused"}
    refused = http.post(
        f"{sim.url}/rest/api/2/issue",
        json={"fields": fields, "transition": {"id": "31"}},
        timeout=5,
    )
    assert refused.status_code == 400
    assert refused.json()["errorMessages"] == ["Transition id '31' is not valid for this issue."]
    assert len(sim.keys()) == before


def test_bulk_create_applies_each_elements_transition(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """Each element of a bulk create takes its own transition; a bad one fails only itself."""
    fields = {"project": {"key": "ENG"}, "issuetype": {"name": "Task"}}
    answer = http.post(
        f"{sim.url}/rest/api/2/issue/bulk",
        json={
            "issueUpdates": [
                {"fields": {**fields, "summary": "started"}, "transition": {"id": "11"}},
                {"fields": {**fields, "summary": "left alone"}},
                {"fields": {**fields, "summary": "bad"}, "transition": {"id": "31"}},
            ]
        },
        timeout=5,
    ).json()
    statuses = [sim.issue(i["key"])["fields"]["status"]["name"] for i in answer["issues"]]
    assert statuses == ["In Progress", "To Do"]
    assert [e["failedElementNumber"] for e in answer["errors"]] == [2]


def test_bulk_fetch_returns_known_issues_in_id_order(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """bulkfetch answers the issues asked for, by id or key, in id order, unknown ones left out."""
    first = sim.create_issue("ENG", "first")
    second = sim.create_issue("ENG", "second")
    second_id = sim.issue(second)["id"]
    url = f"{sim.url}/rest/api/2/issue/bulkfetch"
    answer = http.post(
        url,
        json={"issueIdsOrKeys": [second_id, "ENG-999", first.lower()], "fields": ["summary"]},
        timeout=5,
    ).json()
    assert [(i["key"], set(i["fields"])) for i in answer["issues"]] == [
        (first, {"summary"}),
        (second, {"summary"}),
    ]
    assert answer["issueErrors"] == []
    too_many = http.post(url, json={"issueIdsOrKeys": [first] * 101}, timeout=5)
    assert too_many.status_code == 400


def test_v3_takes_rich_text_as_adf_and_refuses_plain_strings(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """On v3, descriptions and comment bodies are ADF documents (stored as their text, which v2
    shows); a plain string is refused with Jira's 400, as Jira Cloud refuses it."""
    doc = {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Steps:"}]},
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "1. open"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "2. click"},
                ],
            },
        ],
    }
    fields = {"project": {"key": "ENG"}, "summary": "rich", "issuetype": {"name": "Task"}}
    made = http.post(f"{sim.url}/rest/api/3/issue", json={"fields": {**fields, "description": doc}})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    v2 = http.get(f"{sim.url}/rest/api/2/issue/{key}").json()
    assert v2["fields"]["description"] == "Steps:\n1. open\n2. click"
    refused = http.post(
        f"{sim.url}/rest/api/3/issue", json={"fields": {**fields, "description": "plain"}}
    )
    assert refused.status_code == 400 and "Atlassian Document" in refused.text
    added = http.post(f"{sim.url}/rest/api/3/issue/{key}/comment", json={"body": doc})
    assert added.status_code == 201 and added.json()["body"]["type"] == "doc"
    bad = http.post(f"{sim.url}/rest/api/3/issue/{key}/comment", json={"body": "plain"})
    assert bad.status_code == 400
    assert (
        http.post(f"{sim.url}/rest/api/2/issue/{key}/comment", json={"body": "plain"}).status_code
        == 201
    )
