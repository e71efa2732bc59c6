"""The Jira simulator against Atlassian's OpenAPI spec, for every operation the connector uses
and for the `jira` PyPI client itself (search, create, comment, transition, createmeta, fields,
projects and what an admin reads first).

The traffic to the simulator is recorded at the transport (an adapter on the session handed to
the connector; on the `jira` client's own session) and every request and response is validated
with openapi-core against Atlassian's spec (the copy in tests/fixtures/vendor/jira/openapi, see
its SOURCES.md), so the simulator cannot drift into either client's convenience.

Where the check departs from the letter of the spec, it is because the spec departs from Jira:
- Paths: the spec documents v3; the connector calls v2 for everything but `search/jql`. v2 and
  v3 share request and response shapes except that v3 carries rich text as ADF and v2 as plain
  strings, so v2 calls are validated against the v3 operation. The spec leaves the rich-text
  fields untyped (`description` inside `fields`, comment `body`), so no schema had to be relaxed
  for the plain-text bodies; if the spec ever typed them, only those fields would be.
- `date-time`: Jira sends `2026-11-23T12:00:00.000+0000` (no colon in the offset), as Atlassian's
  own examples show; that format is accepted in place of RFC 3339.
- 204 answers: the spec declares an `application/json` body with an empty schema for 204
  (edit issue, transition); Jira sends no body, so only the status is checked against the spec.
- Attachment upload: the spec declares the multipart body as an array of MultipartFile, which
  no multipart/form-data decoder yields; the rules its prose states (the part is named `file`,
  `X-Atlassian-Token: no-check` is sent) are checked directly, the rest by openapi-core.
- `GET /issue/{key}/remotelink` without `globalId`: the spec declares one RemoteIssueLink while
  its own example and Jira return an array; each element is validated as a RemoteIssueLink.
- Changelog items (ChangeDetails): the spec types `from`, `to`, `fromString` and `toString` as
  strings, while its own getChangeLogs example and Jira send null for a value that was or became
  empty; those four are taken as nullable.
- The `jira` client sends a transition id as a number (`int(transition)`), which Jira takes; the
  spec types it a string, so that one value is read as the string the client means before the
  request is validated. Everything else the client sends is validated as sent.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from requests.adapters import HTTPAdapter
from werkzeug.datastructures import Headers, ImmutableMultiDict

from connectors.errors import InvalidRequest, NotFound
from connectors.jira import CommentPolicy, JiraConnector, RemoteLinkSpec
from simulators.jira import JiraSimulator
from tests.conftest import VENDOR

SPEC_PATH = VENDOR / "jira" / "openapi" / "swagger-v3.v3.json"
SPEC_HOST = "https://your-domain.atlassian.net"
JIRA_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?([+-]\d{4}|Z)$")

# Every operation the connector performs, as (method, v3 path template).
CONNECTOR_OPERATIONS = {
    ("get", "/rest/api/3/myself"),
    ("get", "/rest/api/3/serverInfo"),
    ("post", "/rest/api/3/issue"),
    ("post", "/rest/api/3/issue/bulk"),
    ("post", "/rest/api/3/issue/bulkfetch"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}"),
    ("put", "/rest/api/3/issue/{issueIdOrKey}"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/transitions"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/transitions"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/comment"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/comment"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/remotelink"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/remotelink"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/attachments"),
    ("get", "/rest/api/3/attachment/content/{id}"),
    ("post", "/rest/api/3/search/jql"),
}


def _jira_datetime(value: object) -> bool:
    return isinstance(value, str) and bool(JIRA_DATETIME.match(value))


class Exchange:
    """One recorded request and response, presented to openapi-core as the v3 call."""

    def __init__(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        url = urlparse(request.url or "")
        self.method = (request.method or "").lower()
        self.path = url.path.replace("/rest/api/2/", "/rest/api/3/")
        self.host_url = SPEC_HOST
        self.full_url_pattern = SPEC_HOST + self.path
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )
        body = request.body
        self.body: bytes | None = body.encode() if isinstance(body, str) else body  # type: ignore[assignment]
        self.content_type = str(request.headers.get("Content-Type") or "")
        self.response = response

    # The response side of the protocol.
    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def data(self) -> bytes:
        return self.response.content

    @property
    def headers(self) -> Any:
        return Headers(dict(self.response.headers))

    @property
    def response_content_type(self) -> str:
        return str(self.response.headers.get("Content-Type", ""))


class _Response:
    def __init__(self, status: int, data: bytes, content_type: str, headers: Any) -> None:
        self.status_code = status
        self.data = data
        self.content_type = content_type
        self.headers = headers


class Recorder(HTTPAdapter):
    """A transport that keeps every exchange, with streamed bodies read into bytes first."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if hasattr(request.body, "read"):
            request.body = request.body.read()  # type: ignore[union-attr]
            request.headers["Content-Length"] = str(len(request.body))  # type: ignore[arg-type]
        kwargs["stream"] = False
        response = super().send(request, **kwargs)
        self.exchanges.append(Exchange(request, response))
        return response


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    data = json.loads(SPEC_PATH.read_text())
    change = data["components"]["schemas"]["ChangeDetails"]["properties"]
    for name in ("from", "to", "fromString", "toString"):
        change[name]["nullable"] = True
    return OpenAPI.from_dict(
        data,
        config=Config(
            spec_validator_cls=None,
            extra_format_validators={"date-time": _jira_datetime},
        ),
    )


