"""Migrations carry existing data: a store made before 0006_pairs keeps its pairs, comment links
and snapshots when it is opened by this version, and gives them back when stepped down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from mapping.model import System
from sync.store.database import (
    LinkConflict,
    LinkSide,
    Store,
    create_db_engine,
    default_database_url,
)
from sync.store.migrations import alembic_config, current_revision, downgrade, upgrade
from tests.sync.pairs import jira, servicenow
from tests.sync.store_backends import postgres_schema

BEFORE_PAIRS = "0005_system_health"
# Opening a store brings it to the newest revision, 0006_pairs or a later one.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
SYS_ID = "9d385017c611228701d22104cc95c371"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, and a PostgreSQL schema when a server is set."""
    if request.param == "sqlite":
        yield default_database_url(tmp_path / "state")
        return
    with postgres_schema() as fresh:
        yield fresh


def _store_made_before_pairs(url: str) -> None:
    """A database at 0005_system_health holding two pairs (one with every id, one with the ids an
    interrupted pairing leaves), a comment link and a snapshot of each side."""
    db = create_db_engine(url)
    try:
        upgrade(db, BEFORE_PAIRS)
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO links (jira_key, jira_id, servicenow_sys_id, servicenow_number,"
                    " route, created_at) VALUES (:key, :id, :sys_id, :number, :route, :at)"
                ),
                [
                    {
                        "key": "DS-7",
                        "id": "10007",
                        "sys_id": SYS_ID,
                        "number": "INC0010007",
                        "route": "escalated",
                        "at": "2026-11-20 09:00:00",
                    },
                    {
                        "key": "DS-8",
                        "id": None,
                        "sys_id": "s8",
                        "number": None,
                        "route": None,
                        "at": "2026-11-21 09:00:00",
                    },
                ],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO comment_links (source_system, source_ticket, source_comment_id,"
                    " target_system, target_ticket, target_comment_id, marker, created_at)"
                    " VALUES ('servicenow', :sys_id, 'j1', 'jira', 'DS-7', '10100',"
                    " '[escalation-sync origin=servicenow:INC0010007:j1]', '2026-11-20 09:01:00')"
                ),
                {"sys_id": SYS_ID},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO snapshots (system, ticket_id, data, version, synced_at) VALUES"
                    " ('jira', 'DS-7', '{\"summary\": \"VPN down\"}', 'v1', '2026-11-20 09:02:00'),"
                    " ('servicenow', :sys_id, '{\"summary\": \"VPN down\"}', '3',"
                    " '2026-11-20 09:02:00')"
                ),
                {"sys_id": SYS_ID},
            )
    finally:
        db.dispose()


def test_pairs_comment_links_and_snapshots_survive_the_upgrade(url: str) -> None:
    """Opening an old store upgrades it; every pair is found by each of its records' ids, in its
    old order and with its route, and comment links and snapshots read back unchanged."""
    _store_made_before_pairs(url)
    store = Store.open(url)
    try:
        assert current_revision(store.db) == HEAD
        pairs = store.list_links()
        assert [p.id for p in pairs] == [1, 2]
        full, partial = pairs
        assert full.sides == (
            LinkSide("jira", "DS-7", "10007", "DS-7"),
            LinkSide("servicenow", SYS_ID, SYS_ID, "INC0010007"),
        )
        assert full.route == "escalated"
        assert full.created_at.isoformat() == "2026-11-20T09:00:00+00:00"
        assert partial.sides == (
            LinkSide("jira", "DS-8", None, "DS-8"),
            LinkSide("servicenow", "s8", "s8", None),
        )
        for system, ident in (
            ("jira", "DS-7"),
            ("jira", "10007"),
            ("servicenow", SYS_ID),
            ("servicenow", "INC0010007"),
        ):
            found = store.get_link(system, ident)
            assert found is not None and found.id == full.id
        assert full.other("jira") == ("servicenow", SYS_ID)
        assert full.other("servicenow") == ("jira", "DS-7")
        mirrored = store.find_comment_link("jira", "10100")
        assert mirrored is not None and (mirrored.source_ticket, mirrored.source_comment_id) == (
            SYS_ID,
            "j1",
        )
        snapshot = store.get_snapshot("servicenow", SYS_ID)
        assert snapshot is not None and snapshot.data == {"summary": "VPN down"}
        assert snapshot.version == "3"
        # The pair an interrupted pass left gets its missing ids filled, as before.
        store.put_link(jira("DS-8", "10008"), servicenow("s8", "INC0010008"))
        assert store.get_link("jira", "10008") is not None
        with pytest.raises(LinkConflict, match="paired with"):
            store.put_link(jira("DS-9"), servicenow(SYS_ID))
    finally:
        store.close()


def test_stepping_down_gives_the_old_columns_back(url: str) -> None:
    """Downgrading below 0006_pairs rebuilds `links` with the Jira and ServiceNow columns, the
    ids filled in since the upgrade included."""
    _store_made_before_pairs(url)
    store = Store.open(url)
    try:
        store.put_link(jira("DS-8", "10008"), servicenow("s8", "INC0010008"))
        downgrade(store.db, BEFORE_PAIRS)
        with store.db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, jira_key, jira_id, servicenow_sys_id, servicenow_number, route "
                    "FROM links ORDER BY id"
                )
            ).all()
            tables = set(sa.inspect(conn).get_table_names())
        assert [tuple(r) for r in rows] == [
            (1, "DS-7", "10007", SYS_ID, "INC0010007", "escalated"),
            (2, "DS-8", "10008", "s8", "INC0010008", None),
        ]
        assert "link_records" not in tables
    finally:
        store.close()


def test_stepping_down_refuses_pairs_the_old_schema_cannot_hold(url: str) -> None:
    """A pair with a record of a third system has no place in the old columns: the downgrade
    stops before changing anything."""
    third = System.declare("helpdesk")
    store = Store.open(url)
    try:
        store.put_link(jira("DS-1"), LinkSide(third.value, "HD-1"))
        with pytest.raises(RuntimeError, match="not one Jira issue and one ServiceNow record"):
            downgrade(store.db, BEFORE_PAIRS)
        assert current_revision(store.db) == HEAD
        assert store.get_link("helpdesk", "HD-1") is not None
    finally:
        store.close()
        System.forget(third.value)
