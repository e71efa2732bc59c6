"""ServiceNowConnector against strict `responses` fakes fed by ServiceNow's documented bodies."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from connectors.errors import (
    AuthFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerUnavailable,
    TransportFailed,
)
from connectors.retry import RetryPolicy
from connectors.servicenow import (
    BatchRequest,
    ServiceNowConnector,
    format_sn_datetime,
    parse_sn_datetime,
)
from tests.conftest import VENDOR

FIXTURES = VENDOR / "servicenow" / "samples"
BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
JOURNAL = f"{BASE}/api/now/table/sys_journal_field"
PASSWORD = "pw-Secret-123"


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture()
def sleeps() -> list[float]:
    return []


@pytest.fixture()
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=4, base_delay=0.01, max_delay=30.0, sleep=sleeps.append)


@pytest.fixture()
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture()
def sn(policy: RetryPolicy) -> ServiceNowConnector:
    return ServiceNowConnector(
        BASE, username="svc.sync", password=PASSWORD, retry=policy, page_size=3
    )


def rows(n: int, *, start: int = 0, stamp: str = "2026-01-01 10:00:00") -> list[dict[str, str]]:
    return [
        {"sys_id": f"{i:032x}", "sys_mod_count": "1", "sys_updated_on": stamp}
        for i in range(start, start + n)
    ]


# ------------------------------------------------------------------------------- reads


def test_get_record_returns_the_result_object_with_basic_auth(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """A record read returns the documented `result` object and authenticates with basic auth."""
    body = sample("GET_incident_by_sysid.response.json")
    expected_auth = "Basic " + base64.b64encode(f"svc.sync:{PASSWORD}".encode()).decode()
    mock.get(
        f"{TABLE}/a9e30c7dc61122760116894de7bcc7bd",
        json=body,
        match=[
            matchers.query_param_matcher({"sysparm_display_value": "false"}),
            matchers.header_matcher({"Authorization": expected_auth, "Accept": "application/json"}),
        ],
    )
    record = sn.get_record("a9e30c7dc61122760116894de7bcc7bd")
    assert record == body["result"]
    assert record["caller_id"]["value"] == "46c6f9efa9fe198101ddf5eed9adf6e7"


def test_get_record_asks_for_display_values_and_fields(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """display_value and fields are passed as sysparm_display_value and sysparm_fields."""
    mock.get(
        f"{TABLE}/abc",
        json={"result": {"state": {"display_value": "New", "value": "1"}}},
        match=[
            matchers.query_param_matcher(
                {"sysparm_display_value": "all", "sysparm_fields": "state,priority"}
            )
        ],
    )
    assert sn.get_record("abc", fields=["state", "priority"], display_value="all") == {
        "state": {"display_value": "New", "value": "1"}
    }
    with pytest.raises(ValueError):
        sn.get_record("abc", display_value="yes")


def test_find_by_number(sn: ServiceNowConnector, mock: responses.RequestsMock) -> None:
    """find_by_number queries number=... with a limit of one and returns None when absent."""
    listing = sample("GET_problem_list_limit1.response.json")
    mock.get(
        TABLE,
        json=listing,
        match=[
            matchers.query_param_matcher(
                {"sysparm_query": "number=PRB0000050", "sysparm_limit": "1", "sysparm_offset": "0"}
            )
        ],
    )
    mock.get(
        TABLE,
        json={"result": []},
        match=[
            matchers.query_param_matcher(
                {"sysparm_query": "number=INC404", "sysparm_limit": "1", "sysparm_offset": "0"}
            )
        ],
    )
    assert sn.find_by_number("PRB0000050") == listing["result"][0]
    assert sn.find_by_number("INC404") is None


def test_journal_reads_comments_and_work_notes_to_the_last_page(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """The journal comes from sys_journal_field by element_id, ordered, over every page."""
    query = "element_id=abc^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id"
    entries = [
        {
            "sys_id": str(i),
            "element": "comments" if i % 2 else "work_notes",
            "value": f"v{i}",
            "element_id": "abc",
            "sys_created_on": "2026-01-01 10:00:00",
        }
        for i in range(4)
    ]
    for offset, page in ((0, entries[:3]), (3, entries[3:])):
        mock.get(
            JOURNAL,
            json={"result": page},
            match=[
                matchers.query_param_matcher(
                    {"sysparm_query": query, "sysparm_limit": "3", "sysparm_offset": str(offset)}
                )
            ],
        )
    assert [e["value"] for e in sn.journal("abc")] == ["v0", "v1", "v2", "v3"]


# ------------------------------------------------------------------------------- polling


def test_changed_since_formats_the_watermark_in_utc_minus_overlap(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """The watermark is converted to UTC, moved back by the overlap and ordered by time and id."""
    since = datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    mock.get(
        TABLE,
        json={"result": rows(1)},
        match=[
            matchers.query_param_matcher(
                {
                    "sysparm_query": "sys_updated_on>=2026-01-01 10:00:00^active=true"
                    "^ORDERBYsys_updated_on^ORDERBYsys_id",
                    "sysparm_limit": "3",
                    "sysparm_offset": "0",
                    "sysparm_fields": "sys_id,sys_mod_count,sys_updated_on,number",
                }
            )
        ],
    )
    got = list(
        sn.changed_since(
            since, query="active=true", fields=["number", "sys_id"], overlap=timedelta(seconds=30)
        )
    )
    assert len(got) == 1


def test_changed_since_pages_to_the_end_with_one_row_of_overlap(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Every page after the first re-reads the previous page's last row; the short page ends it."""
    data = rows(7)
    query = "sys_updated_on>=2026-01-01 09:59:30^ORDERBYsys_updated_on^ORDERBYsys_id"
    for offset in (0, 2, 4, 6):
        mock.get(
            TABLE,
            json={"result": data[offset : offset + 3]},
            match=[
                matchers.query_param_matcher(
                    {"sysparm_query": query, "sysparm_limit": "3", "sysparm_offset": str(offset)}
                )
            ],
        )
    got = list(sn.changed_since(datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)))
    assert [r["sys_id"] for r in got] == [r["sys_id"] for r in data]


