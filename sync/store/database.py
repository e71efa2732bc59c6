"""The state store: links, snapshots, watermarks, deliveries seen, audit log and dead letters.

SQLAlchemy 2 on SQLite (default: a file in the state directory, WAL) or PostgreSQL (by URL).
The schema is owned by the Alembic migrations in `sync/store/migrations/`; `Store.open` brings the
database to the newest revision before handing out the store, so a daemon never runs against a
schema it does not know.

Use one transaction for one piece of work::

    with store.session() as tx:
        link = tx.get_link("jira", "DS-12")   # the pair, by any id of either record
        tx.put_snapshot("jira", "DS-12", ticket.model_dump(mode="json"), version="...")
        tx.audit("servicenow", sys_id, "status", "new", "in_progress", reason="jira DS-12")

Work that only reads uses `store.reading()` instead: on SQLite its transaction does not take the
database's write lock (WAL readers never wait for the writer), so lookups do not queue behind
other workers' writes; a write attempted in it fails on both backends.

Every method of `StoreSession` is also on `Store` itself, each call in a transaction of its own
(a reading one for the methods that only read). Rows come back as frozen dataclasses, never as
ORM objects bound to a session.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

import errors
from sync.store import links
from sync.store.db import Base, UTCDateTime
from sync.store.links import Link, LinkConflict, LinkSide, NewLink

DATABASE_FILE = "escalation-sync.store.db"
DELIVERY_ID_LENGTH = 200
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option marking a SQLite transaction read-only (see `create_db_engine`).
READ_ONLY = "escalation_sync_read_only"


class LeaseBusy(errors.Retry):
    """Another worker holds the lease on a ticket right now: try again shortly.

    Contention, not failure: the queue reschedules without spending a retry attempt.
    """

    counts_as_attempt = False


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def lease_owner() -> str:
    """Who holds a lease taken by the calling thread: "host|pid|thread" (the daemon reads the
    pid back to find leases left by a process that is gone)."""
    return f"{_host_name()}|{os.getpid()}|{threading.get_ident()}"


@functools.cache
def _host_name() -> str:
    # Asked for on every lease; the answer does not change while the process runs.
    return socket.gethostname()


class _LeaseTaken(Exception):
    """One of several leases is held by someone else: the transaction taking them rolls back."""


# --- tables -------------------------------------------------------------------------------------


class CommentLinkRow(Base):
    """A comment and its mirror on the paired record, with the origin marker written into it."""

    __tablename__ = "comment_links"
    __table_args__ = (
        sa.UniqueConstraint("source_system", "source_comment_id"),
        sa.Index("ix_comment_links_target", "target_system", "target_comment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source_system: Mapped[str] = mapped_column(sa.String(32))
    source_ticket: Mapped[str] = mapped_column(sa.String(64))
    source_comment_id: Mapped[str] = mapped_column(sa.String(64))
    target_system: Mapped[str] = mapped_column(sa.String(32))
    target_ticket: Mapped[str] = mapped_column(sa.String(64))
    target_comment_id: Mapped[str | None] = mapped_column(sa.String(64))
    marker: Mapped[str] = mapped_column(sa.String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SnapshotRow(Base):
    """The canonical ticket as last synced, per side."""

    __tablename__ = "snapshots"

    system: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    version: Mapped[str | None] = mapped_column(sa.String(64))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WatermarkRow(Base):
    """How far a system's poller has read, and when it last polled."""

    __tablename__ = "watermarks"

    system: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeliveryRow(Base):
    """A webhook delivery already accepted (de-duplication by delivery id)."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(DELIVERY_ID_LENGTH), unique=True)
    system: Mapped[str] = mapped_column(sa.String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class AuditRow(Base):
    """One field written (or a conflict lost): when, where, from -> to, and why."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_record", "system", "record"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    system: Mapped[str] = mapped_column(sa.String(32))
    record: Mapped[str] = mapped_column(sa.String(64))
    field: Mapped[str] = mapped_column(sa.String(200))
    from_value: Mapped[str | None] = mapped_column(sa.Text)
    to_value: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str | None] = mapped_column(sa.String(200))


class DeadLetterRow(Base):
    """An event that failed permanently, kept with its reason until it is replayed."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(sa.String(32))
    ticket: Mapped[str] = mapped_column(sa.String(64))
    event: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.Text)
    error_class: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(sa.Integer, default=1)


class TicketLockRow(Base):
    """A ticket being processed: a lease held by one worker, so no ticket runs twice at once.

    A row left behind by a killed worker is also the record of interrupted work: the daemon
    re-enqueues those tickets when it starts.
    """

    __tablename__ = "ticket_locks"

    system: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


# --- values handed out --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommentLink:
    """A comment and its mirror; `marker` is the origin marker written into the mirror."""

    id: int
    source_system: str
    source_ticket: str
    source_comment_id: str
    target_system: str
    target_ticket: str
    target_comment_id: str | None
    marker: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The canonical ticket JSON last synced for one side, with the vendor version it had."""

    system: str
    ticket_id: str
    data: dict[str, Any]
    version: str | None
    synced_at: datetime


