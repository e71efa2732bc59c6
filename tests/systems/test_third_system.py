"""A third ticket system, added as docs/adding-a-ticket-system.md says (one package, tests/systems/
helpdesk/, plus configuration), pairs its records with Jira through the unchanged engine, and
the configuration, webhooks, references and the registry's entry point take it in."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.events import ChangeEvent
from mapping import load_mapping
from mapping.errors import ConfigInvalid
from mapping.model import System
from simulators.jira import JiraSimulator
from sync.config.settings import load_settings
from sync.intake.webhooks import WebhookConfig, create_app
from sync.pipeline.engine import Engine
from sync.pipeline.markers import Marker, find_marker
from sync.runtime.refs import parse_ref
from sync.runtime.wiring import build_adapters
from sync.store.database import LinkSide, Store
from sync.systems import jira as jira_system
from sync.systems import registry as systems
from tests.conftest import EXAMPLE_CONFIG
from tests.sync.fakes import FakeJira
from tests.systems.helpdesk import SYSTEM as HELPDESK
from tests.systems.helpdesk.adapter import HelpdeskAdapter
from tests.systems.helpdesk.server import HelpdeskServer
from tests.systems.helpdesk.system import sign

URL = "https://helpdesk.test"
SECRET = "helpdesk-webhook-secret"

# The help desk's part of a mapping, as an admin writes it.
HELPDESK_MAPPING = """
[mapping.systems.helpdesk.ref]
id = "id"
key = "number"
url_template = "https://helpdesk.test/tickets/{id}"

[mapping.systems.helpdesk.fields.summary]
read = "subject"
write = "subject"

[mapping.systems.helpdesk.fields.description]
read = "body"
write = "body"

[mapping.systems.helpdesk.fields.status]
read = "state"
write = "state"
values.new = "open"
values.in_progress = "working"
values.on_hold = "waiting"
values.resolved = "solved"
values.closed = "closed"
values.cancelled = "dropped"

[mapping.systems.helpdesk.fields.priority]
read = "priority"
write = "priority"
values = { P1 = "urgent", P2 = "high", P3 = "normal", P4 = "low", P5 = "minimal" }

[mapping.systems.helpdesk.fields.labels]
read = "tags"
transform = "list"
write = "tags"

[mapping.systems.helpdesk.fields.version]
read = "version"
transform = "string"
write_mode = "none"

[mapping.systems.helpdesk.comments]
path = "notes"
id = "id"
body = "text"
author = "author"
internal_if = "private"

[[mapping.routes]]
name = "helpdesk-to-engineering"
source = "helpdesk"
target = "jira"
when = "always"
target_project = "DS"
issue_type = "Task"
"""


# Escalations are decided on the help desk's tickets; the policy is not what these tests are
# about, so it is the smallest there is.
MINIMAL_POLICY = """
[[escalation.levels]]
name = "L1"

[[escalation.levels]]
name = "L2"
approvers = { users = ["sme.alice"] }
"""


def _example_parts() -> tuple[str, str]:
    """The example configuration's connection sections (before the policy), and its Jira
    mapping section."""
    text = EXAMPLE_CONFIG.read_text()
    connections = text[: text.index("[escalation]")]
    jira = text[text.index("# ---- Jira Cloud") : text.index("# ---- ServiceNow")]
    return connections, jira


def config_text(state: Path, helpdesk: str = f'url = "{URL}"') -> str:
    """A configuration pairing help desk tickets with Jira issues, state in `state`."""
    connections, jira = _example_parts()
    connections = connections.replace('dir = "./state"', f'dir = "{state}"')
    ownership = '[mapping.ownership]\nsummary = "helpdesk"\ndescription = "helpdesk"\n'
    return "\n".join(
        [
            connections,
            f"[helpdesk]\n{helpdesk}\n",
            MINIMAL_POLICY,
            '[mapping]\ndefault_owner = "both"\n',
            ownership,
            jira,
            HELPDESK_MAPPING,
        ]
    )


@pytest.fixture
def installed() -> Iterator[None]:
    """The help desk registered with the process's registry for the test, then removed."""
    registry = systems.registry()
    registry.register(HELPDESK)
    try:
        yield
    finally:
        registry.unregister(HELPDESK.name)


