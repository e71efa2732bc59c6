"""The escalation ledger in the store: views, recording, and slot reservations under contention."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from escalation.decide import decide
from escalation.decision import AddNote, LedgerView, NoteKind
from escalation.policy import Policy, load_policy
from mapping.model import (
    Attachment,
    Comment,
    EscalationState,
    Person,
    Priority,
    Ref,
    Status,
    System,
    Ticket,
    Visibility,
)
from sync.procedure.ledger import (
    LedgerRow,
    apply_decision,
    decide_and_record,
    get_entry,
    ledger_view,
    open_escalations,
    prune_fingerprints,
    quiet_decision,
    record_decision,
)
from sync.store.database import Store, default_database_url
from sync.store.db import Base

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


POSTGRES_ENV = "ESCALATION_SYNC_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store: SQLite, and PostgreSQL (in a schema of its own) when its URL is set."""
    if request.param == "sqlite":
        opened = Store.open(default_database_url(tmp_path / "state"))
        try:
            yield opened
        finally:
            opened.close()
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL ledger tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://...)")
    schema = f"ledger_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    opened = Store.open(f"{base}{sep}options={quote(f'-csearch_path={schema}')}")
    try:
        yield opened
    finally:
        opened.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


APPROVER = Person(id="alice", name="Alice", email="alice@example.com")
AGENT = Person(id="eng", name="Erin")
WORKERS = 12


def policy(**limits: Any) -> Policy:
    return load_policy(
        {
            "request": {"labels": []},
            "gate": {"enabled": False},
            "triggers": [{"kind": "repeated", "count": 2, "window_hours": 24}],
            "limits": limits,
            "levels": [
                {"name": "L1"},
                {
                    "name": "L2",
                    "target_system": "jira",
                    "project": "ENG",
                    "approvers": {"users": ["alice"]},
                },
            ],
        },
        source="ledger-test.toml",
    )


def ticket(n: int, *, assignee: str | None = None, approve: bool = True, **kw: Any) -> Ticket:
    """A ticket with an /escalate note and (optionally) an approver's /approve-escalation."""
    comments = [
        Comment(
            id=f"r{n}",
            body="/escalate customer down",
            author=AGENT,
            created=NOW - timedelta(minutes=5),
        )
    ]
    if approve:
        comments.append(
            Comment(
                id=f"a{n}",
                body="/approve-escalation",
                author=APPROVER,
                visibility=Visibility.INTERNAL,
                created=NOW - timedelta(minutes=1),
            )
        )
    fields: dict[str, Any] = {
        "ref": Ref(system=System.SERVICENOW, id=f"sys{n}", key=f"INC{n}"),
        "summary": f"Issue number {n}",
        "category": f"cat{n}",
        "priority": Priority.P2,
        "assignee": Person(id=assignee or f"agent{n}"),
        "comments": tuple(comments),
        "attachments": (Attachment(id="1", filename="x.log"),),
    }
    fields.update(kw)
    return Ticket(**fields)


def record(db: Store, t: Ticket, pol: Policy, at: datetime = NOW):
    with db.session() as tx:
        return decide_and_record(tx, t, at, pol)


def active_rows(db: Store) -> int:
    with db.session() as tx:
        return int(
            tx.orm.execute(
                sa.select(sa.func.count())
                .select_from(LedgerRow)
                .where(LedgerRow.approved_at.is_not(None), LedgerRow.released_at.is_(None))
            ).scalar_one()
        )


# --- basics ---------------------------------------------------------------------------------------


def test_migration_matches_the_models(db: Store):
    """The migrations create exactly the tables the ledger and its history declare."""
    with db.db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ledger_tables = (
        "escalation_ledger",
        "escalation_fingerprints",
        "escalation_slots",
        "escalation_decisions",
    )
    relevant = [d for d in diff if any(name in repr(d) for name in ledger_tables)]
    assert relevant == []


