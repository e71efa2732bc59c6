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
import mimetypes
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from connectors.errors import ConnectorError, NotFound, PermanentError
from connectors.jira import (
    BULK_CHUNK,
    BULK_FETCH,
    JiraConnector,
    RemoteLinkSpec,
    parse_jira_datetime,
)
from connectors.servicenow import (
    IN_LIST_SIZE,
    BatchRequest,
    BatchResponse,
    ServiceNowConnector,
    format_sn_datetime,
    parse_sn_datetime,
)
from mapping import VendorWrite
from mapping.model import System
from mapping.transforms import adf_to_text
from sync.pipeline.markers import Marker, with_marker


@dataclass(frozen=True, slots=True)
class Created:
    """A record an adapter created: its id for later calls, its human key and browse URL."""

    ticket_id: str
    key: str | None
    url: str | None
    # The vendor's own id where `ticket_id` is another (a Jira issue's numeric id), if known.
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class Changed:
    """A record the poller found changed, and when it changed."""

    ticket_id: str
    updated: datetime | None
    # The vendor's version (Jira `updated`, ServiceNow `sys_mod_count`), as the mapping reads it.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class RecordsPage:
    """Records read in bulk, each as `Adapter.read` returns one; `total` is how many the whole
    scan matched, when the system says."""

    records: list[dict[str, Any]]
    total: int | None = None


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to create in bulk: its first write, in project / table `container`, of `kind`."""

    write: VendorWrite
    container: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """What became of one `NewRecord`: the record made, if any, and the vendor's reason for
    what failed (the create itself, or reaching the wanted status afterwards)."""

    created: Created | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class PairLink:
    """The link a record shows to its pair; `record` is the record as last read, so a link
    already shown there is not written again."""

    ticket_id: str
    url: str
    title: str
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What became of one `PairLink`: the vendor's reason when it failed, and the record's
    version after the write when the write changed it (as `Changed.version` reads it)."""

    problem: str | None = None
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

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        """Attach a file to the record, typed `content_type` (else guessed from its name)."""
        ...

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        """Records changed at or after `since`, oldest first."""
        ...

    def probe(self) -> None:
        """One cheap authenticated call: does the system accept our credentials (again)?"""
        ...


