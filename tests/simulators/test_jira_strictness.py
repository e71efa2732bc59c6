"""The Jira simulator refuses what Jira Cloud refuses, each rule from Atlassian's own material.

The spec lines cited are read from the copy in tests/fixtures/vendor/jira (see its SOURCES.md), so
a test fails if the citation is not the vendor's; messages are Jira's own, as Cloud sites answer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from simulators.jira import JiraSimulator
from tests.conftest import VENDOR

JIRA = VENDOR / "jira"
NOT_ON_SCREEN = "cannot be set. It is not on the appropriate screen, or unknown."


@functools.cache
def spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((JIRA / "openapi" / "swagger-v3.v3.json").read_text())
    return data


def operation(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = spec()["paths"][path][method]
    return found


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
    with JiraSimulator(clock=clock, webhook_base_delay=0.02) as running:
        yield running


@pytest.fixture()
def http(sim: JiraSimulator) -> requests.Session:
    return sim.session(sim.integration)


def api(sim: JiraSimulator, path: str) -> str:
    return f"{sim.url}/rest/api/2{path}"


def test_a_field_not_on_the_create_screen_is_refused(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """Create sets only the create screen's fields (createIssue: "the same fields that appear on
    the issue's create screen"); another is a 400 naming the field."""
    assert (
        "the same fields that appear on the issue's create screen"
        in (operation("post", "/rest/api/3/issue")["description"])
    )
    off_screen = sim.add_custom_field("Root cause", "textfield", screens=("edit",))
    answer = http.post(
        api(sim, "/issue"),
        json={
            "fields": {
                "project": {"key": "ENG"},
                "issuetype": {"name": "Bug"},
                "summary": "x",
                off_screen: "dns",
                "customfield_99999": "unknown",
            }
        },
        timeout=5,
    )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert errors[off_screen] == f"Field '{off_screen}' {NOT_ON_SCREEN}"
    assert errors["customfield_99999"] == f"Field 'customfield_99999' {NOT_ON_SCREEN}"
    assert answer.json()["errorMessages"] == []


