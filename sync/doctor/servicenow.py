"""The checks of a ServiceNow instance: credentials, the table, the mapped columns, the choice
values the mapping writes, write access to what it writes, the Business Rule's target.

Nothing is changed: write access is probed by writing one record's own values back, which the
instance does not save (an update that changes nothing is not an update) but does check against
its access controls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.errors import AuthFailed, ConnectorError, Forbidden, InvalidRequest
from connectors.servicenow import ServiceNowConnector
from mapping import Mapping
from mapping.model import System
from sync.doctor.report import CheckResult, failed, passed, skipped

SYSTEM = "servicenow"
WEBHOOK_PROPERTY = "escalation_sync.webhook.url"


def columns(mapping: Mapping) -> tuple[list[str], list[str]]:
    """The columns the mapping reads or writes, and those it writes (journal fields apart)."""
    compiled = mapping.systems.get(System.SERVICENOW)
    if compiled is None:
        return [], []
    read: list[str] = []
    written: list[str] = []
    for f in compiled.fields.values():
        if f.read_path and not f.read_path[0].startswith("_"):
            read.append(f.read_path[0])
        if not f.writable:
            continue
        if f.spec.write_mode == "impact_urgency":
            written += [f.spec.impact_field, f.spec.urgency_field]
        elif f.spec.write_mode == "field" and f.spec.write:
            written.append(f.spec.write)
        for requirement in f.spec.requires.values():
            written += list(requirement.fields)
    journals = compiled.spec.comments
    extra = (
        [j for j in (journals.public_journal, journals.internal_journal) if j] if journals else []
    )
    everything = list(dict.fromkeys([*read, *written, *extra]))
    return everything, list(dict.fromkeys(written))


def written_values(mapping: Mapping) -> dict[str, set[str]]:
    """Fixed values the mapping writes, per column (value maps, impact/urgency pairs, and the
    constant fields a status requires)."""
    compiled = mapping.systems.get(System.SERVICENOW)
    found: dict[str, set[str]] = {}
    if compiled is None:
        return found
    for f in compiled.fields.values():
        if not f.writable:
            continue
        if f.spec.write_mode == "impact_urgency":
            for impact, urgency in (f.spec.pairs or {}).values():
                found.setdefault(f.spec.impact_field, set()).add(impact)
                found.setdefault(f.spec.urgency_field, set()).add(urgency)
        elif f.spec.write and f.to_vendor:
            found.setdefault(f.spec.write, set()).update(f.to_vendor.values())
        for requirement in f.spec.requires.values():
            for column, value in requirement.fields.items():
                if isinstance(value, str) and "{" not in value:
                    found.setdefault(column, set()).add(value)
    return found


class ServiceNowDoctor:
    """Runs the ServiceNow checks with the live credentials, each once."""

    def __init__(
        self, connector: ServiceNowConnector, section: Any, mapping: Mapping, daemon_url: str
    ) -> None:
        self.sn = connector
        self.section = section
        self.table = section.table
        self.mapping = mapping
        self.hook_url = f"{daemon_url}/webhooks/servicenow"
        self._sample: dict[str, Any] | None = None

    def run(self) -> list[CheckResult]:
        """Every check, in order; after failed credentials the rest are skipped, without the
        table the record checks are."""
        results = [self._credentials()]
        names = ("table", "fields", "choice values", "write access", "webhook")
        if results[0].failed:
            return results + [skipped(SYSTEM, n, "the credentials did not work") for n in names]
        table = self._guard("table", self._table)
        results.append(table)
        steps: list[tuple[str, Callable[[], CheckResult]]] = [
            ("fields", self._fields),
            ("choice values", self._choices),
            ("write access", self._write_access),
        ]
        for name, step in steps:
            if table.failed:
                results.append(skipped(SYSTEM, name, f"no table {self.table!r}"))
            else:
                results.append(self._guard(name, step))
        results.append(self._guard("webhook", self._webhook))
        return results

    def _guard(self, name: str, step: Callable[[], CheckResult]) -> CheckResult:
        try:
            return step()
        except ConnectorError as exc:
            return failed(SYSTEM, name, str(exc), "see the instance's answer")

    def _credentials(self) -> CheckResult:
        s = self.section
        who = s.integration_user or s.username or ""
        try:
            users = self.sn.rows(
                "sys_user", f"user_name={who}" if who else "", fields=["user_name", "name"], limit=1
            )
        except AuthFailed as exc:
            how = (
                "[servicenow] client_id and client_secret "
                "(ESCALATION_SYNC_SERVICENOW__CLIENT_SECRET)"
                if s.auth == "oauth"
                else "[servicenow] username and the password (ESCALATION_SYNC_SERVICENOW__PASSWORD)"
            )
            return failed(
                SYSTEM, "credentials", f"{s.instance_url} refused them: {exc}", f"check {how}"
            )
        except ConnectorError as exc:
            return failed(
                SYSTEM,
                "credentials",
                f"{s.instance_url}: {exc}",
                "check [servicenow] instance_url and the network; a sleeping developer "
                "instance must be woken up",
            )
        if s.auth == "basic" and s.integration_user and s.integration_user != s.username:
            return failed(
                SYSTEM,
                "credentials",
                f"we write as {s.username}, but [servicenow] integration_user is "
                f"{s.integration_user!r}: our own changes would come back as someone else's",
                f'set [servicenow] integration_user = "{s.username}"',
            )
        name = users[0].get("name") if users else None
        shown = f"{name} ({who})" if name else who or "the OAuth client"
        return passed(SYSTEM, "credentials", f"authenticated as {shown} at {s.instance_url}")

    def _table(self) -> CheckResult:
        try:
            self.sn.rows(self.table, fields=["sys_id"], limit=1)
        except InvalidRequest as exc:
            return failed(
                SYSTEM,
                "table",
                f"the instance has no table {self.table!r}: {exc}",
                "set [servicenow] table to the table the integration works on (incident)",
            )
        return passed(SYSTEM, "table", f"{self.table} answers")

    def _sample_record(self) -> dict[str, Any] | None:
        if self._sample is None:
            wanted, _ = columns(self.mapping)
            fields = ["sys_id", "number", "active", *wanted]
            found = self.sn.rows(
                self.table, "active=true^ORDERBYDESCsys_updated_on", fields=fields, limit=1
            ) or self.sn.rows(self.table, "ORDERBYDESCsys_updated_on", fields=fields, limit=1)
            self._sample = found[0] if found else {}
        return self._sample or None

    def _fields(self) -> CheckResult:
        wanted, _ = columns(self.mapping)
        record = self._sample_record()
        if record is None:
            return skipped(SYSTEM, "fields", f"no {self.table} record yet to read the columns from")
        missing = [c for c in wanted if c not in record]
        if missing:
            return failed(
                SYSTEM,
                "fields",
                f"{self.table} has no column {', '.join(missing)}, or an ACL hides it from the "
                "integration user",
                "create the columns (u_* columns are made in System Definition > Tables), grant "
                "read on them, or change the mapping",
            )
        return passed(SYSTEM, "fields", f"{self.table} has {', '.join(wanted)}")

    def _choices(self) -> CheckResult:
        wanted = written_values(self.mapping)
        if not wanted:
            return passed(SYSTEM, "choice values", "the mapping writes no fixed values")
        query = f"nameIN{self.table},task^elementIN{','.join(sorted(wanted))}^inactive=false"
        rows = self.sn.rows("sys_choice", query, fields=["element", "value"], limit=1000)
        choices: dict[str, set[str]] = {}
        for row in rows:
            choices.setdefault(str(row.get("element")), set()).add(str(row.get("value")))
        problems = []
        checked = []
        for column, values in sorted(wanted.items()):
            if column not in choices:
                continue  # not a choice field: any value goes
            checked.append(column)
            for value in sorted(values - choices[column]):
                problems.append(f"{self.table}.{column} has no choice {value!r}")
        if problems:
            return failed(
                SYSTEM,
                "choice values",
                "; ".join(problems),
                "write the instance's choice values in the mapping (System Definition > Choice "
                "Lists shows them), or add the choices",
            )
        return passed(
            SYSTEM, "choice values", f"every value written is a choice of {', '.join(checked)}"
        )

    def _write_access(self) -> CheckResult:
        _, written = columns(self.mapping)
        record = self._sample_record()
        if record is None:
            return skipped(SYSTEM, "write access", f"no {self.table} record yet to probe")
        sys_id = str(record.get("sys_id"))
        refused = []
        for column in written:
            if column not in record:
                continue
            value = record[column]
            if isinstance(value, dict):
                value = value.get("value", "")
            try:
                self.sn.update(sys_id, {column: str(value)})
            except Forbidden as exc:
                refused.append(f"{column} ({'; '.join(exc.messages) or exc})")
        number = record.get("number") or sys_id
        if refused:
            return failed(
                SYSTEM,
                "write access",
                f"writing {number}'s own values back was refused for {', '.join(refused)}",
                "grant the integration user write access to those fields (an ACL, or the itil "
                "role), or stop writing them in the mapping",
            )
        return passed(
            SYSTEM,
            "write access",
            f"{', '.join(c for c in written if c in record)} accepted on {number} (its own "
            "values written back, nothing changed)",
        )

    def _webhook(self) -> CheckResult:
        fix = (
            f"install the Business Rule (docs/servicenow/README.md) and set the property "
            f"{WEBHOOK_PROPERTY} to {self.hook_url}, with read roles itil so this check can "
            "read it; set [webhooks] public_url if the daemon is reached at another address"
        )
        try:
            rows = self.sn.rows(
                "sys_properties", f"name={WEBHOOK_PROPERTY}", fields=["name", "value"], limit=1
            )
        except (AuthFailed, Forbidden):
            rows = []
        if not rows:
            return failed(
                SYSTEM,
                "webhook",
                f"the Business Rule's property {WEBHOOK_PROPERTY} is not set or not readable",
                fix,
            )
        value = str(rows[0].get("value", "")).rstrip("/")
        if value != self.hook_url:
            return failed(
                SYSTEM,
                "webhook",
                f"the Business Rule posts to {value}, not to this daemon ({self.hook_url})",
                fix,
            )
        return passed(SYSTEM, "webhook", f"the Business Rule posts to {self.hook_url}")
