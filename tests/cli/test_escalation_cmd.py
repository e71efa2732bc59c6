"""`explain`, `policy simulate`, `policy check` and `policy presets` from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import presets
from cli.app import build
from mapping.model import Comment, Person, Priority, Ref, System, Ticket, Visibility
from simulators.estate import PROJECTS

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
LEAD = Person(id="lead.1")
DEV = Person(id="devsupport.1")
DESC = "Payments fail; we cannot investigate further without Dev Support.\nContact: Dana"


SECRETS = {
    "ESCALATION_SYNC_JIRA__API_TOKEN": "token",
    "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET": "jira-hook",
    "ESCALATION_SYNC_SERVICENOW__PASSWORD": "password",
    "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET": "snow-hook",
}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the example configuration reads from the environment, as a service has them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build(), list(args))
    return result.exit_code, result.output


def ds_ticket(n: int, *, public_approval: bool = False) -> Ticket:
    approver = Comment(id=f"a{n}", body="/approve-escalation", author=DEV, created=T0)
    if public_approval:
        approver = Comment(
            id=f"a{n}",
            body="/approve-escalation",
            visibility=Visibility.PUBLIC,
            author=Person(id="cust", email="c@customer.example"),
            created=T0,
        )
    return Ticket(
        ref=Ref(system=System.SERVICENOW, id=f"s{n}", key=f"INC{n}"),
        summary=f"Issue {n}",
        description=DESC,
        priority=Priority.P2,
        assignee=Person(id=f"agent{n}"),
        updated=T0 + timedelta(minutes=n),
        comments=(Comment(id=f"r{n}", body="/escalate outage", author=LEAD, created=T0), approver),
    )


@pytest.mark.parametrize("name", presets.preset_names())
def test_each_preset_passes_mapping_check(tmp_path: Path, name: str):
    """A configuration pointing policy_file at a preset, its JQL covering the preset's
    projects, passes `mapping check` and `policy check --config`."""
    config = preset_config(tmp_path, name, jql_for(name))
    code, out = run("mapping", "check", "--config", str(config))
    assert code == 0, out
    assert f"policy {presets.load_preset(name).name}" in out
    code, out = run("policy", "check", name, "--config", str(config))
    assert code == 0, out
    assert out.startswith(f"OK {name}: policy ") and out.rstrip().endswith(str(config))


def test_policy_check_refuses_targets_the_configuration_does_not_work_in(tmp_path: Path):
    """A preset escalating to projects outside the configuration's JQL is refused by both
    checks, naming each level's project and how to fix it."""
    config = preset_config(tmp_path, "l1_l2_l3_team_leader")
    code, out = run("mapping", "check", "--config", str(config))
    assert code == 2
    preset = str(presets.preset_path("l1_l2_l3_team_leader"))
    assert (
        f"{preset}: escalation.levels[1].project: Jira project L2 is not one this "
        "configuration works in (DS: [jira].project, [jira].jql and the routes): its records "
        "would not be polled; add it to [jira].jql, e.g. project in (DS, L2, VENDOR)"
    ) in out
    assert "escalation.levels[2].project: Jira project VENDOR" in out
    code, out = run("policy", "check", "technical_support_sop", "--config", str(EXAMPLE))
    assert code == 2
    assert "policy does not fit" in out and "(3 errors)" in out
    assert "escalation.levels[1].category_projects.hardware: Jira project HW" in out


def test_policy_check_refuses_routing_the_mapping_does_not_write(tmp_path: Path):
    """A level routing by a team field the mapping does not write on Jira is refused."""
    policy = tmp_path / "p.toml"
    policy.write_text(
        "[escalation]\n"
        '[[escalation.levels]]\nname = "L1"\n'
        '[[escalation.levels]]\nname = "L2"\ntarget_system = "jira"\nproject = "DS"\n'
        'team = "Payments"\napprovers = { users = ["a"] }\n'
    )
    code, out = run("policy", "check", str(policy), "--config", str(EXAMPLE))
    assert code == 2
    assert (
        f"{policy}: escalation.levels[1].team: routes records by team, which the mapping does "
        "not write on jira: [mapping.systems.jira.custom.team] is missing or read-only"
    ) in out


def test_policy_check_reports_every_error(tmp_path: Path):
    """`policy check` on a broken file lists each error with file and key, exit 2."""
    bad = tmp_path / "p.toml"
    bad.write_text('[escalation]\nlimits = { max_per_dya = 3 }\ntimezone = "Nowhere/Land"\n')
    code, out = run("policy", "check", str(bad))
    assert code == 2
    assert "escalation.limits.max_per_dya: unknown key 'max_per_dya'" in out
    assert "escalation.timezone" in out