def test_a_field_not_on_the_edit_screen_is_refused(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """Edits set only what edit metadata lists (editIssue: "The fields that can be edited are
    determined using Get edit issue metadata"), in `fields` and in `update` alike."""
    assert (
        "The fields that can be edited are determined using"
        in (operation("put", "/rest/api/3/issue/{issueIdOrKey}")["description"])
    )
    create_only = sim.add_custom_field("Severity note", "textfield", screens=("create",))
    key = sim.create_issue("ENG", "edit me")
    meta = http.get(api(sim, f"/issue/{key}/editmeta"), timeout=5).json()["fields"]
    assert "summary" in meta and create_only not in meta and "resolution" not in meta
    for body in (
        {"fields": {create_only: "x"}},
        {"update": {create_only: [{"set": "x"}]}},
        {"fields": {"resolution": {"name": "Done"}}},
    ):
        answer = http.put(api(sim, f"/issue/{key}"), json=body, timeout=5)
        assert answer.status_code == 400, body
        (field_id,) = answer.json()["errors"]
        assert answer.json()["errors"][field_id].endswith(NOT_ON_SCREEN)


def test_a_transition_sets_only_its_screen_and_requires_what_the_screen_requires(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """doTransition refuses "a field that isn't included on the transition screen"; a resolve
    screen's resolution is required and listed with `expand=transitions.fields`."""
    assert (
        "a field that isn't included on the transition screen"
        in (
            operation("post", "/rest/api/3/issue/{issueIdOrKey}/transitions")["responses"]["400"][
                "description"
            ]
        )
    )
    from simulators.estate import SUPPORT_WORKFLOW

    sim.add_project("DS", "Dev Support", workflow=SUPPORT_WORKFLOW)
    key = sim.create_issue("DS", "resolve me")
    listed = http.get(
        api(sim, f"/issue/{key}/transitions"),
        params={"expand": "transitions.fields"},
        timeout=5,
    ).json()["transitions"]
    resolve = next(t for t in listed if t["to"]["name"] == "Done")
    assert resolve["hasScreen"] is True
    assert resolve["fields"]["resolution"]["required"] is True
    assert {"Done", "Won't Do"} <= {
        v["name"] for v in resolve["fields"]["resolution"]["allowedValues"]
    }
    start = next(t for t in listed if t["to"]["name"] == "In Progress")
    assert start["hasScreen"] is False and start["fields"] == {}

    missing = http.post(
        api(sim, f"/issue/{key}/transitions"), json={"transition": {"id": resolve["id"]}}, timeout=5
    )
    assert missing.status_code == 400
    assert missing.json()["errors"] == {"resolution": "Resolution is required."}
    off_screen = http.post(
        api(sim, f"/issue/{key}/transitions"),
        json={"transition": {"id": start["id"]}, "fields": {"resolution": {"name": "Done"}}},
        timeout=5,
    )
    assert off_screen.status_code == 400
    assert off_screen.json()["errors"]["resolution"].endswith(NOT_ON_SCREEN)
    done = http.post(
        api(sim, f"/issue/{key}/transitions"),
        json={"transition": {"id": resolve["id"]}, "fields": {"resolution": {"name": "Won't Do"}}},
        timeout=5,
    )
    assert done.status_code == 204
    assert sim.issue(key)["fields"]["resolution"]["name"] == "Won't Do"


def test_internal_comments_need_a_project_role_the_author_holds(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """A role-restricted comment names a role of the issue's project (Visibility: "the group or
    role to which this item is visible") that the author holds; Jira's own commentLevel errors."""
    assert (
        (spec()["components"]["schemas"]["Visibility"]["description"])
        == "The group or role to which this item is visible."
    )
    key = sim.create_issue("ENG", "visibility")
    url = api(sim, f"/issue/{key}/comment")

    def post(visibility: dict[str, str]) -> requests.Response:
        return http.post(url, json={"body": "internal", "visibility": visibility}, timeout=5)

    assert post({"type": "role", "value": "Administrators"}).status_code == 201
    unknown = post({"type": "role", "value": "Support Leads"})
    assert unknown.status_code == 400
    assert unknown.json()["errors"] == {
        "commentLevel": "Role with id: Support Leads does not exist."
    }
    sim.add_role("ENG", "Support Leads", [sim.engineer.account_id])
    not_member = post({"type": "role", "value": "Support Leads"})
    assert not_member.status_code == 400
    assert not_member.json()["errors"] == {
        "commentLevel": "You are currently not a member of the project role: Support Leads."
    }
    assert post({"type": "group", "value": "jira-administrators"}).status_code == 201
    assert post({"type": "group", "value": "nobody-here"}).json()["errors"] == {
        "commentLevel": "Group: nobody-here does not exist."
    }
    engineer = sim.session(sim.engineer)
    refused = engineer.post(
        url, json={"body": "x", "visibility": {"type": "group", "value": "jira-administrators"}}
    )
    assert refused.json()["errors"] == {
        "commentLevel": "You are currently not a member of the group: jira-administrators."
    }
    roles = http.get(api(sim, "/project/ENG/role"), timeout=5).json()
    admins = http.get(roles["Administrators"], timeout=5).json()
    assert sim.integration.account_id in {a["actorUser"]["accountId"] for a in admins["actors"]}


def test_text_limits(sim: JiraSimulator, http: requests.Session) -> None:
    """Comments and descriptions stop at 32,767 characters (the spec's text-area limit, "The
    maximum length is 32767 characters"), summaries at 255."""
    text_area = spec()["components"]["schemas"]["CustomFieldContextDefaultValueTextArea"]
    assert (
        "The maximum length is 32767 characters." in text_area["properties"]["text"]["description"]
    )
    key = sim.create_issue("ENG", "limits")
    long_comment = http.post(
        api(sim, f"/issue/{key}/comment"), json={"body": "x" * 32768}, timeout=5
    )
    assert long_comment.status_code == 400
    assert long_comment.json()["errors"] == {
        "comment": "The entered text is too long. It exceeds the allowed limit of 32,767 "
        "characters."
    }
    assert (
        http.post(
            api(sim, f"/issue/{key}/comment"), json={"body": "x" * 32767}, timeout=5
        ).status_code
        == 201
    )
    edit = http.put(api(sim, f"/issue/{key}"), json={"fields": {"summary": "s" * 256}}, timeout=5)
    assert edit.json()["errors"] == {"summary": "Summary must be less than 255 characters."}
    described = http.put(
        api(sim, f"/issue/{key}"), json={"fields": {"description": "d" * 32768}}, timeout=5
    )
    assert described.status_code == 400 and "32,767" in described.json()["errors"]["description"]


def test_custom_field_values_must_fit_the_field_schema(
    sim: JiraSimulator, http: requests.Session
) -> None:
    """A value of the wrong type for the field's schema (as createmeta describes it, like the
    real Cloud metadata in the fixtures) is a 400 with Jira's message for that type."""
    real = json.loads(
        (JIRA / "metadata" / "cloud-get-create-issue-metadata-for-project.json").read_text()
    )
    real_fields = real["projects"][0]["issuetypes"][0]["fields"]
    assert real_fields["customfield_10072"]["schema"]["type"] == "number"
    points = sim.add_custom_field("Story points", "float")
    team = sim.add_custom_field("Team", "select", options=["Payments", "Search"])
    tags = sim.add_custom_field("Components affected", "labels")
    meta = http.get(
        api(sim, "/issue/createmeta"),
        params={
            "projectKeys": "ENG",
            "issuetypeNames": "Bug",
            "expand": "projects.issuetypes.fields",
        },
        timeout=5,
    ).json()
    ours = meta["projects"][0]["issuetypes"][0]["fields"]
    assert set(ours[points]) <= set(real_fields["customfield_10072"]) | {"allowedValues"}
    assert ours[points]["schema"]["custom"] == real_fields["customfield_10072"]["schema"]["custom"]
    assert [v["value"] for v in ours[team]["allowedValues"]] == ["Payments", "Search"]
    key = sim.create_issue("ENG", "typed")
    cases = [
        (points, "3", "Operation value must be a number"),
        (team, "Payments", "data was not an object"),
        (team, {"value": "Billing"}, "Option value 'Billing' is not valid"),
        (
            team,
            {"colour": "red"},
            "Could not find valid 'id' or 'value' in the Parent Option object.",
        ),
        (tags, "one", "data was not an array"),
    ]
    for field_id, value, message in cases:
        answer = http.put(api(sim, f"/issue/{key}"), json={"fields": {field_id: value}}, timeout=5)
        assert answer.status_code == 400, value
        assert answer.json()["errors"] == {field_id: message}
    good = http.put(
        api(sim, f"/issue/{key}"),
        json={"fields": {points: 3, team: {"value": "Search"}, tags: ["api", "db"]}},
        timeout=5,
    )
    assert good.status_code == 204
    fields = sim.issue(key)["fields"]
    assert (
        fields[points] == 3 and fields[team]["value"] == "Search" and fields[tags] == ["api", "db"]
    )


def test_jql_unresolved_status_category_current_user_and_relative_dates(
    sim: JiraSimulator, http: requests.Session, clock: Clock
) -> None:
    """`resolution = Unresolved`, `statusCategory`, `currentUser()` and `-1d` work as Atlassian's
    JQL reference describes them."""
    from simulators.estate import SUPPORT_WORKFLOW

    sim.add_project("DS", "Dev Support", workflow=SUPPORT_WORKFLOW)
    old = sim.create_issue("DS", "old", assignee={"accountId": sim.integration.account_id})
    clock.moment += timedelta(days=3)
    fresh = sim.create_issue("DS", "fresh")
    sim.transition(fresh, "Done")

    def keys(jql: str) -> set[str]:
        answer = http.post(
            f"{sim.url}/rest/api/3/search/jql", json={"jql": jql, "fields": ["summary"]}, timeout=5
        )
        assert answer.status_code == 200, answer.text
        return {i["key"] for i in answer.json()["issues"]}

    assert keys("project = DS AND resolution = Unresolved") == {old}
    assert keys("project = DS AND resolution != Unresolved") == {fresh}
    assert keys('project = DS AND statusCategory = "To Do"') == {old}
    assert keys("project = DS AND statusCategory in (done)") == {fresh}
    assert keys("project = DS AND assignee = currentUser()") == {old}
    assert keys("project = DS AND updated >= -1d") == {fresh}
    assert keys('project = DS AND created < "-2d"') == {old}
    assert keys("project = DS AND updated <= now()") == {old, fresh}
    bad = http.post(
        f"{sim.url}/rest/api/3/search/jql", json={"jql": "assignee = membersOf()"}, timeout=5
    )
    assert bad.status_code == 400
    assert bad.json()["errorMessages"] == ["Unable to find JQL function 'membersOf()'."]


def test_metadata_endpoints(sim: JiraSimulator, http: requests.Session) -> None:
    """Fields, projects, resolutions, issue types, link types, user search, changelog and
    watchers answer what a client reads before writing."""
    fields = {f["id"]: f for f in http.get(api(sim, "/field"), timeout=5).json()}
    assert fields["summary"]["clauseNames"] == ["summary"] and not fields["summary"]["custom"]
    project = http.get(api(sim, "/project/ENG"), timeout=5).json()
    assert project["key"] == "ENG" and "Bug" in {t["name"] for t in project["issueTypes"]}
    assert "Administrators" in project["roles"]
    assert {p["key"] for p in http.get(api(sim, "/project"), timeout=5).json()} == {"ENG", "SUP"}
    assert http.get(api(sim, "/project/NOPE"), timeout=5).status_code == 404
    assert "Done" in {r["name"] for r in http.get(api(sim, "/resolution"), timeout=5).json()}
    assert "Task" in {t["name"] for t in http.get(api(sim, "/issuetype"), timeout=5).json()}
    links = http.get(api(sim, "/issueLinkType"), timeout=5).json()["issueLinkTypes"]
    assert "Relates" in {t["name"] for t in links}
    found = http.get(api(sim, "/user/search"), params={"query": "erin"}, timeout=5).json()
    assert [u["accountId"] for u in found] == [sim.engineer.account_id]
    types = http.get(api(sim, "/issue/createmeta/ENG/issuetypes"), timeout=5).json()
    bug = next(t for t in types["issueTypes"] if t["name"] == "Bug")
    paged = http.get(api(sim, f"/issue/createmeta/ENG/issuetypes/{bug['id']}"), timeout=5).json()
    assert {"summary", "project", "issuetype"} <= {f["fieldId"] for f in paged["fields"]}
    key = sim.create_issue("ENG", "history")
    sim.edit(key, {"summary": "history, edited"})
    changes = http.get(api(sim, f"/issue/{key}/changelog"), timeout=5).json()
    assert changes["values"][-1]["items"][0]["toString"] == "history, edited"
    watchers = http.get(api(sim, f"/issue/{key}/watchers"), timeout=5).json()
    assert watchers["watchCount"] == 1
    added = http.post(
        api(sim, f"/issue/{key}/watchers"), data=json.dumps(sim.integration.account_id), timeout=5
    )
    assert added.status_code == 204
    assert http.get(api(sim, f"/issue/{key}/watchers"), timeout=5).json()["isWatching"] is True
