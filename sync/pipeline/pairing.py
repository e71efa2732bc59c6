"""Pairing: creating a record's partner in the other system, recording the pair, showing links.

The pair is recorded as soon as the system answers the create, before the status transition and
anything else: a retry after a crash finds the pair instead of creating a second record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mapping import VendorWrite, matching_routes, to_vendor
from mapping.model import System, Ticket
from sync.pipeline.context import SyncContext
from sync.pipeline.pairs import Pairs
from sync.pipeline.plan import get_value, set_values
from sync.pipeline.records import (
    Reader,
    created_side,
    link_side,
    paired_link,
    status_context,
    ticket_id,
)
from sync.store.database import Link
from sync.systems.base import Created


class Pairing:
    """Creates paired records and the links each record shows to its pair."""

    def __init__(self, context: SyncContext, reader: Reader, pairs: Pairs) -> None:
        self.context = context
        self.reader = reader
        self.pairs = pairs

    def seed_fields(self, source: Ticket) -> list[str]:
        """The synced fields `source` has a value for: what its partner is created with."""
        return [n for n in self.context.rules.synced_fields() if get_value(source, n) is not None]

    def by_route(
        self, source: Ticket
    ) -> tuple[Link | None, Ticket | None, Ticket | None, str | None, int]:
        """Pair an unpaired record under an `always` route; returns the link, the pair as
        (ITSM, engineering), the new record's id and the writes made (all None, 0: no route)."""
        routes = [
            r
            for r in matching_routes(self.context.mapping, source, escalation_approved=False)
            if r.when == "always"
        ]
        if not routes:
            return None, None, None, None, 0
        route = routes[0]
        container = route.target_project or route.target_table
        target, n = self.create(
            source,
            route.target,
            self.seed_fields(source),
            container,
            route.issue_type,
            route.name,
        )
        link = self.pairs.link_of(source.ref.system.value, ticket_id(source))
        itsm, eng = self.as_itsm_and_eng(source, target)
        n += self.post_links(itsm, eng)
        return link, itsm, eng, ticket_id(target), n

    def as_itsm_and_eng(self, one: Ticket, two: Ticket) -> tuple[Ticket, Ticket]:
        """The two records of a pair as (ITSM record, engineering record)."""
        return (one, two) if one.ref.system in self.context.itsm_systems else (two, one)

    def create_record(
        self,
        source: Ticket,
        target_system: System,
        fields: Sequence[str],
        container: str | None,
        kind: str | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Created, VendorWrite]:
        """Create a record in `target_system` from `source`'s `fields` (plain fields only, one
        request); returns it and the whole write, whose status and journal are still to do."""
        seed = set_values(source, dict(overrides or {}))
        seed = seed.model_copy(
            update={"ref": seed.ref.model_copy(update={"system": target_system})}
        )
        wanted = list(dict.fromkeys([*fields, *(overrides or {})]))
        vendor = to_vendor(
            self.context.mapping,
            target_system,
            seed,
            wanted,
            context=status_context(self.context, source),
        )
        made = self.context.adapters[target_system].create(
            VendorWrite(fields=vendor.fields), container=container, kind=kind
        )
        self.context.metrics.write(target_system.value, "create")
        return made, vendor

    def create(
        self,
        source: Ticket,
        target_system: System,
        fields: Sequence[str],
        container: str | None,
        kind: str | None,
        route: str | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Ticket, int]:
        """Create the paired record, link it, and return it as read back (and the writes)."""
        made, vendor = self.create_record(source, target_system, fields, container, kind, overrides)
        store = self.context.store
        pair = (link_side(source), created_side(target_system, made))
        with store.session() as tx:
            tx.put_link(*pair, route=route)
            tx.audit(
                target_system.value,
                made.ticket_id,
                "record",
                None,
                made.key or made.ticket_id,
                reason=f"created as the pair of {source.ref.system.value} {ticket_id(source)}"
                + (f" (route {route})" if route else ""),
            )
        self.context.after_write(f"create {target_system.value}")
        rest = VendorWrite(
            transition_to=vendor.transition_to,
            journal=vendor.journal,
            transition_fields=vendor.transition_fields,
        )
        if not rest.is_empty():
            self.context.adapters[target_system].apply(made.ticket_id, rest)
        target = self.reader.read(target_system, made.ticket_id)
        if link_side(target) != pair[1]:
            # The record as read names ids its create's answer did not (a Jira issue's id).
            with store.session() as tx:
                tx.put_link(pair[0], link_side(target))
        return target, 1

    def post_links(self, itsm: Ticket, eng: Ticket) -> int:
        """Show each record's link on the other (idempotent on both systems)."""
        for here, there in ((itsm, eng), (eng, itsm)):
            url, title = paired_link(there)
            self.context.adapters[here.ref.system].add_link(ticket_id(here), url, title)
            self.context.metrics.write(here.ref.system.value, "link")
            self.context.store.audit(
                here.ref.system.value,
                ticket_id(here),
                "link",
                None,
                url,
                reason="link to the paired record",
            )
        return 2
