"""JiraConnector against `responses` fakes fed by Atlassian's own example bodies."""

from __future__ import annotations

import base64
import copy
import io
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter
from responses import matchers

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)
from connectors.jira import (
    BulkError,
    CommentPolicy,
    JiraConnector,
    RemoteLinkSpec,
    comment_is_public,
    jql_datetime,
    parse_jira_datetime,
)
from connectors.retry import RetryPolicy
from tests.conftest import VENDOR

FIXTURES = VENDOR / "jira" / "examples"
BASE = "https://example.atlassian.net"
EMAIL = "sync@example.com"
TOKEN = "tok-VERY-SECRET-123"


def example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Sleeps:
    """Records the waits the retry policy asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture()
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture()
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def sent_bytes(request: requests.PreparedRequest) -> bytes:
    """What a recorded request sent: its body, read first when it was a stream."""
    body = request.body
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes):
        return body
    # The connector streams uploads: requests keeps the file object as the body.
    read = getattr(body, "read", None)
    assert callable(read), f"the request has no body: {body!r}"
    data = read()
    assert isinstance(data, bytes)
    return data


def make(sleeps: Sleeps, attempts: int = 4, **kwargs: Any) -> JiraConnector:
    policy = RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=60.0, sleep=sleeps)
    kwargs.setdefault("email", EMAIL)
    kwargs.setdefault("api_token", TOKEN)
    return JiraConnector(BASE, retry=policy, **kwargs)


def body_of(call: Any) -> Any:
    return json.loads(call.request.body)


# -- reads -------------------------------------------------------------------------------------


def test_myself_uses_basic_auth_with_email_and_token(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Cloud auth is HTTP basic with email and API token; /myself carries the time zone."""
    rsps.get(f"{BASE}/rest/api/2/myself", json=example("getCurrentUser.response.200.json"))
    me = make(sleeps).myself()
    assert me["timeZone"] == "Australia/Sydney"
    expected = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert rsps.calls[0].request.headers["Authorization"] == expected


def test_pat_is_sent_as_bearer(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Server/DC auth sends the personal access token as a bearer token."""
    rsps.get(f"{BASE}/rest/api/2/serverInfo", json=example("getServerInfo.response.200.json"))
    info = make(sleeps, email=None, api_token=None, pat="pat-XYZ").server_info()
    assert info["versionNumbers"] == [5, 0, 0]
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer pat-XYZ"


def test_get_issue_asks_for_the_mapped_fields(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """The issue is read with exactly the requested fields and returned raw."""
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1",
        json=example("getIssue.response.200.json"),
        match=[matchers.query_param_matcher({"fields": "summary,comment,attachment"})],
    )
    issue = make(sleeps).get_issue("ED-1", fields=["summary", "comment", "attachment"])
    assert issue["key"] == "ED-1"
    assert issue["fields"]["attachment"][0]["filename"] == "picture.jpg"


def test_service_desk_comments_are_reread_with_properties(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """On a service desk the issue's comments are replaced by the list with properties."""
    issue = example("getIssue.response.200.json")
    issue["fields"]["comment"] = {"comments": [], "total": 1, "maxResults": 0, "startAt": 0}
    page = example("getComments.response.200.json")
    page["comments"][0]["properties"] = [{"key": "sd.public.comment", "value": {"internal": True}}]
    rsps.get(f"{BASE}/rest/api/2/issue/ED-1", json=issue)
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/comment",
        json=page,
        match=[
            matchers.query_param_matcher(
                {"startAt": "0", "maxResults": "100", "expand": "properties"}
            )
        ],
    )
    connector = make(sleeps, comments=CommentPolicy(service_desk=True, visibility_type=None))
    got = connector.get_issue("ED-1")
    comments = got["fields"]["comment"]["comments"]
    assert len(comments) == 1 and not comment_is_public(comments[0])