@pytest.fixture()
def traffic() -> Iterator[tuple[JiraSimulator, JiraConnector, Recorder]]:
    recorder = Recorder()
    session = requests.Session()
    session.mount("http://", recorder)
    with JiraSimulator(time_zone="Europe/Berlin") as sim:
        connector = JiraConnector(
            sim.url,
            email=sim.integration.email,
            api_token=sim.integration.api_token,
            session=session,
        )
        yield sim, connector, recorder


@functools.cache
def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = json.loads(SPEC_PATH.read_text())["paths"]
    return paths


def _operation(spec: OpenAPI, exchange: Exchange) -> str:
    matches = []
    for template, operations in _paths().items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, exchange.path) and exchange.method in operations:
            matches.append(template)
    assert matches, f"{exchange.method} {exchange.path} is not in the spec"
    # A literal segment wins over a template (`/issue/bulk` over `/issue/{issueIdOrKey}`).
    return min(matches, key=lambda t: t.count("{"))


def _errors(spec: OpenAPI, exchange: Exchange) -> list[str]:
    template = _operation(spec, exchange)
    request_errors = list(spec.iter_request_errors(exchange))
    if template.endswith("/attachments") and exchange.method == "post":
        request_errors = [e for e in request_errors if "Request body" not in str(e)]
        request_errors += _multipart_problems(exchange)
    problems = [f"request: {_explain(e)}" for e in request_errors]
    status = exchange.status_code
    declared = _paths()[template][exchange.method]["responses"]
    if status == 204:
        assert str(status) in declared, f"{template}: 204 not documented"
        assert exchange.data == b""
        return problems
    if exchange.method == "get" and template.endswith("/remotelink") and status == 200:
        elements = json.loads(exchange.data)
        assert isinstance(elements, list)
        for element in elements:
            single = _Response(
                200, json.dumps(element).encode(), "application/json", exchange.headers
            )
            problems += [
                f"response: {_explain(e)}" for e in spec.iter_response_errors(exchange, single)
            ]
        return problems
    response = _Response(status, exchange.data, exchange.response_content_type, exchange.headers)
    problems += [f"response: {_explain(e)}" for e in spec.iter_response_errors(exchange, response)]
    return problems