@dataclass(frozen=True, slots=True)
class Watermark:
    """A poller's position: changes up to `value` are read; `polled_at` is the last pass."""

    system: str
    value: datetime | None
    polled_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: datetime
    system: str
    record: str
    field: str
    from_value: str | None
    to_value: str | None
    reason: str
    actor: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that could not be applied, with why."""

    id: int
    system: str
    ticket: str
    event: dict[str, Any]
    reason: str
    error_class: str
    created_at: datetime
    replayed_at: datetime | None
    attempts: int


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Row counts for `status` and health checks."""

    links: int
    comment_links: int
    snapshots: int
    deliveries: int
    audit_rows: int
    dead_letters_pending: int
    dead_letters_replayed: int
    watermarks: dict[str, Watermark]


@dataclass(frozen=True, slots=True)
class TicketLock:
    """A lease on one ticket."""

    system: str
    ticket_id: str
    owner: str
    acquired_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """One side's snapshot to write (see `StoreSession.put_snapshots`)."""

    system: str
    ticket_id: str
    data: Mapping[str, Any]
    version: str | None = None


@dataclass(frozen=True, slots=True)
class NewAudit:
    """An audit row to append (see `StoreSession.audit_many`)."""

    system: str
    record: str
    field: str
    from_value: object
    to_value: object
    reason: str


def _text(value: object) -> str | None:
    """Audit values as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def _comment_link(row: CommentLinkRow | sa.Row[Any]) -> CommentLink:
    return CommentLink(
        id=row.id,
        source_system=row.source_system,
        source_ticket=row.source_ticket,
        source_comment_id=row.source_comment_id,
        target_system=row.target_system,
        target_ticket=row.target_ticket,
        target_comment_id=row.target_comment_id,
        marker=row.marker,
        created_at=row.created_at,
    )


def _dead_letter(row: DeadLetterRow) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        system=row.system,
        ticket=row.ticket,
        event=dict(row.event or {}),
        reason=row.reason,
        error_class=row.error_class,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
        attempts=row.attempts,
    )


# --- statements of the sync path -----------------------------------------------------------------
# Built once: each sync runs a dozen of these, and building a statement (or going through the
# ORM's unit of work) costs more than running it on SQLite.


def _table(model: type[Base]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


_COMMENT_LINKS = _table(CommentLinkRow)
_SNAPSHOTS = _table(SnapshotRow)
_AUDIT = _table(AuditRow)
_LOCKS = _table(TicketLockRow)

_COMMENT_LINK_OF = (
    select(_COMMENT_LINKS)
    .where(
        or_(
            (_COMMENT_LINKS.c.source_system == sa.bindparam("system"))
            & (_COMMENT_LINKS.c.source_comment_id == sa.bindparam("comment_id")),
            (_COMMENT_LINKS.c.target_system == sa.bindparam("system"))
            & (_COMMENT_LINKS.c.target_comment_id == sa.bindparam("comment_id")),
        )
    )
    .limit(1)
)
_COMMENT_LINKS_OF = select(_COMMENT_LINKS).where(
    or_(
        (_COMMENT_LINKS.c.source_system == sa.bindparam("system"))
        & _COMMENT_LINKS.c.source_comment_id.in_(sa.bindparam("ids", expanding=True)),
        (_COMMENT_LINKS.c.target_system == sa.bindparam("system"))
        & _COMMENT_LINKS.c.target_comment_id.in_(sa.bindparam("ids", expanding=True)),
    )
)
_SNAPSHOT_OF = select(_SNAPSHOTS.c.data, _SNAPSHOTS.c.version, _SNAPSHOTS.c.synced_at).where(
    _SNAPSHOTS.c.system == sa.bindparam("system"),
    _SNAPSHOTS.c.ticket_id == sa.bindparam("ticket_id"),
)
_SNAPSHOTS_OF = select(_SNAPSHOTS).where(
    sa.tuple_(_SNAPSHOTS.c.system, _SNAPSHOTS.c.ticket_id).in_(sa.bindparam("keys", expanding=True))
)
_LOCK_EXPIRED = sa.delete(_LOCKS).where(
    _LOCKS.c.system == sa.bindparam("system"),
    _LOCKS.c.ticket_id == sa.bindparam("ticket_id"),
    _LOCKS.c.expires_at < sa.bindparam("now"),
)
_LOCK_RELEASE = sa.delete(_LOCKS).where(
    _LOCKS.c.system == sa.bindparam("system"),
    _LOCKS.c.ticket_id == sa.bindparam("ticket_id"),
    _LOCKS.c.owner == sa.bindparam("owner"),
)
_AUDIT_ADD = sa.insert(_AUDIT)


def _insert_if_absent(table: Any, returning: Any) -> dict[str, sa.Executable]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING, per dialect."""
    return {
        "sqlite": sqlite_insert(table).on_conflict_do_nothing().returning(returning),
        "postgresql": pg_insert(table).on_conflict_do_nothing().returning(returning),
    }


