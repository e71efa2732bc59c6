"""Parked actions: the PostLinks a backfill parks per pair, next to what a decision parked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from escalation.decision import AddLabel, PostLinks
from mapping.model import Ref, System, Ticket
from sync.procedure import pending
from sync.store.database import Store, default_database_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(default_database_url(tmp_path / "state"))
    yield opened
    opened.close()


def _ticket(sys_id: str) -> Ticket:
    return Ticket(ref=Ref(system=System.SERVICENOW, id=sys_id), summary="s")


def test_post_links_is_parked_and_cleared_next_to_other_actions(store: Store) -> None:
    """Parking and clearing PostLinks keeps a decision's parked actions as they were."""
    keep, alone = _ticket("a"), _ticket("b")
    with store.session() as tx:
        pending.park(tx, keep, [AddLabel("ESCALATION")])
    keys = [pending.parked_key(System.SERVICENOW, t.ref.id) for t in (keep, alone)]
    with store.session() as tx:
        pending.park_links(tx, keys)
        pending.park_links(tx, keys[:1])
    with store.session() as tx:
        assert pending.awaiting_links(tx, [*keys, "servicenow:c"]) == set(keys)
        assert pending.parked(tx, keep) == [AddLabel("ESCALATION"), PostLinks()]
    with store.session() as tx:
        pending.clear_links(tx, [*keys, "servicenow:c"])
    with store.session() as tx:
        assert pending.awaiting_links(tx, keys) == set()
        assert pending.parked(tx, keep) == [AddLabel("ESCALATION")]
        assert pending.parked(tx, alone) == []
        assert tx.get_snapshot(pending.PENDING, "servicenow:c") is None
