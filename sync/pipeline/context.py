"""What every part of a sync pass works with, owned by the engine and shared by its parts.

The engine's parts (reading, pairing, applying a plan, carrying out escalation decisions) each
hold the one `SyncContext` of their engine and read it when they run, so a reload (a new mapping)
or a test seam set on the engine (`after_write`, `clock`) reaches all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from mapping import Mapping as SyncMapping
from mapping.model import System
from sync.pipeline.plan import SyncRules, sync_rules
from sync.runtime.metrics import Metrics
from sync.store.database import Store
from sync.systems.base import Adapter


@dataclass
class SyncContext:
    """The mapping and rules in force, the systems, the store, and where writes are reported."""

    mapping: SyncMapping
    adapters: dict[System, Adapter]
    store: Store
    metrics: Metrics
    clock: Callable[[], datetime]
    # The integration user of each system: their edits and comments are never a source.
    integration_users: dict[System, str] = field(default_factory=dict)
    # Test seam: called after each vendor write, before it is recorded in the store.
    after_write: Callable[[str], None] = lambda _what: None
    # The policy's pattern of engineering comments the customer never sees (estimates).
    withhold_pattern: str | None = None
    rules: SyncRules = field(init=False)
    itsm_systems: frozenset[System] = field(init=False)

    def __post_init__(self) -> None:
        self.use_mapping(self.mapping)

    @classmethod
    def of(
        cls,
        *,
        mapping: SyncMapping,
        adapters: Mapping[System, Adapter],
        store: Store,
        metrics: Metrics,
        clock: Callable[[], datetime],
        integration_users: Mapping[System, str | None] | None = None,
    ) -> SyncContext:
        """A context; integration users left unset are dropped."""
        users = {k: v for k, v in (integration_users or {}).items() if v}
        return cls(mapping, dict(adapters), store, metrics, clock, users)

    def use_mapping(self, mapping: SyncMapping) -> None:
        """Switch to `mapping` (and the rules and ITSM systems it implies) from now on."""
        self.mapping = mapping
        self.itsm_systems = mapping.itsm_systems()
        rules = sync_rules(mapping, self.integration_users.values())
        if self.withhold_pattern:
            # Public comments written on the engineering side that match are copied as
            # internal notes: they never reach the customer.
            engineering = [s for s in mapping.systems if s not in self.itsm_systems]
            rules = replace(rules, withhold=dict.fromkeys(engineering, self.withhold_pattern))
        self.rules = rules

    def use_withhold(self, pattern: str | None) -> None:
        """Keep engineering comments matching `pattern` from the customer from now on."""
        self.withhold_pattern = pattern
        self.use_mapping(self.mapping)

    def is_integration_user(self, *names: str | None) -> bool:
        """Whether any of these names (id, name, e-mail) is one of the integration users."""
        users = set(self.integration_users.values())
        return any(name in users for name in names if name)
