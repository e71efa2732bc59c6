"""The ServiceNow adapter: records of one table addressed by sys_id, over connectors/servicenow.py.

A priority is written as its impact and urgency; a record is read together with its journal, its
attachments (in one Batch API request) and its caller; links are work notes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from connectors.errors import NotFound, PermanentError
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
            for rows in in_slices(page.rows, IN_LIST_SIZE):
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
        for chunk in in_slices(calls, BATCH_CALLS):
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
