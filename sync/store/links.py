"""Pairs of records: (system, id, key) to (system, id, key), for any two ticket systems.

A pair is a row of `links` (its route, when it was made) and one row of `link_records` per
record: the record's system, the id the engine addresses it by (`ticket_id`: a Jira issue key,
a ServiceNow sys_id), and the vendor's own id and human key when known (a Jira issue's numeric
id and key; a ServiceNow sys_id and number). A record is found by any of the three, and belongs
to one pair at most: `(system, ticket_id)` is unique.

The functions here run in the caller's transaction (`StoreSession` offers them as methods).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

import errors
from mapping.model import System
from sync.store.db import Base, UTCDateTime

# --- tables -------------------------------------------------------------------------------------


class LinkRow(Base):
    """A pair of records, by the route that made it."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    route: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LinkRecordRow(Base):
    """One record of a pair."""

    __tablename__ = "link_records"
    __table_args__ = (
        sa.UniqueConstraint("system", "ticket_id"),
        sa.Index("ix_link_records_record_id", "system", "record_id"),
        sa.Index("ix_link_records_record_key", "system", "record_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    link_id: Mapped[int] = mapped_column(sa.Integer, index=True)
    system: Mapped[str] = mapped_column(sa.String(32))
    ticket_id: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[str | None] = mapped_column(sa.String(64))
    record_key: Mapped[str | None] = mapped_column(sa.String(64))


# --- values handed out --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkSide:
    """One record of a pair: its system, the id the engine uses for it, and the vendor's own id
    and human key when known."""

    system: str
    ticket_id: str
    record_id: str | None = None
    record_key: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A pair of records of two systems."""

    id: int
    sides: tuple[LinkSide, LinkSide]
    route: str | None
    created_at: datetime

    def side(self, system: str) -> LinkSide:
        """The pair's record in `system`."""
        for side in self.sides:
            if side.system == system:
                return side
        raise ValueError(f"the pair has no {system} record")

    def partner(self, system: str) -> LinkSide:
        """The pair's record other than the one in `system`."""
        first, second = self.sides
        if first.system == system:
            return second
        if second.system == system:
            return first
        raise ValueError(f"the pair has no {system} record")

    def other(self, system: str) -> tuple[str, str]:
        """The paired side of `system`: (other system, its ticket id as the engine reads it)."""
        partner = self.partner(system)
        return partner.system, partner.ticket_id


@dataclass(frozen=True, slots=True)
class NewLink:
    """A pair to record (see `add_links`)."""

    one: LinkSide
    two: LinkSide
    route: str | None = None


class LinkConflict(errors.DeadLetter):
    """A record is already paired with a different one; the caller must not overwrite it (the
    event is parked for an operator to decide which pair is right)."""


# --- statements ---------------------------------------------------------------------------------

_LINKS = cast(sa.Table, LinkRow.__table__)
_RECORDS = cast(sa.Table, LinkRecordRow.__table__)
_MINE = aliased(LinkRecordRow, name="mine")


def _known_as(record: Any, system: Any, ident: Any) -> sa.ColumnElement[bool]:
    return sa.and_(
        record.system == system,
        or_(record.ticket_id == ident, record.record_id == ident, record.record_key == ident),
    )


# The pair's id of a record found by any of its ids.
_LINK_ID_OF = (
    select(_MINE.link_id)
    .where(_known_as(_MINE, sa.bindparam("system"), sa.bindparam("ident")))
    .limit(1)
)
_LINK_BY_ID = select(LinkRow.id, LinkRow.route, LinkRow.created_at).where(
    LinkRow.id.in_(sa.bindparam("ids", expanding=True))
)
_RECORDS_OF = (
    select(LinkRecordRow)
    .where(LinkRecordRow.link_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(LinkRecordRow.id)
)


def _system(system: str) -> str:
    """`system` as a known system's name (ValueError for a name no package declared)."""
    return System(system).value


def _assemble(orm: Session, rows: Iterable[sa.Row[Any]]) -> dict[int, Link]:
    """Links by id from their `links` rows, with their records read in one query."""
    heads = {row.id: row for row in rows}
    if not heads:
        return {}
    sides: dict[int, list[LinkSide]] = {}
    for record in orm.execute(_RECORDS_OF, {"ids": list(heads)}).scalars():
        sides.setdefault(record.link_id, []).append(
            LinkSide(record.system, record.ticket_id, record.record_id, record.record_key)
        )
    links: dict[int, Link] = {}
    for link_id, head in heads.items():
        pair = sides.get(link_id, [])
        if len(pair) == 2:
            links[link_id] = Link(link_id, (pair[0], pair[1]), head.route, head.created_at)
    return links


# --- reading ------------------------------------------------------------------------------------


def get_link(orm: Session, system: str, ident: str) -> Link | None:
    """The pair a record belongs to, found by any of its ids."""
    link_id = orm.execute(_LINK_ID_OF, {"system": _system(system), "ident": ident}).scalar()
    if link_id is None:
        return None
    return _assemble(orm, orm.execute(_LINK_BY_ID, {"ids": [link_id]})).get(link_id)


def get_links(orm: Session, system: str, ticket_ids: Collection[str]) -> dict[str, Link]:
    """The pairs of many records of one system, by the ticket id given."""
    system = _system(system)
    wanted = list(dict.fromkeys(ticket_ids))
    if not wanted:
        return {}
    found = orm.execute(
        select(LinkRecordRow.ticket_id, LinkRecordRow.link_id).where(
            LinkRecordRow.system == system, LinkRecordRow.ticket_id.in_(wanted)
        )
    ).all()
    ids = list({link_id for _, link_id in found})
    links = _assemble(orm, orm.execute(_LINK_BY_ID, {"ids": ids})) if ids else {}
    return {ticket: links[link_id] for ticket, link_id in found if link_id in links}


def list_links(orm: Session, *, limit: int | None = None, after_id: int = 0) -> list[Link]:
    """Pairs in creation order (page with `after_id` = the last id seen)."""
    stmt = select(LinkRow.id, LinkRow.route, LinkRow.created_at).where(LinkRow.id > after_id)
    stmt = stmt.order_by(LinkRow.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    links = _assemble(orm, orm.execute(stmt))
    return [links[k] for k in sorted(links)]


def count_links(orm: Session) -> int:
    """How many pairs there are."""
    return int(orm.scalar(select(sa.func.count()).select_from(LinkRow)) or 0)


# --- writing ------------------------------------------------------------------------------------


def _record(orm: Session, side: LinkSide) -> LinkRecordRow | None:
    return orm.scalars(
        select(LinkRecordRow).where(
            LinkRecordRow.system == side.system, LinkRecordRow.ticket_id == side.ticket_id
        )
    ).first()


def _partner_row(orm: Session, row: LinkRecordRow) -> LinkRecordRow | None:
    return orm.scalars(
        select(LinkRecordRow).where(
            LinkRecordRow.link_id == row.link_id, LinkRecordRow.id != row.id
        )
    ).first()


def put_link(
    orm: Session,
    one: LinkSide,
    two: LinkSide,
    *,
    route: str | None = None,
    now: Callable[[], datetime],
) -> Link:
    """Record a pair (idempotent); fills in ids missing from an existing pair.

    Raises LinkConflict when either record is already paired with a different one.
    """
    one = LinkSide(_system(one.system), one.ticket_id, one.record_id, one.record_key)
    two = LinkSide(_system(two.system), two.ticket_id, two.record_id, two.record_key)
    if one.system == two.system:
        raise ValueError(f"a pair joins records of two systems, not two of {one.system}")
    rows: list[LinkRecordRow | None] = [_record(orm, one), _record(orm, two)]
    for side, row, wanted in ((one, rows[0], two), (two, rows[1], one)):
        if row is None:
            continue
        partner = _partner_row(orm, row)
        if partner is None or (partner.system, partner.ticket_id) != (
            wanted.system,
            wanted.ticket_id,
        ):
            paired = f"{partner.system} {partner.ticket_id}" if partner else "another record"
            raise LinkConflict(f"{side.system} {side.ticket_id} is paired with {paired}")
    if rows[0] is None:
        head = LinkRow(route=route, created_at=now())
        orm.add(head)
        orm.flush()
        for side in (one, two):
            orm.add(
                LinkRecordRow(
                    link_id=head.id,
                    system=side.system,
                    ticket_id=side.ticket_id,
                    record_id=side.record_id,
                    record_key=side.record_key,
                )
            )
        orm.flush()
        link_id = head.id
    else:
        link_id = rows[0].link_id
        for side, row in ((one, rows[0]), (two, rows[1])):
            assert row is not None
            row.record_id = side.record_id or row.record_id
            row.record_key = side.record_key or row.record_key
        head_row = orm.get(LinkRow, link_id)
        if head_row is not None and route:
            head_row.route = head_row.route or route
        orm.flush()
    found = get_link(orm, one.system, one.ticket_id)
    assert found is not None and found.id == link_id
    return found


def add_links(
    orm: Session, links: Sequence[NewLink], *, now: Callable[[], datetime]
) -> list[LinkConflict | None]:
    """Record many new pairs with one statement per table; returns, per pair, the conflict
    that kept it out (either record already paired with another one) or None.

    A pair recorded already is taken as it is (`put_link` semantics, pair by pair, only when
    the statements are refused).
    """
    if not links:
        return []
    if any(x.one.system == x.two.system for x in links):
        raise ValueError("a pair joins records of two systems")
    stamp = now()
    try:
        with orm.begin_nested():
            connection = orm.connection()
            heads = connection.execute(
                sa.insert(_LINKS).returning(_LINKS.c.id, sort_by_parameter_order=True),
                [{"route": x.route, "created_at": stamp} for x in links],
            ).scalars()
            records = [
                {
                    "link_id": link_id,
                    "system": _system(side.system),
                    "ticket_id": side.ticket_id,
                    "record_id": side.record_id,
                    "record_key": side.record_key,
                }
                for link_id, x in zip(heads, links, strict=True)
                for side in (x.one, x.two)
            ]
            connection.execute(sa.insert(_RECORDS), records)
        return [None] * len(links)
    except IntegrityError:
        pass
    outcomes: list[LinkConflict | None] = []
    for x in links:
        try:
            with orm.begin_nested():
                put_link(orm, x.one, x.two, route=x.route, now=now)
            outcomes.append(None)
        except LinkConflict as exc:
            outcomes.append(exc)
    return outcomes