@pytest.fixture
def helpdesk(installed: None) -> Iterator[HelpdeskServer]:
    """A help desk with one ticket a person opened."""
    server = HelpdeskServer.start(URL)
    server.open("Printer on fire", body="Third floor, since 9:00", priority="high", tags=["hw"])
    yield server
    HelpdeskServer.stop(URL)


class NullMetrics:
    def processed(self, system: str, writes: int, lag: float | None) -> None:
        return None

    def failed(self, system: str, outcome: str) -> None:
        return None

    def write(self, system: str, kind: str) -> None:
        return None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def _engine(store: Store, server: HelpdeskServer, jira: FakeJira) -> Engine:
    data = tomllib.loads(config_text(Path("/unused")))
    mapping = load_mapping(data["mapping"], source="helpdesk.toml", prefix="mapping")
    return Engine(
        mapping=mapping,
        adapters={
            System("helpdesk"): HelpdeskAdapter(server, author="svc-sync"),
            System.JIRA: jira,  # type: ignore[dict-item]
        },
        store=store,
        integration_users={System("helpdesk"): "svc-sync", System.JIRA: "svc-sync"},
        metrics=NullMetrics(),
    )


def _posted(requests: Sequence[str], prefix: str) -> list[str]:
    return [r for r in requests if r.startswith(prefix)]


def test_a_help_desk_ticket_pairs_with_a_jira_issue_through_the_engine(
    helpdesk: HelpdeskServer, store: Store
) -> None:
    """An `always` route from the help desk creates the Jira issue with the ticket's fields,
    records the pair (system, id, key) to (system, id, key), shows each record's link on the
    other, mirrors notes both ways with markers naming the help desk, carries a status change
    back, and a second pass writes nothing."""
    jira = FakeJira()
    engine = _engine(store, helpdesk, jira)

    outcome = engine.sync("helpdesk", "t1")

    assert outcome.created == "DS-1"
    issue = jira.records["DS-1"]["fields"]
    assert issue["summary"] == "Printer on fire"
    assert issue["priority"] == {"name": "High"}
    assert issue["labels"] == ["hw"]
    link = store.get_link("helpdesk", "HD-1")  # found by the ticket's number too
    assert link is not None and link.route == "helpdesk-to-engineering"
    assert link.side("helpdesk") == LinkSide("helpdesk", "t1", "t1", "HD-1")
    assert link.other("helpdesk") == ("jira", "DS-1")
    shown = {"url": "http://127.0.0.1:8081/browse/DS-1", "title": "Paired Jira record DS-1"}
    assert helpdesk.tickets["t1"]["links"] == [shown]
    assert "link DS-1" in jira.writes

    note = helpdesk.add_note("t1", "The smoke is grey", private=False, author="alice")
    engine.sync("helpdesk", "t1")
    (copy,) = jira.records["DS-1"]["fields"]["comment"]["comments"]
    assert copy["body"].startswith("The smoke is grey")
    assert "visibility" not in copy  # public stays public
    assert find_marker(copy["body"]) == Marker(System("helpdesk"), "HD-1", note["id"])

    jira.comment("DS-1", "Fuser replaced", internal=True)
    jira.edit("DS-1", status={"name": "Done"})
    engine.sync("jira", "DS-1")
    ticket = helpdesk.tickets["t1"]
    assert ticket["state"] == "solved"
    mirrored = [n for n in ticket["notes"] if n["text"].startswith("Fuser replaced")]
    assert len(mirrored) == 1 and mirrored[0]["private"] is True
    assert mirrored[0]["author"] == "svc-sync"

    writes_before = (len(jira.writes), len(_posted(helpdesk.requests, "P")))
    assert engine.sync("helpdesk", "t1").writes == 0
    assert engine.sync("jira", "DS-1").writes == 0
    assert (len(jira.writes), len(_posted(helpdesk.requests, "P"))) == writes_before
    # One ticket opened by a person, none by the integration.
    assert _posted(helpdesk.requests, "POST /tickets ") == ["POST /tickets 'Printer on fire'"]


