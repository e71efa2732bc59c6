"""The Jira adapter: issues addressed by key, over connectors/jira.py.

Labels are added and removed one by one (so labels others set meanwhile survive), statuses are
reached by transitions, links are remote links keyed on their URL.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from connectors.errors import ConnectorError
from connectors.jira import (
    BULK_CHUNK,
    BULK_FETCH,
    JiraConnector,
    RemoteLinkSpec,
    parse_jira_datetime,
)
from mapping import VendorWrite
from mapping.model import System
from mapping.transforms import adf_to_text
from sync.pipeline.markers import Marker, with_marker
from sync.systems.base import (
    Changed,
    Created,
    CreateOutcome,
    LinkOutcome,
    NewRecord,
    PairLink,
    RecordsPage,
    content_type_of,
    in_slices,
)


def _body_text(body: Any) -> str:
    return body if isinstance(body, str) else adf_to_text(body)


class JiraAdapter:
    """Jira issues, addressed by key."""

    system = System.JIRA
    # Where a record's own fields sit (what `fields` of the bulk reads name).
    fields_under: tuple[str, ...] = ("fields",)

    def __init__(
        self,
        connector: JiraConnector,
        *,
        project: str,
        issue_type: str = "Task",
        jql: str = "",
        label_field: str = "labels",
        link_workers: int = 4,
    ) -> None:
        self.connector = connector
        self.project = project
        self.issue_type = issue_type
        self.jql = jql or f"project = {project}"
        self.label_field = label_field
        # Remote links in flight at once when posting many (backfill).
        self.link_workers = link_workers
        # Per (project, issue type): the workflow's start status and the transitions leaving
        # it, by target status (casefolded), learnt from the first issue created there.
        self._starts: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self._starts_lock = threading.Lock()
        self._learning = threading.Lock()

    def read(self, ticket_id: str) -> dict[str, Any]:
        """The issue JSON with its comments (with visibility) and attachments."""
        return self.connector.get_issue(ticket_id)

    def probe(self) -> None:
        """GET /myself: who the credentials are, or AuthFailed."""
        self.connector.myself()

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
            self.connector.transition_to(
                ticket_id, write.transition_to, fields=write.transition_fields or None
            )
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
        made = self.connector.create_issue(self._issue_fields(NewRecord(write, container, kind)))
        return _created_issue(made)

    def _issue_fields(self, record: NewRecord) -> dict[str, Any]:
        return {
            "project": {"key": record.container or self.project},
            "issuetype": {"name": record.kind or self.issue_type},
            **record.write.fields,
        }

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        """A remote link keyed on the URL, so adding it again updates it instead."""
        self.connector.add_remote_link(ticket_id, url, title, global_id=url)

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The issue's attachment metadata."""
        return self.connector.list_attachments(ticket_id)

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """Stream an attachment's content."""
        return self.connector.download_attachment(attachment_id)

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        """Attach a file, keeping its content type."""
        self.connector.add_attachment(
            ticket_id, filename, stream, content_type_of(filename, content_type)
        )

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

    # --- in bulk -------------------------------------------------------------------------------

    def scan(self, since: datetime, fields: Collection[str] | None) -> Iterator[RecordsPage]:
        """The changed issues a hundred at a time: keys from the search, then a bulk fetch."""
        keys: list[str] = []
        for changed in self.changed_since(since):
            keys.append(changed.ticket_id)
            if len(keys) == BULK_FETCH:
                yield RecordsPage(self.read_many(keys, fields))
                keys = []
        if keys:
            yield RecordsPage(self.read_many(keys, fields))

    def read_many(
        self, ticket_ids: Sequence[str], fields: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """The issues by key, with comments and attachments (bulk fetch, 100 a request)."""
        return self.connector.get_issues(ticket_ids, sorted(fields) if fields else None)

    def create_many(self, records: Sequence[NewRecord]) -> list[CreateOutcome]:
        """Bulk create, each issue taking its status's transition as it is created.

        The transition ids are learnt once per project and issue type, from the first issue
        created there: until then issues are moved after they are created, and other callers
        wait for the lesson rather than do the same.
        """
        if any(r.write.transition_to and self._unknown(r) for r in records):
            with self._learning:
                return self._create_all(records)
        return self._create_all(records)

    def _create_all(self, records: Sequence[NewRecord]) -> list[CreateOutcome]:
        outcomes: list[CreateOutcome] = []
        for chunk in in_slices(records, BULK_CHUNK):
            outcomes.extend(self._create_chunk(chunk))
        return outcomes

    def _create_chunk(self, chunk: Sequence[NewRecord]) -> list[CreateOutcome]:
        plans = [self._transition_for(record) for record in chunk]
        result = self.connector.bulk_create(
            [self._issue_fields(record) for record in chunk],
            transitions=[transition for transition, _later in plans],
        )
        refused = {e.index: e for e in result.errors}
        made = iter(result.created)
        outcomes: list[CreateOutcome] = []
        for index, record in enumerate(chunk):
            if index in refused:
                reason = "; ".join(refused[index].messages) or "refused by Jira"
                outcomes.append(CreateOutcome(None, reason))
                continue
            issue = next(made, None)
            if issue is None:
                outcomes.append(CreateOutcome(None, "Jira answered without the issue"))
                continue
            created = _created_issue(issue)
            problem = self._reach_status(created.ticket_id, record) if plans[index][1] else None
            outcomes.append(CreateOutcome(created, problem))
        return outcomes

    def _workflow_key(self, record: NewRecord) -> tuple[str, str]:
        return (record.container or self.project, record.kind or self.issue_type)

    def _unknown(self, record: NewRecord) -> bool:
        with self._starts_lock:
            return self._workflow_key(record) not in self._starts

    def _transition_for(self, record: NewRecord) -> tuple[str | None, bool]:
        """The transition id the create takes, and whether the status must be reached after."""
        wanted = record.write.transition_to
        if not wanted:
            return None, False
        with self._starts_lock:
            known = self._starts.get(self._workflow_key(record))
        if known is None:
            return None, True
        start, transitions = known
        if wanted.casefold() == start:
            return None, False
        found = transitions.get(wanted.casefold())
        return found, found is None

    def _reach_status(self, key: str, record: NewRecord) -> str | None:
        """Move a just-created issue to its status, learning the workflow's start on the way;
        returns the vendor's reason if it cannot."""
        wanted = record.write.transition_to or ""
        try:
            if self._unknown(record):
                status = self.connector.get_issue(key, fields=["status"])["fields"]["status"]
                # A transition whose screen requires a field (a resolution) is taken after the
                # create, with the fields, not as the create's own transition.
                transitions = {
                    str((t.get("to") or {}).get("name", "")).casefold(): str(t["id"])
                    for t in self.connector.get_transitions(key, with_fields=True)
                    if not any(f.get("required") for f in (t.get("fields") or {}).values())
                }
                with self._starts_lock:
                    self._starts[self._workflow_key(record)] = (
                        str(status.get("name", "")).casefold(),
                        transitions,
                    )
            transition, later = self._transition_for(record)
            if transition is not None:
                self.connector.transition(key, transition)
            elif later:
                fields = record.write.transition_fields or None
                self.connector.transition_to(key, wanted, fields=fields)
        except ConnectorError as exc:
            return f"created, but not moved to {wanted!r}: {exc}"
        return None

    def add_links(self, links: Sequence[PairLink]) -> list[LinkOutcome]:
        """Remote links keyed on their URL, posted a few at a time (no bulk endpoint)."""
        specs = [RemoteLinkSpec(x.ticket_id, x.url, x.title, global_id=x.url) for x in links]
        errors = self.connector.add_remote_links(specs, workers=self.link_workers)
        return [LinkOutcome(problem=str(e) if e is not None else None) for e in errors]


def _created_issue(made: Mapping[str, Any]) -> Created:
    key = str(made.get("key") or made.get("id"))
    ident = made.get("id")
    return Created(key, key, made.get("self"), str(ident) if ident is not None else None)