def test_record_and_view_roundtrip(db: Store):
    """A recorded approval shows up in the entry and in the other tickets' counts."""
    pol = policy(max_active=5, max_per_day=3)
    d = record(db, ticket(1), pol)
    assert d.state is EscalationState.APPROVED
    with db.session() as tx:
        entry = get_entry(tx, "servicenow:sys1")
        assert entry is not None and entry.state is EscalationState.APPROVED
        assert entry.processed_command_ids == frozenset({"r1", "a1"})
        assert entry.approved_at == NOW and entry.approved_at.tzinfo is not None
        assert entry.requested_at == NOW and entry.level == "L2"
        mine = ledger_view(tx, ticket(1), NOW, pol)
        other = ledger_view(tx, ticket(2), NOW, pol)
    assert mine.active_count == 0 and mine.entry is not None
    assert other.active_count == 1 and other.escalations_today == 1
    assert other.active_by_assignee == {"agent1": 1}
    assert other.day_start == NOW.replace(hour=0)


def test_redeciding_a_recorded_ticket_writes_nothing(db: Store):
    """After recording, the same ticket decided again has no actions (commands consumed)."""
    pol = policy()
    record(db, ticket(1), pol)
    again = record(db, ticket(1), pol, NOW + timedelta(minutes=1))
    assert again.state is EscalationState.APPROVED and again.actions == ()


def test_a_decision_that_changes_nothing_is_made_in_a_reading_transaction(db: Store):
    """Deciding again on a ticket with nothing new needs no write; a new command, or a first
    sighting of its fingerprint, does."""
    pol = policy()
    plain = ticket(1, comments=())
    with db.reading() as tx:
        assert quiet_decision(tx, plain, NOW, pol) is None  # its fingerprint is new
        assert quiet_decision(tx, ticket(2), NOW, pol) is None  # /escalate, /approve-escalation
    record(db, plain, pol)
    record(db, ticket(2), pol)
    later = NOW + timedelta(minutes=1)
    with db.reading() as tx:
        first = quiet_decision(tx, plain, later, pol)
        second = quiet_decision(tx, ticket(2), later, pol)
    assert first is not None and first.state is EscalationState.NONE and first.actions == ()
    assert second is not None and second.state is EscalationState.APPROVED


def test_release_frees_the_slot(db: Store):
    """Engineering resolved releases the escalation: it no longer counts as active."""
    pol = policy(max_active=1)
    record(db, ticket(1), pol)
    assert record(db, ticket(2), pol).state is EscalationState.REFUSED
    with db.session() as tx:
        from escalation.decision import EngineeringStatus

        done = decide_and_record(
            tx, ticket(1), NOW, pol, engineering=EngineeringStatus(None, Status.RESOLVED, "fixed")
        )
    assert done.state is EscalationState.RESOLVED and active_rows(db) == 0
    retry = ticket(2).model_copy(
        update={
            "comments": (
                *ticket(2).comments,
                Comment(
                    id="a2b", body="/approve-escalation slot is free", author=APPROVER, created=NOW
                ),
            )
        }
    )
    assert record(db, retry, pol, NOW + timedelta(minutes=1)).state is EscalationState.APPROVED


def test_fingerprint_sightings_feed_the_repeated_trigger(db: Store):
    """Two tickets with one fingerprint within the window trigger the repeated-occurrence rule."""
    pol = policy()
    first = ticket(1, approve=False, summary="Login fails", category="auth", comments=())
    assert record(db, first, pol).state is EscalationState.NONE
    second = ticket(2, approve=False, summary="login  FAILS", category="Auth", comments=())
    d = record(db, second, pol, NOW + timedelta(hours=1))
    assert d.state is EscalationState.PENDING_APPROVAL
    with db.session() as tx:
        assert prune_fingerprints(tx, NOW + timedelta(minutes=30)) == 1


def test_apply_returns_false_when_slot_taken_meanwhile(db: Store):
    """A decision made on a stale view is not recorded; record_decision refuses it instead."""
    pol = policy(max_active=1)
    with db.session() as tx:
        stale = decide(ticket(2), ledger_view(tx, ticket(2), NOW, pol), NOW, pol)
    assert stale.state is EscalationState.APPROVED
    record(db, ticket(1), pol)
    with db.session() as tx:
        assert apply_decision(tx, ticket(2), stale, NOW) is False
        assert get_entry(tx, ticket(2)) is None
    with db.session() as tx:
        refused = record_decision(tx, ticket(2), stale, NOW)
    assert refused.state is EscalationState.REFUSED
    [note] = [a for a in refused.actions if isinstance(a, AddNote)]
    assert note.kind is NoteKind.REFUSAL
    assert "max_active (1 active escalation, limit 1)" in note.body
    with db.session() as tx:
        entry = get_entry(tx, ticket(2))
    assert entry is not None and entry.state is EscalationState.REFUSED


