"""One adapter per system: the few operations the engine needs, over that system's connector.

The engine speaks canonical tickets and `VendorWrite`s; the connectors speak vendor REST. An
adapter sits between them and knows each vendor's way of doing one thing: Jira labels are added
and removed one by one (so labels others set meanwhile survive), Jira statuses are reached by
transitions, a ServiceNow priority is written as its impact and urgency, a ServiceNow record is
read together with its journal, its attachments (in one Batch API request) and its caller.

The ticket id an adapter takes is the one change events carry: the Jira issue key, the
ServiceNow sys_id.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from connectors.errors import NotFound, PermanentError
from connectors.jira import JiraConnector, parse_jira_datetime
from connectors.servicenow import ServiceNowConnector, parse_sn_datetime
from mapping import VendorWrite
from mapping.model import System
from mapping.transforms import adf_to_text
from sync.markers import Marker, with_marker


@dataclass(frozen=True, slots=True)
class Created:
    """A record an adapter created: its id for later calls, its human key and browse URL."""

    ticket_id: str
    key: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class Changed:
    """A record the poller found changed, and when it changed."""

    ticket_id: str
    updated: datetime | None
    # The vendor's version (Jira `updated`, ServiceNow `sys_mod_count`), as the mapping reads it.
    version: str | None = None


class Adapter(Protocol):
    """What the engine does to one system."""

    system: System

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The raw record as `mapping.to_canonical` expects it."""
        ...

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """Write fields, reach a status, add journal entries.

        Returns the record as the system stored it, when the system answers a write with it
        (shaped as `read` returns it, comments and attachments left out); else None.
        """
        ...

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        """The record with at least the values at these read paths (as `read` shapes it), in
        as small a read as the vendor allows."""
        ...

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        """Add a comment carrying `marker`; returns the new comment's id."""
        ...

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        """The id of a comment on the record carrying `marker`, if one exists."""
        ...

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        """Create a record (in project / table `container`, of issue type `kind`) with the
        plain fields only, in one request; the caller records it, then `apply`s the rest."""
        ...

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """Show a link to the paired record on this one."""
        ...

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """Raw attachment metadata of the record."""
        ...

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """An attachment's content, in chunks."""
        ...

    def upload(self, ticket_id: str, filename: str, stream: BinaryIO) -> None:
        """Attach a file to the record."""
        ...

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Records changed at or after `since`, oldest first."""
        ...


def _body_text(body: Any) -> str:
    return body if isinstance(body, str) else adf_to_text(body)


class JiraAdapter:
    """Jira issues, addressed by key."""

    system = System.JIRA

    def __init__(
        self,
        connector: JiraConnector,
        *,
        project: str,
        issue_type: str = "Task",
        jql: str = "",
        label_field: str = "labels",
    ) -> None:
        self.connector = connector
        self.project = project
        self.issue_type = issue_type
        self.jql = jql or f"project = {project}"
        self.label_field = label_field

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The issue JSON with its comments (with visibility) and attachments."""
        return self.connector.get_issue(ticket_id)

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> None:
        """Edit fields; labels incrementally; status by transition; journal lines as comments.

        Jira answers these writes without the issue, so nothing is returned.
        """
        fields = dict(write.fields)
        if self.label_field in fields:
            wanted = list(fields.pop(self.label_field) or [])
            have = list(current_labels)
            add = [label for label in wanted if label not in have]
            remove = [label for label in have if label not in wanted]
            self.connector.update_labels(ticket_id, add=add, remove=remove)
        if fields:
            self.connector.edit_issue(ticket_id, fields)
        if write.transition_to:
            self.connector.transition_to(ticket_id, write.transition_to)
        for _element, text in write.journal:
            self.connector.add_comment(ticket_id, text, public=False)

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        """The issue with only the fields these paths read (`fields.<id>...`); any other path
        needs the whole issue."""
        wanted = [p[1] for p in paths if len(p) > 1 and p[0] == "fields"]
        if len(wanted) < len(paths):
            return self.read(ticket_id)
        return self.connector.get_issue(ticket_id, fields=list(dict.fromkeys(wanted)))

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        """Post the comment with its marker; returns the Jira comment id."""
        created = self.connector.add_comment(ticket_id, with_marker(body, marker), public=public)
        return str(created.get("id", ""))

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        """Scan the issue's comments for the marker."""
        text = marker.text()
        for comment in self.connector.get_comments(ticket_id):
            if text in _body_text(comment.get("body")):
                return str(comment.get("id", ""))
        return None

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        """Create the issue with the plain fields (status and journal: `apply` afterwards)."""
        fields: dict[str, Any] = {
            "project": {"key": container or self.project},
            "issuetype": {"name": kind or self.issue_type},
            **write.fields,
        }
        made = self.connector.create_issue(fields)
        key = str(made.get("key") or made.get("id"))
        return Created(ticket_id=key, key=key, url=made.get("self"))

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """A remote link keyed on the URL, so adding it again updates it instead."""
        self.connector.add_remote_link(ticket_id, url, title, global_id=url)

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The issue's attachment metadata."""
        return self.connector.list_attachments(ticket_id)

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """Stream an attachment's content."""
        return self.connector.download_attachment(attachment_id)

    def upload(self, ticket_id: str, filename: str, stream: BinaryIO) -> None:
        """Attach a file."""
        self.connector.add_attachment(ticket_id, filename, stream)

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Issues of the configured JQL updated since `since`."""
        for issue in self.connector.search_changed_since(since, jql=self.jql):
            updated = (issue.get("fields") or {}).get("updated")
            when = parse_jira_datetime(updated) if updated else None
            yield Changed(
                ticket_id=str(issue.get("key") or issue.get("id")),
                updated=when,
                version=str(updated) if updated else None,
            )


class ServiceNowAdapter:
    """ServiceNow records of one table, addressed by sys_id."""

    system = System.SERVICENOW

    def __init__(
        self,
        connector: ServiceNowConnector,
        *,
        users: ServiceNowConnector | None = None,
        query: str = "",
        caller_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        # The same instance's sys_user table, to read the caller's name and e-mail.
        self.users = users
        self.query = query
        # A customer's name and address change rarely and every sync of their tickets needs
        # them: one lookup serves a few minutes of syncs (and a whole backfill).
        self._callers: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._caller_ttl = caller_ttl
        self._clock = clock
        self._callers_lock = threading.Lock()

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The record (raw values) plus `_journal`, `_attachments` and `_caller`; the first
        three in one Batch API request."""
        try:
            bundle = self.connector.read_bundle(ticket_id)
        except NotFound:
            found = self.connector.find_by_number(ticket_id)
            if found is None:
                raise
            bundle = self.connector.read_bundle(str(found.get("sys_id", "")))
        record = bundle.record
        record["_journal"] = bundle.journal
        record["_attachments"] = bundle.attachments
        return self._with_caller(record)

    def _with_caller(self, record: dict[str, Any]) -> dict[str, Any]:
        caller = record.get("caller_id")
        caller_id = caller.get("value") if isinstance(caller, dict) else caller
        if self.users is not None and caller_id:
            record["_caller"] = self._caller(str(caller_id))
        return record

    def _caller(self, sys_id: str) -> dict[str, Any] | None:
        now = self._clock()
        with self._callers_lock:
            cached = self._callers.get(sys_id)
        if cached is not None and now - cached[0] < self._caller_ttl:
            return None if cached[1] is None else dict(cached[1])
        assert self.users is not None
        try:
            found: dict[str, Any] | None = self.users.get_record(
                sys_id, fields=["sys_id", "name", "email", "user_name"]
            )
        except NotFound:
            found = None
        with self._callers_lock:
            if len(self._callers) > 10_000:
                self._callers.clear()
            self._callers[sys_id] = (now, found)
        return None if found is None else dict(found)

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """PATCH the fields in one request (a priority as its impact and urgency); journal
        entries one by one. Returns the record from the last answer: the Table API answers a
        PATCH with the record as stored, the priority it computed included."""
        fields = {k: "" if v is None else str(v) for k, v in write.fields.items()}
        stored: dict[str, Any] | None = None
        if fields:
            stored = self.connector.update(ticket_id, fields)
        for element, text in write.journal:
            stored = self.connector.add_comment(ticket_id, text, public=element == "comments")
        return None if stored is None else self._with_caller(stored)

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        """The record's columns these paths start with (the adapter's own `_journal`,
        `_attachments` and `_caller` need the whole read)."""
        columns = [p[0] for p in paths if p]
        if any(c.startswith("_") for c in columns):
            return self.read(ticket_id)
        wanted = list(dict.fromkeys(["sys_id", "number", *columns]))
        return self._with_caller(self.connector.get_record(ticket_id, fields=wanted))

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        """Add a comment or work note with its marker; returns the journal entry's sys_id."""
        self.connector.add_comment(ticket_id, with_marker(body, marker), public=public)
        # The Table API answers with the record, not the journal row: look the entry up.
        found = self.find_comment_by_marker(ticket_id, marker)
        return found or ""

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        """Scan the record's journal for the marker."""
        text = marker.text()
        for row in self.connector.journal(ticket_id):
            if text in str(row.get("value", "")):
                return str(row.get("sys_id", ""))
        return None

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        """Insert the record with the plain fields (priority as impact and urgency among
        them); journal entries are written with `apply` afterwards."""
        fields = {k: "" if v is None else str(v) for k, v in write.fields.items()}
        made = self.connector.create(fields)
        sys_id = str(made.get("sys_id", ""))
        if not sys_id:
            raise PermanentError(
                "ServiceNow created a record without a sys_id", system="servicenow"
            )
        number = made.get("number")
        return Created(ticket_id=sys_id, key=str(number) if number else None, url=None)

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """A work note with the link (the incident form has no remote-link list)."""
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        marker = Marker(System.SERVICENOW, ticket_id, f"link-{digest}")
        if self.find_comment_by_marker(ticket_id, marker) is None:
            # No journal id is wanted back, so skip add_comment's look-up of the new entry.
            text = with_marker(f"{title}: {url}", marker)
            self.connector.add_comment(ticket_id, text, public=False)

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The record's attachment metadata."""
        return self.connector.list_attachments(ticket_id)

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """Stream an attachment's content."""
        return self.connector.download_attachment(attachment_id)

    def upload(self, ticket_id: str, filename: str, stream: BinaryIO) -> None:
        """Attach a file."""
        self.connector.upload_attachment(ticket_id, filename, stream)

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Records of the configured query updated since `since`."""
        for row in self.connector.changed_since(since, query=self.query):
            stamp = row.get("sys_updated_on")
            when = parse_sn_datetime(stamp) if stamp else None
            mod_count = row.get("sys_mod_count")
            yield Changed(
                ticket_id=str(row.get("sys_id")),
                updated=when,
                version=str(mod_count) if mod_count not in (None, "") else None,
            )