def test_the_configuration_takes_the_help_desk_section_and_its_mapping(
    helpdesk: HelpdeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[helpdesk]` is validated by the help desk's own settings model, the mapping may name
    the help desk, and the composition root builds its adapter from the section."""
    monkeypatch.setenv("ESCALATION_SYNC_JIRA__API_TOKEN", "jira-token")
    path = tmp_path / "config.toml"
    path.write_text(config_text(tmp_path / "state"))
    settings = load_settings(path)

    section = settings.section(HELPDESK)
    assert section.url == URL
    assert settings.mapping_model.partner_of(System("helpdesk")) is System.JIRA
    adapters = build_adapters(settings)
    assert isinstance(adapters[System("helpdesk")], HelpdeskAdapter)
    assert adapters[System("helpdesk")].read("HD-1")["subject"] == "Printer on fire"
    assert parse_ref("HD-1", settings) == (System("helpdesk"), "HD-1")
    assert parse_ref("helpdesk:t1", settings) == (System("helpdesk"), "t1")
    assert parse_ref("DS-7", settings) == (System.JIRA, "DS-7")

    path.write_text(config_text(tmp_path / "state", helpdesk='urll = "x"'))
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    reasons = {e.key: e.reason for e in info.value.errors}
    assert reasons["helpdesk.urll"].startswith("unknown key")
    assert reasons["helpdesk.url"] == "required key is missing"


def test_a_mapping_naming_an_uninstalled_system_is_refused(tmp_path: Path) -> None:
    """Without the help desk installed, its section and its name in the mapping are the errors
    a typo would be."""
    path = tmp_path / "config.toml"
    path.write_text(config_text(tmp_path / "state"))
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    reasons = {e.key: e.reason for e in info.value.errors}
    assert reasons["helpdesk"].startswith("unknown key 'helpdesk'")
    assert "a system name (jira, servicenow)" in reasons["mapping.ownership.summary"]


def test_webhooks_are_received_at_the_systems_own_path(
    helpdesk: HelpdeskServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/webhooks/helpdesk verifies the help desk's signature with its section's secret and
    queues its event; /webhooks/jira and /webhooks/servicenow are still there."""
    monkeypatch.setenv("ESCALATION_SYNC_HELPDESK__WEBHOOK_SECRET", SECRET)
    path = tmp_path / "config.toml"
    path.write_text(config_text(tmp_path / "state"))
    settings = load_settings(path)
    queued: list[ChangeEvent] = []
    store = Store.for_state(tmp_path / "state")
    try:
        app = create_app(
            store=store, enqueue=queued.extend, config=WebhookConfig.from_settings(settings)
        )
        client = TestClient(app)
        body = json.dumps(
            {"delivery": "d-1", "event": "ticket.updated", "ticket": {"id": "t1"}, "actor": "bob"}
        ).encode()
        signed = {"X-Helpdesk-Signature": sign(SECRET, body)}
        assert client.post("/webhooks/helpdesk", content=body, headers=signed).status_code == 202
        assert [(e.system, e.ticket, e.author) for e in queued] == [("helpdesk", "t1", "bob")]
        forged = {"X-Helpdesk-Signature": sign("guess", body)}
        assert client.post("/webhooks/helpdesk", content=body, headers=forged).status_code == 401
        for vendor in ("jira", "servicenow"):
            # No secret is configured for them here: refused, not unknown.
            assert client.post(f"/webhooks/{vendor}", content=b"{}").status_code == 401
        assert client.post("/webhooks/zendesk", content=body).status_code == 404
    finally:
        store.close()


def test_an_installed_package_is_found_through_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A package naming its system in `escalation_sync.systems` is registered with the built-in
    ones; its name is declared for mappings and markers."""
    point = EntryPoint("helpdesk", "tests.systems.helpdesk:SYSTEM", systems.ENTRY_POINTS)

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [point] if group == systems.ENTRY_POINTS else []

    monkeypatch.setattr(systems, "entry_points", entry_points)
    monkeypatch.setattr(systems, "_REGISTRY", None)
    try:
        found = systems.registry()
        assert found.names() == ("jira", "servicenow", "helpdesk")
        assert found.get("helpdesk") is HELPDESK
        assert "helpdesk" in System.names()
    finally:
        System.forget("helpdesk")


def test_a_system_says_where_its_simulator_is_without_loading_it() -> None:
    """The simulator is named by module path and loaded only when asked for."""
    simulator = jira_system.SYSTEM.simulator
    assert simulator is not None and simulator.path == "simulators.jira:JiraSimulator"
    loaded: Any = simulator.load()
    assert loaded is JiraSimulator