def _multipart_problems(exchange: Exchange) -> list[Exception]:
    """The attachment upload rules the spec states in prose: header and `file` parts."""
    problems: list[Exception] = []
    headers = exchange.parameters.header
    if headers.get("X-Atlassian-Token") != "no-check":
        problems.append(AssertionError("X-Atlassian-Token: no-check is missing"))
    if not exchange.content_type.startswith("multipart/form-data; boundary="):
        problems.append(AssertionError(f"not multipart/form-data: {exchange.content_type}"))
    if b'Content-Disposition: form-data; name="file"; filename=' not in (exchange.body or b""):
        problems.append(AssertionError("no multipart part named 'file' with a filename"))
    return problems


def _explain(error: Exception) -> str:
    details = [str(error)]
    cause = error.__cause__
    while cause is not None:
        inner = getattr(cause, "schema_errors", None)
        details.append(str(cause)[:300] if not inner else "; ".join(e.message for e in inner))
        cause = cause.__cause__
    return " | ".join(details)


def _exercise(sim: JiraSimulator, jira: JiraConnector) -> None:
    """Every connector operation at least once, success paths and typical refusals."""
    jira.myself()
    jira.server_info()
    key = jira.create_issue(
        {
            "project": {"key": "ENG"},
            "summary": "Checkout fails",
            "issuetype": {"name": "Bug"},
            "description": "Steps:\n1. open cart\n2. pay",
            "priority": {"name": "High"},
            "labels": ["triage"],
        }
    )["key"]
    jira.get_issue(key)
    jira.get_issue(key, fields=["summary", "status", "comment", "attachment", "updated"])
    jira.edit_issue(key, {"summary": "Checkout fails on Safari"})
    jira.update_labels(key, add=["ESCALATION"], remove=["triage"])
    jira.set_priority(key, "Highest")
    jira.transition_to(key, "In Progress")
    jira.add_comment(key, "Customer-facing update", public=True)
    jira.add_comment(key, "Internal approval note", public=False)
    sim.comment(key, "Engineer note", public=False)
    jira.get_comments(key)
    jira.add_remote_link(key, "https://sn.example/incident.do?sys_id=1", "INC0001", "sn:1")
    jira.add_remote_link(key, "https://sn.example/incident.do?sys_id=1", "INC0001 P1", "sn:1")
    jira.get_remote_links(key)
    (meta,) = jira.add_attachment(key, "app.log", io.BytesIO(b"ERROR boom\n" * 100))
    jira.list_attachments(key)
    assert b"".join(jira.download_attachment(meta["id"]))
    good = {"project": {"key": "ENG"}, "issuetype": {"name": "Task"}}
    jira.bulk_create([dict(good, summary=f"bulk {n}") for n in range(3)] + [{"summary": "x"}])
    jira.bulk_create([{"summary": "no project"}])
    moved = jira.bulk_create(
        [dict(good, summary="started"), dict(good, summary="left"), dict(good, summary="bad")],
        transitions=["11", None, "31"],
    )
    assert len(moved.created) == 2 and [e.index for e in moved.errors] == [2]
    started = moved.created[0]["key"]
    jira.get_issues([started, key, "ENG-999"], ["summary", "status", "comment", "updated"])
    jira.get_issues([started])
    jira.transition(started, "21")
    errors = jira.add_remote_links(
        [
            RemoteLinkSpec(started, "https://sn.example/incident.do?sys_id=2", "INC0002"),
            RemoteLinkSpec(key, "https://sn.example/incident.do?sys_id=3", "INC0003"),
        ],
        workers=2,
    )
    assert errors == [None, None]
    list(jira.search_changed_since(datetime.now(UTC) - timedelta(hours=1), jql="project = ENG"))
    list(
        jira.search_changed_since(
            datetime.now(UTC) - timedelta(hours=1), fields=["summary", "status", "labels"]
        )
    )
    sup = jira.create_issue(
        {"project": {"key": "SUP"}, "summary": "Login", "issuetype": {"name": "Incident"}}
    )["key"]
    desk = JiraConnector(
        sim.url,
        email=sim.integration.email,
        api_token=sim.integration.api_token,
        session=_session_of(jira),
        comments=CommentPolicy(service_desk=True, visibility_type=None),
    )
    desk.add_comment(sup, "JSM internal", public=False)
    desk.get_issue(sup)
    with pytest.raises(NotFound):
        jira.get_issue("ENG-999")
    with pytest.raises(InvalidRequest):
        jira.create_issue({"project": {"key": "ENG"}, "summary": "", "issuetype": {"name": "Bug"}})


