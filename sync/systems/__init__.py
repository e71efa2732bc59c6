"""Ticket systems: the interface each implements (base.py), the registry that finds them by name
(registry.py), and the built-in ones (jira/, servicenow/)."""

# The entry point group through which installed packages add ticket systems.
ENTRY_POINTS = "escalation_sync.systems"
