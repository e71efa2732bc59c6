"""The simulated instance's data: tables in memory behind one lock, with the platform's effects.

What the platform does on a write and this store does too: every value is kept as a string;
`sys_mod_count` counts saved updates and `sys_updated_on` has second precision; an update that
changes nothing is not saved; `comments` / `work_notes` writes become `sys_journal_field` rows and
never persist on the record; priority follows impact x urgency through the base lookup rules;
`incident_state` mirrors `state`, and resolving or closing stamps who and when; a save that breaks
one of the base system's incident data policies is refused (`simulators.servicenow.rules`).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simulators.servicenow.encoded_query import EncodedQuery, parse
from simulators.servicenow.rules import check_incident_policies
from simulators.servicenow.schema import (
    ATTACHMENT_FIELDS,
    CHOICES,
    DATETIME_FIELDS,
    INCIDENT_DEFAULTS,
    JOURNAL_COLUMNS,
    JOURNAL_LABELS,
    PRIORITY_LOOKUP,
    REFERENCES,
    STATE_CANCELED,
    STATE_CLOSED,
    STATE_RESOLVED,
    SYS_USER_DEFAULTS,
    TABLE_FIELDS,
)

SN_DATETIME = "%Y-%m-%d %H:%M:%S"
ATTACHMENT_TABLE = "sys_attachment"
# Columns a client cannot write (the platform maintains them).
_READ_ONLY = frozenset({"number", "comments_and_work_notes", "sys_class_name"})
_QUERY_CACHE_SIZE = 64

Record = dict[str, str]


class RecordNotFound(LookupError):
    """No record with that sys_id in that table."""


class UnknownTable(LookupError):
    """The simulator does not serve that table."""


@dataclass(frozen=True, slots=True)
class Change:
    """A saved insert or update, as a Business Rule would see it."""

    table: str
    record: Mapping[str, str]
    operation: str
    user: str


def local_time(raw: str, zone: tzinfo) -> str:
    """A stored UTC date-time as a user in `zone` sees it (the same format)."""
    if not raw:
        return raw
    try:
        moment = datetime.strptime(raw, SN_DATETIME).replace(tzinfo=UTC)
    except ValueError:
        return raw
    return moment.astimezone(zone).strftime(SN_DATETIME)


def wire(value: Any) -> str:
    """A client-sent value as the platform stores it: a string (references by sys_id)."""
    if isinstance(value, Mapping):
        value = value.get("value", "")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ServiceNowStore:
    """Thread-safe tables: incident, sys_user, sys_journal_field and attachments."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self.base_url = "http://127.0.0.1"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._tables: dict[str, dict[str, Record]] = {
            name: {} for name in (*TABLE_FIELDS, ATTACHMENT_TABLE)
        }
        self._versions: dict[str, int] = dict.fromkeys(self._tables, 0)
        self._journal_by_record: dict[str, list[Record]] = {}
        self._attachments_by_record: dict[str, list[Record]] = {}
        self._user_by_name: dict[str, str] = {}
        self._content: dict[str, bytes] = {}
        self._display_names: dict[tuple[str, str], str] = {("sys_user_group", "global"): "global"}
        self._number = 10000
        # The instance's time zone (glide.sys.default.tz), for users who set none.
        self.default_time_zone = "UTC"
        # Columns an admin added (u_*), per table, on top of the base system's.
        self._custom: dict[str, tuple[str, ...]] = {}
        self._cache: OrderedDict[tuple[str, str], tuple[int, list[str]]] = OrderedDict()
        self._listeners: list[Callable[[Change], None]] = []
        self._seed_choices()

    def _seed_choices(self) -> None:
        """The incident table's choice lists, as sys_choice rows."""
        rows = self._tables["sys_choice"]
        for element, labels in CHOICES.items():
            for sequence, (value, label) in enumerate(labels.items()):
                sys_id = uuid.uuid4().hex
                rows[sys_id] = {
                    **dict.fromkeys(TABLE_FIELDS["sys_choice"], ""),
                    "sys_id": sys_id,
                    "name": "incident",
                    "element": element,
                    "value": value,
                    "label": label,
                    "language": "en",
                    "inactive": "false",
                    "sequence": str(sequence),
                    "sys_mod_count": "0",
                }

    # --------------------------------------------------------------------------- basics

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Replace the clock (tests freeze time to put many updates in one second)."""
        with self._lock:
            self._clock = clock

    def now(self) -> str:
        """The current time as the platform writes it (UTC, second precision)."""
        moment = self._clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime(SN_DATETIME)

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call `listener` after every saved insert or update (the async Business Rule hook)."""
        self._listeners.append(listener)

    def serves(self, table: str) -> bool:
        """Whether `table` is a table of this instance."""
        return table in self._tables

    def fields_of(self, table: str) -> Sequence[str]:
        """The columns of a served table."""
        if table == ATTACHMENT_TABLE:
            return ATTACHMENT_FIELDS
        try:
            base = TABLE_FIELDS[table]
        except KeyError:
            raise UnknownTable(table) from None
        custom = self._custom.get(table)
        return (*base, *custom) if custom else base

    def add_column(self, table: str, name: str) -> None:
        """Add a custom string column, as an admin does (names start with `u_`)."""
        if not name.startswith("u_"):
            raise ValueError(f"custom column names start with u_: {name!r}")
        with self._lock:
            if name in self.fields_of(table):
                return
            self._custom[table] = (*self._custom.get(table, ()), name)
            for record in self._rows(table).values():
                record.setdefault(name, "")

    def set_display_name(self, table: str, sys_id: str, name: str) -> None:
        """Name shown for a reference into a table the simulator does not serve (groups...)."""
        with self._lock:
            self._display_names[(table, sys_id)] = name

    def zone_of(self, user_name: str) -> tzinfo:
        """The user's time zone (sys_user.time_zone), else the instance's default."""
        with self._lock:
            sys_id = self._user_by_name.get(user_name)
            record = self._tables["sys_user"].get(sys_id) if sys_id else None
            name = (record or {}).get("time_zone") or self.default_time_zone
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

    def user_sys_id(self, user_name: str) -> str:
        """The sys_user sys_id of a user name (the name itself when no such user exists)."""
        return self._user_by_name.get(user_name, user_name)

    # --------------------------------------------------------------------------- reads

    def get(self, table: str, sys_id: str) -> Record:
        """A copy of one record; raises RecordNotFound / UnknownTable."""
        with self._lock:
            rows = self._rows(table)
            try:
                return dict(rows[sys_id])
            except KeyError:
                raise RecordNotFound(f"{table}/{sys_id}") from None

    def query(self, table: str, query: str) -> list[Record]:
        """Records matching an encoded query, in its order (insertion order when none)."""
        with self._lock:
            rows = self._rows(table)
            version = self._versions[table]
            cached = self._cache.get((table, query))
            if cached is not None and cached[0] == version:
                self._cache.move_to_end((table, query))
                return [rows[i] for i in cached[1] if i in rows]
            parsed = self._known_only(table, parse(query))
            indexed = self._indexed(table, parsed)
            candidates = rows.values() if indexed is None else indexed
            matched = [rec for rec in candidates if parsed.matches(self._getter(table, rec))]
            ordered = parsed.sort(matched, lambda rec, f: self._value(table, rec, f))
            self._cache[(table, query)] = (version, [r["sys_id"] for r in ordered])
            while len(self._cache) > _QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
            return list(ordered)

    def _indexed(self, table: str, parsed: EncodedQuery) -> list[Record] | None:
        """The rows an index narrows the query to, when a condition pins an indexed column to
        one value or a list (`=`, `IN`), as the instance's indexes do: every table's sys_id,
        a journal row's record (`element_id`), an attachment's (`table_sys_id`). None when the
        whole table must be scanned; the query's other conditions are checked on the rows."""
        if len(parsed.parts) != 1:
            return None
        for group in parsed.parts[0]:
            if len(group) != 1 or group[0].op not in ("=", "IN"):
                continue
            condition = group[0]
            values = [condition.value] if condition.op == "=" else condition.value.split(",")
            keys = dict.fromkeys(values)
            if condition.field == "sys_id":
                rows = self._rows(table)
                return [rows[key] for key in keys if key in rows]
            index = self._index_on(table, condition.field)
            if index is not None:
                return [row for key in keys for row in index.get(key, ())]
        return None

    def _index_on(self, table: str, column: str) -> Mapping[str, list[Record]] | None:
        if table == "sys_journal_field" and column == "element_id":
            return self._journal_by_record
        if table == ATTACHMENT_TABLE and column == "table_sys_id":
            return self._attachments_by_record
        return None

    def journal(self, sys_id: str) -> list[Record]:
        """Journal rows of a record, oldest first."""
        with self._lock:
            return [dict(r) for r in self._journal_by_record.get(sys_id, [])]

    def attachment_content(self, sys_id: str) -> tuple[Record, bytes]:
        """Metadata and bytes of one attachment; raises RecordNotFound."""
        with self._lock:
            meta = self.get(ATTACHMENT_TABLE, sys_id)
            return meta, self._content[sys_id]

    # --------------------------------------------------------------------------- writes

    def insert(self, table: str, fields: Mapping[str, Any], *, user: str) -> Record:
        """Insert a record as `user`; returns the stored record."""
        with self._lock:
            rows = self._rows(table)
            now = self.now()
            columns = self.fields_of(table)
            record: Record = dict(self._defaults(table))
            sys_id = wire(fields.get("sys_id", "")) or uuid.uuid4().hex
            if sys_id in rows:
                raise ValueError(f"a record with sys_id {sys_id} already exists")
            record.update(
                {
                    "sys_id": sys_id,
                    "sys_created_on": now,
                    "sys_created_by": user,
                    "sys_updated_on": now,
                    "sys_updated_by": user,
                    "sys_mod_count": "0",
                }
            )
            journal: list[tuple[str, str]] = []
            for name, value in fields.items():
                if table == "incident" and name in JOURNAL_COLUMNS:
                    if wire(value):
                        journal.append((name, wire(value)))
                    continue
                if name in columns and not name.startswith("sys_") and name not in _READ_ONLY:
                    record[name] = wire(value)
            if table == "incident":
                self._incident_rules(record, None, user, now)
                check_incident_policies(None, record, (element for element, _ in journal))
                self._number += 1
                record["number"] = f"INC{self._number:07d}"
                record["opened_at"] = record["opened_at"] or now
                record["opened_by"] = record["opened_by"] or self.user_sys_id(user)
            if table == "sys_user":
                self._user_by_name[record["user_name"]] = sys_id
            rows[sys_id] = record
            for element, text in journal:
                self._add_journal(table, sys_id, element, text, user, now)
            self._versions[table] += 1
            saved = dict(record)
        self._notify(Change(table, saved, "insert", user))
        return saved

    def update(self, table: str, sys_id: str, fields: Mapping[str, Any], *, user: str) -> Record:
        """Update a record as `user`; an update that changes nothing is not saved."""
        with self._lock:
            rows = self._rows(table)
            if sys_id not in rows:
                raise RecordNotFound(f"{table}/{sys_id}")
            before = rows[sys_id]
            record = dict(before)
            columns = self.fields_of(table)
            journal: list[tuple[str, str]] = []
            for name, value in fields.items():
                if table == "incident" and name in JOURNAL_COLUMNS:
                    if wire(value):
                        journal.append((name, wire(value)))
                    continue
                if name in columns and not name.startswith("sys_") and name not in _READ_ONLY:
                    record[name] = wire(value)
            now = self.now()
            if table == "incident":
                self._incident_rules(record, before, user, now)
            if record == before and not journal:
                return dict(record)
            if table == "incident":
                check_incident_policies(before, record, (element for element, _ in journal))
            rows[sys_id] = record
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or "0") + 1)
            record["sys_updated_on"] = now
            record["sys_updated_by"] = user
            if table == "sys_user" and before.get("user_name") != record.get("user_name"):
                self._user_by_name.pop(before.get("user_name", ""), None)
                self._user_by_name[record["user_name"]] = sys_id
            for element, text in journal:
                self._add_journal(table, sys_id, element, text, user, now)
            self._versions[table] += 1
            saved = dict(record)
        self._notify(Change(table, saved, "update", user))
        return saved

    def delete(self, table: str, sys_id: str) -> None:
        """Delete a record (and, for a task, its journal and attachments)."""
        with self._lock:
            rows = self._rows(table)
            if rows.pop(sys_id, None) is None:
                raise RecordNotFound(f"{table}/{sys_id}")
            self._versions[table] += 1
            if table == "sys_user":
                self._user_by_name = {k: v for k, v in self._user_by_name.items() if v != sys_id}
            for row in self._journal_by_record.pop(sys_id, []):
                self._tables["sys_journal_field"].pop(row["sys_id"], None)
                self._versions["sys_journal_field"] += 1
            for meta in list(self._attachments_by_record.pop(sys_id, [])):
                self._delete_attachment(meta["sys_id"])

    def add_journal(self, table: str, sys_id: str, element: str, text: str, *, user: str) -> Record:
        """Write a comment or work note as `user` (an update of the record); returns the row."""
        if element not in JOURNAL_COLUMNS:
            raise ValueError("element must be comments or work_notes")
        self.update(table, sys_id, {element: text}, user=user)
        with self._lock:
            return dict(self._journal_by_record[sys_id][-1])

    def add_attachment(
        self,
        table: str,
        table_sys_id: str,
        file_name: str,
        content: bytes,
        content_type: str,
        *,
        user: str,
    ) -> Record:
        """Store an attachment on a record; returns its metadata."""
        with self._lock:
            self.get(table, table_sys_id)
            now = self.now()
            sys_id = uuid.uuid4().hex
            meta: Record = dict.fromkeys(ATTACHMENT_FIELDS, "")
            meta.update(
                {
                    "sys_id": sys_id,
                    "file_name": file_name,
                    "table_name": table,
                    "table_sys_id": table_sys_id,
                    "content_type": content_type,
                    "size_bytes": str(len(content)),
                    "size_compressed": str(len(content)),
                    "compressed": "false",
                    "state": "available",
                    "hash": hashlib.sha256(content).hexdigest(),
                    "chunk_size_bytes": "700000",
                    "sys_mod_count": "0",
                    "sys_created_on": now,
                    "sys_created_by": user,
                    "sys_updated_on": now,
                    "sys_updated_by": user,
                }
            )
            self._tables[ATTACHMENT_TABLE][sys_id] = meta
            self._attachments_by_record.setdefault(table_sys_id, []).append(meta)
            self._content[sys_id] = content
            self._versions[ATTACHMENT_TABLE] += 1
            return dict(meta)

    def delete_attachment(self, sys_id: str) -> None:
        """Remove one attachment; raises RecordNotFound."""
        with self._lock:
            self.get(ATTACHMENT_TABLE, sys_id)
            self._delete_attachment(sys_id)

    # --------------------------------------------------------------------------- rendering

    def render(
        self,
        table: str,
        record: Mapping[str, str],
        *,
        display: str = "false",
        exclude_links: bool = False,
        fields: Iterable[str] | None = None,
        zone: tzinfo = UTC,
    ) -> dict[str, Any]:
        """A record as the Table API answers it for the given sysparm_* options; display
        values of date-times are in `zone`, the reading user's time zone."""
        refs = REFERENCES.get(table, {})
        names = list(fields) if fields is not None else list(record)
        out: dict[str, Any] = {}
        with self._lock:
            for name in names:
                raw = self._value(table, record, name)
                target = refs.get(name)
                if target is not None:
                    out[name] = self._render_reference(target, raw, display, exclude_links)
                elif display == "false":
                    out[name] = raw
                else:
                    shown = self._display_value(table, record, name, raw, zone)
                    out[name] = (
                        shown
                        if display == "true"
                        else {
                            "display_value": shown,
                            "value": raw,
                        }
                    )
            if table == ATTACHMENT_TABLE and "download_link" in out:
                out["download_link"] = f"{self.base_url}/api/now/attachment/{record['sys_id']}/file"
        return out

    def _render_reference(self, target: str, raw: str, display: str, exclude_links: bool) -> Any:
        if raw == "":
            return "" if display != "all" else {"display_value": "", "value": ""}
        link = f"{self.base_url}/api/now/table/{target}/{raw}"
        if display == "false":
            return raw if exclude_links else {"link": link, "value": raw}
        shown = self._reference_name(target, raw)
        if display == "true":
            return shown if exclude_links else {"display_value": shown, "link": link}
        rendered = {"display_value": shown, "value": raw}
        if not exclude_links:
            rendered["link"] = link
        return rendered

    def _reference_name(self, target: str, sys_id: str) -> str:
        if target == "sys_user":
            user = self._tables["sys_user"].get(sys_id)
            return user["name"] if user else self._display_names.get((target, sys_id), sys_id)
        if target == "incident":
            incident = self._tables["incident"].get(sys_id)
            return incident["number"] if incident else sys_id
        return self._display_names.get((target, sys_id), sys_id)

    def _display_value(
        self, table: str, record: Mapping[str, str], name: str, raw: str, zone: tzinfo
    ) -> str:
        if table == "incident" and name in ("comments", "work_notes", "comments_and_work_notes"):
            elements = JOURNAL_COLUMNS if name == "comments_and_work_notes" else {name}
            return self._journal_text(record.get("sys_id", ""), elements, zone)
        if name in DATETIME_FIELDS or (table == "sys_journal_field" and name == "sys_created_on"):
            return local_time(raw, zone)
        labels = CHOICES.get(name) if table == "incident" else None
        if labels is not None:
            return labels.get(raw, raw)
        return raw

    def _journal_text(self, sys_id: str, elements: Iterable[str], zone: tzinfo) -> str:
        wanted = set(elements)
        entries = [r for r in self._journal_by_record.get(sys_id, []) if r["element"] in wanted]
        parts = []
        for row in reversed(entries):
            author = self._reference_name("sys_user", self.user_sys_id(row["sys_created_by"]))
            label = JOURNAL_LABELS[row["element"]]
            stamp = local_time(row["sys_created_on"], zone)
            parts.append(f"{stamp} - {author} ({label})\n{row['value']}\n\n")
        return "".join(parts)

    # --------------------------------------------------------------------------- internals

    def _rows(self, table: str) -> dict[str, Record]:
        try:
            return self._tables[table]
        except KeyError:
            raise UnknownTable(table) from None

    def _defaults(self, table: str) -> Mapping[str, str]:
        custom = dict.fromkeys(self._custom.get(table, ()), "")
        if table == "incident":
            return {**INCIDENT_DEFAULTS, **custom} if custom else INCIDENT_DEFAULTS
        if table == "sys_user":
            return {**SYS_USER_DEFAULTS, **custom} if custom else SYS_USER_DEFAULTS
        return dict.fromkeys(self.fields_of(table), "")

    def _known_only(self, table: str, query: EncodedQuery) -> EncodedQuery:
        # The platform ignores conditions on columns that do not exist (by default).
        columns = set(self.fields_of(table))
        refs = REFERENCES.get(table, {})
        unknown = [
            f
            for f in query.fields
            if f.split(".", 1)[0] not in columns or ("." in f and f.split(".", 1)[0] not in refs)
        ]
        return query.without(unknown) if unknown else query

    def _getter(self, table: str, record: Mapping[str, str]) -> Callable[[str], str]:
        return lambda name: self._value(table, record, name)

    def _value(self, table: str, record: Mapping[str, str], name: str) -> str:
        if "." not in name:
            return record.get(name, "")
        # Dot-walking: caller_id.user_name reads user_name of the referenced sys_user.
        head, rest = name.split(".", 1)
        target = REFERENCES.get(table, {}).get(head)
        if target is None or target not in self._tables:
            return ""
        referenced = self._tables[target].get(record.get(head, ""))
        return self._value(target, referenced, rest) if referenced else ""

    def _incident_rules(
        self, record: Record, before: Mapping[str, str] | None, user: str, now: str
    ) -> None:
        record["priority"] = PRIORITY_LOOKUP.get(
            (record["impact"], record["urgency"]), record["priority"]
        )
        old_state = before.get("state") if before else None
        if (
            before is not None
            and record["incident_state"] != before.get("incident_state")
            and record["state"] == old_state
        ):
            # A client that writes only incident_state moves state with it.
            record["state"] = record["incident_state"]
        record["incident_state"] = record["state"]
        if record["state"] != old_state:
            state = record["state"]
            if state == STATE_RESOLVED:
                record["resolved_at"] = now
                record["resolved_by"] = self.user_sys_id(user)
            elif state == STATE_CLOSED:
                record["closed_at"] = now
                record["closed_by"] = self.user_sys_id(user)
                record["resolved_at"] = record["resolved_at"] or now
            elif old_state in (STATE_RESOLVED, STATE_CLOSED):
                record["reopen_count"] = str(int(record["reopen_count"] or "0") + 1)
                record["resolved_at"] = ""
                record["resolved_by"] = ""
            record["active"] = "false" if state in (STATE_CLOSED, STATE_CANCELED) else "true"
        if (
            before is not None
            and before.get("assignment_group")
            and record["assignment_group"] != before.get("assignment_group")
        ):
            record["reassignment_count"] = str(int(record["reassignment_count"] or "0") + 1)

    def _add_journal(
        self, table: str, sys_id: str, element: str, text: str, user: str, now: str
    ) -> None:
        row: Record = {
            "sys_id": uuid.uuid4().hex,
            "sys_created_on": now,
            "name": table,
            "element_id": sys_id,
            "sys_tags": "",
            "value": text,
            "sys_created_by": user,
            "element": element,
        }
        self._tables["sys_journal_field"][row["sys_id"]] = row
        self._journal_by_record.setdefault(sys_id, []).append(row)
        self._versions["sys_journal_field"] += 1

    def _delete_attachment(self, sys_id: str) -> None:
        meta = self._tables[ATTACHMENT_TABLE].pop(sys_id, None)
        if meta is not None:
            siblings = self._attachments_by_record.get(meta["table_sys_id"], [])
            siblings[:] = [m for m in siblings if m["sys_id"] != sys_id]
        self._content.pop(sys_id, None)
        self._versions[ATTACHMENT_TABLE] += 1

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)
