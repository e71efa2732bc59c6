"""Tests of the sync engine over in-memory systems: echo, idempotency, conflicts, crashes."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import InvalidRequest
from mapping import load_mapping
from mapping.model import System
from sync.pipeline.engine import Engine
from sync.store.database import Store, lease_owner
from tests.sync.fakes import FakeJira, FakeServiceNow

ROOT = Path(__file__).resolve().parents[2]


class NullMetrics:
    def processed(self, system: str, writes: int, lag: float | None) -> None:
        return None

    def failed(self, system: str, outcome: str) -> None:
        return None

    def write(self, system: str, kind: str) -> None:
        return None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


@pytest.fixture
def mapping() -> Any:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    return load_mapping(data["mapping"], source="config.example.toml", prefix="mapping")


class World:
    def __init__(self, engine: Engine, jira: FakeJira, snow: FakeServiceNow) -> None:
        self.engine, self.jira, self.snow = engine, jira, snow

    def pair(self, **fields: Any) -> tuple[str, str]:
        rec = self.snow.add(**fields)
        key = self.engine.create_pair("servicenow", rec["sys_id"])
        return rec["sys_id"], key

    def writes(self) -> int:
        return len(self.jira.writes) + len(self.snow.writes)


@pytest.fixture
def world(store: Store, mapping: Any) -> World:
    jira, snow = FakeJira(), FakeServiceNow()
    engine = Engine(
        mapping=mapping,
        adapters={System.JIRA: jira, System.SERVICENOW: snow},  # type: ignore[dict-item]
        store=store,
        attachment_max_bytes=64,
        metrics=NullMetrics(),
    )
    return World(engine, jira, snow)


def test_pairing_creates_the_engineering_issue_with_content(world: World) -> None:
    """A new pair gets the summary, status, priority, comments and attachments of the source."""
    sys_id = world.snow.add(short_description="VPN down", state="2", impact="1", urgency="2")[
        "sys_id"
    ]
    world.snow.comment(sys_id, "customer says hi")
    world.snow.comment(sys_id, "internal detail", internal=True)
    world.snow.attach(sys_id, "vpn.log", b"0123456789")
    key = world.engine.create_pair("servicenow", sys_id)
    issue = world.jira.records[key]["fields"]
    assert issue["summary"] == "VPN down"
    assert issue["status"] == {"name": "In Progress"}
    assert issue["priority"] == {"name": "High"}
    bodies = [(c["body"].split("\n")[0], "visibility" in c) for c in issue["comment"]["comments"]]
    assert bodies == [("customer says hi", False), ("internal detail", True)]
    assert [a["filename"] for a in issue["attachment"]] == ["vpn.log"]


def test_change_flows_and_echo_writes_nothing(world: World) -> None:
    """A Jira edit reaches ServiceNow once; re-processing either side afterwards writes nothing."""
    sys_id, key = world.pair(short_description="VPN down")
    world.jira.edit(key, priority={"name": "Highest"})
    world.engine.process("jira", key)
    assert world.snow.records[sys_id]["priority"] == "1"
    before = world.writes()
    world.engine.process("servicenow", sys_id)  # the echo of our own write
    world.engine.process("jira", key)  # the same event delivered twice
    assert world.writes() == before


def test_comment_both_ways_keeps_visibility(world: World) -> None:
    """A Jira internal note becomes a ServiceNow work note; a public comment a customer comment."""
    sys_id, key = world.pair(short_description="x")
    world.jira.comment(key, "engineering only", internal=True)
    world.jira.comment(key, "fixed in 2.1")
    world.engine.process("jira", key)
    journal = world.snow.records[sys_id]["_journal"]
    assert [(r["element"], r["value"].split("\n")[0]) for r in journal] == [
        ("work_notes", "engineering only"),
        ("comments", "fixed in 2.1"),
    ]
    before = world.writes()
    world.engine.process("servicenow", sys_id)
    world.engine.process("jira", key)
    assert world.writes() == before


def test_conflict_newest_wins_and_audit_keeps_loser(world: World, store: Store) -> None:
    """Both sides change status; the later change wins and the loser's value is in the audit log."""
    sys_id, key = world.pair(short_description="x", state="2")
    world.snow.edit(sys_id, state="3")  # on hold, earlier
    world.jira.edit(key, status={"name": "Done"})  # resolved, later
    world.engine.process("servicenow", sys_id)
    assert world.snow.records[sys_id]["state"] == "6"
    rows = store.list_audit(system="servicenow", record=sys_id)
    conflict = [r for r in rows if r.field == "conflict"]
    assert conflict and "on_hold" in (conflict[0].from_value or "")