def _session_of(jira: JiraConnector) -> requests.Session:
    session = requests.Session()
    session.adapters = jira._session.adapters
    return session


def test_connector_traffic_matches_the_spec(
    spec: OpenAPI, traffic: tuple[JiraSimulator, JiraConnector, Recorder]
) -> None:
    """Each request the connector sends and each simulator answer validates against the spec."""
    sim, jira, recorder = traffic
    _exercise(sim, jira)
    problems = {}
    for exchange in recorder.exchanges:
        errors = _errors(spec, exchange)
        if errors:
            problems[f"{exchange.method.upper()} {exchange.path} -> {exchange.status_code}"] = (
                errors
            )
    assert problems == {}


def test_every_connector_operation_was_checked(
    spec: OpenAPI, traffic: tuple[JiraSimulator, JiraConnector, Recorder]
) -> None:
    """The exercise covers every operation the connector uses, and only documented ones."""
    sim, jira, recorder = traffic
    _exercise(sim, jira)
    covered = {(e.method, _operation(spec, e)) for e in recorder.exchanges}
    assert covered == CONNECTOR_OPERATIONS


def test_error_answers_match_the_spec(
    spec: OpenAPI, traffic: tuple[JiraSimulator, JiraConnector, Recorder]
) -> None:
    """Refusals (400 with field errors, 404, bulk partial failure) are shaped as documented."""
    sim, jira, recorder = traffic
    _exercise(sim, jira)
    statuses = {e.status_code for e in recorder.exchanges}
    assert {200, 201, 204, 400, 404} <= statuses


# --- the `jira` PyPI client ------------------------------------------------------------------

