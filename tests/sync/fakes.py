"""In-memory Jira and ServiceNow records behind the engine's Adapter protocol, for engine tests.

Records are kept in the vendors' raw shapes (as the example mapping reads them), every write is
counted, and `fail_after` lets a test crash the engine right after a chosen write.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from connectors.errors import InvalidRequest, NotFound
from mapping import VendorWrite
from mapping.model import System
from sync.pipeline.markers import Marker, with_marker
from sync.systems.base import Changed, Created

_clock = itertools.count()
BASE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SN_PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("2", "2"): "3", ("2", "3"): "4", ("3", "3"): "5"}


def tick() -> datetime:
    """A strictly increasing time, one second per change."""
    return BASE + timedelta(seconds=next(_clock))


class FakeBase:
    """Shared bookkeeping: records, attachment contents, write log."""

    system: System

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.writes: list[str] = []
        # Every read made through the adapter protocol: "read <id>" or "fields <id> <names>".
        self.reads: list[str] = []
        self._ids = itertools.count(100)
        self.refuse_writes: str | None = None

    def _write(self, what: str) -> None:
        if self.refuse_writes:
            raise InvalidRequest(self.refuse_writes, system=self.system.value, status=400)
        self.writes.append(what)

    def _next(self) -> str:
        return str(next(self._ids))

    def download(self, attachment_id: str) -> Iterator[bytes]:
        data = self.files[attachment_id]
        for start in range(0, len(data), 4):
            yield data[start : start + 4]


class FakeJira(FakeBase):
    """Jira issues keyed by issue key."""

    system = System.JIRA

    def add(self, key: str, **fields: Any) -> dict[str, Any]:
        """Seed an issue as a person would have made it."""
        base = {
            "summary": "",
            "status": {"name": "To Do"},
            "priority": {"name": "Medium"},
            "labels": [],
            "comment": {"comments": []},
            "attachment": [],
        }
        base.update(fields)
        issue = {"id": str(10000 + len(self.records)), "key": key, "fields": base}
        self.records[key] = issue
        base["updated"] = tick().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        return issue

    def touch(self, key: str) -> None:
        if key in self.records:
            stamp = tick().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            self.records[key]["fields"]["updated"] = stamp

    def edit(self, key: str, **fields: Any) -> None:
        """A person edits the issue."""
        self.records[key]["fields"].update(fields)
        self.touch(key)

    def comment(self, key: str, body: str, *, internal: bool = False, author: str = "dev") -> str:
        """A person comments."""
        cid = self._next()
        item: dict[str, Any] = {"id": cid, "body": body, "author": {"accountId": author}}
        if internal:
            item["visibility"] = {"type": "role", "value": "Administrators"}
        self.records[key]["fields"]["comment"]["comments"].append(item)
        self.touch(key)
        return cid

    def attach(self, key: str, name: str, data: bytes, mime_type: str | None = None) -> None:
        aid = self._next()
        self.files[aid] = data
        entry: dict[str, Any] = {"id": aid, "filename": name, "size": len(data)}
        if mime_type:
            entry["mimeType"] = mime_type
        self.records[key]["fields"]["attachment"].append(entry)
        self.touch(key)

    # Adapter protocol

    def read(self, ticket_id: str) -> dict[str, Any]:
        if ticket_id not in self.records:
            raise NotFound(ticket_id, system="jira", status=404)
        self.reads.append(f"read {ticket_id}")
        return copy.deepcopy(self.records[ticket_id])

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        names = sorted({p[1] for p in paths})
        self.reads.append(f"fields {ticket_id} {','.join(names)}")
        issue = self.records[ticket_id]
        fields = {n: copy.deepcopy(issue["fields"].get(n)) for n in names}
        return {"id": issue["id"], "key": issue["key"], "fields": fields}

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> None:
        self._write(f"apply {ticket_id} {sorted(write.fields)} {write.transition_to}")
        fields = self.records[ticket_id]["fields"]
        fields.update(write.fields)
        if write.transition_to:
            fields["status"] = {"name": write.transition_to}
        self.touch(ticket_id)

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        self._write(f"comment {ticket_id}")
        cid = self._next()
        item: dict[str, Any] = {
            "id": cid,
            "body": with_marker(body, marker),
            "author": {"accountId": "svc-sync"},
        }
        if not public:
            item["visibility"] = {"type": "role", "value": "Administrators"}
        self.records[ticket_id]["fields"]["comment"]["comments"].append(item)
        self.touch(ticket_id)
        return cid

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        for c in self.records[ticket_id]["fields"]["comment"]["comments"]:
            if marker.text() in c["body"]:
                return str(c["id"])
        return None

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        key = f"{container or 'DS'}-{len(self.records) + 1}"
        self._write(f"create {key}")
        self.add(key, **write.fields)
        return Created(key, key, None)

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        self._write(f"link {ticket_id}")

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        return list(self.records[ticket_id]["fields"]["attachment"])

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        self._write(f"upload {ticket_id} {filename}")
        self.attach(ticket_id, filename, stream.read(), content_type)

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        for key in list(self.records):
            yield Changed(key, None)


class FakeServiceNow(FakeBase):
    """Incidents keyed by sys_id."""

    system = System.SERVICENOW

    def __init__(self) -> None:
        super().__init__()
        # Columns the table lacks: writes to them are dropped, as the Table API does.
        self.absent_columns: set[str] = set()

    def add(self, **fields: Any) -> dict[str, Any]:
        sys_id = f"sn{len(self.records) + 1:04d}"
        record: dict[str, Any] = {
            "sys_id": sys_id,
            "number": f"INC{len(self.records) + 1:07d}",
            "short_description": "",
            "state": "1",
            "impact": "2",
            "urgency": "2",
            "priority": "3",
            "u_labels": "",
            "sys_mod_count": "0",
            "_journal": [],
            "_attachments": [],
        }
        record.update(fields)
        if "priority" not in fields:
            record["priority"] = SN_PRIORITY.get((record["impact"], record["urgency"]), "5")
        self.records[sys_id] = record
        self.touch(sys_id)
        return record

    def touch(self, sys_id: str) -> None:
        rec = self.records[sys_id]
        rec["sys_updated_on"] = tick().strftime("%Y-%m-%d %H:%M:%S")
        rec["sys_mod_count"] = str(int(rec.get("sys_mod_count", "0")) + 1)

    def edit(self, sys_id: str, **fields: Any) -> None:
        self.records[sys_id].update(fields)
        self.touch(sys_id)

    def comment(
        self, sys_id: str, text: str, *, internal: bool = False, author: str = "agent"
    ) -> str:
        jid = f"j{self._next()}"
        self.records[sys_id]["_journal"].append(
            {
                "sys_id": jid,
                "element": "work_notes" if internal else "comments",
                "value": text,
                "sys_created_by": author,
            }
        )
        self.touch(sys_id)
        return jid

    def attach(self, sys_id: str, name: str, data: bytes, mime_type: str | None = None) -> None:
        aid = f"a{self._next()}"
        self.files[aid] = data
        entry = {"sys_id": aid, "file_name": name, "size_bytes": str(len(data))}
        if mime_type:
            entry["content_type"] = mime_type
        self.records[sys_id]["_attachments"].append(entry)
        self.touch(sys_id)

    # Adapter protocol

    def read(self, ticket_id: str) -> dict[str, Any]:
        if ticket_id not in self.records:
            raise NotFound(ticket_id, system="servicenow", status=404)
        self.reads.append(f"read {ticket_id}")
        return copy.deepcopy(self.records[ticket_id])

    def read_fields(self, ticket_id: str, paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
        names = sorted({p[0] for p in paths})
        self.reads.append(f"fields {ticket_id} {','.join(names)}")
        rec = self.records[ticket_id]
        return {k: v for k, v in rec.items() if k in {"sys_id", "number", *names}}

    def apply(
        self, ticket_id: str, write: VendorWrite, *, current_labels: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Like the Table API, answer with the record as stored (journal and files aside)."""
        self._write(f"apply {ticket_id} {sorted(write.fields)}")
        rec = self.records[ticket_id]
        # Like the instance, a column the table does not have is ignored.
        kept = {k: v for k, v in write.fields.items() if k not in self.absent_columns}
        rec.update({k: "" if v is None else str(v) for k, v in kept.items()})
        if "impact" in write.fields:
            rec["priority"] = SN_PRIORITY.get((rec["impact"], rec["urgency"]), "5")
        self.touch(ticket_id)
        return {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        self._write(f"comment {ticket_id}")
        jid = self.comment(
            ticket_id, with_marker(body, marker), internal=not public, author="svc.sync"
        )
        return jid

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        for row in self.records[ticket_id]["_journal"]:
            if marker.text() in row["value"]:
                return str(row["sys_id"])
        return None

    def create(self, write: VendorWrite, *, container: str | None, kind: str | None) -> Created:
        self._write("create")
        rec = self.add(**{k: str(v) for k, v in write.fields.items()})
        return Created(rec["sys_id"], rec["number"], None)

    def add_link(self, ticket_id: str, url: str, title: str) -> None:
        self._write(f"link {ticket_id}")

    def list_attachments(self, ticket_id: str) -> list[dict[str, Any]]:
        return list(self.records[ticket_id]["_attachments"])

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        self._write(f"upload {ticket_id} {filename}")
        self.attach(ticket_id, filename, stream.read(), content_type)

    def changed_since(self, since: datetime) -> Iterator[Changed]:
        for sys_id in list(self.records):
            yield Changed(sys_id, None)