def test_get_comments_pages_to_the_end(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Comments are read page by page until `total` is reached."""
    first = example("getComments.response.200.json")
    first["total"] = 2
    second = copy.deepcopy(first)
    second["startAt"] = 1
    second["comments"][0]["id"] = "10001"
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/comment",
        json=first,
        match=[
            matchers.query_param_matcher(
                {"startAt": "0", "maxResults": "100", "expand": "properties"}
            )
        ],
    )
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/comment",
        json=second,
        match=[
            matchers.query_param_matcher(
                {"startAt": "1", "maxResults": "100", "expand": "properties"}
            )
        ],
    )
    comments = make(sleeps).get_comments("ED-1")
    assert [c["id"] for c in comments] == ["10000", "10001"]


def test_comment_visibility_means_internal() -> None:
    """A comment restricted to a role is internal; without restriction or JSM flag, public."""
    (restricted,) = example("getComments.response.200.json")["comments"]
    assert not comment_is_public(restricted)
    open_comment = {k: v for k, v in restricted.items() if k != "visibility"}
    assert comment_is_public(open_comment)
    jsm_public = {
        **open_comment,
        "properties": [{"key": "sd.public.comment", "value": {"internal": False}}],
    }
    assert comment_is_public(jsm_public)
    jsm_internal = {
        **open_comment,
        "properties": [{"key": "sd.public.comment", "value": {"internal": True}}],
    }
    assert not comment_is_public(jsm_internal)


def test_remote_links_are_listed(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Remote links come back as Jira lists them."""
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/remotelink",
        json=example("getRemoteIssueLinks.response.200.json"),
    )
    links = make(sleeps).get_remote_links("ED-1")
    assert links and "globalId" in links[0]


# -- polling -----------------------------------------------------------------------------------


