"""The ServiceNow simulator refuses what a stock instance refuses, each rule from ServiceNow's docs.

Every test quotes the line of the document it follows and checks the quote is in the copy under
tests/fixtures/vendor/servicenow/docs (see the folder's SOURCES.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from simulators.servicenow import ServiceNowSimulator
from tests.conftest import VENDOR

DOCS = VENDOR / "servicenow" / "docs"
JSON = {"Accept": "application/json", "Content-Type": "application/json"}
INTEGRATION = ("svc.sync", "pw")


def cites(document: str, line: str) -> None:
    """The vendor document says `line` (whitespace as written there)."""
    assert line in (DOCS / document).read_text(), f"{document} does not say {line!r}"


@pytest.fixture()
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as running:
        running.add_user("svc.sync", name="Sync Service", password="pw")
        yield running


def patch(sim: ServiceNowSimulator, sys_id: str, body: dict[str, Any]) -> requests.Response:
    return requests.patch(
        f"{sim.url}/api/now/table/incident/{sys_id}",
        json=body,
        headers=JSON,
        auth=INTEGRATION,
        timeout=10,
    )


def refusal(answer: requests.Response) -> tuple[int, str, str]:
    error = answer.json()["error"]
    return answer.status_code, error["message"], error["detail"]


def test_resolving_needs_resolution_code_and_notes(sim: ServiceNowSimulator) -> None:
    """A bare `{"state": "6"}` is refused 403 with the Data Policy Exception naming the fields."""
    cites("resolve-and-close-an-incident.md", "|Resolution code|Information to categorize")
    cites("resolve-and-close-an-incident.md", "|Resolution notes|Document how an incident is")
    cites("r_RESTAPIHTTPResponseCodes.md", "business rule or data policy constraints")
    inc = sim.create_incident({"short_description": "VPN down"})
    status, message, detail = refusal(patch(sim, inc["sys_id"], {"state": "6"}))
    assert (status, message) == (403, "Operation Failed")
    assert "Data Policy Exception" in detail
    assert "The following fields are mandatory: Resolution code, Resolution notes" in detail
    assert sim.incident(inc["sys_id"])["state"] == "1", "a refused save changes nothing"
    only_code = patch(sim, inc["sys_id"], {"state": "6", "close_code": "Solution provided"})
    assert "mandatory: Resolution notes" in refusal(only_code)[2]
    done = patch(
        sim,
        inc["sys_id"],
        {"state": "6", "close_code": "Solution provided", "close_notes": "Rebooted the gateway"},
    )
    assert done.status_code == 200 and done.json()["result"]["state"] == "6"


def test_on_hold_needs_a_reason(sim: ServiceNowSimulator) -> None:
    """On Hold without an On hold reason is refused."""
    cites("c_IncidentManagementStateModel.md", "the following **On hold reason** list appears")
    inc = sim.create_incident({"short_description": "waiting"})
    status, _, detail = refusal(patch(sim, inc["sys_id"], {"state": "3"}))
    assert status == 403 and "mandatory: On hold reason" in detail
    held = patch(sim, inc["sys_id"], {"state": "3", "hold_reason": "4"})
    assert held.status_code == 200 and held.json()["result"]["hold_reason"] == "4"


def test_awaiting_caller_needs_a_comment(sim: ServiceNowSimulator) -> None:
    """Putting an incident on hold awaiting the caller takes an Additional comment in the save."""
    cites(
        "c_IncidentManagementStateModel.md",
        "If the **On hold reason** is **Awaiting Caller**, the **Additional comments** becomes "
        "mandatory.",
    )
    inc = sim.create_incident({"short_description": "need logs"})
    status, _, detail = refusal(patch(sim, inc["sys_id"], {"state": "3", "hold_reason": "1"}))
    assert status == 403 and "mandatory: Additional comments" in detail
    noted = patch(
        sim, inc["sys_id"], {"state": "3", "hold_reason": "1", "work_notes": "internal only"}
    )
    assert noted.status_code == 403, "a work note is not an Additional comment"
    asked = patch(
        sim,
        inc["sys_id"],
        {"state": "3", "hold_reason": "1", "comments": "Please send the VPN client log."},
    )
    assert asked.status_code == 200
    later = patch(sim, inc["sys_id"], {"work_notes": "still waiting"})
    assert later.status_code == 200, "the comment is asked for when the hold begins"


def test_closing_takes_itil_admin_and_closed_records_are_read_only(
    sim: ServiceNowSimulator,
) -> None:
    """An itil user resolves but does not close; a closed incident's fields are admin-only."""
    cites("resolve-and-close-an-incident.md", "For resolution: itil, list\\_updater")
    cites("resolve-and-close-an-incident.md", "For closure: itil\\_admin or admin")
    cites("resolve-and-close-an-incident.md", "if you have an admin role")
    cites("r_RESTAPIHTTPResponseCodes.md", "This error can also be caused by ACL failures")
    inc = sim.create_incident({"short_description": "close me"})
    close = {"state": "7", "close_code": "Solution provided", "close_notes": "fixed"}
    status, message, detail = refusal(patch(sim, inc["sys_id"], close))
    assert (status, message, detail) == (
        403,
        "Operation Failed",
        "ACL Exception Update Failed due to security constraints",
    )
    sim.grant_roles("svc.sync", "itil_admin")
    assert patch(sim, inc["sys_id"], close).status_code == 200
    sim.revoke_roles("svc.sync", "itil_admin")
    assert patch(sim, inc["sys_id"], {"short_description": "edited"}).status_code == 403
    assert patch(sim, inc["sys_id"], {"work_notes": "a note on a closed record"}).ok


