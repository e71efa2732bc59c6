"""Ticket references as operators type them, and reading the ticket one names."""

from __future__ import annotations

import re

from mapping import UnmappedValue, to_canonical
from mapping.model import System, Ticket
from sync.config.settings import Settings


def parse_ref(ref: str) -> tuple[System, str]:
    """`jira:DS-12`, `servicenow:<sys_id>`, or a bare Jira key / ServiceNow number or sys_id."""
    head, sep, tail = ref.partition(":")
    if sep and head in (System.JIRA.value, System.SERVICENOW.value):
        return System(head), tail
    if re.fullmatch(r"[A-Z][A-Z0-9_]*-\d+", ref):
        return System.JIRA, ref
    return System.SERVICENOW, ref


def load_ticket_for_explain(settings: Settings, ref: str) -> Ticket:
    """Read a ticket fresh by reference and map it (for `escalation-sync explain REF`)."""
    # Imported here: the connectors and the engine are loaded only by commands that use them,
    # which keeps `--help` and the offline commands quick to start.
    from sync.pipeline.records import MappingFailed
    from sync.runtime.wiring import build_adapters

    system, ident = parse_ref(ref)
    adapter = build_adapters(settings)[system]
    raw = adapter.read(ident)
    try:
        return to_canonical(settings.mapping_model, system, raw)
    except (UnmappedValue, ValueError) as exc:
        raise MappingFailed(str(exc), system=system.value) from None
