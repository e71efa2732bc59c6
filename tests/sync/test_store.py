"""The state store on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.store.database import LinkConflict, Store, default_database_url
from sync.store.db import Base
from sync.store.migrations import current_revision, downgrade
from tests.sync.pairs import jira, servicenow
from tests.sync.store_backends import postgres_schema

STORE_TABLES = {
    "links",
    "link_records",
    "comment_links",
    "snapshots",
    "watermarks",
    "deliveries",
    "audit_log",
    "dead_letters",
    "ticket_locks",
}
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, and a PostgreSQL schema when a server is set."""
    if request.param == "sqlite":
        yield default_database_url(tmp_path / "state")
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on each backend, closed at teardown."""
    opened = Store.open(store_url)
    yield opened
    opened.close()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_open_migrates_to_head_and_creates_every_table(store: Store) -> None:
    """Store.open leaves the database at the newest revision with all store tables present."""
    tables = set(sa.inspect(store.db).get_table_names())
    assert tables >= STORE_TABLES
    assert "alembic_version" in tables
    from alembic.script import ScriptDirectory

    from sync.store.migrations import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(store.db) == head


def test_migration_matches_the_declared_tables(store: Store) -> None:
    """The hand-written migration creates the columns, keys and indexes the models declare."""
    with store.db.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)

    def table_of(diff: object) -> str | None:
        item = diff[0] if isinstance(diff, list) else diff
        for part in item[1:] if isinstance(item, tuple) else ():
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if table is not None and getattr(table, "name", None):
                return str(table.name)
            if isinstance(part, str) and part in STORE_TABLES:
                return part
            if name in STORE_TABLES:
                return str(name)
        return None

    ours = [d for d in diffs if table_of(d) in STORE_TABLES]
    assert ours == []


def test_open_twice_is_a_no_op_and_downgrade_removes_the_tables(store_url: str) -> None:
    """Re-opening an up-to-date database changes nothing; downgrading to base drops the store."""
    first = Store.open(store_url)
    first.put_link(jira("DS-1"), servicenow("a" * 32))
    first.close()
    second = Store.open(store_url)
    assert second.get_link("jira", "DS-1") is not None
    downgrade(second.db, "base")
    assert not STORE_TABLES & set(sa.inspect(second.db).get_table_names())
    second.close()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    """The SQLite file is in the state dir, in WAL, with a busy timeout and foreign keys on."""
    opened = Store.for_state(tmp_path / "state")
    try:
        assert (tmp_path / "state" / "escalation-sync.store.db").exists()
        with opened.db.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 5000
    finally:
        opened.close()
    assert default_database_url(tmp_path).startswith("sqlite:///")


def test_links_are_found_by_every_id_and_are_idempotent(store: Store) -> None:
    """A pair is found by Jira key or id and ServiceNow sys_id or number; re-putting fills gaps."""
    sys_id = "9d385017c611228701d22104cc95c371"
    link = store.put_link(jira("DS-7"), servicenow(sys_id), route="esc")
    again = store.put_link(jira("DS-7", "10007"), servicenow(sys_id, "INC0010007"))
    assert again.id == link.id
    assert again.route == "esc"
    for system, ticket in (
        ("jira", "DS-7"),
        ("jira", "10007"),
        ("servicenow", sys_id),
        ("servicenow", "INC0010007"),
    ):
        found = store.get_link(system, ticket)
        assert found is not None and found.id == link.id
    assert store.get_link("jira", "DS-8") is None
    assert again.other("jira") == ("servicenow", sys_id)
    assert again.other("servicenow") == ("jira", "DS-7")


def test_a_record_cannot_be_paired_twice(store: Store) -> None:
    """Pairing a record that already has a partner raises LinkConflict and changes nothing."""
    store.put_link(jira("DS-1"), servicenow("s1"))
    with pytest.raises(LinkConflict):
        store.put_link(jira("DS-1"), servicenow("s2"))
    with pytest.raises(LinkConflict):
        store.put_link(jira("DS-2"), servicenow("s1"))
    assert [link.side("jira").ticket_id for link in store.list_links()] == ["DS-1"]


def test_list_links_pages_in_creation_order(store: Store) -> None:
    """list_links pages by id so reconciliation can walk every pair in bounded memory."""
    for n in range(5):
        store.put_link(jira(f"DS-{n}"), servicenow(f"s{n}"))
    first = store.list_links(limit=2)
    rest = store.list_links(after_id=first[-1].id)
    assert [link.side("jira").ticket_id for link in first + rest] == [f"DS-{n}" for n in range(5)]


def test_comment_links_are_found_from_either_side(store: Store) -> None:
    """A mirrored comment is found by the original's id and by the mirror's id once recorded."""
    pending = store.put_comment_link(
        source_system="servicenow",
        source_ticket="s1",
        source_comment_id="j1",
        target_system="jira",
        target_ticket="DS-1",
        target_comment_id=None,
        marker="[sync:servicenow:s1:j1]",
    )
    assert pending.target_comment_id is None
    done = store.put_comment_link(
        source_system="servicenow",
        source_ticket="s1",
        source_comment_id="j1",
        target_system="jira",
        target_ticket="DS-1",
        target_comment_id="10100",
        marker="[sync:servicenow:s1:j1]",
    )
    assert done.id == pending.id
    by_source = store.find_comment_link("servicenow", "j1")
    by_target = store.find_comment_link("jira", "10100")
    assert by_source == by_target == done
    assert store.find_comment_link("jira", "j1") is None
    with store.reading() as tx:
        assert tx.comment_links_of("jira", ["10100", "j1", "10101"]) == {"10100": done}
        assert tx.comment_links_of("servicenow", ["j1"]) == {"j1": done}
        assert tx.comment_links_of("servicenow", []) == {}


def test_snapshots_round_trip_and_replace(store: Store) -> None:
    """A snapshot comes back as written, per side, and a newer one replaces it."""
    data = {"summary": "Login fails", "labels": ["a", "b"], "nested": {"n": 1, "none": None}}
    store.put_snapshot("jira", "DS-1", data, version="2026-11-23T09:00:00.000+0000")
    store.put_snapshot("servicenow", "DS-1", {"other": True}, version="3")
    snap = store.get_snapshot("jira", "DS-1")
    assert snap is not None
    assert snap.data == data
    assert snap.version == "2026-11-23T09:00:00.000+0000"
    assert snap.synced_at.tzinfo is not None
    store.put_snapshot("jira", "DS-1", {"summary": "changed"}, version="v2")
    newer = store.get_snapshot("jira", "DS-1")
    assert newer is not None and newer.data == {"summary": "changed"} and newer.version == "v2"
    assert store.get_snapshot("jira", "DS-404") is None
    with store.reading() as tx:
        both = tx.get_snapshots([("jira", "DS-1"), ("servicenow", "DS-1"), ("jira", "DS-404")])
    assert both == {
        ("jira", "DS-1"): store.get_snapshot("jira", "DS-1"),
        ("servicenow", "DS-1"): store.get_snapshot("servicenow", "DS-1"),
    }


def test_watermark_never_moves_backwards(store_url: str) -> None:
    """set_watermark keeps the later value but always records the poll time."""
    clock = FakeClock()
    opened = Store.open(store_url, clock=clock)
    try:
        assert opened.get_watermark("jira") is None
        opened.set_watermark("jira", T0)
        clock.now = T0 + timedelta(minutes=1)
        opened.set_watermark("jira", T0 - timedelta(hours=1))
        assert opened.get_watermark("jira") == T0
        marks = opened.watermarks()
        assert marks["jira"].polled_at == T0 + timedelta(minutes=1)
        opened.set_watermark("jira", None)
        assert opened.get_watermark("jira") == T0
    finally:
        opened.close()


def test_datetimes_keep_their_instant_across_zones(store: Store) -> None:
    """A watermark given in another zone comes back as the same instant, in UTC."""
    plus_two = datetime(2026, 11, 23, 11, 0, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    store.set_watermark("servicenow", plus_two)
    value = store.get_watermark("servicenow")
    assert value == plus_two
    assert value is not None and value.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store: Store) -> None:
    """A naive datetime is a bug in the caller: the store refuses it instead of guessing a zone."""
    with pytest.raises(sa.exc.StatementError):
        store.set_watermark("jira", datetime(2026, 1, 1))


def test_seen_delivery_is_insert_if_absent(store: Store) -> None:
    """The first call records a delivery id and answers False; every later call answers True."""
    assert store.seen_delivery("d-1", system="jira") is False
    assert store.seen_delivery("d-1", system="jira") is True
    assert store.seen_delivery("d-2") is False
    assert store.status_counts().deliveries == 2


def test_seen_delivery_is_atomic_under_concurrency(store: Store) -> None:
    """Of many threads racing with one delivery id, exactly one sees it as new."""
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        seen = store.seen_delivery("same")
        with lock:
            results.append(seen)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] + [True] * 7


def test_record_deliveries_answers_which_ids_are_new(store: Store) -> None:
    """A group insert records every id and returns only those not recorded before."""
    assert store.seen_delivery("d-1", system="jira") is False
    fresh = store.record_deliveries({"d-1": "jira", "d-2": "jira", "s-1": "servicenow"})
    assert fresh == {"d-2", "s-1"}
    assert store.record_deliveries({"d-2": "jira", "d-3": "jira"}) == {"d-3"}
    assert store.record_deliveries({}) == set()
    assert store.seen_delivery("s-1") is True
    assert store.status_counts().deliveries == 4


def test_record_deliveries_is_rolled_back_with_its_transaction(store: Store) -> None:
    """Ids recorded in a transaction that fails are forgotten, so a retry finds them new."""
    with pytest.raises(RuntimeError), store.session() as tx:
        assert tx.record_deliveries({"d-1": "jira", "d-2": "jira"}) == {"d-1", "d-2"}
        raise RuntimeError("queue write failed")
    assert store.record_deliveries({"d-1": "jira", "d-2": "jira"}) == {"d-1", "d-2"}


def test_record_deliveries_is_atomic_under_concurrency(store: Store) -> None:
    """Of threads racing with overlapping groups, each id is new to exactly one of them."""
    found: list[set[str]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def race(offset: int) -> None:
        start.wait()
        fresh = store.record_deliveries({f"d-{i}": "jira" for i in range(offset, offset + 20)})
        with lock:
            found.append(fresh)

    threads = [threading.Thread(target=race, args=(5 * n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [key for fresh in found for key in fresh]
    assert sorted(every) == sorted({f"d-{i}" for i in range(45)})


def test_prune_deliveries_forgets_old_ones(store_url: str) -> None:
    """Deliveries older than the cut-off are removed; newer ones stay."""
    clock = FakeClock()
    opened = Store.open(store_url, clock=clock)
    try:
        opened.seen_delivery("old")
        clock.now = T0 + timedelta(days=8)
        opened.seen_delivery("new")
        assert opened.prune_deliveries(T0 + timedelta(days=1)) == 1
        assert opened.seen_delivery("new") is True
        assert opened.seen_delivery("old") is False
    finally:
        opened.close()


def test_audit_records_writes_and_lost_conflicts(store: Store) -> None:
    """Audit rows keep from/to (non-strings as JSON), reason and actor, newest first."""
    store.audit("jira", "DS-1", "status", "To Do", "In Progress", reason="servicenow s1 changed")
    store.audit(
        "servicenow",
        "s1",
        "priority",
        {"impact": "2"},
        None,
        reason="conflict lost: jira owns priority",
        actor="sme.alice",
    )
    rows = store.list_audit()
    assert [r.field for r in rows] == ["priority", "status"]
    assert rows[0].from_value == '{"impact": "2"}'
    assert rows[0].to_value is None
    assert rows[0].reason.startswith("conflict lost")
    assert rows[0].actor == "sme.alice"
    only = store.list_audit(system="jira", record="DS-1")
    assert len(only) == 1 and only[0].to_value == "In Progress"


def test_dead_letters_list_and_replay(store: Store) -> None:
    """A dead letter keeps event, reason and error class; replayed ones leave the default list."""
    event = {"system": "jira", "ticket": "DS-1", "event": "jira:issue_updated"}
    first = store.add_dead_letter(
        "jira", "DS-1", event, "400: field x is required", "InvalidRequest"
    )
    second = store.add_dead_letter("servicenow", "s1", {}, "gone", "NotFound", attempts=3)
    pending = store.list_dead_letters()
    assert [d.id for d in pending] == [first, second]
    assert pending[0].event == event
    assert pending[0].error_class == "InvalidRequest"
    assert pending[1].attempts == 3
    store.mark_replayed(first)
    assert [d.id for d in store.list_dead_letters()] == [second]
    replayed = store.get_dead_letter(first)
    assert replayed is not None and replayed.replayed_at is not None
    assert len(store.list_dead_letters(include_replayed=True)) == 2
    with pytest.raises(KeyError):
        store.mark_replayed(9999)


def test_status_counts(store: Store) -> None:
    """status_counts reports rows per table and the watermarks."""
    store.put_link(jira("DS-1"), servicenow("s1"))
    store.put_snapshot("jira", "DS-1", {})
    store.seen_delivery("d")
    store.audit("jira", "DS-1", "f", "a", "b", reason="r")
    replayed = store.add_dead_letter("jira", "DS-1", {}, "r", "E")
    store.add_dead_letter("jira", "DS-2", {}, "r", "E")
    store.mark_replayed(replayed)
    store.set_watermark("jira", T0)
    counts = store.status_counts()
    assert (counts.links, counts.snapshots, counts.deliveries, counts.audit_rows) == (1, 1, 1, 1)
    assert (counts.dead_letters_pending, counts.dead_letters_replayed) == (1, 1)
    assert counts.watermarks["jira"].value == T0


def test_ticket_lease_is_exclusive_and_expires(store_url: str) -> None:
    """One owner holds a ticket's lease; another takes it only after it expires."""
    clock = FakeClock()
    opened = Store.open(store_url, clock=clock)
    try:
        assert opened.acquire_lock("jira", "DS-1", "a", ttl=60) is True
        assert opened.acquire_lock("jira", "DS-1", "b", ttl=60) is False
        assert opened.acquire_lock("jira", "DS-2", "b", ttl=60) is True
        assert opened.release_lock("jira", "DS-1", "b") is False
        clock.now = T0 + timedelta(seconds=61)
        assert opened.acquire_lock("jira", "DS-1", "b", ttl=60) is True
        assert opened.release_lock("jira", "DS-1", "a") is False
        assert opened.release_lock("jira", "DS-1", "b") is True
        assert [(lk.ticket_id, lk.owner) for lk in opened.list_locks()] == [("DS-2", "b")]
    finally:
        opened.close()