def test_changed_since_restarts_after_the_last_key_when_the_result_set_moves(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """A record updated mid-scan shifts the offsets; the scan notices and skips nothing."""
    first = rows(6)
    query = "sys_updated_on>=2026-01-01 09:59:30^ORDERBYsys_updated_on^ORDERBYsys_id"

    def page(offset: int, result: list[dict[str, str]], q: str = query) -> None:
        mock.get(
            TABLE,
            json={"result": result},
            match=[
                matchers.query_param_matcher(
                    {"sysparm_query": q, "sysparm_limit": "3", "sysparm_offset": str(offset)}
                )
            ],
        )

    page(0, first[:3])
    # Row 0 was updated after the first page: everything moved left by one.
    moved = [
        *first[1:],
        {**first[0], "sys_mod_count": "2", "sys_updated_on": "2026-01-01 10:00:05"},
    ]
    page(2, moved[2:5])
    last = first[2]
    anchored = (
        f"sys_updated_on>{last['sys_updated_on']}^ORsys_id>{last['sys_id']}"
        f"^sys_updated_on>={last['sys_updated_on']}^sys_updated_on>=2026-01-01 09:59:30"
        "^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    page(0, moved[2:5], anchored)
    page(2, moved[4:], anchored)
    got = list(sn.changed_since(datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)))
    keys = [(r["sys_id"], r["sys_mod_count"]) for r in got]
    assert len(keys) == len(set(keys))
    assert {r["sys_id"] for r in got} == {r["sys_id"] for r in first}
    assert (first[0]["sys_id"], "2") in keys


def test_changed_since_drops_repeated_versions(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """The same (sys_id, sys_mod_count) seen twice in one scan is yielded once."""
    data = rows(2)
    mock.get(TABLE, json={"result": [data[0], data[0], data[1]]})
    mock.get(TABLE, json={"result": [data[1]]})
    got = list(sn.changed_since(datetime(2026, 1, 1, tzinfo=UTC)))
    assert [r["sys_id"] for r in got] == [data[0]["sys_id"], data[1]["sys_id"]]


def test_page_size_must_allow_an_overlap_row() -> None:
    """A page of one row could never advance with a row of overlap, so it is refused."""
    with pytest.raises(ValueError):
        ServiceNowConnector(BASE, username="u", password="p", page_size=1)


def test_datetime_helpers_round_trip() -> None:
    """Wire datetimes are UTC with second precision, and naive datetimes are taken as UTC."""
    moment = datetime(2026, 3, 4, 5, 6, 7, 999, tzinfo=UTC)
    assert format_sn_datetime(moment) == "2026-03-04 05:06:07"
    assert parse_sn_datetime("2026-03-04 05:06:07") == moment.replace(microsecond=0)
    assert format_sn_datetime(datetime(2026, 3, 4, 5, 6, 7)) == "2026-03-04 05:06:07"


# ------------------------------------------------------------------------------- writes


def test_update_patches_fields(sn: ServiceNowConnector, mock: responses.RequestsMock) -> None:
    """update sends a PATCH with the string fields and returns the record."""
    body = sample("PATCH_incident.response.json")
    mock.patch(
        f"{TABLE}/ef43c6d40a0a0b5700c77f9bf387afe3",
        json=body,
        match=[matchers.json_params_matcher({"assigned_to": "681b365ec0a80164000fb0b05854a0cd"})],
    )
    got = sn.update(
        "ef43c6d40a0a0b5700c77f9bf387afe3", {"assigned_to": "681b365ec0a80164000fb0b05854a0cd"}
    )
    assert got["sys_mod_count"] == "7"


def test_set_priority_writes_impact_and_urgency_and_reads_priority_back(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Priority is never written: impact and urgency are, and the computed priority returned."""
    mock.patch(
        f"{TABLE}/ef43c6d40a0a0b5700c77f9bf387afe3",
        json=sample("PATCH_incident.response.json"),
        match=[matchers.json_params_matcher({"impact": "1", "urgency": "1"})],
    )
    assert sn.set_priority("ef43c6d40a0a0b5700c77f9bf387afe3", "1", "1") == "1"


def test_set_priority_reads_back_when_the_answer_has_no_priority(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Without priority in the PATCH answer the record is read again for it."""
    mock.patch(f"{TABLE}/abc", json={"result": {"impact": "2"}})
    mock.get(
        f"{TABLE}/abc",
        json={"result": {"priority": "3"}},
        match=[
            matchers.query_param_matcher(
                {"sysparm_display_value": "false", "sysparm_fields": "priority"}
            )
        ],
    )
    assert sn.set_priority("abc", "2", "2") == "3"


def test_set_state_writes_the_code(sn: ServiceNowConnector, mock: responses.RequestsMock) -> None:
    """A state change is a PATCH of the state code plus any fields the state needs."""
    mock.patch(
        f"{TABLE}/abc",
        json={"result": {"state": "6"}},
        match=[
            matchers.json_params_matcher(
                {"state": "6", "close_code": "Solved (Permanently)", "close_notes": "done"}
            )
        ],
    )
    assert (
        sn.set_state("abc", "6", {"close_code": "Solved (Permanently)", "close_notes": "done"})
        == "6"
    )


@pytest.mark.parametrize(("public", "element"), [(True, "comments"), (False, "work_notes")])
def test_add_comment_picks_comments_or_work_notes(
    sn: ServiceNowConnector, mock: responses.RequestsMock, public: bool, element: str
) -> None:
    """Public text goes to comments (customer-visible), internal text to work_notes."""
    mock.patch(
        f"{TABLE}/abc",
        json={"result": {"sys_id": "abc"}},
        match=[matchers.json_params_matcher({element: "hello"})],
    )
    assert sn.add_comment("abc", "hello", public=public) == {"sys_id": "abc"}


def test_journal_fields_follow_the_mapping(
    policy: RetryPolicy, mock: responses.RequestsMock
) -> None:
    """A table with its own journal fields is written and read through those, not the defaults."""
    sn = ServiceNowConnector(
        BASE,
        username="svc.sync",
        password=PASSWORD,
        retry=policy,
        journal_fields=("u_customer_notes", "u_engineering_notes"),
    )
    mock.patch(
        f"{TABLE}/abc",
        json={"result": {"sys_id": "abc"}},
        match=[matchers.json_params_matcher({"u_engineering_notes": "internal"})],
    )
    query = (
        "element_id=abc^elementINu_customer_notes,u_engineering_notes"
        "^ORDERBYsys_created_on^ORDERBYsys_id"
    )
    mock.get(
        JOURNAL,
        json={"result": []},
        match=[matchers.query_param_matcher({"sysparm_query": query}, strict_match=False)],
    )
    sn.add_comment("abc", "internal", public=False)
    assert sn.journal("abc") == []


def test_a_save_carrying_a_required_comment_is_not_repeated_after_a_500(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A PATCH with a comment in it (Awaiting Caller) may have posted it: raised, not retried."""
    mock.patch(f"{TABLE}/abc", status=500, json={"error": {"message": "boom"}})
    with pytest.raises(ServerUnavailable):
        sn.update("abc", {"state": "3", "hold_reason": "1", "comments": "Please send the log"})
    assert len(mock.calls) == 1 and sleeps == []


def test_a_data_policy_refusal_is_a_refused_write_not_an_auth_failure(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """403 "Data Policy Exception" refuses this write (Forbidden, dead-lettered with the
    instance's words); only a 401 is the credentials' problem (AuthFailed, the system paused)."""
    policy = {
        "error": {
            "message": "Operation Failed",
            "detail": "Data Policy Exception: \n\tThe following fields are mandatory: "
            "Resolution code, Resolution notes\n",
        },
        "status": "failure",
    }
    mock.patch(f"{TABLE}/abc", status=403, json=policy)
    with pytest.raises(Forbidden) as refused:
        sn.update("abc", {"state": "6"})
    assert "Resolution code, Resolution notes" in str(refused.value)
    assert not isinstance(refused.value, AuthFailed)
    mock.patch(
        f"{TABLE}/abc",
        status=401,
        json={"error": {"message": "User Not Authenticated", "detail": None}, "status": "failure"},
    )
    with pytest.raises(AuthFailed):
        sn.update("abc", {"state": "6"})


def test_comment_is_not_repeated_after_a_500(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A 500 on a comment may have written it, so it is raised at once, not retried."""
    mock.patch(f"{TABLE}/abc", status=500, json={"error": {"message": "boom"}})
    with pytest.raises(ServerUnavailable):
        sn.add_comment("abc", "hello", public=True)
    assert len(mock.calls) == 1
    assert sleeps == []


def test_comment_is_retried_after_a_429(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A 429 means the instance did not run the request, so even a comment is retried."""
    mock.patch(
        f"{TABLE}/abc",
        status=429,
        json=sample("rate_limited.response.json"),
        headers={"Retry-After": "2"},
    )
    mock.patch(f"{TABLE}/abc", json={"result": {"sys_id": "abc"}})
    sn.add_comment("abc", "hello", public=True)
    assert sleeps == [2.0]


def test_create_posts_and_returns_the_new_record(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """create POSTs the fields and returns the record as the instance stored it."""
    body = sample("POST_incident.response.json")
    sent = {
        "short_description": "Unable to connect to office wifi",
        "assignment_group": "287ebd7da9fe198100f92cc8d1d2154e",
        "urgency": "2",
        "impact": "2",
    }
    mock.post(TABLE, json=body, status=201, match=[matchers.json_params_matcher(sent)])
    created = sn.create(sent)
    assert created["number"] == "INC0010002"
    assert created["priority"] == "3"


# ------------------------------------------------------------------------------- errors


def test_429_honours_retry_after(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A 429 with Retry-After waits exactly that long before the next attempt."""
    mock.get(
        f"{TABLE}/abc",
        status=429,
        json=sample("rate_limited.response.json"),
        headers={"Retry-After": "7", "X-RateLimit-Reset": "9999999999"},
    )
    mock.get(f"{TABLE}/abc", json={"result": {"sys_id": "abc"}})
    assert sn.get_record("abc") == {"sys_id": "abc"}
    assert sleeps == [7.0]


def test_429_without_retry_after_backs_off_with_jitter(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """ServiceNow also sends 429 bare: the waits follow capped exponential backoff."""
    for _ in range(3):
        mock.get(f"{TABLE}/abc", status=429, json=sample("rate_limited.response.json"))
    mock.get(f"{TABLE}/abc", json={"result": {"sys_id": "abc"}})
    sn.get_record("abc")
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.01 * 2**i for i, s in enumerate(sleeps))


def test_rate_limit_that_never_lifts_raises_rate_limited(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """After the last attempt the typed retryable error reaches the caller with the vendor text."""
    for _ in range(4):
        mock.get(f"{TABLE}/abc", status=429, json=sample("rate_limited.response.json"))
    with pytest.raises(RateLimited) as caught:
        sn.get_record("abc")
    assert "Rate limit of 100 requests per hour" in str(caught.value)
    assert caught.value.status == 429


def test_5xx_is_retried(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A 503 on a read is retried and the later success returned."""
    mock.get(f"{TABLE}/abc", status=503, body="<html>down</html>", content_type="text/html")
    mock.get(f"{TABLE}/abc", json={"result": {"sys_id": "abc"}})
    assert sn.get_record("abc") == {"sys_id": "abc"}
    assert len(sleeps) == 1


def test_html_page_instead_of_json_is_a_clear_retryable_error(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """A hibernating instance's 200 HTML page becomes ServerUnavailable, not a parser crash."""
    for _ in range(4):
        mock.get(
            f"{TABLE}/abc",
            status=200,
            body="<html><body>Hibernating</body></html>",
            content_type="text/html",
        )
    with pytest.raises(ServerUnavailable) as caught:
        sn.get_record("abc")
    assert "hibernating" in str(caught.value)


def test_401_is_auth_failed_without_credentials_in_the_message(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Refused credentials raise AuthFailed whose text names neither user secret nor header."""
    mock.get(
        f"{TABLE}/abc",
        status=401,
        json={
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        },
    )
    with pytest.raises(AuthFailed) as caught:
        sn.get_record("abc")
    text = str(caught.value) + repr(caught.value.messages)
    assert PASSWORD not in text
    assert base64.b64encode(f"svc.sync:{PASSWORD}".encode()).decode() not in text
    assert "User Not Authenticated" in text


def test_404_and_400_carry_servicenow_messages(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """404 is NotFound and other 4xx InvalidRequest, both with error.message and detail."""
    mock.get(
        f"{TABLE}/gone",
        status=404,
        json={
            "error": {
                "message": "No Record found",
                "detail": "Record doesn't exist or ACL restricts the record retrieval",
            },
            "status": "failure",
        },
    )
    mock.post(
        TABLE,
        status=400,
        json={"error": {"message": "Invalid table bogus", "detail": None}, "status": "failure"},
    )
    with pytest.raises(NotFound) as missing:
        sn.get_record("gone")
    assert missing.value.messages == (
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
    with pytest.raises(InvalidRequest) as bad:
        sn.create({"short_description": "x"})
    assert "Invalid table bogus" in str(bad.value)


def test_refused_connection_is_transport_failed(policy: RetryPolicy) -> None:
    """No answer at all is TransportFailed once the attempts run out."""
    with responses.RequestsMock() as rsps:
        rsps.get(f"{TABLE}/abc", body=requests.ConnectionError("refused"))
        conn = ServiceNowConnector(BASE, username="u", password=PASSWORD, retry=policy)
        with pytest.raises(TransportFailed):
            conn.get_record("abc")
        assert len(rsps.calls) == policy.attempts


# ------------------------------------------------------------------------------- OAuth


def oauth(policy: RetryPolicy, clock: list[float] | None = None) -> ServiceNowConnector:
    ticks = clock if clock is not None else [0.0]
    return ServiceNowConnector(
        BASE,
        client_id="cid",
        client_secret="csecret-xyz",
        retry=policy,
        clock=lambda: ticks[0],
    )


def token_response(rsps: responses.RequestsMock, token: str, expires_in: int = 1799) -> None:
    rsps.post(
        f"{BASE}/oauth_token.do",
        json={
            "access_token": token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": expires_in,
        },
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "grant_type": "client_credentials",
                    "client_id": "cid",
                    "client_secret": "csecret-xyz",
                }
            )
        ],
    )


def test_oauth_token_is_fetched_once_and_reused(
    policy: RetryPolicy, mock: responses.RequestsMock
) -> None:
    """Client credentials get one token that serves every request until it nears expiry."""
    token_response(mock, "tok-1")
    for _ in range(3):
        mock.get(
            f"{TABLE}/abc",
            json={"result": {}},
            match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})],
        )
    conn = oauth(policy)
    for _ in range(3):
        conn.get_record("abc")


def test_oauth_token_is_renewed_before_expiry(
    policy: RetryPolicy, mock: responses.RequestsMock
) -> None:
    """A token past its lifetime (minus a margin) is replaced before the next request."""
    clock = [0.0]
    token_response(mock, "tok-1", expires_in=600)
    mock.get(
        f"{TABLE}/abc",
        json={"result": {}},
        match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})],
    )
    token_response(mock, "tok-2", expires_in=600)
    mock.get(
        f"{TABLE}/abc",
        json={"result": {}},
        match=[matchers.header_matcher({"Authorization": "Bearer tok-2"})],
    )
    conn = oauth(policy, clock)
    conn.get_record("abc")
    clock[0] = 541.0
    conn.get_record("abc")


def test_oauth_401_fetches_a_new_token_once(
    policy: RetryPolicy, mock: responses.RequestsMock
) -> None:
    """A revoked token gets one refresh; the request is then repeated with the new token."""
    token_response(mock, "tok-1")
    mock.get(
        f"{TABLE}/abc",
        status=401,
        json={"error": {"message": "User Not Authenticated"}},
        match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})],
    )
    token_response(mock, "tok-2")
    mock.get(
        f"{TABLE}/abc",
        json={"result": {"ok": "1"}},
        match=[matchers.header_matcher({"Authorization": "Bearer tok-2"})],
    )
    assert oauth(policy).get_record("abc") == {"ok": "1"}


def test_oauth_refused_client_is_auth_failed_without_the_secret(
    policy: RetryPolicy, mock: responses.RequestsMock
) -> None:
    """Wrong client credentials raise AuthFailed and the secret never appears in the error."""
    mock.post(
        f"{BASE}/oauth_token.do",
        status=401,
        json={"error_description": "access_denied", "error": "server_error"},
    )
    with pytest.raises(AuthFailed) as caught:
        oauth(policy).get_record("abc")
    assert "csecret-xyz" not in str(caught.value) + repr(caught.value.messages)


def test_constructor_requires_one_complete_auth() -> None:
    """Half an OAuth pair, or neither auth, is a configuration error."""
    with pytest.raises(ValueError):
        ServiceNowConnector(BASE, client_id="cid")
    with pytest.raises(ValueError):
        ServiceNowConnector(BASE)


# ------------------------------------------------------------------------------- attachments


def test_upload_attachment_sends_the_file_as_body(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """The file is the body, named by query params; a retry after 429 resends all of it."""
    params = {"table_name": "incident", "table_sys_id": "abc", "file_name": "log.txt"}
    mock.post(
        f"{BASE}/api/now/attachment/file",
        status=429,
        json={},
        match=[matchers.query_param_matcher(params)],
    )
    seen: list[bytes] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        seen.append(request.body.read() if hasattr(request.body, "read") else request.body)
        assert request.headers["Content-Type"] == "text/plain"
        return (
            201,
            {"Content-Type": "application/json"},
            json.dumps({"result": {"sys_id": "att1", "file_name": "log.txt", "size_bytes": "11"}}),
        )

    mock.add_callback(
        "POST",
        f"{BASE}/api/now/attachment/file",
        callback=answer,
        match=[matchers.query_param_matcher(params)],
    )
    meta = sn.upload_attachment("abc", "log.txt", io.BytesIO(b"hello world"), "text/plain")
    assert meta["sys_id"] == "att1"
    assert seen == [b"hello world"]


def test_list_and_download_attachments(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Attachments are listed by table_sys_id and downloaded as a stream of chunks."""
    mock.get(
        f"{BASE}/api/now/attachment",
        json={"result": [{"sys_id": "att1"}]},
        match=[
            matchers.query_param_matcher(
                {
                    "sysparm_query": "table_sys_id=abc^ORDERBYsys_created_on^ORDERBYsys_id",
                    "sysparm_limit": "3",
                    "sysparm_offset": "0",
                }
            )
        ],
    )
    content = b"x" * 200_000
    mock.get(
        f"{BASE}/api/now/attachment/att1/file",
        body=content,
        content_type="application/octet-stream",
        headers={"X-Attachment-Metadata": "{}"},
    )
    assert sn.list_attachments("abc") == [{"sys_id": "att1"}]
    chunks = list(sn.download_attachment("att1"))
    assert b"".join(chunks) == content
    assert len(chunks) > 1


def test_download_of_a_sleep_page_is_server_unavailable(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """An HTML page without attachment metadata is the sleep screen, not the file."""
    for _ in range(4):
        mock.get(
            f"{BASE}/api/now/attachment/att1/file",
            body="<html>zzz</html>",
            content_type="text/html",
        )
    with pytest.raises(ServerUnavailable):
        sn.download_attachment("att1")


# ------------------------------------------------------------------------------- batch


def test_batch_encodes_bodies_and_decodes_each_answer(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Sub-request bodies travel base64; answers keep the caller's order and their own status."""
    created = sample("POST_incident.response.json")
    captured: dict[str, Any] = {}

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        payload = json.loads(request.body)
        captured.update(payload)
        first = payload["rest_requests"][0]
        assert json.loads(base64.b64decode(first["body"])) == {"short_description": "a"}
        body = {
            "batch_request_id": payload["batch_request_id"],
            "serviced_requests": [
                {
                    "id": "2",
                    "status_code": 404,
                    "status_text": "Not Found",
                    "body": base64.b64encode(
                        json.dumps(
                            {"error": {"message": "No Record found", "detail": "gone"}}
                        ).encode()
                    ).decode(),
                    "headers": [],
                    "execution_time": 3,
                },
                {
                    "id": "1",
                    "status_code": 201,
                    "status_text": "Created",
                    "body": base64.b64encode(json.dumps(created).encode()).decode(),
                    "headers": [],
                    "execution_time": 9,
                },
            ],
            "unserviced_requests": ["3"],
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    mock.add_callback("POST", f"{BASE}/api/now/v1/batch", callback=answer)
    results = sn.batch(
        [
            BatchRequest(
                id="1",
                method="POST",
                url="/api/now/table/incident",
                body={"short_description": "a"},
            ),
            BatchRequest(id="2", method="GET", url="/api/now/table/incident/gone"),
            BatchRequest(id="3", method="GET", url="/api/now/table/incident/later"),
        ]
    )
    assert [r.id for r in results] == ["1", "2", "3"]
    assert results[0].ok and results[0].body["result"]["number"] == "INC0010002"
    assert results[1].status_code == 404 and results[1].error_message == "No Record found; gone"
    assert not results[2].serviced and not results[2].ok
    assert captured["rest_requests"][1]["method"] == "GET"
    assert "body" not in captured["rest_requests"][1]


def _served(rid: str, status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    """One `serviced_requests` item as batch-api documents it."""
    return {
        "id": rid,
        "status_code": status,
        "status_text": {200: "OK", 404: "Not Found", 429: "Too Many Requests"}[status],
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "headers": [{"name": k, "value": v} for k, v in (headers or {}).items()],
        "execution_time": 4,
    }


def _bundle_answer(
    items: dict[str, tuple[int, Any, dict[str, str] | None]], seen: list[Any]
) -> Any:
    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        payload = json.loads(request.body or b"{}")
        seen.append(payload)
        served = [_served(r["id"], *items[r["id"]]) for r in payload["rest_requests"]]
        body = {"batch_request_id": payload["batch_request_id"], "serviced_requests": served}
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({**body, "unserviced_requests": []}),
        )

    return answer


def test_read_bundle_reads_record_journal_and_attachments_in_one_batch(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """The record, its journal and its attachments come from one batch of three GETs."""
    record = sample("GET_incident_by_sysid.response.json")
    sys_id = record["result"]["sys_id"]
    note = {"sys_id": "j1", "element": "comments", "value": "hi", "element_id": sys_id}
    seen: list[Any] = []
    items = {
        "record": (200, record, None),
        "journal": (200, {"result": [note]}, {"X-Total-Count": "1"}),
        "attachments": (200, {"result": []}, {"X-Total-Count": "0"}),
    }
    mock.add_callback("POST", f"{BASE}/api/now/v1/batch", callback=_bundle_answer(items, seen))
    bundle = sn.read_bundle(sys_id)
    assert bundle.record == record["result"]
    assert bundle.journal == [note] and bundle.attachments == []
    sent = seen[0]["rest_requests"]
    assert [(r["method"], r["url"].split("?")[0]) for r in sent] == [
        ("GET", f"/api/now/table/incident/{sys_id}"),
        ("GET", "/api/now/table/sys_journal_field"),
        ("GET", "/api/now/attachment"),
    ]
    assert "sysparm_display_value=false" in sent[0]["url"]
    assert f"element_id%3D{sys_id}" in sent[1]["url"] and "sysparm_limit=3" in sent[1]["url"]
    assert [r["exclude_response_headers"] for r in sent] == [True, False, False]
    assert all("body" not in r for r in sent)


def test_read_bundle_pages_on_past_a_full_page(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """A journal longer than a page is read on from where the batch's page ended."""
    record = sample("GET_incident_by_sysid.response.json")
    sys_id = record["result"]["sys_id"]
    notes = [{"sys_id": f"j{i}", "element": "comments", "value": str(i)} for i in range(4)]
    items = {
        "record": (200, record, None),
        "journal": (200, {"result": notes[:3]}, {"X-Total-Count": "4"}),
        "attachments": (200, {"result": []}, {"X-Total-Count": "0"}),
    }
    mock.add_callback("POST", f"{BASE}/api/now/v1/batch", callback=_bundle_answer(items, []))
    mock.get(
        JOURNAL,
        json={"result": notes[3:]},
        headers={"X-Total-Count": "4"},
        match=[matchers.query_param_matcher({"sysparm_offset": "3"}, strict_match=False)],
    )
    assert [n["sys_id"] for n in sn.read_bundle(sys_id).journal] == ["j0", "j1", "j2", "j3"]


def test_read_bundle_raises_what_a_failed_item_stands_for(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """A missing record is NotFound; a rate-limited item is RateLimited, as if sent alone."""
    gone = {"error": {"message": "No Record found", "detail": "gone"}, "status": "failure"}
    empty: tuple[int, Any, dict[str, str] | None] = (200, {"result": []}, None)
    items = {"record": (404, gone, None), "journal": empty, "attachments": empty}
    mock.add_callback("POST", f"{BASE}/api/now/v1/batch", callback=_bundle_answer(items, []))
    with pytest.raises(NotFound):
        sn.read_bundle("abc")
    limited = sample("rate_limited.response.json")
    items["record"] = (429, limited, {"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        sn.read_bundle("abc")
    assert caught.value.retry_after == 7


def test_a_batch_of_reads_is_retried_on_transient_failure(
    sn: ServiceNowConnector, mock: responses.RequestsMock, sleeps: list[float]
) -> None:
    """A batch of GETs is as safe to repeat as a GET: a 500 is retried; one with a write is not."""
    record = sample("GET_incident_by_sysid.response.json")
    empty: tuple[int, Any, dict[str, str] | None] = (200, {"result": []}, None)
    items = {"record": (200, record, None), "journal": empty, "attachments": empty}
    mock.post(f"{BASE}/api/now/v1/batch", status=500, json={"error": {"message": "boom"}})
    mock.add_callback("POST", f"{BASE}/api/now/v1/batch", callback=_bundle_answer(items, []))
    assert sn.read_bundle(record["result"]["sys_id"]).record == record["result"]
    assert len(sleeps) == 1
    mock.post(f"{BASE}/api/now/v1/batch", status=500, json={"error": {"message": "boom"}})
    with pytest.raises(ServerUnavailable):
        sn.batch([BatchRequest(id="1", method="PATCH", url="/api/now/table/incident/a", body={})])


def test_answer_without_result_is_a_clear_error(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """JSON without a result object (a proxy's own JSON) is a typed error, not a KeyError."""
    mock.get(f"{TABLE}/abc", json={"status": "ok"})
    with pytest.raises(ServerUnavailable, match="without a result"):
        sn.get_record("abc")


def test_identifiers_cannot_widen_a_query(sn: ServiceNowConnector) -> None:
    """A sys_id or number carrying `^` would add query terms, so it is refused before sending."""
    with pytest.raises(ValueError):
        sn.journal("abc^ORelement_id!=x")
    with pytest.raises(ValueError):
        sn.find_by_number("INC1^ORactive=true")


def test_capped_pages_do_not_end_the_scan_early(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """An instance answering fewer rows than asked, with X-Total-Count saying more, is paged on."""
    data = rows(5)
    query = "sys_updated_on>=2026-01-01 09:59:30^ORDERBYsys_updated_on^ORDERBYsys_id"
    # The instance caps responses at two rows although sysparm_limit is three.
    for offset, page in ((0, data[0:2]), (1, data[1:3]), (2, data[2:4]), (3, data[3:5])):
        mock.get(
            TABLE,
            json={"result": page},
            headers={"X-Total-Count": "5"},
            match=[
                matchers.query_param_matcher(
                    {"sysparm_query": query, "sysparm_limit": "3", "sysparm_offset": str(offset)}
                )
            ],
        )
    got = list(sn.changed_since(datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)))
    assert [r["sys_id"] for r in got] == [r["sys_id"] for r in data]


# ------------------------------------------------------------------------------- in bulk


def _query_of(call: Any) -> dict[str, str]:
    from urllib.parse import parse_qs, urlsplit

    return {k: v[-1] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def test_journals_of_many_records_take_one_query_per_hundred(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """150 records' journals are read with two element_idIN queries and grouped by record."""
    ids = [f"{i:032x}" for i in range(150)]
    mock.get(JOURNAL, json={"result": [{"sys_id": "j1", "element_id": ids[7], "value": "a"}]})
    mock.get(JOURNAL, json={"result": [{"sys_id": "j2", "element_id": ids[120], "value": "b"}]})
    found = sn.journals(ids)
    assert len(found) == 150 and found[ids[0]] == []
    assert [r["value"] for r in found[ids[7]] + found[ids[120]]] == ["a", "b"]
    first, second = (_query_of(c)["sysparm_query"] for c in mock.calls)
    tail = "^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id"
    assert first == f"element_idIN{','.join(ids[:100])}{tail}"
    assert second == f"element_idIN{','.join(ids[100:])}{tail}"


def test_attachments_of_many_records_are_grouped_by_record(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Attachment metadata of several records comes from one table_sys_idIN query."""
    mock.get(
        f"{BASE}/api/now/attachment",
        json={"result": [{"sys_id": "att1", "table_sys_id": "b"}]},
        match=[
            matchers.query_param_matcher(
                {
                    "sysparm_query": "table_sys_idINa,b^ORDERBYsys_created_on^ORDERBYsys_id",
                    "sysparm_limit": "3",
                    "sysparm_offset": "0",
                }
            )
        ],
    )
    assert sn.attachments_of(["a", "b"]) == {
        "a": [],
        "b": [{"sys_id": "att1", "table_sys_id": "b"}],
    }


def test_get_records_by_sys_id_list(sn: ServiceNowConnector, mock: responses.RequestsMock) -> None:
    """Records are read by a sys_idIN list with the columns asked for."""
    mock.get(
        TABLE,
        json={"result": rows(2)},
        match=[
            matchers.query_param_matcher(
                {
                    "sysparm_query": f"sys_idIN{'0' * 32},{'0' * 31}1^ORDERBYsys_id",
                    "sysparm_limit": "3",
                    "sysparm_offset": "0",
                    "sysparm_fields": "sys_id,number",
                }
            )
        ],
    )
    got = sn.get_records([f"{0:032x}", f"{1:032x}"], fields=["sys_id", "number"])
    assert [r["sys_id"] for r in got] == [f"{0:032x}", f"{1:032x}"]


def test_records_page_by_key_so_writes_during_the_scan_move_nothing(
    sn: ServiceNowConnector, mock: responses.RequestsMock
) -> None:
    """Each page asks for the sys_ids after the last one seen, offset 0; the total is the
    first page's X-Total-Count; a short page that the count agrees with ends the scan."""
    data = rows(5)
    mock.get(TABLE, json={"result": data[:3]}, headers={"X-Total-Count": "5"})
    mock.get(TABLE, json={"result": data[3:]}, headers={"X-Total-Count": "2"})
    pages = list(sn.records("active=true", fields=["number"]))
    assert [[r["sys_id"] for r in p.rows] for p in pages] == [
        [r["sys_id"] for r in data[:3]],
        [r["sys_id"] for r in data[3:]],
    ]
    assert [p.total for p in pages] == [5, 5]
    first, second = (_query_of(c) for c in mock.calls)
    assert first["sysparm_query"] == "active=true^ORDERBYsys_id"
    assert second["sysparm_query"] == f"active=true^sys_id>{data[2]['sys_id']}^ORDERBYsys_id"
    assert first["sysparm_offset"] == second["sysparm_offset"] == "0"
    assert first["sysparm_fields"] == "sys_id,number"
