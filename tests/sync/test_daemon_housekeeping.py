"""Daemon housekeeping: fingerprint sightings are kept only as long as a trigger can use them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from escalation.policy import load_policy
from sync.config.settings import Settings
from sync.procedure.ledger import FingerprintRow
from sync.runtime.daemon import Daemon
from sync.store.database import Store


def _sightings(store: Store) -> list[str]:
    with store.session() as tx:
        return sorted(tx.orm.scalars(sa.select(FingerprintRow.ticket_ref)))


def test_housekeeping_forgets_sightings_older_than_the_longest_repeated_window(
    tmp_path: Path,
) -> None:
    """With a 48 h repeated trigger, a 3-day-old sighting goes and a 1-day-old one stays."""
    policy = load_policy(
        {
            "triggers": [{"kind": "repeated", "count": 3, "window_hours": 48}],
            "levels": [{"name": "L1"}, {"name": "L2", "approvers": {"users": ["a"]}}],
        },
        source="p.toml",
    )
    settings = Settings(compiled_policy=policy)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    now = datetime.now(UTC)
    with store.session() as tx:
        for ref, age in (("old", timedelta(days=3)), ("recent", timedelta(days=1))):
            tx.orm.add(FingerprintRow(fingerprint="f", ticket_ref=ref, seen_at=now - age))
    daemon = Daemon(None, loader=lambda _: settings, settings=settings)
    daemon.store = store
    try:
        daemon._housekeeping()
        assert _sightings(store) == ["recent"]
    finally:
        store.close()