def test_policy_check_counts_a_single_error_in_the_singular(tmp_path: Path):
    """One error reads `invalid policy (1 error):`."""
    bad = tmp_path / "p.toml"
    bad.write_text('[escalation]\ntimezone = "Nowhere/Land"\n')
    code, out = run("policy", "check", str(bad))
    assert code == 2 and out.startswith("invalid policy (1 error):"), out


def test_policy_presets_lists_all():
    """`policy presets` names every shipped preset."""
    code, out = run("policy", "presets")
    assert code == 0 and all(n in out for n in presets.preset_names())


def test_simulate_counts_per_day_and_refusals(tmp_path: Path):
    """Four approvals in a day under ds_ticket_limits: 3 escalated, 1 refused by max_per_day."""
    lines = [ds_ticket(n).model_dump_json() for n in range(1, 5)]
    lines.append(ds_ticket(5, public_approval=True).model_dump_json())
    data = tmp_path / "t.jsonl"
    data.write_text("\n".join(lines) + "\n\n")
    code, out = run(
        "policy", "simulate", "--policy", "ds_ticket_limits", "--tickets", str(data), "--json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["days"]["2026-03-10"]["escalated"] == 3
    assert report["refusals_by_reason"] == {"max_per_day": 1}
    assert report["limit_hits"] == {"max_per_day": 1}
    assert report["blocked_commands"] == {"command.approve": 1}
    code, text = run("policy", "simulate", "-p", "ds_ticket_limits", "-t", str(data))
    assert code == 0 and "Refusals by reason:\n  max_per_day: 1" in text


def test_simulate_reports_unreadable_lines(tmp_path: Path):
    """Lines that are not canonical tickets are reported by line number, exit 2."""
    data = tmp_path / "t.jsonl"
    data.write_text(ds_ticket(1).model_dump_json() + '\n{not json\n{"ref": 1}\n')
    code, out = run("policy", "simulate", "-p", "ds_ticket_limits", "-t", str(data))
    assert code == 2 and ":2:" in out and ":3:" in out


def test_explain_ticket_file_text_and_json(tmp_path: Path):
    """`explain --ticket-file` prints each rule and what happens next; --json the same as data."""
    path = tmp_path / "t.json"
    path.write_text(ds_ticket(1).model_dump_json())
    code, out = run(
        "explain",
        "--ticket-file",
        str(path),
        "--policy",
        "ds_ticket_limits",
        "--at",
        "2026-03-10T09:05:00Z",
    )
    assert code == 0, out
    assert "state: none -> approved" in out
    assert "PASS    limit.max_per_day" in out
    assert "- add label ESCALATION" in out and "- set priority P1" in out
    code, out = run("explain", "--ticket-file", str(path), "--policy", "ds_ticket_limits", "--json")
    data = json.loads(out)
    assert data["decision"]["state"] == "approved"
    assert any(r["rule"] == "limit.max_active" for r in data["decision"]["reasons"])


def test_explain_shows_a_blocked_public_approval(tmp_path: Path):
    """A customer's public /approve-escalation shows up as BLOCKED and changes nothing."""
    path = tmp_path / "t.json"
    path.write_text(ds_ticket(1, public_approval=True).model_dump_json())
    code, out = run("explain", "--ticket-file", str(path), "--policy", "ds_ticket_limits")
    assert code == 0
    assert "BLOCKED command.approve" in out and "state: none -> pending_approval" in out


def test_explain_needs_exactly_one_source():
    """REF and --ticket-file are alternatives; neither or both is an error."""
    code, out = run("explain", "--policy", "ds_ticket_limits")
    assert code == 2 and "either REF or --ticket-file" in out


def test_explain_ref_reads_through_the_sync_engine_and_the_ledger(tmp_path: Path, monkeypatch):
    """`explain REF` asks the sync engine for the ticket and counts from the store's ledger."""
    import sync.runtime.refs

    config = tmp_path / "config.toml"
    config.write_text(EXAMPLE.read_text().replace('dir = "./state"', f'dir = "{tmp_path / "st"}"'))
    asked: list[str] = []

    def load(settings, ref):
        asked.append(ref)
        return ds_ticket(1)

    monkeypatch.setattr(sync.runtime.refs, "load_ticket_for_explain", load, raising=False)
    code, out = run(
        "explain",
        "servicenow:s1",
        "--config",
        str(config),
        "--policy",
        "ds_ticket_limits",
        "--json",
    )
    assert code == 0, out
    assert asked == ["servicenow:s1"]
    data = json.loads(out)
    assert data["counts"] == {
        "escalations_today": 0,
        "active": 0,
        "active_by_assignee": {},
        "assignee": None,
        "active_for_assignee": 0,
        "ticket_included": True,
    }
    assert data["history"] == [] and data["engineering"] is None
    assert data["decision"]["state"] == "approved"


def test_shipped_sample_tickets_simulate_under_the_example_policy():
    """docs/simulate-tickets.jsonl runs as the README says: 3 escalated, 1 incomplete, 1 refused
    by the daily limit, 1 public approval blocked, 1 resolved the next day."""
    sample = EXAMPLE.parent / "docs" / "simulate-tickets.jsonl"
    code, out = run(
        "policy", "simulate", "--tickets", str(sample), "--config", str(EXAMPLE), "--json"
    )
    assert code == 0, out
    report = json.loads(out)
    assert (report["snapshots"], report["tickets"]) == (8, 5)
    assert report["days"]["2026-03-10"] == {
        "requested": 5,
        "escalated": 3,
        "refused": 1,
        "incomplete": 1,
        "rejected": 0,
        "resolved": 0,
    }
    assert report["days"]["2026-03-11"]["resolved"] == 1
    assert report["limit_hits"] == {"max_per_day": 1}
    assert report["blocked_commands"] == {"command.approve": 1}


def jql_for(name: str) -> str:
    """A JQL covering every Jira project the preset escalates to."""
    policy = presets.load_preset(name)
    projects = {"DS"}
    for level in policy.levels:
        if level.project:
            projects.update([level.project, *level.category_projects.values()])
    return f"project in ({', '.join(sorted(projects))})"


def preset_config(tmp_path: Path, name: str, jql: str | None = None) -> Path:
    """The example configuration with policy_file at a preset and the JQL given."""
    config = tmp_path / "config.toml"
    text = EXAMPLE.read_text()
    if jql is not None:
        text = text.replace('jql = "project = DS"', f'jql = "{jql}"')
    config.write_text(f'policy_file = "{presets.preset_path(name)}"\n' + text)
    return config


def test_report_reads_the_recorded_decisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`report --since` over a store with three DS escalations: counts by cause and level as
    JSON, the same as CSV, and a table."""
    from sync.procedure.ledger import decide_and_record
    from sync.store.database import Store

    monkeypatch.setenv("ESCALATION_SYNC_STATE__DIR", str(tmp_path / "state"))
    config = preset_config(tmp_path, "ds_ticket_limits", jql_for("ds_ticket_limits"))
    policy = presets.load_preset("ds_ticket_limits")
    store = Store.for_state(tmp_path / "state", None)
    try:
        for n in range(1, 4):
            with store.session() as tx:
                decide_and_record(tx, ds_ticket(n), T0 + timedelta(hours=n), policy)
    finally:
        store.close()
    code, out = run("report", "--since", "2026-03-01", "--format", "json", "--config", str(config))
    assert code == 0, out
    data = json.loads(out)
    assert data["total"]["requested"] == 3 and data["total"]["escalated"] == 3
    assert data["by"]["cause"] == [
        {
            "key": "request by a person",
            "requested": 3,
            "escalated": 3,
            "not_escalated": 0,
            "joined": 0,
            "resolved": 0,
            "open": 3,
            "hours_to_approve_median": 0.0,
            "hours_to_approve_p90": 0.0,
            "hours_to_resolve_median": None,
            "hours_to_resolve_p90": None,
        }
    ]
    assert [r["key"] for r in data["by"]["level"]] == ["Dev Support"]
    code, out = run("report", "--since", "2026-03-01", "-f", "csv", "--config", str(config))
    assert code == 0 and out.splitlines()[1].startswith("total,all,3,3,0,0,0,3,")
    code, out = run("report", "--since", "2026-03-11", "--config", str(config))
    assert code == 0 and "total" in out and "approver" in out
    code, out = run("report", "--since", "2026-03-01", "-f", "xml", "--config", str(config))
    assert code == 2 and "one of table, csv, json" in out


@pytest.mark.parametrize("name", presets.preset_names())
def test_the_simulators_hold_every_project_a_preset_escalates_to(tmp_path: Path, name: str):
    """`escalation-sync simulators` seeds each preset's Jira projects, and its configuration's
    JQL covers them: a preset works against the simulators as shipped."""
    seeded = tuple(key for key, _ in PROJECTS)
    assert set(jql_for(name).removeprefix("project in (").rstrip(")").split(", ")) <= set(seeded)
    config = preset_config(tmp_path, name, f"project in ({', '.join(seeded)})")
    code, out = run("policy", "check", name, "--config", str(config))
    assert code == 0, out