def test_owner_wins_conflict(world: World, store: Store) -> None:
    """The summary is owned by ServiceNow: a concurrent Jira edit is overwritten and audited."""
    sys_id, key = world.pair(short_description="original")
    world.jira.edit(key, summary="jira wording")
    world.snow.edit(sys_id, short_description="snow wording")
    world.engine.process("jira", key)
    assert world.jira.records[key]["fields"]["summary"] == "snow wording"
    audit = store.list_audit(system="jira", record=key)
    assert any(r.field == "conflict" and r.from_value == "jira wording" for r in audit)


def test_crash_after_comment_write_leaves_one_copy(world: World) -> None:
    """A worker dying after posting a comment but before recording it does not post it twice."""
    sys_id, key = world.pair(short_description="x")
    world.jira.comment(key, "once only")

    def crash(what: str) -> None:
        if what.startswith("comment"):
            raise RuntimeError("worker killed")

    world.engine.after_write = crash
    with pytest.raises(RuntimeError):
        world.engine.process("jira", key)
    world.engine.after_write = lambda _what: None
    world.engine.process("jira", key)
    world.engine.process("servicenow", sys_id)
    copies = [r for r in world.snow.records[sys_id]["_journal"] if "once only" in r["value"]]
    assert len(copies) == 1


def test_oversized_attachment_is_listed_in_one_note(world: World) -> None:
    """A file over the limit is not copied; one internal note names it, however often we sync."""
    sys_id, key = world.pair(short_description="x")
    world.jira.attach(key, "core.dump", b"x" * 100)
    world.engine.process("jira", key)
    world.engine.process("jira", key)
    notes = [r for r in world.snow.records[sys_id]["_journal"] if "core.dump" in r["value"]]
    assert len(notes) == 1 and notes[0]["element"] == "work_notes"
    assert world.snow.records[sys_id]["_attachments"] == []


def test_permanent_error_is_raised_for_dead_letter(world: World) -> None:
    """A 400 on a write leaves process() as a PermanentError; after the fix the sync completes."""
    sys_id, key = world.pair(short_description="x")
    world.jira.edit(key, summary="y")
    world.jira.edit(key, priority={"name": "Low"})
    world.snow.refuse_writes = "Invalid field"
    with pytest.raises(InvalidRequest):
        world.engine.process("jira", key)
    world.snow.refuse_writes = None
    world.engine.process("jira", key)
    assert world.snow.records[sys_id]["priority"] == "4"


def test_reconcile_repairs_drift(world: World) -> None:
    """A write that never landed (both snapshots agree, records differ) is fixed by reconcile."""
    sys_id, key = world.pair(short_description="x", state="2")
    world.snow.edit(sys_id, state="3")  # changed, and the snapshot wrongly says synced
    world.engine.store.put_snapshot(
        "servicenow",
        sys_id,
        world.engine.read(System.SERVICENOW, sys_id).model_dump(mode="json"),
    )
    world.engine.process("servicenow", sys_id)
    assert world.jira.records[key]["fields"]["status"] == {"name": "In Progress"}
    assert world.engine.reconcile() == 1
    assert world.jira.records[key]["fields"]["status"] == {"name": "Waiting"}


def test_pair_busy_while_other_side_is_being_synced(world: World, store: Store) -> None:
    """While another worker holds the paired record's lease, the sync is retried, not run."""
    from sync.pipeline.pairs import PairBusy

    sys_id, key = world.pair(short_description="x")
    world.jira.comment(key, "race")
    assert store.acquire_lock("jira", key, "other-worker", 60)
    with pytest.raises(PairBusy):
        world.engine.process("servicenow", sys_id)
    store.release_lock("jira", key, "other-worker")
    world.engine.process("servicenow", sys_id)
    assert any("race" in r["value"] for r in world.snow.records[sys_id]["_journal"])
    assert store.list_locks() == []


def test_a_pair_lease_this_thread_holds_is_used_as_it_is(world: World, store: Store) -> None:
    """The queue takes the pair's lease with the ticket's; the engine uses it and leaves it."""
    sys_id, key = world.pair(short_description="x")
    assert world.engine.partners("servicenow", sys_id) == [("jira", key)]
    pair = [("servicenow", sys_id), ("jira", key)]
    assert store.acquire_locks(pair, lease_owner(), 60)
    world.jira.edit(key, priority={"name": "Highest"})
    world.engine.process("servicenow", sys_id)
    assert world.snow.records[sys_id]["priority"] == "1"
    assert store.leases_held(lease_owner(), pair) == set(pair)
    store.release_locks(pair, lease_owner())