def test_a_user_without_a_fulfiller_role_cannot_write(sim: ServiceNowSimulator) -> None:
    """A user with no incident-writing role is refused with an ACL Exception on insert and
    update."""
    sim.add_user("carol", name="Carol Caller", password="pw", roles=())
    inc = sim.create_incident({"short_description": "mine"})
    created = requests.post(
        f"{sim.url}/api/now/table/incident",
        json={"short_description": "new"},
        headers=JSON,
        auth=("carol", "pw"),
        timeout=10,
    )
    assert refusal(created) == (
        403,
        "Operation Failed",
        "ACL Exception Insert Failed due to security constraints",
    )
    updated = requests.patch(
        f"{sim.url}/api/now/table/incident/{inc['sys_id']}",
        json={"urgency": "1"},
        headers=JSON,
        auth=("carol", "pw"),
        timeout=10,
    )
    assert updated.status_code == 403


def test_field_acls_hide_and_refuse(sim: ServiceNowSimulator) -> None:
    """A field an ACL keeps from the user is left out of answers and its write is refused."""
    cites(
        "c_RESTAPI.md",
        "Fields for which the calling entity does not have rights to because of ACLs are not "
        "returned in a REST query response.",
    )
    sim.add_column("incident", "u_labels")
    sim.restrict_field("incident", "u_labels", read_roles=("admin",), write_roles=("admin",))
    inc = sim.create_incident({"short_description": "acl", "u_labels": "vip"})
    read = requests.get(
        f"{sim.url}/api/now/table/incident/{inc['sys_id']}",
        params={"sysparm_fields": "short_description,u_labels"},
        headers=JSON,
        auth=INTEGRATION,
        timeout=10,
    ).json()["result"]
    assert read == {"short_description": "acl"}
    written = patch(sim, inc["sys_id"], {"u_labels": "ESCALATION"})
    assert refusal(written)[2] == "ACL Exception Update Failed due to security constraints"
    assert sim.incident(inc["sys_id"])["u_labels"] == "vip"