# --- contention ---------------------------------------------------------------------------------


def _race(db: Store, pol: Policy, tickets: list[Ticket]) -> list[Any]:
    """Every worker views and decides first, then all record at once."""
    decided = threading.Barrier(len(tickets), timeout=60)
    results: list[Any] = [None] * len(tickets)
    errors: list[BaseException] = []

    def work(i: int, t: Ticket) -> None:
        try:
            # Decide on a view taken outside any lock, as a worker racing others would.
            with Session(db.db) as s:
                view = ledger_view(s, t, NOW, pol)
            d = decide(t, view, NOW, pol)
            decided.wait()
            with db.session() as tx:
                results[i] = record_decision(tx, t, d, NOW)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, t)) for i, t in enumerate(tickets)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert not errors, errors
    return results


def test_concurrent_approvals_never_exceed_max_active(db: Store):
    """N workers approving different tickets at once leave exactly max_active escalations."""
    pol = policy(max_active=5)
    results = _race(db, pol, [ticket(n) for n in range(WORKERS)])
    states = Counter(d.state for d in results)
    assert states == {EscalationState.APPROVED: 5, EscalationState.REFUSED: WORKERS - 5}
    assert active_rows(db) == 5
    refused = [d for d in results if d.state is EscalationState.REFUSED]
    assert all("max_active (5 active escalations, limit 5)" in d.actions[0].body for d in refused)


def test_concurrent_approvals_respect_per_day_and_per_assignee(db: Store):
    """Per-day and per-assignee limits hold under contention too."""
    pol = policy(max_per_day=3, max_active_per_assignee=1)
    tickets = [ticket(n, assignee=f"agent{n % 2}") for n in range(WORKERS)]
    results = _race(db, pol, tickets)
    approved = [
        t for t, d in zip(tickets, results, strict=True) if d.state is EscalationState.APPROVED
    ]
    assert len(approved) == 2  # one per assignee, within the 3 a day
    assert len({t.assignee.id for t in approved if t.assignee}) == 2


def test_bare_sqlite_session_takes_the_lock_itself(tmp_path: Path):
    """On a plain SQLite engine (no BEGIN IMMEDIATE hook) the ledger begins IMMEDIATE itself."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bare.db'}", connect_args={"timeout": 30})
    Base.metadata.create_all(
        engine,
        tables=[
            Base.metadata.tables[n]
            for n in (
                "escalation_ledger",
                "escalation_fingerprints",
                "escalation_slots",
                "escalation_decisions",
            )
        ],
    )
    pol = policy(max_active=3)
    decided = threading.Barrier(8, timeout=60)
    out: list[EscalationState] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        t = ticket(n)
        with Session(engine) as s:
            view = ledger_view(s, t, NOW, pol)
            d = decide(t, view, NOW, pol)
            decided.wait()
            recorded = record_decision(s, t, d, NOW)
            s.commit()
        with lock:
            out.append(recorded.state)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert Counter(out) == {EscalationState.APPROVED: 3, EscalationState.REFUSED: 5}
    engine.dispose()


def test_view_is_plain_data(db: Store):
    """ledger_view returns a LedgerView of plain values, detached from the session."""
    with db.session() as tx:
        view = ledger_view(tx, "servicenow:none", NOW, policy())
    assert isinstance(view, LedgerView) and view.entry is None


def test_open_escalations_lists_pending_and_active_only(db: Store) -> None:
    """Requests awaiting approval and active escalations are listed; others are not."""
    pol = policy()
    record(db, ticket(1), pol)  # approved: active
    record(db, ticket(2, approve=False), pol)  # awaiting approval
    with db.session() as tx:
        found = sorted(open_escalations(tx))
    assert found == [("servicenow", "sys1"), ("servicenow", "sys2")]