class BulkAdapter(Adapter, Protocol):
    """What a backfill does on top, many records per request: `fields` names what the mapping
    reads below `fields_under` in a record (ServiceNow columns, Jira issue fields; None:
    everything)."""

    fields_under: tuple[str, ...]

    def scan(self, since: datetime, fields: Collection[str] | None) -> Iterator[RecordsPage]:
        """Every record of the configured query changed since `since`, page by page."""
        ...

    def read_many(
        self, ticket_ids: Sequence[str], fields: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """The records with these ids, as `read` returns each; ids not found are left out."""
        ...

    def create_many(self, records: Sequence[NewRecord]) -> list[CreateOutcome]:
        """Create records in bulk, reaching each one's status; one outcome per record, in order."""
        ...

    def add_links(self, links: Sequence[PairLink]) -> list[LinkOutcome]:
        """Show many links (idempotent); one outcome per link, in order."""
        ...


def _body_text(body: Any) -> str:
    return body if isinstance(body, str) else adf_to_text(body)


def _slices(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        for chunk in _slices(records, BULK_CHUNK):
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


class ServiceNowAdapter:
    """ServiceNow records of one table, addressed by sys_id."""

    system = System.SERVICENOW
    fields_under: tuple[str, ...] = ()

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

    def probe(self) -> None:
        """One record's sys_id from the table, or AuthFailed."""
        self.connector.probe()

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
        known = self._cached_callers([sys_id], now)
        if sys_id in known:
            return known[sys_id]
        assert self.users is not None
        try:
            found: dict[str, Any] | None = self.users.get_record(sys_id, fields=CALLER_FIELDS)
        except NotFound:
            found = None
        self._remember_callers({sys_id: found}, now)
        return None if found is None else dict(found)

    def _cached_callers(self, sys_ids: Iterable[str], now: float) -> dict[str, Any]:
        """Callers looked up less than the TTL ago (None for "no such user"), copied."""
        known: dict[str, Any] = {}
        with self._callers_lock:
            for sys_id in sys_ids:
                cached = self._callers.get(sys_id)
                if cached is not None and now - cached[0] < self._caller_ttl:
                    known[sys_id] = None if cached[1] is None else dict(cached[1])
        return known

    def _remember_callers(self, found: Mapping[str, dict[str, Any] | None], now: float) -> None:
        with self._callers_lock:
            if len(self._callers) + len(found) > 10_000:
                self._callers.clear()
            for sys_id, user in found.items():
                self._callers[sys_id] = (now, user)

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """PATCH the fields in one request (a priority as its impact and urgency); journal
        entries one by one. Returns the record from the last answer: the Table API answers a
        PATCH with the record as stored, the priority it computed included."""
        fields = _wire(write.fields)
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
        fields = _wire(write.fields)
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
        marker, text = _link_note(ticket_id, url, title)
        if self.find_comment_by_marker(ticket_id, marker) is None:
            # No journal id is wanted back, so skip add_comment's look-up of the new entry.
            self.connector.add_comment(ticket_id, text, public=False)

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        """The record's attachment metadata."""
        return self.connector.list_attachments(ticket_id)

    def download(self, attachment_id: str) -> Iterator[bytes]:
        """Stream an attachment's content."""
        return self.connector.download_attachment(attachment_id)

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        """Attach a file, keeping its content type."""
        self.connector.upload_attachment(
            ticket_id, filename, stream, content_type_of(filename, content_type)
        )

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

    # --- in bulk -------------------------------------------------------------------------------

    def scan(self, since: datetime, fields: Collection[str] | None) -> Iterator[RecordsPage]:
        """The scan lists the mapped columns; journals, attachments and callers follow for a
        hundred records at a time, one query each."""
        changed = f"sys_updated_on>={format_sn_datetime(since)}"
        query = f"{changed}^{self.query}" if self.query else changed
        for page in self.connector.records(query, fields=self._columns(fields)):
            for rows in _slices(page.rows, IN_LIST_SIZE):
                yield RecordsPage(self._with_related(list(rows)), page.total)

    def read_many(
        self, ticket_ids: Sequence[str], fields: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """The records by sys_id, with journals, attachments and callers, in bulk."""
        rows = self.connector.get_records(ticket_ids, fields=self._columns(fields))
        return self._with_related(rows)

    def _columns(self, fields: Collection[str] | None) -> list[str] | None:
        if fields is None:
            return None
        # `_journal` and the like are added here, not columns; the caller lookup needs its id.
        columns = {f for f in fields if not f.startswith("_")} | {"sys_id", "caller_id"}
        return sorted(columns)

    def _with_related(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [str(row.get("sys_id", "")) for row in rows]
        journals = self.connector.journals(ids)
        attachments = self.connector.attachments_of(ids)
        callers = self._callers_of(rows)
        for sys_id, row in zip(ids, rows, strict=True):
            row["_journal"] = journals.get(sys_id, [])
            row["_attachments"] = attachments.get(sys_id, [])
            caller_id = _reference(row.get("caller_id"))
            if self.users is not None and caller_id:
                row["_caller"] = callers.get(caller_id)
        return rows

    def _callers_of(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """The callers of these records: cached ones, the rest in one sys_user query."""
        if self.users is None:
            return {}
        wanted = list(dict.fromkeys(c for r in rows if (c := _reference(r.get("caller_id")))))
        now = self._clock()
        known = self._cached_callers(wanted, now)
        missing = [c for c in wanted if c not in known]
        if missing:
            found = {
                str(u.get("sys_id")): u
                for u in self.users.get_records(missing, fields=CALLER_FIELDS)
            }
            looked_up = {c: found.get(c) for c in missing}
            self._remember_callers(looked_up, now)
            known.update({c: None if u is None else dict(u) for c, u in looked_up.items()})
        return known

    def create_many(self, records: Sequence[NewRecord]) -> list[CreateOutcome]:
        """Insert records through the Batch API, fifty per call."""
        table = self.connector.table
        calls = [
            ("POST", f"/api/now/table/{r.container or table}?sysparm_fields=sys_id,number", r)
            for r in records
        ]
        outcomes: list[CreateOutcome] = []
        for answer in self._batch([(m, url, _wire(r.write.fields)) for m, url, r in calls]):
            record = _answered_record(answer)
            sys_id = str(record.get("sys_id") or "")
            if not answer.ok or not sys_id:
                outcomes.append(CreateOutcome(None, answer.error_message or "no record created"))
                continue
            number = record.get("number")
            created = Created(ticket_id=sys_id, key=str(number) if number else None, url=None)
            outcomes.append(CreateOutcome(created))
        return outcomes

    def add_links(self, links: Sequence[PairLink]) -> list[LinkOutcome]:
        """Link work notes through the Batch API, fifty per call; a record whose journal
        already holds the note's marker is left alone."""
        outcomes = [LinkOutcome() for _ in links]
        due: list[tuple[int, str]] = []
        for index, link in enumerate(links):
            marker, text = _link_note(link.ticket_id, link.url, link.title)
            journal = link.record.get("_journal") or ()
            if not any(marker.text() in str(row.get("value", "")) for row in journal):
                due.append((index, text))
        answered = f"?sysparm_fields={','.join(VERSION_FIELDS)}"
        calls = [
            (
                "PATCH",
                f"/api/now/table/{self.connector.table}/{links[index].ticket_id}{answered}",
                {self.connector.journal_fields[1]: text},
            )
            for index, text in due
        ]
        for (index, _text), answer in zip(due, self._batch(calls), strict=True):
            if answer.ok:
                version = _answered_record(answer).get("sys_mod_count")
                outcomes[index] = LinkOutcome(version=str(version) if version else None)
            else:
                outcomes[index] = LinkOutcome(problem=answer.error_message or "not written")
        return outcomes

    def _batch(self, calls: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[BatchResponse]:
        """(method, url, body) sub-requests through the Batch API, BATCH_CALLS per call."""
        answers: list[BatchResponse] = []
        for chunk in _slices(calls, BATCH_CALLS):
            requests = [
                BatchRequest(id=str(i), method=method, url=url, body=body)
                for i, (method, url, body) in enumerate(chunk)
            ]
            answers.extend(self.connector.batch(requests))
        return answers


# Sub-requests per Batch API call.
BATCH_CALLS = 50
CALLER_FIELDS = ["sys_id", "name", "email", "user_name"]
# What a write's answer needs to carry for the next snapshot's version.
VERSION_FIELDS = ("sys_id", "sys_mod_count")


GENERIC_TYPE = "application/octet-stream"


def content_type_of(filename: str, declared: str | None) -> str:
    """The content type to upload a file with: the one its source declared, unless that is the
    generic application/octet-stream (what a browser sends for a type it does not know), then
    the one its name implies (a `.log` is text/plain), else application/octet-stream."""
    kept = (declared or "").strip()
    if kept and kept.lower() != GENERIC_TYPE:
        return kept
    guessed, _encoding = mimetypes.guess_type(filename, strict=False)
    if guessed is None and filename.lower().endswith((".log", ".out", ".err")):
        return "text/plain"
    return guessed or GENERIC_TYPE


def _reference(value: Any) -> str | None:
    """The sys_id of a reference column, raw or as a `{link, value}` object."""
    if isinstance(value, Mapping):
        value = value.get("value")
    return str(value) if value else None


def _wire(fields: Mapping[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in fields.items()}


def _answered_record(answer: BatchResponse) -> dict[str, Any]:
    body = answer.body if isinstance(answer.body, dict) else {}
    record = body.get("result", body)
    return dict(record) if isinstance(record, Mapping) else {}


def _link_note(ticket_id: str, url: str, title: str) -> tuple[Marker, str]:
    """The marker and text of the work note that shows a record's link to its pair."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    marker = Marker(System.SERVICENOW, ticket_id, f"link-{digest}")
    return marker, with_marker(f"{title}: {url}", marker)