def test_crash_right_after_creating_the_pair_does_not_duplicate_it(world: World) -> None:
    """Killed after the create: the retry finds the link, makes no second issue, finishes."""
    sys_id = world.snow.add(short_description="Crash on create", state="2")["sys_id"]
    world.snow.comment(sys_id, "context for engineering")

    def die(what: str) -> None:
        if what.startswith("create"):
            raise RuntimeError("worker killed")

    world.engine.after_write = die
    with pytest.raises(RuntimeError):
        world.engine.create_pair("servicenow", sys_id)
    world.engine.after_write = lambda _what: None
    world.engine.process("servicenow", sys_id)
    assert list(world.jira.records) == ["DS-1"]
    issue = world.jira.records["DS-1"]["fields"]
    assert issue["status"] == {"name": "In Progress"}
    assert world.snow.records[sys_id]["state"] == "2"
    assert [c["body"].split("\n")[0] for c in issue["comment"]["comments"]] == [
        "context for engineering"
    ]


def test_servicenow_write_is_snapshotted_from_its_answer(world: World) -> None:
    """A mirrored change reads each side once: the PATCH answer stands in for a read-back."""
    sys_id, key = world.pair(short_description="VPN down")
    world.jira.edit(key, priority={"name": "Highest"})
    world.jira.reads.clear()
    world.snow.reads.clear()
    world.engine.process("jira", key)
    assert world.snow.records[sys_id]["priority"] == "1"
    assert world.jira.reads == [f"read {key}"]
    assert world.snow.reads == [f"read {sys_id}"]
    before = world.writes()
    world.engine.process("servicenow", sys_id)
    assert world.writes() == before


def test_jira_reads_back_only_fields_it_may_store_differently(world: World) -> None:
    """A priority set by name needs no read-back; a status reached by transition is read back
    alone; either way the echo writes nothing."""
    sys_id, key = world.pair(short_description="VPN down", state="2")
    world.snow.edit(sys_id, impact="1", urgency="1", priority="1")
    world.jira.reads.clear()
    world.engine.process("servicenow", sys_id)
    assert world.jira.records[key]["fields"]["priority"] == {"name": "Highest"}
    assert world.jira.reads == [f"read {key}"]
    world.snow.edit(sys_id, state="6")
    world.jira.reads.clear()
    world.engine.process("servicenow", sys_id)
    assert world.jira.records[key]["fields"]["status"] == {"name": "Done"}
    assert world.jira.reads == [f"read {key}", f"fields {key} status"]
    before = world.writes()
    world.engine.process("jira", key)
    world.engine.process("servicenow", sys_id)
    assert world.writes() == before


def test_a_column_servicenow_ignores_is_not_sent_again(world: World) -> None:
    """A write ServiceNow drops (a column the table lacks) is snapshotted as dropped, so the
    next event from either side writes nothing."""
    sys_id, key = world.pair(short_description="VPN down")
    world.snow.absent_columns.add("u_labels")
    world.jira.edit(key, labels=["vip"])
    world.engine.process("jira", key)
    assert world.snow.records[sys_id]["u_labels"] == ""
    before = world.writes()
    world.engine.process("jira", key)
    world.engine.process("servicenow", sys_id)
    assert world.writes() == before


def test_a_failed_pass_still_audits_what_it_wrote(world: World, store: Store) -> None:
    """The conflict and the field written before a crash are in the audit log all the same."""
    sys_id, key = world.pair(short_description="original")
    world.jira.edit(key, summary="jira wording")
    world.snow.edit(sys_id, short_description="snow wording")

    def crash(_what: str) -> None:
        raise RuntimeError("worker killed")

    world.engine.after_write = crash
    with pytest.raises(RuntimeError):
        world.engine.process("jira", key)
    world.engine.after_write = lambda _what: None
    audit = [(r.field, r.from_value) for r in store.list_audit(system="jira", record=key)]
    assert audit[:2] == [("summary", "jira wording"), ("conflict", "jira wording")]


def test_a_known_pair_is_read_both_sides_at_once(world: World) -> None:
    """The changed record and its pair are read at the same time, each still fresh."""
    sys_id, key = world.pair(short_description="VPN down")
    world.jira.edit(key, priority={"name": "Highest"})
    both_reading = threading.Barrier(2, timeout=5)
    for fake in (world.jira, world.snow):
        plain = fake.read

        def read(ticket_id: str, plain: Any = plain) -> dict[str, Any]:
            both_reading.wait()  # a sequential pair of reads would break the barrier
            return plain(ticket_id)  # type: ignore[no-any-return]

        fake.read = read  # type: ignore[method-assign]
    world.engine.process("jira", key)
    assert world.snow.records[sys_id]["priority"] == "1"
