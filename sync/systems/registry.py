"""The ticket systems this installation knows, found by name.

Jira and ServiceNow are built in. Another package adds a system through the entry point group
`escalation_sync.systems`, naming its `TicketSystem` (an instance, or a class made without
arguments)::

    [project.entry-points."escalation_sync.systems"]
    zendesk = "escalation_sync_zendesk:SYSTEM"

The entry point's name must be the system's name. Registering a system declares its name
(`mapping.model.System.declare`), so mappings, routes, markers and the store accept it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import structlog

from mapping.model import System
from sync.systems import ENTRY_POINTS, jira, servicenow
from sync.systems.base import TicketSystem

log = structlog.get_logger(__name__)

BUILT_IN: tuple[TicketSystem[Any], ...] = (jira.SYSTEM, servicenow.SYSTEM)


class UnknownSystem(LookupError):
    """No ticket system of that name is installed."""


class SystemRefused(Exception):
    """An installed package offers something that is not a usable ticket system."""


class Registry:
    """Ticket systems by name."""

    def __init__(self, systems: tuple[TicketSystem[Any], ...] = ()) -> None:
        self._systems: dict[str, TicketSystem[Any]] = {}
        self._lock = threading.Lock()
        for system in systems:
            self.register(system)

    def register(self, system: TicketSystem[Any]) -> None:
        """Add `system` (its name declared as a System); a second system of one name is refused."""
        if not isinstance(system, TicketSystem):
            raise SystemRefused(f"{system!r} is not a TicketSystem")
        System.declare(system.name)
        with self._lock:
            known = self._systems.get(system.name)
            if known is not None and known is not system:
                raise SystemRefused(f"two ticket systems are named {system.name!r}")
            self._systems[system.name] = system

    def unregister(self, name: str) -> None:
        """Remove a system (tests); its name is no longer declared, unless it is built in."""
        with self._lock:
            self._systems.pop(name, None)
        System.forget(name)

    def get(self, name: str) -> TicketSystem[Any]:
        """The system named `name`."""
        found = self._systems.get(str(name))
        if found is None:
            known = ", ".join(self.names())
            raise UnknownSystem(f"no ticket system named {name!r} is installed (known: {known})")
        return found

    def names(self) -> tuple[str, ...]:
        """Every system's name, built-in ones first."""
        return tuple(self._systems)

    def __iter__(self) -> Iterator[TicketSystem[Any]]:
        return iter(list(self._systems.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._systems


def _load(point: EntryPoint) -> TicketSystem[Any]:
    loaded = point.load()
    system = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(system, TicketSystem):
        raise SystemRefused(f"entry point {point.value} is not a TicketSystem")
    if system.name != point.name:
        raise SystemRefused(f"entry point {point.name!r} names a system called {system.name!r}")
    return system


_REGISTRY: Registry | None = None
_REGISTRY_LOCK = threading.Lock()


def registry() -> Registry:
    """The process's registry: the built-in systems and those installed packages add (loaded
    on first use; a package that fails to load is logged and left out)."""
    global _REGISTRY
    loaded = _REGISTRY
    if loaded is not None:
        return loaded
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            found = Registry(BUILT_IN)
            for point in entry_points(group=ENTRY_POINTS):
                try:
                    found.register(_load(point))
                except Exception as exc:
                    log.error(
                        "ticket system not loaded",
                        entry_point=point.name,
                        error=type(exc).__name__,
                        reason=str(exc),
                    )
            _REGISTRY = found
        return _REGISTRY


def get(name: str) -> TicketSystem[Any]:
    """The installed system named `name` (UnknownSystem if none is)."""
    return registry().get(name)