# Every operation the exercise below makes the `jira` client perform, as (method, v3 path).
CLIENT_OPERATIONS = {
    ("get", "/rest/api/3/serverInfo"),
    ("get", "/rest/api/3/field"),
    ("get", "/rest/api/3/project"),
    ("get", "/rest/api/3/project/{projectIdOrKey}"),
    ("get", "/rest/api/3/project/{projectIdOrKey}/role"),
    ("get", "/rest/api/3/project/{projectIdOrKey}/role/{id}"),
    ("get", "/rest/api/3/issue/createmeta"),
    ("get", "/rest/api/3/issuetype"),
    ("get", "/rest/api/3/resolution"),
    ("get", "/rest/api/3/issueLinkType"),
    ("get", "/rest/api/3/user/search"),
    ("post", "/rest/api/3/issue"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/editmeta"),
    ("get", "/rest/api/3/search/jql"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/comment"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/transitions"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/transitions"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/watchers"),
    ("post", "/rest/api/3/issue/{issueIdOrKey}/watchers"),
    ("get", "/rest/api/3/issue/{issueIdOrKey}/changelog"),
}


@pytest.fixture()
def client_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[JiraSimulator, Any, Recorder]]:
    """A `jira.JIRA` client on the simulator, its session's transport recorded from the first
    request (the server-info probe the client makes on construction) on."""
    import jira.client
    from jira import JIRA
    from jira.resilientsession import ResilientSession

    from simulators.estate import SUPPORT_WORKFLOW

    recorder = Recorder()

    class RecordedSession(ResilientSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.mount("http://", recorder)

    monkeypatch.setattr(jira.client, "ResilientSession", RecordedSession)
    with JiraSimulator(time_zone="Europe/Berlin") as sim:
        sim.add_project("DS", "Dev Support", workflow=SUPPORT_WORKFLOW)
        client = JIRA(
            server=sim.url,
            basic_auth=(sim.integration.email, sim.integration.api_token or ""),
            max_retries=0,
            options={"check_update": False},
        )
        yield sim, client, recorder
        client.close()


def _client_exercise(sim: JiraSimulator, client: Any) -> None:
    """What an integration built on the `jira` client does, success paths and refusals."""
    from jira import JIRAError

    assert {"summary", "resolution"} <= {f["id"] for f in client.fields()}
    assert {"ENG", "SUP", "DS"} == {p.key for p in client.projects()}
    assert client.project("DS").key == "DS"
    roles = client.project_roles("DS")
    admins = client.project_role("DS", roles["Administrators"]["id"])
    assert sim.integration.account_id in {a.actorUser.accountId for a in admins.actors}
    meta = client.createmeta(
        projectKeys="DS", issuetypeNames="Bug", expand="projects.issuetypes.fields"
    )
    assert "summary" in meta["projects"][0]["issuetypes"][0]["fields"]
    assert "Bug" in {t.name for t in client.issue_types()}
    assert "Done" in {r.name for r in client.resolutions()}
    assert "Relates" in {t.name for t in client.issue_link_types()}
    assert [u.accountId for u in client.search_users(query="erin")] == [sim.engineer.account_id]
    issue = client.create_issue(
        project="DS",
        summary="Checkout fails on Safari",
        issuetype={"name": "Bug"},
        description="Steps to reproduce: pay with Safari.",
        priority={"name": "High"},
        labels=["ESCALATION"],
    )
    assert "summary" in client.editmeta(issue.key)["fields"]
    found = client.search_issues("project = DS AND resolution = Unresolved ORDER BY created DESC")
    assert [i.key for i in found] == [issue.key]
    client.add_comment(issue.key, "Looking into it")
    client.add_comment(
        issue.key, "Internal triage", visibility={"type": "role", "value": "Administrators"}
    )
    with pytest.raises(JIRAError) as refused:
        client.add_comment(issue.key, "x", visibility={"type": "role", "value": "Nobody"})
    assert refused.value.status_code == 400
    names = {t["name"]: t["id"] for t in client.transitions(issue.key)}
    client.transition_issue(issue.key, names["Start Progress"])
    with pytest.raises(JIRAError) as unresolved:
        client.transition_issue(issue.key, names["Resolve"])
    assert unresolved.value.status_code == 400
    client.transition_issue(issue.key, names["Resolve"], fields={"resolution": {"name": "Done"}})
    done = client.issue(issue.key, expand="changelog")
    assert done.fields.status.name == "Done" and done.fields.resolution.name == "Done"
    assert client.search_issues("project = DS AND resolution = Unresolved") == []
    client.add_watcher(issue.key, sim.integration.email)
    assert client.watchers(issue.key).isWatching is True
    client._get_json(f"issue/{issue.key}/changelog")


def _transition_id_as_string(exchange: Exchange) -> None:
    """The transition id the `jira` client sends as a number, as the string it stands for."""
    if exchange.method != "post" or not exchange.path.endswith("/transitions"):
        return
    body = json.loads(exchange.body or b"{}")
    transition = body.get("transition")
    if isinstance(transition, dict) and isinstance(transition.get("id"), int):
        transition["id"] = str(transition["id"])
        exchange.body = json.dumps(body).encode()


def test_the_jira_client_traffic_matches_the_spec(
    spec: OpenAPI, client_traffic: tuple[JiraSimulator, Any, Recorder]
) -> None:
    """Every request the `jira` client sends to the simulator, and every answer, validates
    against Atlassian's spec, refusals included."""
    sim, client, recorder = client_traffic
    _client_exercise(sim, client)
    problems = {}
    for exchange in recorder.exchanges:
        _transition_id_as_string(exchange)
        errors = _errors(spec, exchange)
        if errors:
            problems[f"{exchange.method.upper()} {exchange.path} -> {exchange.status_code}"] = (
                errors
            )
    assert problems == {}
    covered = {(e.method, _operation(spec, e)) for e in recorder.exchanges}
    assert covered == CLIENT_OPERATIONS
    assert {e.status_code for e in recorder.exchanges} >= {200, 201, 204, 400}