def _upsert(table: Any, keys: list[str], columns: list[str]) -> dict[str, sa.Executable]:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET columns, per dialect."""
    statements: dict[str, sa.Executable] = {}
    for dialect, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert)):
        stmt = insert(table)
        update = {name: stmt.excluded[name] for name in columns}
        statements[dialect] = stmt.on_conflict_do_update(index_elements=keys, set_=update)
    return statements


_LOCK_TAKE = _insert_if_absent(_LOCKS, _LOCKS.c.owner)
_SNAPSHOT_PUT = _upsert(_SNAPSHOTS, ["system", "ticket_id"], ["data", "version", "synced_at"])


# --- one transaction ----------------------------------------------------------------------------


class StoreSession:
    """The store's operations inside one transaction (see `Store.session`)."""

    def __init__(self, session: Session, clock: Callable[[], datetime]) -> None:
        self.orm = session
        self._clock = clock
        bind = session.get_bind()
        self._dialect = bind.dialect.name

    # links

    def get_link(self, system: str, ticket_id: str) -> Link | None:
        """The pair a record belongs to, found by any of its ids (the engine's ticket id, the
        vendor's id or key: a Jira key or id, a ServiceNow sys_id or number)."""
        return links.get_link(self.orm, system, ticket_id)

    def put_link(self, one: LinkSide, two: LinkSide, *, route: str | None = None) -> Link:
        """Record a pair (idempotent); fills in ids missing from an existing pair.

        Raises LinkConflict when either record is already paired with a different one.
        """
        return links.put_link(self.orm, one, two, route=route, now=self._clock)

    def list_links(self, *, limit: int | None = None, after_id: int = 0) -> list[Link]:
        """Pairs in creation order (page with `after_id` = the last id seen)."""
        return links.list_links(self.orm, limit=limit, after_id=after_id)

    # comments

    def find_comment_link(self, system: str, comment_id: str) -> CommentLink | None:
        """The pairing a comment takes part in, whether it is the original or the mirror."""
        params = {"system": system, "comment_id": comment_id}
        row = self.orm.execute(_COMMENT_LINK_OF, params).first()
        return _comment_link(row) if row else None

    def comment_links_of(self, system: str, comment_ids: Iterable[str]) -> dict[str, CommentLink]:
        """`find_comment_link` for several comments of one system at once, by comment id."""
        ids = list(dict.fromkeys(comment_ids))
        if not ids:
            return {}
        found: dict[str, CommentLink] = {}
        for row in self.orm.execute(_COMMENT_LINKS_OF, {"system": system, "ids": ids}):
            link = _comment_link(row)
            for side, comment in (
                (link.source_system, link.source_comment_id),
                (link.target_system, link.target_comment_id),
            ):
                if side == system and comment in ids:
                    found.setdefault(comment, link)
        return found

    def put_comment_link(
        self,
        *,
        source_system: str,
        source_ticket: str,
        source_comment_id: str,
        target_system: str,
        target_ticket: str,
        target_comment_id: str | None,
        marker: str,
    ) -> CommentLink:
        """Record that a comment was mirrored (idempotent; a later call fills the mirror's id)."""
        row = self.orm.scalars(
            select(CommentLinkRow).where(
                CommentLinkRow.source_system == source_system,
                CommentLinkRow.source_comment_id == source_comment_id,
            )
        ).first()
        if row is None:
            row = CommentLinkRow(
                source_system=source_system,
                source_ticket=source_ticket,
                source_comment_id=source_comment_id,
                target_system=target_system,
                target_ticket=target_ticket,
                target_comment_id=target_comment_id,
                marker=marker,
                created_at=self._clock(),
            )
            self.orm.add(row)
        else:
            row.target_comment_id = target_comment_id or row.target_comment_id
            row.target_ticket = target_ticket
            row.marker = marker
        self.orm.flush()
        return _comment_link(row)

    # snapshots

    def get_snapshot(self, system: str, ticket_id: str) -> Snapshot | None:
        """The canonical JSON last synced for this side of a ticket."""
        params = {"system": system, "ticket_id": ticket_id}
        row = self.orm.execute(_SNAPSHOT_OF, params).first()
        if row is None:
            return None
        return Snapshot(system, ticket_id, dict(row.data), row.version, row.synced_at)

    def get_snapshots(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Snapshot]:
        """`get_snapshot` for several (system, ticket) at once; missing ones are left out."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = self.orm.execute(_SNAPSHOTS_OF, {"keys": wanted})
        return {
            (r.system, r.ticket_id): Snapshot(
                r.system, r.ticket_id, dict(r.data), r.version, r.synced_at
            )
            for r in rows
        }

    def put_snapshot(
        self, system: str, ticket_id: str, data: Mapping[str, Any], version: str | None = None
    ) -> None:
        """Replace one side's snapshot; `data` is JSON-ready (`model_dump(mode="json")`)."""
        upsert = _SNAPSHOT_PUT.get(self._dialect)
        if upsert is not None:
            values = {"system": system, "ticket_id": ticket_id, "data": dict(data)}
            self.orm.execute(upsert, {**values, "version": version, "synced_at": self._clock()})
            return
        row = self.orm.get(SnapshotRow, (system, ticket_id))
        if row is None:
            row = SnapshotRow(system=system, ticket_id=ticket_id)
            self.orm.add(row)
        row.data = dict(data)
        row.version = version
        row.synced_at = self._clock()
        self.orm.flush()

    # watermarks

    def get_watermark(self, system: str) -> datetime | None:
        """How far the poller of `system` has read (None: never polled)."""
        row = self.orm.get(WatermarkRow, system)
        return row.value if row else None

    def set_watermark(
        self, system: str, value: datetime | None, *, polled_at: datetime | None = None
    ) -> None:
        """Move the watermark (never backwards) and record the poll time."""
        row = self.orm.get(WatermarkRow, system)
        if row is None:
            row = WatermarkRow(system=system)
            self.orm.add(row)
        if value is not None and (row.value is None or value > row.value):
            row.value = value
        row.polled_at = polled_at or self._clock()
        self.orm.flush()

    def watermarks(self) -> dict[str, Watermark]:
        """Every system's watermark."""
        rows = self.orm.scalars(select(WatermarkRow).order_by(WatermarkRow.system))
        return {r.system: Watermark(r.system, r.value, r.polled_at) for r in rows}

    # deliveries

    def seen_delivery(self, delivery_id: str, *, system: str = "") -> bool:
        """Record a webhook delivery; True when it had been recorded before (atomic)."""
        values = {"delivery_id": delivery_id, "system": system, "received_at": self._clock()}
        dialect = self.orm.get_bind().dialect.name
        if dialect == "sqlite":
            stmt: sa.Executable = (
                sqlite_insert(DeliveryRow).values(**values).on_conflict_do_nothing()
            )
        elif dialect == "postgresql":
            stmt = pg_insert(DeliveryRow).values(**values).on_conflict_do_nothing()
        else:
            stmt = sa.insert(DeliveryRow).values(**values)
        if dialect in ("sqlite", "postgresql"):
            # RETURNING tells whether the row went in; rowcount is not reliable across drivers.
            inserted = self.orm.execute(stmt.returning(DeliveryRow.id)).first()  # type: ignore[attr-defined]
            return inserted is None
        try:
            with self.orm.begin_nested():
                self.orm.execute(stmt)
        except IntegrityError:
            return True
        return False

    def record_deliveries(self, systems: Mapping[str, str]) -> set[str]:
        """Record many webhook deliveries (delivery id -> system) with one statement; returns
        the ids that are new, the others having been recorded before (atomic, like
        `seen_delivery`)."""
        if not systems:
            return set()
        now = self._clock()
        # Sorted, so two transactions inserting overlapping ids lock them in the same order and
        # cannot deadlock (PostgreSQL).
        rows = [
            {"delivery_id": key, "system": systems[key], "received_at": now}
            for key in sorted(systems)
        ]
        # The table, not the ORM class: the ORM's bulk insert path costs twice the CPU here.
        table = cast(sa.Table, DeliveryRow.__table__)
        dialect = self.orm.get_bind().dialect.name
        if dialect == "sqlite":
            stmt: Any = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect == "postgresql":
            stmt = pg_insert(table).on_conflict_do_nothing()
        else:
            return {
                key for key in sorted(systems) if not self.seen_delivery(key, system=systems[key])
            }
        # Executed with many parameter sets: SQLAlchemy batches them into multi-row INSERTs
        # from one cached compilation (a statement built with .values(rows) compiles anew
        # for every group size, which costs more than the insert).
        inserted = self.orm.execute(stmt.returning(table.c.delivery_id), rows)
        return set(inserted.scalars())

    def prune_deliveries(self, older_than: datetime) -> int:
        """Forget deliveries received before `older_than`; returns how many."""
        result = self.orm.execute(
            sa.delete(DeliveryRow).where(DeliveryRow.received_at < older_than)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # per-ticket leases

    def acquire_lock(self, system: str, ticket_id: str, owner: str, ttl: float) -> bool:
        """Take the lease on a ticket for `ttl` seconds; False when someone else holds it.

        An expired lease is taken over. Atomic: of two workers racing, exactly one wins.
        """
        now = self._clock()
        self.orm.execute(_LOCK_EXPIRED, {"system": system, "ticket_id": ticket_id, "now": now})
        values = {
            "system": system,
            "ticket_id": ticket_id,
            "owner": owner,
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=ttl),
        }
        take = _LOCK_TAKE.get(self._dialect)
        if take is None:
            try:
                with self.orm.begin_nested():
                    self.orm.execute(sa.insert(TicketLockRow).values(**values))
            except IntegrityError:
                return False
            return True
        # RETURNING tells whether the row went in; rowcount is not reliable across drivers.
        return self.orm.execute(take, values).first() is not None

    def release_lock(self, system: str, ticket_id: str, owner: str) -> bool:
        """Give the lease back; False when it was no longer ours (expired and taken over)."""
        params = {"system": system, "ticket_id": ticket_id, "owner": owner}
        result = self.orm.execute(_LOCK_RELEASE, params)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def acquire_locks(self, tickets: Sequence[tuple[str, str]], owner: str, ttl: float) -> bool:
        """Take the leases on several (system, ticket) with one statement of each kind; False
        when any is held by someone else (the caller rolls the transaction back)."""
        take = _LOCK_TAKE.get(self._dialect)
        if take is None or len(tickets) < 2:
            return all(self.acquire_lock(system, ident, owner, ttl) for system, ident in tickets)
        now = self._clock()
        keys = [{"system": system, "ticket_id": ident} for system, ident in dict.fromkeys(tickets)]
        self.orm.execute(_LOCK_EXPIRED, [{**key, "now": now} for key in keys])
        lease = {"owner": owner, "acquired_at": now, "expires_at": now + timedelta(seconds=ttl)}
        taken = self.orm.execute(take, [{**key, **lease} for key in keys]).all()
        return len(taken) == len(keys)

    def release_locks(self, tickets: Sequence[tuple[str, str]], owner: str) -> None:
        """Give several leases back with one statement (those no longer ours are left)."""
        params = [
            {"system": system, "ticket_id": ident, "owner": owner} for system, ident in tickets
        ]
        if params:
            self.orm.execute(_LOCK_RELEASE, params)

    def list_locks(self) -> list[TicketLock]:
        """Every lease currently recorded (held, or left behind by a killed worker)."""
        rows = self.orm.scalars(select(TicketLockRow).order_by(TicketLockRow.acquired_at))
        return [
            TicketLock(r.system, r.ticket_id, r.owner, r.acquired_at, r.expires_at) for r in rows
        ]

    # audit

    def audit(
        self,
        system: str,
        record: str,
        field: str,
        from_value: object,
        to_value: object,
        *,
        reason: str,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append an audit row: a field written on `system`'s `record`, or a conflict lost.

        Non-string values are stored as JSON; `reason` says why (e.g. "jira DS-12 changed",
        "conflict lost: servicenow owns status").
        """
        self.orm.execute(
            _AUDIT_ADD,
            {
                "at": at or self._clock(),
                "system": system,
                "record": record,
                "field": field,
                "from_value": _text(from_value),
                "to_value": _text(to_value),
                "reason": reason,
                "actor": actor,
            },
        )

    def list_audit(
        self, *, system: str | None = None, record: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest audit rows first, optionally for one record."""
        stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if system is not None:
            stmt = stmt.where(AuditRow.system == system)
        if record is not None:
            stmt = stmt.where(AuditRow.record == record)
        return [
            AuditEntry(
                r.id, r.at, r.system, r.record, r.field, r.from_value, r.to_value, r.reason, r.actor
            )
            for r in self.orm.scalars(stmt)
        ]

    # dead letters

    def add_dead_letter(
        self,
        system: str,
        ticket: str,
        event: Mapping[str, Any],
        reason: str,
        error_class: str,
        *,
        attempts: int = 1,
    ) -> int:
        """Park an event that failed permanently; returns its id for `deadletters replay`."""
        row = DeadLetterRow(
            system=system,
            ticket=ticket,
            event=dict(event),
            reason=reason,
            error_class=error_class,
            created_at=self._clock(),
            attempts=attempts,
        )
        self.orm.add(row)
        self.orm.flush()
        return row.id

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        """One dead letter by id."""
        row = self.orm.get(DeadLetterRow, dead_letter_id)
        return _dead_letter(row) if row else None

    def list_dead_letters(self, *, include_replayed: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first; replayed ones only when asked."""
        stmt = select(DeadLetterRow).order_by(DeadLetterRow.id)
        if not include_replayed:
            stmt = stmt.where(DeadLetterRow.replayed_at.is_(None))
        return [_dead_letter(r) for r in self.orm.scalars(stmt)]

    def mark_replayed(self, dead_letter_id: int, *, at: datetime | None = None) -> None:
        """Record that a dead letter was re-enqueued. Raises KeyError for an unknown id."""
        row = self.orm.get(DeadLetterRow, dead_letter_id)
        if row is None:
            raise KeyError(dead_letter_id)
        row.replayed_at = at or self._clock()
        self.orm.flush()

    # counts

    def status_counts(self) -> StoreCounts:
        """Row counts for `status`."""

        def count(model: type[Base], *where: sa.ColumnElement[bool]) -> int:
            stmt = select(func.count()).select_from(model)
            for cond in where:
                stmt = stmt.where(cond)
            return int(self.orm.scalar(stmt) or 0)

        return StoreCounts(
            links=links.count_links(self.orm),
            comment_links=count(CommentLinkRow),
            snapshots=count(SnapshotRow),
            deliveries=count(DeliveryRow),
            audit_rows=count(AuditRow),
            dead_letters_pending=count(DeadLetterRow, DeadLetterRow.replayed_at.is_(None)),
            dead_letters_replayed=count(DeadLetterRow, DeadLetterRow.replayed_at.is_not(None)),
            watermarks=self.watermarks(),
        )

    # in bulk: a statement for many rows, where one per row would dominate a backfill; on the
    # tables themselves, without the ORM's per-object bookkeeping

    def get_links(self, system: str, ticket_ids: Collection[str]) -> dict[str, Link]:
        """The pairs of many records of one system, by the ticket id given."""
        return links.get_links(self.orm, system, ticket_ids)

    def add_links(self, new: Sequence[NewLink]) -> list[LinkConflict | None]:
        """Record many new pairs in one statement per table; returns, per pair, the conflict
        that kept it out (either record already paired with another one) or None."""
        return links.add_links(self.orm, new, now=self._clock)

    def get_snapshots_of(self, system: str, ticket_ids: Collection[str]) -> dict[str, Snapshot]:
        """The snapshots of many tickets of one system, by ticket id."""
        stmt = select(_SNAPSHOTS).where(
            _SNAPSHOTS.c.system == system, _SNAPSHOTS.c.ticket_id.in_(list(ticket_ids))
        )
        return {
            row.ticket_id: Snapshot(
                row.system, row.ticket_id, dict(row.data), row.version, row.synced_at
            )
            for row in self.orm.connection().execute(stmt)
        }

    def put_snapshots(self, snapshots: Sequence[NewSnapshot]) -> None:
        """Replace many snapshots in one statement."""
        now = self._clock()
        rows = [
            {
                "system": x.system,
                "ticket_id": x.ticket_id,
                "data": dict(x.data),
                "version": x.version,
                "synced_at": now,
            }
            for x in snapshots
        ]
        if not rows:
            return
        insert = sqlite_insert if self.orm.get_bind().dialect.name == "sqlite" else pg_insert
        stmt = insert(_SNAPSHOTS)
        stmt = stmt.on_conflict_do_update(
            index_elements=["system", "ticket_id"],
            set_={
                "data": stmt.excluded.data,
                "version": stmt.excluded.version,
                "synced_at": stmt.excluded.synced_at,
            },
        )
        # Rows may repeat a key; the statement must not touch one row twice.
        unique = {(r["system"], r["ticket_id"]): r for r in rows}
        self.orm.connection().execute(stmt, list(unique.values()))
        # Snapshot rows this session loaded before are stale now.
        self.orm.expire_all()

    def audit_many(self, entries: Sequence[NewAudit]) -> None:
        """Append many audit rows in one statement (see `audit`)."""
        now = self._clock()
        rows = [
            {
                "at": now,
                "system": x.system,
                "record": x.record,
                "field": x.field,
                "from_value": _text(x.from_value),
                "to_value": _text(x.to_value),
                "reason": x.reason,
                "actor": None,
            }
            for x in entries
        ]
        if rows:
            self.orm.connection().execute(sa.insert(_AUDIT), rows)


# --- the store ----------------------------------------------------------------------------------


def default_database_url(state_dir: Path) -> str:
    """The SQLite file the store uses when no database URL is configured."""
    return f"sqlite:///{Path(state_dir).expanduser().resolve() / DATABASE_FILE}"


def create_db_engine(url: str) -> Engine:
    """An engine with the connection settings the store relies on.

    SQLite: WAL (readers never wait for the writer), a busy timeout instead of instant
    "database is locked", foreign keys on, and `BEGIN IMMEDIATE` so two writers queue on the
    lock up front rather than failing when a read transaction tries to upgrade. A transaction
    opened with the `READ_ONLY` option begins deferred instead, with `query_only` on, so it
    never takes the write lock and cannot write by mistake.
    """
    if url.startswith("sqlite"):
        db_path = sa.engine.make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take over
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _switch_to_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            read_only = bool(conn.get_execution_options().get(READ_ONLY))
            # `info` lives as long as the pooled connection: switch the pragma only on a change.
            if conn.info.get(READ_ONLY, False) != read_only:
                conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
                conn.info[READ_ONLY] = read_only
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _switch_to_wal(cur: Any) -> None:
    """Put the database in WAL mode, waiting out other processes doing the same.

    Switching a new file to WAL needs the write lock and SQLite does not call its busy handler
    for it, so processes opening a fresh state directory together (daemon and cron) would get
    "database is locked" at once instead of waiting.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class Store:
    """The state store. Open with `Store.open(url)`; close with `close()`."""

    def __init__(self, db: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        # SQLAlchemy's engine: the connection pool to the database ("engine" in this product is
        # the sync engine).
        self.db = db
        self.clock = clock
        self._sessions = sessionmaker(db, expire_on_commit=False)
        # Per thread: the (owner, system, ticket) leases it took and holds (`leases_held`).
        self._taken = threading.local()
        read_only = {"postgresql_readonly": True} if db.dialect.name == "postgresql" else {}
        self._readers = sessionmaker(
            db.execution_options(**{READ_ONLY: True, **read_only}), expire_on_commit=False
        )

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = utcnow) -> Store:
        """Connect and upgrade the schema to the newest migration (`alembic upgrade head`)."""
        # Imported here: Alembic is loaded by the commands that open a store, not by every
        # command that only names the store's types (start-up time).
        from sync.store.migrations import upgrade

        db = create_db_engine(url)
        upgrade(db)
        return cls(db, clock=clock)

    @classmethod
    def for_state(cls, state_dir: Path, database_url: str | None = None, **kwargs: Any) -> Store:
        """Open the configured database, or the SQLite file in the state directory."""
        return cls.open(database_url or default_database_url(state_dir), **kwargs)

    def close(self) -> None:
        """Release every pooled connection."""
        self.db.dispose()

    @contextmanager
    def session(self) -> Iterator[StoreSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as orm:
            yield StoreSession(orm, self.clock)

    @contextmanager
    def reading(self) -> Iterator[StoreSession]:
        """One read-only transaction: it waits for no writer (SQLite) and refuses writes."""
        with self._readers.begin() as orm:
            yield StoreSession(orm, self.clock)

    # Each operation in a transaction of its own.

    def get_link(self, system: str, ticket_id: str) -> Link | None:
        """See StoreSession.get_link."""
        with self.reading() as tx:
            return tx.get_link(system, ticket_id)

    def put_link(self, one: LinkSide, two: LinkSide, *, route: str | None = None) -> Link:
        """See StoreSession.put_link."""
        with self.session() as tx:
            return tx.put_link(one, two, route=route)

    def list_links(self, *, limit: int | None = None, after_id: int = 0) -> list[Link]:
        """See StoreSession.list_links."""
        with self.reading() as tx:
            return tx.list_links(limit=limit, after_id=after_id)

    def find_comment_link(self, system: str, comment_id: str) -> CommentLink | None:
        """See StoreSession.find_comment_link."""
        with self.reading() as tx:
            return tx.find_comment_link(system, comment_id)

    def put_comment_link(
        self,
        *,
        source_system: str,
        source_ticket: str,
        source_comment_id: str,
        target_system: str,
        target_ticket: str,
        target_comment_id: str | None,
        marker: str,
    ) -> CommentLink:
        """See StoreSession.put_comment_link."""
        with self.session() as tx:
            return tx.put_comment_link(
                source_system=source_system,
                source_ticket=source_ticket,
                source_comment_id=source_comment_id,
                target_system=target_system,
                target_ticket=target_ticket,
                target_comment_id=target_comment_id,
                marker=marker,
            )

    def get_snapshot(self, system: str, ticket_id: str) -> Snapshot | None:
        """See StoreSession.get_snapshot."""
        with self.reading() as tx:
            return tx.get_snapshot(system, ticket_id)

    def put_snapshot(
        self, system: str, ticket_id: str, data: Mapping[str, Any], version: str | None = None
    ) -> None:
        """See StoreSession.put_snapshot."""
        with self.session() as tx:
            tx.put_snapshot(system, ticket_id, data, version)

    def get_watermark(self, system: str) -> datetime | None:
        """See StoreSession.get_watermark."""
        with self.reading() as tx:
            return tx.get_watermark(system)

    def set_watermark(
        self, system: str, value: datetime | None, *, polled_at: datetime | None = None
    ) -> None:
        """See StoreSession.set_watermark."""
        with self.session() as tx:
            tx.set_watermark(system, value, polled_at=polled_at)

    def watermarks(self) -> dict[str, Watermark]:
        """See StoreSession.watermarks."""
        with self.reading() as tx:
            return tx.watermarks()

    def seen_delivery(self, delivery_id: str, *, system: str = "") -> bool:
        """See StoreSession.seen_delivery."""
        with self.session() as tx:
            return tx.seen_delivery(delivery_id, system=system)

    def record_deliveries(self, systems: Mapping[str, str]) -> set[str]:
        """See StoreSession.record_deliveries."""
        with self.session() as tx:
            return tx.record_deliveries(systems)

    def prune_deliveries(self, older_than: datetime) -> int:
        """See StoreSession.prune_deliveries."""
        with self.session() as tx:
            return tx.prune_deliveries(older_than)

    def acquire_lock(self, system: str, ticket_id: str, owner: str, ttl: float) -> bool:
        """See StoreSession.acquire_lock."""
        return self.acquire_locks([(system, ticket_id)], owner, ttl)

    def release_lock(self, system: str, ticket_id: str, owner: str) -> bool:
        """See StoreSession.release_lock."""
        with self.session() as tx:
            released = tx.release_lock(system, ticket_id, owner)
        self._taken_here().discard((owner, system, ticket_id))
        return released

    def acquire_locks(self, tickets: Sequence[tuple[str, str]], owner: str, ttl: float) -> bool:
        """Take the leases on several (system, ticket) at once, in one transaction: all of
        them, or none when any is held by someone else."""
        try:
            with self.session() as tx:
                if not tx.acquire_locks(tickets, owner, ttl):
                    raise _LeaseTaken
        except _LeaseTaken:
            return False
        self._taken_here().update((owner, system, ticket) for system, ticket in tickets)
        return True

    def release_locks(self, tickets: Sequence[tuple[str, str]], owner: str) -> None:
        """Give several leases back in one transaction (those no longer ours are left)."""
        with self.session() as tx:
            tx.release_locks(tickets, owner)
        self._taken_here().difference_update((owner, system, ticket) for system, ticket in tickets)

    def leases_held(self, owner: str, tickets: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these leases the calling thread took under `owner` through this store and
        has not given back (known without a query)."""
        taken = self._taken_here()
        return {(system, ticket) for system, ticket in tickets if (owner, system, ticket) in taken}

    def _taken_here(self) -> set[tuple[str, str, str]]:
        taken: set[tuple[str, str, str]] | None = getattr(self._taken, "leases", None)
        if taken is None:
            taken = self._taken.leases = set()
        return taken

    def list_locks(self) -> list[TicketLock]:
        """See StoreSession.list_locks."""
        with self.reading() as tx:
            return tx.list_locks()

    def audit(
        self,
        system: str,
        record: str,
        field: str,
        from_value: object,
        to_value: object,
        *,
        reason: str,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """See StoreSession.audit."""
        with self.session() as tx:
            tx.audit(system, record, field, from_value, to_value, reason=reason, actor=actor, at=at)

    def list_audit(
        self, *, system: str | None = None, record: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """See StoreSession.list_audit."""
        with self.reading() as tx:
            return tx.list_audit(system=system, record=record, limit=limit)

    def add_dead_letter(
        self,
        system: str,
        ticket: str,
        event: Mapping[str, Any],
        reason: str,
        error_class: str,
        *,
        attempts: int = 1,
    ) -> int:
        """See StoreSession.add_dead_letter."""
        with self.session() as tx:
            return tx.add_dead_letter(system, ticket, event, reason, error_class, attempts=attempts)

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        """See StoreSession.get_dead_letter."""
        with self.reading() as tx:
            return tx.get_dead_letter(dead_letter_id)

    def list_dead_letters(self, *, include_replayed: bool = False) -> list[DeadLetter]:
        """See StoreSession.list_dead_letters."""
        with self.reading() as tx:
            return tx.list_dead_letters(include_replayed=include_replayed)

    def mark_replayed(self, dead_letter_id: int, *, at: datetime | None = None) -> None:
        """See StoreSession.mark_replayed."""
        with self.session() as tx:
            tx.mark_replayed(dead_letter_id, at=at)

    def status_counts(self) -> StoreCounts:
        """See StoreSession.status_counts."""
        with self.reading() as tx:
            return tx.status_counts()