def test_several_leases_are_taken_all_or_none(store: Store) -> None:
    """Leases taken together: one held elsewhere leaves the others untaken."""
    pair = [("jira", "DS-1"), ("servicenow", "s1")]
    assert store.acquire_lock("servicenow", "s1", "b", ttl=60)
    assert store.acquire_locks(pair, "a", ttl=60) is False
    assert [(lk.ticket_id, lk.owner) for lk in store.list_locks()] == [("s1", "b")]
    assert store.leases_held("b", pair) == {("servicenow", "s1")}
    store.release_lock("servicenow", "s1", "b")
    assert store.acquire_locks([*pair, pair[0]], "a", ttl=60) is True
    assert store.leases_held("a", [*pair, ("jira", "DS-2")]) == set(pair)
    assert store.acquire_locks([("jira", "DS-2"), pair[1]], "b", ttl=60) is False
    store.release_locks(pair, "a")
    assert store.list_locks() == []


def test_ticket_lease_has_one_winner_under_concurrency(store: Store) -> None:
    """Of many workers racing for one ticket, exactly one gets the lease."""
    won: list[str] = []
    guard = threading.Lock()
    start = threading.Barrier(6)

    def race(owner: str) -> None:
        start.wait()
        if store.acquire_lock("servicenow", "s1", owner, ttl=60):
            with guard:
                won.append(owner)

    threads = [threading.Thread(target=race, args=(f"w{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_session_is_one_transaction(store: Store) -> None:
    """Everything written in a session that raises is rolled back together."""
    with pytest.raises(RuntimeError), store.session() as tx:
        tx.put_link(jira("DS-1"), servicenow("s1"))
        tx.put_snapshot("jira", "DS-1", {"a": 1})
        raise RuntimeError("boom")
    assert store.get_link("jira", "DS-1") is None
    assert store.get_snapshot("jira", "DS-1") is None
    with store.session() as tx:
        tx.put_link(jira("DS-1"), servicenow("s1"))
        assert tx.get_link("servicenow", "s1") is not None


def test_a_reading_transaction_refuses_writes(store: Store) -> None:
    """A write inside `reading()` fails and leaves nothing behind, on both backends."""
    with pytest.raises(sa.exc.DBAPIError), store.reading() as tx:
        tx.put_snapshot("jira", "DS-1", {"a": 1})
    assert store.get_snapshot("jira", "DS-1") is None
    # The connection goes back to the pool able to write again.
    store.put_snapshot("jira", "DS-1", {"a": 2})
    with store.reading() as tx:
        snapshot = tx.get_snapshot("jira", "DS-1")
    assert snapshot is not None and snapshot.data == {"a": 2}


def test_sqlite_reading_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """While another connection holds the write lock, a reading transaction answers at once."""
    opened = Store.for_state(tmp_path / "state")
    opened.put_link(jira("DS-1"), servicenow("s1"))
    holding = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        with opened.session() as tx:
            tx.put_snapshot("jira", "DS-1", {"a": 1})
            holding.set()
            release.wait(10)

    writer = threading.Thread(target=hold_the_write_lock)
    writer.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        assert opened.get_link("jira", "DS-1") is not None
        with opened.reading() as tx:
            assert tx.get_snapshot("jira", "DS-1") is None  # the writer has not committed
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        writer.join()
        opened.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_snapshot_json_round_trips(store: Store, data: object) -> None:
    """Any JSON document stored as a snapshot comes back equal."""
    store.put_snapshot("jira", "DS-P", {"value": data})
    snap = store.get_snapshot("jira", "DS-P")
    assert snap is not None and snap.data == {"value": data}


def test_concurrent_opens_migrate_once(store_url: str) -> None:
    """Processes starting together (daemon and cron) do not trip over each other's migration."""
    errors: list[Exception] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            Store.open(store_url).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_links_are_read_and_recorded_many_at_a_time(store: Store) -> None:
    """get_links finds pairs by the id given; add_links records new pairs in one statement and,
    when one record is paired already, records the others and names that one's conflict."""
    from sync.store.database import NewLink

    with store.session() as tx:
        pairs = [
            NewLink(jira("DS-1"), servicenow("s1"), "r"),
            NewLink(jira("DS-2"), servicenow("s2")),
        ]
        assert tx.add_links(pairs) == [
            None,
            None,
        ]
    with store.session() as tx:
        outcomes = tx.add_links(
            [
                NewLink(jira("DS-3"), servicenow("s3")),
                NewLink(jira("DS-9"), servicenow("s1")),
                NewLink(jira("DS-2", "12"), servicenow("s2")),
            ]
        )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], LinkConflict)
    with store.session() as tx:
        by_sys_id = tx.get_links("servicenow", ["s1", "s2", "s3", "s9"])
        by_key = tx.get_links("jira", ["DS-2", "DS-9"])
    assert {k: v.side("jira").ticket_id for k, v in by_sys_id.items()} == {
        "s1": "DS-1",
        "s2": "DS-2",
        "s3": "DS-3",
    }
    assert by_sys_id["s1"].route == "r" and by_key["DS-2"].side("jira").record_id == "12"
    assert set(by_key) == {"DS-2"}
    with store.session() as tx, pytest.raises(ValueError):
        tx.get_links("github", ["x"])


def test_snapshots_are_written_and_read_many_at_a_time(store: Store) -> None:
    """put_snapshots inserts and replaces in one statement (a repeated key: the last wins);
    get_snapshots answers the ones that exist."""
    from sync.store.database import NewSnapshot

    store.put_snapshot("jira", "DS-1", {"summary": "old"}, version="1")
    with store.session() as tx:
        tx.put_snapshots(
            [
                NewSnapshot("jira", "DS-1", {"summary": "new"}, "2"),
                NewSnapshot("jira", "DS-2", {"summary": "first"}, None),
                NewSnapshot("jira", "DS-2", {"summary": "second"}, "5"),
            ]
        )
        # Read back in the same transaction: what the statement wrote, not a stale cache.
        assert tx.get_snapshot("jira", "DS-1").data == {"summary": "new"}  # type: ignore[union-attr]
    with store.session() as tx:
        found = tx.get_snapshots_of("jira", ["DS-1", "DS-2", "DS-3"])
    assert {k: (v.data["summary"], v.version) for k, v in found.items()} == {
        "DS-1": ("new", "2"),
        "DS-2": ("second", "5"),
    }


def test_audit_rows_are_appended_many_at_a_time(store: Store) -> None:
    """audit_many stores what audit stores, values as JSON text, newest listed first."""
    from sync.store.database import NewAudit

    with store.session() as tx:
        tx.audit_many(
            [
                NewAudit("jira", "DS-1", "record", None, "DS-1", "created"),
                NewAudit("servicenow", "s1", "link", None, {"url": "u"}, "linked"),
            ]
        )
    newest, oldest = store.list_audit(limit=2)
    assert (oldest.field, oldest.to_value, oldest.reason) == ("record", "DS-1", "created")
    assert (newest.system, newest.to_value) == ("servicenow", '{"url": "u"}')
