"""End to end over real HTTP: `sync.pipeline.backfill` between the simulators, whole and cut."""

from __future__ import annotations

from collections import Counter

import pytest

from mapping.model import System
from sync.pipeline.backfill import backfill
from sync.systems.base import LinkOutcome, PairLink
from tests.e2e.conftest import AGENT, Harness

pytestmark = pytest.mark.e2e

STATES = {"1": "To Do", "2": "In Progress", "3": "Waiting"}


def _incidents(harness: Harness, count: int) -> list[str]:
    """Incidents the example route pairs (they carry the ESCALATION label), states varied."""
    # An incident on hold has its reason, as the instance's data policy requires.
    return [
        harness.incident(
            short_description=f"Legacy incident {n:03d}",
            state=str(n % 3 + 1),
            u_labels="ESCALATION",
            **({"hold_reason": "4"} if n % 3 == 2 else {}),
        )
        for n in range(count)
    ]


def _link_notes(harness: Harness, sys_id: str) -> list[dict[str, str]]:
    return [r for r in harness.snow_journal(sys_id) if "Paired Jira record" in r["value"]]


def _assert_each_pair_linked_once(harness: Harness, ids: list[str]) -> None:
    links = {link.side("servicenow").ticket_id: link for link in harness.store.list_links()}
    assert set(links) == set(ids)
    assert len(harness.jira.keys()) == len(ids)
    for sys_id in ids:
        key = links[sys_id].side("jira").ticket_id
        assert links[sys_id].side("jira").record_id == harness.jira.issue(key)["id"]
        remote = harness.jira.issue_record(key).links
        assert [link.body["object"]["title"] for link in remote] == [
            f"Paired ServiceNow record {harness.servicenow.incident(sys_id)['number']}"
        ]
        notes = _link_notes(harness, sys_id)
        assert [(n["element"], key in n["value"]) for n in notes] == [("work_notes", True)]


def test_backfill_creates_each_issue_in_its_status_links_it_and_mirrors_content(
    harness: Harness,
) -> None:
    """Issues are created in bulk already in their status, both records show the link once,
    comments keep their visibility, files are copied, and the webhooks of all this write
    nothing back: the snapshots match what the systems hold."""
    ids = _incidents(harness, 60)
    harness.servicenow.add_comment(ids[4], "Customer: still failing", as_user=AGENT)
    harness.servicenow.add_work_note(ids[4], "Internal: tenant on 4.2.1", as_user=AGENT)
    harness.servicenow.attach(ids[4], "checkout.log", b"ERROR 502\n" * 50, as_user=AGENT)
    harness.reset_stats()
    result = backfill(harness.engine, System.SERVICENOW)
    assert (result.paired, result.failures, result.scanned) == (60, (), 60)
    _assert_each_pair_linked_once(harness, ids)
    for sys_id in ids:
        key = harness.store.get_link("servicenow", sys_id).side("jira").ticket_id  # type: ignore[union-attr]
        status = harness.jira.issue(key)["fields"]["status"]["name"]
        assert status == STATES[harness.servicenow.incident(sys_id)["state"]]
    key = harness.store.get_link("servicenow", ids[4]).side("jira").ticket_id  # type: ignore[union-attr]
    comments = {
        (c["body"].split("\n")[0], bool(c.get("visibility"))) for c in harness.jira_comments(key)
    }
    assert comments == {("Customer: still failing", False), ("Internal: tenant on 4.2.1", True)}
    files = harness.jira.issue(key)["fields"]["attachment"]
    assert [(f["filename"], f["size"]) for f in files] == [("checkout.log", 500)]
    jira = harness.jira.stats()["requests"]
    assert jira["POST /rest/api/2/issue/bulk"] == 2
    assert jira["POST /rest/api/2/issue/bulkfetch"] == 2
    # Only the first issues, made before the workflow's transitions were known, moved later.
    assert jira.get("POST /rest/api/2/issue/{issueIdOrKey}/transitions", 0) <= 50
    assert harness.servicenow.stats()["requests"]["POST /api/now/v1/batch"] == 2
    harness.reset_stats()
    harness.drain()
    assert harness.writes() == 0


def test_an_interrupted_backfill_run_again_links_every_pair_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cut short after pairs were recorded but before their Jira links were posted
    leaves them parked; the next run finishes exactly those: one issue per incident, one
    link each way, the comment mirrored once, nothing created twice."""
    ids = _incidents(harness, 120)
    harness.servicenow.add_comment(ids[70], "Customer: please hurry", as_user=AGENT)
    jira = harness.engine.adapters[System.JIRA]
    real = jira.add_links  # type: ignore[attr-defined]
    calls = Counter[str]()

    def crash_on_second(links: list[PairLink]) -> list[LinkOutcome]:
        calls["add_links"] += 1
        if calls["add_links"] == 2:
            raise RuntimeError("worker killed")
        outcomes: list[LinkOutcome] = real(links)
        return outcomes

    monkeypatch.setattr(jira, "add_links", crash_on_second)
    with pytest.raises(RuntimeError, match="worker killed"):
        backfill(harness.engine, System.SERVICENOW, chunks_in_flight=1)
    monkeypatch.setattr(jira, "add_links", real)
    again = backfill(harness.engine, System.SERVICENOW)
    assert again.failures == ()
    assert again.resumed == 50
    assert again.paired + again.already_paired + again.resumed == 120
    _assert_each_pair_linked_once(harness, ids)
    key = harness.store.get_link("servicenow", ids[70]).side("jira").ticket_id  # type: ignore[union-attr]
    bodies = [c["body"].split("\n")[0] for c in harness.jira_comments(key)]
    assert bodies == ["Customer: please hurry"]
    third = backfill(harness.engine, System.SERVICENOW)
    assert (third.paired, third.resumed, third.already_paired) == (0, 0, 120)


def test_a_refused_link_is_reported_and_retried_by_the_next_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link Jira refuses fails only its pair, with Jira's reason; the next run posts it."""
    ids = _incidents(harness, 3)
    jira = harness.engine.adapters[System.JIRA]
    real = jira.add_links  # type: ignore[attr-defined]

    def refuse_first(links: list[PairLink]) -> list[LinkOutcome]:
        outcomes: list[LinkOutcome] = real(links[1:])
        return [LinkOutcome(problem="HTTP 403: no permission to link"), *outcomes]

    monkeypatch.setattr(jira, "add_links", refuse_first)
    first = backfill(harness.engine, System.SERVICENOW)
    assert [f.reason for f in first.failures] == ["HTTP 403: no permission to link"]
    assert first.paired == 2
    monkeypatch.setattr(jira, "add_links", real)
    second = backfill(harness.engine, System.SERVICENOW)
    assert (second.resumed, second.failures) == (1, ())
    _assert_each_pair_linked_once(harness, ids)
