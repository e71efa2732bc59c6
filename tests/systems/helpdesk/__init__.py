"""A third ticket system for the tests: a small help desk, added the way docs/adding-a-ticket-
system.md says, as one package. `SYSTEM` is what a registry loads."""

from tests.systems.helpdesk.system import SYSTEM, HelpdeskSystem

__all__ = ["SYSTEM", "HelpdeskSystem"]