def test_rate_limit_headers_and_refusal(sim: ServiceNowSimulator) -> None:
    """A request matching a rule carries X-RateLimit-*; over the limit, 429 with Retry-After
    and the documented body."""
    cites("inbound-REST-API-rate-limiting.md", "**X-RateLimit-Limit** displays the number")
    cites("inbound-REST-API-rate-limiting.md", "**X-RateLimit-Reset** displays a UNIX timestamp")
    cites("inbound-REST-API-rate-limiting.md", "**X-RateLimit-Rule** displays the sys\\_id")
    cites("inbound-REST-API-rate-limiting.md", '"message": "Rate limit exceeded"')
    url = f"{sim.url}/api/now/table/incident"
    plain = requests.get(url, headers=JSON, auth=INTEGRATION, timeout=10)
    assert "X-RateLimit-Limit" not in plain.headers, "no rule, no headers"
    rule = sim.set_rate_limit(2, user="svc.sync")
    first = requests.get(url, headers=JSON, auth=INTEGRATION, timeout=10)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Rule"] == rule
    assert int(first.headers["X-RateLimit-Reset"]) > time.time()
    assert requests.get(url, headers=JSON, auth=INTEGRATION, timeout=10).ok
    third = requests.get(url, headers=JSON, auth=INTEGRATION, timeout=10)
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    assert third.json() == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 100 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    admin = requests.get(url, headers=JSON, auth=("admin", "admin"), timeout=10)
    assert admin.ok and "X-RateLimit-Limit" not in admin.headers, "the rule is for one user"


def test_display_values_are_in_the_users_time_zone(sim: ServiceNowSimulator) -> None:
    """Raw date-times stay UTC; display values follow the reader's time zone preference."""
    cites(
        "c_TableAPI.md",
        "Date fields: The database value is in UTC format, while the display value is based on "
        "the user's time zone.",
    )
    sim.add_user("tokyo.agent", name="Tokyo Agent", password="pw", time_zone="Asia/Tokyo")
    sim.freeze_time(datetime(2026, 3, 1, 22, 30, 0, tzinfo=UTC))
    try:
        inc = sim.create_incident({"short_description": "zones"})
        sim.add_comment(inc["sys_id"], "hello")
    finally:
        sim.freeze_time(None)
    url = f"{sim.url}/api/now/table/incident/{inc['sys_id']}"
    params = {"sysparm_display_value": "all", "sysparm_fields": "opened_at,comments"}
    tokyo = requests.get(url, params=params, headers=JSON, auth=("tokyo.agent", "pw"), timeout=10)
    utc = requests.get(url, params=params, headers=JSON, auth=INTEGRATION, timeout=10)
    assert tokyo.json()["result"]["opened_at"] == {
        "display_value": "2026-03-02 07:30:00",
        "value": "2026-03-01 22:30:00",
    }
    assert utc.json()["result"]["opened_at"]["display_value"] == "2026-03-01 22:30:00"
    assert tokyo.json()["result"]["comments"]["display_value"].startswith("2026-03-02 07:30:00")


def test_choice_lists_and_properties_are_readable(sim: ServiceNowSimulator) -> None:
    """sys_choice lists the close codes and hold reasons; a property with read roles is
    readable by them, the Business Rule's secret by admins only."""
    cites("resolve-close-mim-sow.md", "-   Solution provided")
    rows = requests.get(
        f"{sim.url}/api/now/table/sys_choice",
        params={"sysparm_query": "name=incident^element=close_code", "sysparm_fields": "value"},
        headers=JSON,
        auth=INTEGRATION,
        timeout=10,
    ).json()["result"]
    assert {"value": "Solution provided"} in rows
    sim.set_webhook("http://127.0.0.1:9/webhooks/servicenow", "s3cret", integration_user="svc.sync")
    visible = requests.get(
        f"{sim.url}/api/now/table/sys_properties",
        params={"sysparm_query": "nameSTARTSWITHescalation_sync.", "sysparm_fields": "name,value"},
        headers=JSON,
        auth=INTEGRATION,
        timeout=10,
    ).json()["result"]
    assert visible == [
        {"name": "escalation_sync.webhook.url", "value": "http://127.0.0.1:9/webhooks/servicenow"}
    ]