def test_search_converts_watermark_to_account_zone_and_pages(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """The JQL window starts 2 minutes early in the account's zone and follows nextPageToken."""
    rsps.get(f"{BASE}/rest/api/2/myself", json=example("getCurrentUser.response.200.json"))
    page = example("searchAndReconsileIssuesUsingJql.response.200.json")
    issue = page["issues"][0]
    first = {
        "issues": [_issue(issue, "ED-1", "2026-11-23T23:01:00.000+1100")],
        "nextPageToken": "tok-2",
        "isLast": False,
    }
    second = {
        "issues": [
            _issue(issue, "ED-1", "2026-11-23T23:01:00.000+1100"),
            _issue(issue, "ED-2", "2026-11-23T23:01:00.000+1100"),
        ],
        "isLast": True,
    }
    # 12:00 UTC is 23:00 in Sydney (AEDT, +11); minus the 2-minute overlap.
    jql = '(project = ED) AND updated >= "2026-11-23 22:58" ORDER BY updated ASC'
    rsps.post(
        f"{BASE}/rest/api/3/search/jql",
        json=first,
        match=[
            matchers.json_params_matcher(
                {"jql": jql, "fields": ["summary", "updated"], "maxResults": 100}
            )
        ],
    )
    rsps.post(
        f"{BASE}/rest/api/3/search/jql",
        json=second,
        match=[
            matchers.json_params_matcher(
                {
                    "jql": jql,
                    "fields": ["summary", "updated"],
                    "maxResults": 100,
                    "nextPageToken": "tok-2",
                }
            )
        ],
    )
    connector = make(sleeps)
    since = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    got = list(connector.search_changed_since(since, jql="project = ED", fields=["summary"]))
    assert [i["key"] for i in got] == ["ED-1", "ED-2"]


def test_search_drops_what_an_earlier_poll_yielded(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A second poll over the overlap yields only (key, updated) pairs not seen before."""
    rsps.get(f"{BASE}/rest/api/2/myself", json={"timeZone": "UTC"})
    base = example("searchAndReconsileIssuesUsingJql.response.200.json")["issues"][0]
    same = _issue(base, "ED-1", "2026-11-23T12:00:10.000+0000")
    newer = _issue(base, "ED-1", "2026-11-23T12:00:50.000+0000")
    other = _issue(base, "ED-2", "2026-11-23T12:00:10.000+0000")
    rsps.post(f"{BASE}/rest/api/3/search/jql", json={"issues": [same, other], "isLast": True})
    rsps.post(
        f"{BASE}/rest/api/3/search/jql", json={"issues": [same, other, newer], "isLast": True}
    )
    connector = make(sleeps)
    since = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert [i["key"] for i in connector.search_changed_since(since)] == ["ED-1", "ED-2"]
    again = list(connector.search_changed_since(since))
    assert [(i["key"], i["fields"]["updated"]) for i in again] == [
        ("ED-1", "2026-11-23T12:00:50.000+0000")
    ]
    assert 'updated >= "2026-11-23 11:58"' in body_of(rsps.calls[1])["jql"]


def _issue(template: dict[str, Any], key: str, updated: str) -> dict[str, Any]:
    issue = copy.deepcopy(template)
    issue["key"] = key
    issue["fields"] = {"updated": updated, "summary": key}
    return issue


def test_jira_datetime_helpers() -> None:
    """Jira timestamps parse with their offset; JQL literals are minute precision local time."""
    moment = parse_jira_datetime("2019-02-15T19:01:52.971-0800")
    assert moment == datetime(2019, 2, 16, 3, 1, 52, 971000, tzinfo=UTC)
    from zoneinfo import ZoneInfo

    assert jql_datetime(moment, ZoneInfo("Asia/Kolkata")) == '"2019-02-16 08:31"'


# -- writes ------------------------------------------------------------------------------------


def test_create_issue_returns_id_key_self(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Create posts the fields and returns Jira's id, key and self."""
    rsps.post(f"{BASE}/rest/api/2/issue", json=example("createIssue.response.201.json"), status=201)
    fields = {"project": {"key": "ED"}, "summary": "x", "issuetype": {"name": "Bug"}}
    created = make(sleeps).create_issue(fields)
    assert (created["id"], created["key"]) == ("10000", "ED-24")
    assert body_of(rsps.calls[0]) == {"fields": fields}


def test_create_issue_400_is_invalid_request_with_jira_messages(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A refused create raises InvalidRequest carrying Jira's errorMessages, once, no retry."""
    rsps.post(f"{BASE}/rest/api/2/issue", json=example("createIssue.response.400.json"), status=400)
    with pytest.raises(InvalidRequest) as info:
        make(sleeps).create_issue({"summary": "x"})
    assert info.value.status == 400
    assert info.value.messages == ("Field 'priority' is required",)
    assert len(rsps.calls) == 1 and sleeps.waits == []


def test_bulk_create_chunks_by_50_and_reports_elements(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """120 issues go in 3 requests; refused elements are reported by their overall index."""
    created = example("createIssue.response.201.json")

    def chunk_answer(n: int, failed: list[int]) -> dict[str, Any]:
        errors = [
            {
                "status": 400,
                "failedElementNumber": i,
                "elementErrors": {"errorMessages": [], "errors": {"summary": "required"}},
            }
            for i in failed
        ]
        return {"issues": [created] * (n - len(failed)), "errors": errors}

    rsps.post(f"{BASE}/rest/api/2/issue/bulk", json=chunk_answer(50, []), status=201)
    rsps.post(f"{BASE}/rest/api/2/issue/bulk", json=chunk_answer(50, [3]), status=201)
    rsps.post(f"{BASE}/rest/api/2/issue/bulk", json=chunk_answer(20, list(range(20))), status=400)
    issues = [{"summary": f"s{n}"} for n in range(120)]
    result = make(sleeps).bulk_create(issues)
    sizes = [len(body_of(c)["issueUpdates"]) for c in rsps.calls]
    assert sizes == [50, 50, 20]
    assert len(result.created) == 99
    assert result.errors[0] == BulkError(index=53, status=400, messages=("summary: required",))
    assert [e.index for e in result.errors[1:]] == list(range(100, 120))


def test_labels_are_added_and_removed_incrementally(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Label changes use update operations so other labels are left alone."""
    rsps.put(f"{BASE}/rest/api/2/issue/ED-1", status=204)
    make(sleeps).update_labels("ED-1", add=["ESCALATION"], remove=["triage"])
    assert body_of(rsps.calls[0]) == {
        "update": {"labels": [{"add": "ESCALATION"}, {"remove": "triage"}]}
    }


def test_priority_and_fields_are_edited(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Priority is set by name; edit_issue sends plain fields."""
    rsps.put(f"{BASE}/rest/api/2/issue/ED-1", status=204)
    rsps.put(f"{BASE}/rest/api/2/issue/ED-1", status=204)
    connector = make(sleeps)
    connector.set_priority("ED-1", "Highest")
    connector.edit_issue("ED-1", {"summary": "new"})
    assert body_of(rsps.calls[0]) == {"fields": {"priority": {"name": "Highest"}}}
    assert body_of(rsps.calls[1]) == {"fields": {"summary": "new"}}


def test_transition_matches_target_status_not_name(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """'Closed' is reached by the transition whose `to` is Closed (id 711, named QA Review)."""
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/transitions",
        json=example("getTransitions.response.200.json"),
    )
    rsps.post(
        f"{BASE}/rest/api/2/issue/ED-1/transitions",
        status=204,
        match=[matchers.json_params_matcher({"transition": {"id": "711"}})],
    )
    make(sleeps).transition_to("ED-1", "closed")


def test_transition_without_path_is_a_clear_invalid_request(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A transition *name* is not a status: no transition leads there, and the error says so."""
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1/transitions",
        json=example("getTransitions.response.200.json"),
    )
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1",
        json={"key": "ED-1", "fields": {"status": {"name": "To Do"}}},
    )
    with pytest.raises(InvalidRequest, match="no transition from 'To Do' leads to 'Close Issue'"):
        make(sleeps).transition_to("ED-1", "Close Issue")


def test_transition_to_current_status_is_a_no_op(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Asking for the status the issue already has writes nothing."""
    rsps.get(f"{BASE}/rest/api/2/issue/ED-1/transitions", json={"transitions": []})
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-1",
        json={"key": "ED-1", "fields": {"status": {"name": "Done"}}},
    )
    make(sleeps).transition_to("ED-1", "Done")


def test_internal_comment_on_jira_software_is_role_restricted(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Internal means visible to the configured role; public carries no restriction."""
    answer = example("addComment.response.201.json")
    rsps.post(f"{BASE}/rest/api/2/issue/ED-1/comment", json=answer, status=201)
    rsps.post(f"{BASE}/rest/api/2/issue/ED-1/comment", json=answer, status=201)
    connector = make(sleeps, comments=CommentPolicy(visibility_value="Developers"))
    connector.add_comment("ED-1", "note", public=False)
    connector.add_comment("ED-1", "hello customer", public=True)
    assert body_of(rsps.calls[0]) == {
        "body": "note",
        "visibility": {"type": "role", "value": "Developers"},
    }
    assert body_of(rsps.calls[1]) == {"body": "hello customer"}


def test_service_desk_comment_sets_jsm_property(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """On a service desk both kinds carry sd.public.comment; group visibility is configurable."""
    answer = example("addComment.response.201.json")
    rsps.post(f"{BASE}/rest/api/2/issue/SD-1/comment", json=answer, status=201)
    rsps.post(f"{BASE}/rest/api/2/issue/SD-1/comment", json=answer, status=201)
    policy = CommentPolicy(service_desk=True, visibility_type="group", visibility_value="agents")
    connector = make(sleeps, comments=policy)
    connector.add_comment("SD-1", "internal", public=False)
    connector.add_comment("SD-1", "public", public=True)
    assert body_of(rsps.calls[0]) == {
        "body": "internal",
        "visibility": {"type": "group", "value": "agents"},
        "properties": [{"key": "sd.public.comment", "value": {"internal": True}}],
    }
    assert body_of(rsps.calls[1])["properties"][0]["value"] == {"internal": False}


def test_remote_link_is_keyed_by_global_id(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """The ServiceNow record is linked with a globalId so re-linking updates in place."""
    rsps.post(
        f"{BASE}/rest/api/2/issue/ED-1/remotelink",
        json=example("createOrUpdateRemoteIssueLink.response.201.json"),
        status=201,
    )
    link = make(sleeps).add_remote_link(
        "ED-1", "https://sn.example.com/incident.do?sys_id=abc", "INC0010001", "sn:incident:abc"
    )
    assert link["id"] == 10000
    sent = body_of(rsps.calls[0])
    assert sent["globalId"] == "sn:incident:abc"
    assert sent["object"] == {
        "url": "https://sn.example.com/incident.do?sys_id=abc",
        "title": "INC0010001",
    }


def test_remote_link_400_reports_field_errors(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Jira's field errors appear in InvalidRequest.messages."""
    rsps.post(
        f"{BASE}/rest/api/2/issue/ED-1/remotelink",
        json=example("createOrUpdateRemoteIssueLink.response.400.json"),
        status=400,
    )
    with pytest.raises(InvalidRequest) as info:
        make(sleeps).add_remote_link("ED-1", "https://x", "")
    assert info.value.messages == ("title: 'title' is required.",)


def test_attachment_upload_is_multipart_with_no_check(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Upload sends X-Atlassian-Token: no-check and a `file` part with the file name."""
    rsps.post(
        f"{BASE}/rest/api/2/issue/ED-1/attachments", json=example("addAttachment.response.200.json")
    )
    got = make(sleeps).add_attachment("ED-1", "log.txt", io.BytesIO(b"line 1\nline 2\n"))
    assert got[0]["filename"] == "picture.jpg"
    request = rsps.calls[0].request
    assert request.headers["X-Atlassian-Token"] == "no-check"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    body = sent_bytes(request)
    assert b'name="file"; filename="log.txt"' in body and b"line 1\nline 2\n" in body


def test_attachment_upload_retry_resends_the_whole_stream(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """After a 503 the upload is retried from the start of the stream."""
    url = f"{BASE}/rest/api/2/issue/ED-1/attachments"
    rsps.post(url, status=503)
    rsps.post(url, json=example("addAttachment.response.200.json"))
    make(sleeps).add_attachment("ED-1", "a.bin", io.BytesIO(b"PAYLOAD"))
    assert b"PAYLOAD" in sent_bytes(rsps.calls[1].request)


def test_attachment_download_streams(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Content is yielded in chunks."""
    data = bytes(range(256)) * 1000
    rsps.get(f"{BASE}/rest/api/2/attachment/content/10000", body=data)
    chunks = list(make(sleeps).download_attachment("10000"))
    assert b"".join(chunks) == data and len(chunks) > 1


# -- failures ----------------------------------------------------------------------------------


def test_429_honours_retry_after_then_succeeds(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A 429 with Retry-After waits that long and the retry succeeds."""
    url = f"{BASE}/rest/api/2/myself"
    rsps.get(url, status=429, headers={"Retry-After": "7"}, json={"errorMessages": []})
    rsps.get(url, json={"timeZone": "UTC"})
    assert make(sleeps).myself()["timeZone"] == "UTC"
    assert sleeps.waits == [7.0]


def test_429_exhausted_raises_rate_limited(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """After the attempts run out RateLimited carries the server's Retry-After."""
    url = f"{BASE}/rest/api/2/issue/ED-1"
    for _ in range(3):
        rsps.get(url, status=429, headers={"Retry-After": "2"})
    with pytest.raises(RateLimited) as info:
        make(sleeps, attempts=3).get_issue("ED-1")
    assert info.value.retry_after == 2.0 and info.value.status == 429
    assert len(rsps.calls) == 3


def test_rate_limit_reset_is_honoured(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """A 429 without Retry-After but with Jira's X-RateLimit-Reset waits until that moment."""
    url = f"{BASE}/rest/api/2/myself"
    reset = (datetime.now(UTC) + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    rsps.get(url, status=429, headers={"X-RateLimit-Reset": reset})
    rsps.get(url, json={"timeZone": "UTC"})
    make(sleeps).myself()
    [waited] = sleeps.waits
    assert 10.0 < waited <= 12.0


def test_a_long_retry_after_goes_to_the_queue(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """Asked to wait longer than the in-process cap, the connector does not retry early: the
    error carries the full Retry-After for the queue to reschedule by."""
    url = f"{BASE}/rest/api/2/issue/ED-1"
    rsps.get(url, status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as info:
        make(sleeps).get_issue("ED-1")
    assert info.value.retry_after == 120.0
    assert sleeps.waits == [] and len(rsps.calls) == 1


def test_library_retry_loop_is_off(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """With one attempt allowed, a 503 is requested exactly once: no hidden library retries."""
    rsps.get(f"{BASE}/rest/api/2/issue/ED-1", status=503)
    with pytest.raises(ServerUnavailable):
        make(sleeps, attempts=1).get_issue("ED-1")
    assert len(rsps.calls) == 1


def test_html_instead_of_json_is_server_unavailable(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A 200 HTML page (a proxy or sleeping site) is retryable, not a crash."""
    rsps.get(f"{BASE}/rest/api/2/myself", body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(ServerUnavailable):
        make(sleeps, attempts=1).myself()


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthFailed), (403, Forbidden), (404, NotFound), (409, InvalidRequest)],
)
def test_permanent_statuses_map_to_typed_errors_without_secrets(
    rsps: responses.RequestsMock, sleeps: Sleeps, status: int, error: type[ConnectorError]
) -> None:
    """Permanent failures are typed, not retried, and never show the token or auth header."""
    rsps.get(
        f"{BASE}/rest/api/2/issue/ED-9",
        status=status,
        json={"errorMessages": ["Issue does not exist or you do not have permission."]},
    )
    with pytest.raises(error) as info:
        make(sleeps).get_issue("ED-9")
    text = f"{info.value} {info.value.messages} {info.value!r}"
    assert TOKEN not in text and "Basic" not in text and "Authorization" not in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(rsps.calls) == 1


def test_connection_failure_is_transport_failed(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A refused connection is retried and then raised as TransportFailed."""
    url = f"{BASE}/rest/api/2/myself"
    rsps.get(url, body=requests.ConnectionError("refused"))
    rsps.get(url, body=requests.ConnectionError("refused"))
    with pytest.raises(TransportFailed):
        make(sleeps, attempts=2).myself()
    assert len(sleeps.waits) == 1


def test_timeout_is_transport_failed(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """A read timeout is TransportFailed too."""
    rsps.get(f"{BASE}/rest/api/2/myself", body=requests.ReadTimeout("slow"))
    with pytest.raises(TransportFailed):
        make(sleeps, attempts=1).myself()


def test_callers_session_transport_is_used(sleeps: Sleeps) -> None:
    """Requests travel through the adapters of the session the caller hands in."""

    class Canned(HTTPAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def send(
            self,
            request: requests.PreparedRequest,
            stream: bool = False,
            timeout: float | tuple[float, float] | tuple[float, None] | None = None,
            verify: bool | str = True,
            cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
            proxies: Mapping[str, str] | None = None,
        ) -> requests.Response:
            self.seen.append(f"{request.method} {request.url}")
            response = requests.Response()
            response.status_code = 200
            response._content = json.dumps({"timeZone": "Europe/Berlin"}).encode()
            response.headers["Content-Type"] = "application/json"
            response.url = request.url or ""
            response.request = request
            return response

    adapter = Canned()
    session = requests.Session()
    session.mount("https://", adapter)
    connector = make(sleeps, session=session)
    assert connector.account_zone().key == "Europe/Berlin"
    assert adapter.seen == [f"GET {BASE}/rest/api/2/myself"]


def test_incomplete_cloud_credentials_are_refused() -> None:
    """An email without a token (or the reverse) is a configuration error."""
    with pytest.raises(ValueError):
        JiraConnector(BASE, email=EMAIL)


def test_search_window_can_be_bounded_above(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """`until` adds an upper bound, rounded up to the next minute in the account's zone."""
    rsps.get(f"{BASE}/rest/api/2/myself", json={"timeZone": "Asia/Tokyo"})
    jql = 'updated >= "2026-11-23 20:58" AND updated <= "2026-11-23 21:31" ORDER BY updated ASC'
    rsps.post(
        f"{BASE}/rest/api/3/search/jql",
        json={"issues": [], "isLast": True},
        match=[
            matchers.json_params_matcher({"jql": jql, "fields": ["updated"], "maxResults": 100})
        ],
    )
    since = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    until = datetime(2026, 11, 23, 12, 30, 15, tzinfo=UTC)
    assert list(make(sleeps).search_changed_since(since, until=until)) == []


# -- in bulk -----------------------------------------------------------------------------------


def test_bulk_create_sends_each_issues_transition(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """`transitions[i]` becomes issue i's `transition` in the request; None sends none."""
    created = example("createIssue.response.201.json")
    rsps.post(f"{BASE}/rest/api/2/issue/bulk", json={"issues": [created] * 2, "errors": []})
    make(sleeps).bulk_create([{"summary": "a"}, {"summary": "b"}], transitions=["11", None])
    assert body_of(rsps.calls[0])["issueUpdates"] == [
        {"fields": {"summary": "a"}, "transition": {"id": "11"}},
        {"fields": {"summary": "b"}},
    ]
    with pytest.raises(ValueError):
        make(sleeps).bulk_create([{"summary": "a"}], transitions=[])


def test_transition_posts_the_id(rsps: responses.RequestsMock, sleeps: Sleeps) -> None:
    """A transition known by id is one request."""
    rsps.post(f"{BASE}/rest/api/2/issue/ED-1/transitions", status=204)
    make(sleeps).transition("ED-1", "21")
    assert body_of(rsps.calls[0]) == {"transition": {"id": "21"}}


def test_get_issues_fetches_a_hundred_a_request(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """150 keys are two bulk fetches of at most 100, with the fields asked for."""
    answer = example("bulkFetchIssues.response.200.json")
    rsps.post(f"{BASE}/rest/api/2/issue/bulkfetch", json=answer)
    rsps.post(f"{BASE}/rest/api/2/issue/bulkfetch", json={"issues": [], "issueErrors": []})
    keys = [f"EX-{n}" for n in range(150)]
    issues = make(sleeps).get_issues(keys, ["summary", "assignee"])
    assert [i["key"] for i in issues] == ["EX-1", "EX-2", "EX-4"]
    sent = [body_of(c) for c in rsps.calls]
    assert [len(b["issueIdsOrKeys"]) for b in sent] == [100, 50]
    assert sent[0]["fields"] == ["summary", "assignee"]


def test_get_issues_rereads_comments_an_issue_carries_only_some_of(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """An issue whose comment block is short of its total gets its comments read in full."""
    issue = example("getIssue.response.200.json")
    issue["fields"]["comment"] = {"comments": [], "total": 1, "maxResults": 0, "startAt": 0}
    rsps.post(f"{BASE}/rest/api/2/issue/bulkfetch", json={"issues": [issue], "issueErrors": []})
    rsps.get(
        f"{BASE}/rest/api/2/issue/{issue['key']}/comment",
        json=example("getComments.response.200.json"),
    )
    (got,) = make(sleeps).get_issues([issue["key"]])
    assert got["fields"]["comment"]["total"] == len(got["fields"]["comment"]["comments"]) == 1
    assert body_of(rsps.calls[0])["fields"] == ["*all"]


def test_remote_links_are_posted_from_a_pool_and_fail_one_by_one(
    rsps: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """Many remote links: each posted once, from pool threads; a refused one is reported in
    its place with Jira's reason while the others go through."""
    for n in range(6):
        status = 400 if n == 2 else 201
        name = f"createOrUpdateRemoteIssueLink.response.{status}.json"
        rsps.post(f"{BASE}/rest/api/2/issue/ED-{n}/remotelink", json=example(name), status=status)
    threads: set[str] = set()
    connector = make(sleeps)
    original = connector._send_pooled

    def send(method: str, url: str, data: str | None) -> requests.Response:
        threads.add(threading.current_thread().name)
        return original(method, url, data)

    connector._send_pooled = send  # type: ignore[method-assign]
    links = [RemoteLinkSpec(f"ED-{n}", f"https://sn.example.com/{n}", f"INC{n}") for n in range(6)]
    errors = connector.add_remote_links(links, workers=3)
    assert [type(e).__name__ if e else None for e in errors] == [
        None,
        None,
        "InvalidRequest",
        None,
        None,
        None,
    ]
    assert errors[2] is not None and errors[2].messages == ("title: 'title' is required.",)
    assert all(name.startswith("jira-links") for name in threads)
    assert body_of(rsps.calls[0])["globalId"] == body_of(rsps.calls[0])["object"]["url"]
    expected_auth = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    for call in rsps.calls:
        assert call.request.headers["Authorization"] == expected_auth
        assert call.request.headers["Content-Type"] == "application/json"
