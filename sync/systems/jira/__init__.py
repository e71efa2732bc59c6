"""Jira: issues in one project, by key. `SYSTEM` is what the registry loads."""

from sync.systems.jira.system import SYSTEM, JiraSystem

__all__ = ["SYSTEM", "JiraSystem"]
