"""The records of a pair of the two built-in systems, as tests write them."""

from __future__ import annotations

from sync.store.database import LinkSide


def jira(key: str, issue_id: str | None = None) -> LinkSide:
    """A Jira issue: addressed by its key, which is also its human key."""
    return LinkSide("jira", key, issue_id, key)


def servicenow(sys_id: str, number: str | None = None) -> LinkSide:
    """A ServiceNow record: addressed by its sys_id, known to people by its number."""
    return LinkSide("servicenow", sys_id, sys_id, number)
