"""Ticket references as operators type them, and reading the ticket one names (for `explain`
and the console)."""

from __future__ import annotations

from mapping import UnmappedValue, to_canonical
from mapping.model import System, Ticket
from sync.config.settings import Settings
from sync.systems import registry as systems


def parse_ref(ref: str, settings: Settings) -> tuple[System, str]:
    """`<system>:<id>` (`jira:DS-12`, `servicenow:<sys_id>`), or a bare reference: one a system
    recognises as its own (a Jira key), the ITSM systems asked first, else a record of the ITSM
    system (a ServiceNow number or sys_id with the shipped mapping)."""
    head, sep, tail = ref.partition(":")
    if sep and head in systems.registry():
        return System(head), tail
    itsm = sorted(settings.mapping_model.itsm_systems())
    others = sorted(s for s in settings.mapping_model.systems if s not in itsm)
    for system in [*itsm, *others]:
        if system in systems.registry() and systems.get(system).claims_reference(ref):
            return system, ref
    return itsm[0], ref


def load_ticket_for_explain(settings: Settings, ref: str) -> Ticket:
    """Read a ticket fresh by reference and map it (for `escalation-sync explain REF`)."""
    # Imported here: the connectors and the engine are loaded only by commands that use them,
    # which keeps `--help` and the offline commands quick to start.
    from sync.pipeline.records import MappingFailed
    from sync.runtime.wiring import build_adapters

    system, ident = parse_ref(ref, settings)
    adapter = build_adapters(settings)[system]
    raw = adapter.read(ident)
    try:
        return to_canonical(settings.mapping_model, system, raw)
    except (UnmappedValue, ValueError) as exc:
        raise MappingFailed(str(exc), system=system.value) from None
