"""ServiceNow Table, Attachment and Batch APIs over a caller-supplied `requests.Session`.

A thin wrapper rather than PySNC: its GlideRecord model pages and retries on its own, and the sync
engine must decide per request whether a retry is safe (a comment posted twice is a duplicate
journal entry), and must see every page of a changed-since scan.

Retry rules: reads and plain field PATCHes are idempotent and retried on every transient failure.
Writes that are not idempotent (create, journal entries, attachment upload, batch) are retried only
when the instance certainly did not process them: 429, a refused connection, 502/503 or an HTML page
from a sleeping instance. Any other failure of such a write is raised at once so the engine can look
for its own marker before writing again.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO
from urllib.parse import urlencode

import requests

from connectors.errors import (
    AuthFailed,
    ConnectorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryableError,
    ServerUnavailable,
    TransportFailed,
)
from connectors.retry import RetryPolicy, call_with_retry, retry_after_seconds

SYSTEM = "servicenow"
JOURNAL_FIELDS = ("comments", "work_notes")
SN_DATETIME = "%Y-%m-%d %H:%M:%S"
# Incident state codes of the base system (c_IncidentManagementStateModel).
INCIDENT_STATES = {
    "new": "1",
    "in_progress": "2",
    "on_hold": "3",
    "resolved": "6",
    "closed": "7",
    "canceled": "8",
}
DEFAULT_TIMEOUT = (10.0, 60.0)
# Fields the poller needs whatever the caller asked for: identity, version and sort key.
_POLL_FIELDS = ("sys_id", "sys_mod_count", "sys_updated_on")
_DOWNLOAD_CHUNK = 64 * 1024
_OLDEST_FIRST = "^ORDERBYsys_created_on^ORDERBYsys_id"
# Records per `IN` list: a hundred sys_ids keep the request line near 3.5 KB, well inside what
# instances and the proxies in front of them accept.
IN_LIST_SIZE = 100
_JOURNAL_PATH = "/api/now/table/sys_journal_field"
_ATTACHMENT_PATH = "/api/now/attachment"


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One sub-request of a Batch API call; `url` is instance-relative (`/api/now/table/...`).

    `response_headers` asks for the sub-request's answer headers (e.g. a list's X-Total-Count).
    """

    id: str
    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    response_headers: bool = False


@dataclass(frozen=True, slots=True)
class RecordBundle:
    """A record with its journal (comments and work notes) and its attachments' metadata."""

    record: dict[str, Any]
    journal: list[dict[str, Any]]
    attachments: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """The outcome of one sub-request; `serviced` is False when the instance did not run it."""

    id: str
    status_code: int
    body: Any = None
    status_text: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    serviced: bool = True

    @property
    def ok(self) -> bool:
        """True when the sub-request was run and answered 2xx."""
        return self.serviced and 200 <= self.status_code < 300

    @property
    def error_message(self) -> str | None:
        """ServiceNow's `error.message` (and detail) for a failed sub-request, if any."""
        if self.ok:
            return None
        if not self.serviced:
            return "not serviced by the instance"
        return "; ".join(_error_texts(self.body)) or f"HTTP {self.status_code}"


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of a `records` scan; `total` is how many records matched when it began."""

    rows: list[dict[str, Any]]
    total: int | None


class _NotRetried(Exception):
    """Carries a transient error out of the retry loop for a write that must not be repeated."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


def format_sn_datetime(moment: datetime) -> str:
    """A datetime as ServiceNow writes it on the wire: UTC, second precision (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(SN_DATETIME)


def parse_sn_datetime(value: str) -> datetime:
    """Parse a `YYYY-MM-DD HH:MM:SS` wire value (always UTC) into an aware datetime."""
    return datetime.strptime(value, SN_DATETIME).replace(tzinfo=UTC)


def _error_texts(body: Any) -> list[str]:
    """`error.message` and `error.detail` from a ServiceNow error body, when present."""
    if not isinstance(body, Mapping):
        return []
    error = body.get("error")
    if isinstance(error, Mapping):
        return [str(error[k]) for k in ("message", "detail") if error.get(k)]
    if isinstance(error, str) and error:
        # The OAuth endpoint answers {"error": "access_denied", "error_description": ...}.
        texts = [error]
        if body.get("error_description"):
            texts.append(str(body["error_description"]))
        return texts
    return []


class ServiceNowConnector:
    """Talks to one ServiceNow instance, one table (incident by default)."""

    def __init__(
        self,
        instance_url: str,
        *,
        table: str = "incident",
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = 1000,
        poll_overlap: timedelta = timedelta(seconds=30),
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        journal_fields: tuple[str, str] = JOURNAL_FIELDS,
    ) -> None:
        if not instance_url.startswith(("http://", "https://")):
            raise ValueError("instance_url must be an http(s) URL")
        if client_id or client_secret:
            if not (client_id and client_secret):
                raise ValueError("OAuth needs both client_id and client_secret")
        elif not (username and password):
            raise ValueError("give username and password, or client_id and client_secret")
        if page_size < 2:
            # Each page re-reads the previous page's last row, so one row per page cannot move.
            raise ValueError("page_size must be at least 2")
        self.instance_url = instance_url.rstrip("/")
        self.table = table
        self.page_size = page_size
        self.poll_overlap = poll_overlap
        self._username = username
        self._password = password
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        # (customer-visible, internal): `comments` and `work_notes` unless the table uses others.
        self.journal_fields = journal_fields
        self._journal_entries = f"^elementIN{','.join(journal_fields)}{_OLDEST_FIRST}"

    # ----------------------------------------------------------------------------- reads

    def get_record(
        self, sys_id: str, *, fields: Sequence[str] | None = None, display_value: str = "false"
    ) -> dict[str, Any]:
        """The record's `result` object; display_value is "false" (raw), "true" or "all"."""
        if display_value not in ("true", "false", "all"):
            raise ValueError("display_value must be 'true', 'false' or 'all'")
        params = {"sysparm_display_value": display_value}
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        body = self._json("GET", self._table_path(sys_id), params=params)
        return _result(body)

    def probe(self) -> None:
        """One cheap authenticated read (one sys_id of the table); raises as any read does,
        AuthFailed when the credentials are refused."""
        self._list(self._table_path(), "", ["sys_id"], offset=0, limit=1)

    def find_by_number(self, number: str) -> dict[str, Any] | None:
        """The record whose `number` is exactly `number` (raw values), or None."""
        rows, _ = self._list(
            self._table_path(), f"number={_query_value(number)}", None, offset=0, limit=1
        )
        return dict(rows[0]) if rows else None

    def rows(
        self,
        table: str,
        query: str = "",
        *,
        fields: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Up to `limit` rows of any table matching an encoded query (raw values)."""
        found, _ = self._list(self._table_path(table=table), query, fields, offset=0, limit=limit)
        return found

    def journal(self, sys_id: str) -> list[dict[str, Any]]:
        """Every comment and work note of the record, oldest first, from sys_journal_field."""
        return list(self._page_all(_JOURNAL_PATH, self._journal_query(sys_id), None))

    def read_bundle(self, sys_id: str) -> RecordBundle:
        """The record (raw values), its journal and its attachments in one Batch API request.

        A journal or attachment list longer than one page is read on page by page. Raises
        NotFound when no record has this sys_id.
        """
        lists = {
            "journal": (_JOURNAL_PATH, self._journal_query(sys_id)),
            "attachments": (_ATTACHMENT_PATH, _attachment_query(sys_id)),
        }
        page = {"sysparm_limit": str(self.page_size), "sysparm_offset": "0"}
        requests_ = [
            BatchRequest(
                "record",
                "GET",
                f"{self._table_path(sys_id)}?{urlencode({'sysparm_display_value': 'false'})}",
            ),
            *(
                BatchRequest(
                    name,
                    "GET",
                    f"{path}?{urlencode({'sysparm_query': query, **page})}",
                    response_headers=True,
                )
                for name, (path, query) in lists.items()
            ),
        ]
        answers = dict(zip(("record", *lists), self.batch(requests_), strict=True))
        for name, answer in answers.items():
            _raise_for_batch_item(answer, f"GET {name} of {self.table} {sys_id}")
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, (path, query) in lists.items():
            found = _result_rows(answers[name].body)
            total = _total_count(answers[name].headers)
            if not _last_page(0, len(found), self.page_size, total):
                found += self._page_all(path, query, None, offset=len(found))
            rows[name] = found
        return RecordBundle(
            record=_result(answers["record"].body or {}),
            journal=rows["journal"],
            attachments=rows["attachments"],
        )

    def _journal_query(self, sys_id: str) -> str:
        return f"element_id={_query_value(sys_id)}{self._journal_entries}"

    def journals(self, sys_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """`journal` of many records (oldest first each), with one query per hundred records."""
        return self._per_record(_JOURNAL_PATH, "element_id", sys_ids, self._journal_entries)

    def _per_record(
        self, path: str, column: str, sys_ids: Sequence[str], tail: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Rows whose `column` names one of the records, grouped by record, in query order."""
        found: dict[str, list[dict[str, Any]]] = {sys_id: [] for sys_id in sys_ids}
        for query in _in_lists(column, sys_ids, tail):
            for row in self._page_all(path, query, None):
                found.setdefault(str(row.get(column, "")), []).append(row)
        return found

    def get_records(
        self, sys_ids: Sequence[str], *, fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The records of this table with these sys_ids (raw values), one query per hundred;
        ids with no record are left out."""
        rows: list[dict[str, Any]] = []
        for query in _in_lists("sys_id", sys_ids, "^ORDERBYsys_id"):
            rows.extend(self._page_all(self._table_path(), query, fields))
        return rows

    def records(
        self, query: str = "", *, fields: Sequence[str] | None = None
    ) -> Iterator[RecordPage]:
        """Every record matching `query`, a page at a time, in sys_id order.

        Pages follow the key (each asks for the sys_ids after the last one seen), not an
        offset: a caller that writes to the records it reads moves their `sys_updated_on`, and
        under an offset that would shift the rest of the scan by as many rows.
        """
        wanted = list(dict.fromkeys(["sys_id", *fields])) if fields else None
        path = self._table_path()
        after = ""
        total: int | None = None
        while True:
            bound = f"sys_id>{_query_value(after)}" if after else ""
            paged = "^".join(c for c in (query, bound, "ORDERBYsys_id") if c)
            rows, matching = self._list(path, paged, wanted, offset=0, limit=self.page_size)
            if total is None:
                total = matching
            if rows:
                yield RecordPage(rows=rows, total=total)
            if not rows or _last_page(0, len(rows), self.page_size, matching):
                return
            after = str(rows[-1].get("sys_id", ""))

    def changed_since(
        self,
        since: datetime,
        *,
        query: str = "",
        fields: Sequence[str] | None = None,
        overlap: timedelta | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Records updated at or after `since - overlap`, oldest first, each (sys_id,
        sys_mod_count) once, paged to the end of the result set.

        ServiceNow keeps second precision, so the scan re-reads an overlap window and drops what
        it already yielded. Offset paging shifts when a record is updated mid-scan (it moves to
        the end); each page therefore re-reads the previous page's last row and, when that row
        has moved, restarts from the last key seen instead of trusting the offset.
        """
        start = since - (self.poll_overlap if overlap is None else overlap)
        condition = f"sys_updated_on>={format_sn_datetime(start)}"
        if query:
            condition = f"{condition}^{query}"
        wanted = None
        if fields:
            wanted = list(dict.fromkeys([*_POLL_FIELDS, *fields]))
        seen: set[tuple[str, str]] = set()
        for row in self._scan(condition, wanted):
            key = (str(row.get("sys_id", "")), str(row.get("sys_mod_count", "")))
            if key in seen:
                continue
            seen.add(key)
            yield row

    def _scan(self, condition: str, fields: Sequence[str] | None) -> Iterator[dict[str, Any]]:
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        query = condition + order
        offset = 0
        last: dict[str, Any] | None = None
        path = self._table_path()
        while True:
            rows, total = self._list(path, query, fields, offset=offset, limit=self.page_size)
            fetched = len(rows)
            if last is not None:
                if not rows or _row_key(rows[0]) != _row_key(last):
                    # The result set moved under the offset: continue strictly after the last
                    # key seen. (A OR B) AND C reads: updated after T, or at T with a later id.
                    stamp, sys_id = str(last["sys_updated_on"]), str(last["sys_id"])
                    query = (
                        f"sys_updated_on>{stamp}^ORsys_id>{sys_id}^sys_updated_on>={stamp}"
                        f"^{condition}{order}"
                    )
                    offset = 0
                    last = None
                    continue
                rows = rows[1:]
            yield from rows
            if not rows or _last_page(offset, fetched, self.page_size, total):
                return
            last = rows[-1]
            # Re-read the last row of this page as the first of the next one.
            offset += fetched - 1

    # ----------------------------------------------------------------------------- writes

    def update(self, sys_id: str, fields: dict[str, str]) -> dict[str, Any]:
        """PATCH fields (wire values: strings) and return the updated record.

        Plain fields only are retried on any transient failure. A journal entry among them (a
        comment the instance requires in the same save, such as the one an Awaiting Caller hold
        takes) makes the PATCH a non-idempotent write: retried only when the instance certainly
        did not run it, since a second run would post the comment twice.
        """
        journal = any(name in self.journal_fields for name in fields)
        body = self._json(
            "PATCH", self._table_path(sys_id), json_body=fields, idempotent=not journal
        )
        return _result(body)

    def set_state(self, sys_id: str, state: str, extra: Mapping[str, str] | None = None) -> str:
        """Move the record to a state code (e.g. "6" Resolved) and return the state read back."""
        record = self.update(sys_id, {"state": state, **(extra or {})})
        return str(record.get("state", ""))

    def set_priority(self, sys_id: str, impact: str, urgency: str) -> str:
        """Write impact and urgency, then return the priority the instance computed from them."""
        record = self.update(sys_id, {"impact": impact, "urgency": urgency})
        if "priority" in record:
            return str(record["priority"])
        return str(self.get_record(sys_id, fields=["priority"])["priority"])

    def add_comment(self, sys_id: str, body: str, *, public: bool) -> dict[str, Any]:
        """Add a customer-visible comment (public) or an internal work note; returns the record."""
        element = self.journal_fields[0] if public else self.journal_fields[1]
        result = self._json(
            "PATCH", self._table_path(sys_id), json_body={element: body}, idempotent=False
        )
        return _result(result)

    def create(self, fields: dict[str, str]) -> dict[str, Any]:
        """Insert one record and return it as the instance stored it."""
        body = self._json("POST", self._table_path(), json_body=fields, idempotent=False)
        return _result(body)

    # ----------------------------------------------------------------------------- attachments

    def list_attachments(self, sys_id: str) -> list[dict[str, Any]]:
        """Metadata of every attachment on the record."""
        return list(self._page_all(_ATTACHMENT_PATH, _attachment_query(sys_id), None))

    def attachments_of(self, sys_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """`list_attachments` of many records, with one query per hundred records."""
        return self._per_record(_ATTACHMENT_PATH, "table_sys_id", sys_ids, _OLDEST_FIRST)

    def upload_attachment(
        self,
        sys_id: str,
        filename: str,
        stream: BinaryIO,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Attach a file to the record (the file is the request body); returns its metadata."""
        data: BinaryIO | bytes = stream
        start: int | None = None
        try:
            if stream.seekable():
                start = stream.tell()
        except (AttributeError, OSError):
            start = None
        if start is None:
            # A retry must resend the whole file: keep a copy of a one-pass stream.
            data = stream.read()

        def rewind() -> None:
            if start is not None:
                stream.seek(start)

        params = {"table_name": self.table, "table_sys_id": sys_id, "file_name": filename}
        body = self._json(
            "POST",
            "/api/now/attachment/file",
            params=params,
            data=data,
            headers={"Content-Type": content_type},
            idempotent=False,
            before_attempt=rewind,
        )
        return _result(body)

    def download_attachment(self, attachment_sys_id: str) -> Iterator[bytes]:
        """The file's bytes in chunks; the request is made (and can fail) before returning."""
        response = self._send(
            "GET",
            f"/api/now/attachment/{attachment_sys_id}/file",
            headers={"Accept": "*/*"},
            stream=True,
            expect_json=False,
            validate=_require_file,
        )

        def chunks() -> Iterator[bytes]:
            with response:
                try:
                    yield from response.iter_content(_DOWNLOAD_CHUNK)
                except requests.RequestException as exc:
                    raise TransportFailed(
                        f"attachment download interrupted: {type(exc).__name__}", system=SYSTEM
                    ) from None

        return chunks()

    # ----------------------------------------------------------------------------- batch

    def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResponse]:
        """Run sub-requests in one Batch API call; answers come back in the order given."""
        if not requests:
            return []
        rest_requests = []
        for req in requests:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            headers.update(req.headers)
            item: dict[str, Any] = {
                "id": req.id,
                "method": req.method.upper(),
                "url": req.url,
                "headers": [{"name": k, "value": v} for k, v in headers.items()],
                "exclude_response_headers": not req.response_headers,
            }
            if req.body is not None:
                item["body"] = base64.b64encode(json.dumps(req.body).encode()).decode("ascii")
            rest_requests.append(item)
        payload = {"batch_request_id": uuid.uuid4().hex, "rest_requests": rest_requests}
        # A batch of reads is as safe to repeat as each read; one with a write is not.
        reads_only = all(req.method.upper() == "GET" for req in requests)
        body = self._json("POST", "/api/now/v1/batch", json_body=payload, idempotent=reads_only)
        answers: dict[str, BatchResponse] = {}
        for served in body.get("serviced_requests") or []:
            answers[str(served.get("id"))] = _batch_response(served)
        for missing in body.get("unserviced_requests") or []:
            rid = str(missing.get("id") if isinstance(missing, Mapping) else missing)
            answers[rid] = BatchResponse(id=rid, status_code=0, serviced=False)
        return [
            answers.get(req.id, BatchResponse(id=req.id, status_code=0, serviced=False))
            for req in requests
        ]

    # ----------------------------------------------------------------------------- plumbing

    def _table_path(self, sys_id: str | None = None, table: str | None = None) -> str:
        path = f"/api/now/table/{table or self.table}"
        return f"{path}/{sys_id}" if sys_id else path

    def _list(
        self,
        path: str,
        query: str,
        fields: Sequence[str] | None,
        *,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int | None]:
        params = {
            "sysparm_query": query,
            "sysparm_limit": str(limit),
            "sysparm_offset": str(offset),
        }
        if fields:
            params["sysparm_fields"] = ",".join(fields)
        response = self._send("GET", path, params=params)
        rows = _result_rows(_decode_json(response))
        return rows, _total_count(response.headers)

    def _page_all(
        self, path: str, query: str, fields: Sequence[str] | None, *, offset: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Every row of an ordered query from `offset`, page by page, until a short page ends it."""
        while True:
            rows, total = self._list(path, query, fields, offset=offset, limit=self.page_size)
            yield from rows
            if not rows or _last_page(offset, len(rows), self.page_size, total):
                return
            offset += len(rows)

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        before_attempt: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        response = self._send(
            method,
            path,
            params=params,
            json_body=json_body,
            data=data,
            headers=headers,
            idempotent=idempotent,
            before_attempt=before_attempt,
        )
        return _decode_json(response)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        expect_json: bool = True,
        idempotent: bool = True,
        before_attempt: Callable[[], None] | None = None,
        validate: Callable[[requests.Response], None] | None = None,
    ) -> requests.Response:
        """One logical request: auth, retries per the idempotency rule, typed errors."""

        def attempt() -> requests.Response:
            if before_attempt is not None:
                before_attempt()
            try:
                response = self._attempt(
                    method, path, params, json_body, data, headers, stream, expect_json
                )
                if validate is not None:
                    validate(response)
                return response
            except RetryableError as exc:
                if idempotent or _not_processed(exc):
                    raise
                raise _NotRetried(exc) from None

        try:
            return call_with_retry(self._retry, attempt)
        except _NotRetried as wrapped:
            raise wrapped.error from None

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        stream: bool,
        expect_json: bool,
    ) -> requests.Response:
        response = self._raw(method, path, params, json_body, data, headers, stream)
        if response.status_code == 401 and self._client_id:
            # The token may have been revoked or expired early: fetch a new one, once.
            response.close()
            self._invalidate_token()
            response = self._raw(method, path, params, json_body, data, headers, stream)
        _raise_for_status(response, method, path)
        if expect_json:
            _require_json(response)
        return response

    def _raw(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        stream: bool,
    ) -> requests.Response:
        sent_headers = {"Accept": "application/json"}
        if json_body is not None:
            sent_headers["Content-Type"] = "application/json"
        sent_headers.update(headers or {})
        auth: tuple[str, str] | None = None
        if self._client_id:
            sent_headers["Authorization"] = f"Bearer {self._access_token()}"
        else:
            auth = (str(self._username), str(self._password))
        try:
            return self._session.request(
                method,
                self.instance_url + path,
                params=params,
                json=json_body,
                data=data,
                headers=sent_headers,
                auth=auth,
                stream=stream,
                timeout=self._timeout,
            )
        except requests.ConnectionError as exc:
            raise _transport_error(exc, method, path) from None
        except requests.Timeout as exc:
            raise _transport_error(exc, method, path) from None
        except requests.RequestException as exc:
            raise TransportFailed(
                f"{method} {path} failed: {type(exc).__name__}", system=SYSTEM
            ) from None

    # ----------------------------------------------------------------------------- OAuth

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            token, lifetime = self._fetch_token()
            # Renew a little early so a token never expires between check and use.
            margin = min(60.0, lifetime * 0.1)
            self._token = token
            self._token_expires = self._clock() + max(0.0, lifetime - margin)
            return token

    def _invalidate_token(self) -> None:
        with self._token_lock:
            self._token = None
            self._token_expires = 0.0

    def _fetch_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": str(self._client_id),
            "client_secret": str(self._client_secret),
        }
        path = "/oauth_token.do"
        try:
            response = self._session.post(
                self.instance_url + path,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise _transport_error(exc, "POST", path) from None
        if response.status_code in (400, 401, 403):
            texts = _error_texts(_safe_json(response))
            raise AuthFailed(
                f"ServiceNow refused the OAuth client credentials (HTTP {response.status_code})",
                system=SYSTEM,
                status=response.status_code,
                messages=texts,
            )
        _raise_for_status(response, "POST", path)
        _require_json(response)
        body = _decode_json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthFailed("ServiceNow OAuth answer carried no access_token", system=SYSTEM)
        try:
            lifetime = float(body.get("expires_in", 1800))
        except (TypeError, ValueError):
            lifetime = 1800.0
        return token, lifetime


def _result(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `result` object of a single-record answer."""
    result = body.get("result")
    if not isinstance(result, Mapping):
        raise ServerUnavailable(
            "ServiceNow answered without a result object (a proxy or maintenance page?)",
            system=SYSTEM,
        )
    return dict(result)


def _result_rows(body: Any) -> list[dict[str, Any]]:
    """The `result` array of a list answer."""
    rows = body.get("result") if isinstance(body, Mapping) else None
    if not isinstance(rows, list):
        raise ServerUnavailable(
            "ServiceNow answered a list request without a result array", system=SYSTEM
        )
    return [dict(r) for r in rows]


def _total_count(headers: Mapping[str, str]) -> int | None:
    """X-Total-Count, whatever the case of its name (batch answers keep the instance's)."""
    for name, value in headers.items():
        if name.lower() == "x-total-count" and value.isdigit():
            return int(value)
    return None


def _attachment_query(sys_id: str) -> str:
    return f"table_sys_id={_query_value(sys_id)}{_OLDEST_FIRST}"


def _last_page(offset: int, fetched: int, limit: int, total: int | None) -> bool:
    """A short page ends the scan only when X-Total-Count (if sent) agrees: an instance that
    caps rows per response below sysparm_limit must not truncate the result silently."""
    if fetched >= limit:
        return False
    return total is None or offset + fetched >= total


def _query_value(value: str) -> str:
    """A value safe to put after `=` in an encoded query: no `^` (it would start a new term)."""
    if not value or _QUERY_BREAKING.search(value):
        raise ValueError(f"not a usable record identifier: {value!r}")
    return value


# `^` starts a new term, `,` a new IN value; whitespace has no place in an identifier.
_QUERY_BREAKING = re.compile(r"[\^,\s]")


def _in_lists(column: str, values: Sequence[str], tail: str) -> Iterator[str]:
    """Encoded queries `<column>IN<values>` + `tail`, at most IN_LIST_SIZE values each."""
    for start in range(0, len(values), IN_LIST_SIZE):
        chunk = values[start : start + IN_LIST_SIZE]
        yield f"{column}IN{','.join(_query_value(v) for v in chunk)}{tail}"


def _row_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        str(row.get("sys_updated_on", "")),
        str(row.get("sys_id", "")),
        str(row.get("sys_mod_count", "")),
    )


def _batch_response(served: Mapping[str, Any]) -> BatchResponse:
    raw = served.get("body") or ""
    decoded: Any = None
    if raw:
        try:
            text = base64.b64decode(raw).decode("utf-8")
            decoded = json.loads(text) if text else None
        except (ValueError, UnicodeDecodeError):
            decoded = None
    headers = {
        str(h.get("name")): str(h.get("value"))
        for h in served.get("headers") or []
        if isinstance(h, Mapping)
    }
    return BatchResponse(
        id=str(served.get("id")),
        status_code=int(served.get("status_code", 0)),
        body=decoded,
        status_text=str(served.get("status_text", "")),
        headers=headers,
    )


def _not_processed(exc: RetryableError) -> bool:
    """True when a transient failure shows the instance never ran the request."""
    if isinstance(exc, RateLimited):
        return True
    if isinstance(exc, ServerUnavailable):
        # Below 500 it is a sleeping instance's HTML page; 502/503 come from the front door.
        return exc.status is not None and (exc.status < 500 or exc.status in (502, 503))
    if isinstance(exc, TransportFailed):
        return "connect" in str(exc)
    return False


def _transport_error(exc: Exception, method: str, path: str) -> TransportFailed:
    if isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout)
    ):
        # Nothing reached the instance (or we cannot tell the connection broke after sending;
        # requests reports both as ConnectionError, and a refused connect is by far the common
        # case).
        kind = "could not connect"
    else:
        kind = "timed out waiting for the answer"
    return TransportFailed(f"{method} {path}: {kind} ({type(exc).__name__})", system=SYSTEM)


def _safe_json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_json(response: requests.Response) -> bool:
    return "json" in response.headers.get("Content-Type", "").lower()


def _require_json(response: requests.Response) -> None:
    if not _is_json(response):
        status = response.status_code
        response.close()
        raise ServerUnavailable(
            "ServiceNow answered with an HTML page instead of JSON; the instance is probably "
            f"hibernating or under maintenance (HTTP {status})",
            system=SYSTEM,
            status=status,
        )


def _require_file(response: requests.Response) -> None:
    content_type = response.headers.get("Content-Type", "").lower()
    if "text/html" in content_type and "X-Attachment-Metadata" not in response.headers:
        # Real downloads carry their metadata header; a bare HTML page is the sleep screen.
        status = response.status_code
        response.close()
        raise ServerUnavailable(
            "ServiceNow answered an attachment download with an HTML page; the instance is "
            f"probably hibernating or under maintenance (HTTP {status})",
            system=SYSTEM,
            status=status,
        )


def _decode_json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ServerUnavailable(
            "ServiceNow answered with a body that is not valid JSON; the instance is probably "
            f"hibernating or under maintenance (HTTP {response.status_code})",
            system=SYSTEM,
            status=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise ServerUnavailable("ServiceNow answered JSON that is not an object", system=SYSTEM)
    return body


def _raise_for_status(response: requests.Response, method: str, path: str) -> None:
    status = response.status_code
    if status < 400:
        return
    texts = _error_texts(_safe_json(response)) if _is_json(response) else []
    raise _status_error(status, texts, response.headers, f"{method} {path}")


def _raise_for_batch_item(answer: BatchResponse, where: str) -> None:
    """The typed error a sub-request's failure stands for, as if it had been sent alone."""
    if not answer.serviced:
        raise ServerUnavailable(f"{where}: not run by the batch (limit reached)", system=SYSTEM)
    if answer.status_code >= 400:
        texts = _error_texts(answer.body) if isinstance(answer.body, Mapping) else []
        raise _status_error(answer.status_code, texts, answer.headers, where)


def _status_error(
    status: int, texts: list[str], headers: Mapping[str, str], where: str
) -> ConnectorError:
    detail = f": {'; '.join(texts)}" if texts else ""
    if status == 429:
        return RateLimited(
            f"{where} rate limited (HTTP 429){detail}",
            system=SYSTEM,
            status=status,
            messages=texts,
            retry_after=retry_after_header(headers),
        )
    if status >= 500:
        return ServerUnavailable(
            f"{where} failed on the instance (HTTP {status}){detail}",
            system=SYSTEM,
            status=status,
            messages=texts,
            retry_after=retry_after_header(headers),
        )
    # "REST API HTTP response codes": 401 the credentials, 403 "the requested operation is not
    # permitted for the user" (an ACL, a business rule or a data policy): the user is known.
    if status == 401:
        return AuthFailed(
            f"{where} refused: the integration user is not authorised (HTTP {status}){detail}",
            system=SYSTEM,
            status=status,
            messages=texts,
        )
    if status == 403:
        return Forbidden(
            f"{where} refused: not permitted for the integration user (HTTP {status}){detail}",
            system=SYSTEM,
            status=status,
            messages=texts,
        )
    if status == 404:
        return NotFound(
            f"{where} not found (HTTP 404){detail}", system=SYSTEM, status=status, messages=texts
        )
    return InvalidRequest(
        f"{where} rejected (HTTP {status}){detail}", system=SYSTEM, status=status, messages=texts
    )


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds from `Retry-After` only: ServiceNow's X-RateLimit-Reset marks the end of the
    hourly window, far too long to hold a worker; without Retry-After we back off instead."""
    value = headers.get("Retry-After")
    if not value:
        return None
    return retry_after_seconds({"Retry-After": value})


__all__ = [
    "BatchRequest",
    "BatchResponse",
    "RecordBundle",
    "RecordPage",
    "ServiceNowConnector",
    "format_sn_datetime",
    "parse_sn_datetime",
]
