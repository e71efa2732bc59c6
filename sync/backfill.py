"""Backfill: pair the records that existed before the product was switched on, in bulk.

```
backfill(engine, System.SERVICENOW, since=...)
    scan the system (changed since `since`, else everything), read and map each record
    keep the unpaired ones a route pairs (an `always` route, or an escalation route when the
        record carries the escalation label)
    create their pairs in bulk: Jira bulk create (50 issues a request), ServiceNow Batch API
    link each pair, then mirror its comments and attachments through the engine
```
A record whose pair could not be created is reported with the vendor's reason and left unpaired;
running backfill again retries exactly those (paired records are skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from connectors.errors import ConnectorError
from connectors.servicenow import BatchRequest
from mapping import Route, matching_routes, to_vendor
from mapping.model import System, Ticket
from sync.adapters import JiraAdapter, ServiceNowAdapter
from sync.plan import get_value, other

if TYPE_CHECKING:
    from sync.engine import Engine

log = structlog.get_logger("escalation_sync.backfill")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ESCALATION_LABEL = "ESCALATION"
BATCH_SIZE = 50


@dataclass(frozen=True, slots=True)
class BackfillFailure:
    """A record whose pair was not made, and why."""

    ticket: str
    reason: str


@dataclass(frozen=True, slots=True)
class BackfillSkip:
    """A record no route pairs: its key (or id) and why no route took it."""

    ticket: str
    reason: str


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill pass did."""

    scanned: int = 0
    paired: int = 0
    already_paired: int = 0
    not_routed: int = 0
    failures: tuple[BackfillFailure, ...] = field(default_factory=tuple)
    unrouted: tuple[BackfillSkip, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class _Candidate:
    ticket: Ticket
    route: Route
    payload: dict[str, Any]
    transition_to: str | None


Progress = Callable[[str, int, int | None], None]


def _no_progress(_stage: str, _done: int, _total: int | None) -> None:
    return None


def backfill(
    engine: Engine,
    system: System,
    *,
    since: datetime | None = None,
    label: str = ESCALATION_LABEL,
    progress: Progress = _no_progress,
) -> BackfillResult:
    """Pair the unpaired records of `system` changed since `since` (default: all of them).

    `progress(stage, done, total)` is called as work advances ("scan", then "create", then
    "mirror"); the CLI draws it as a progress bar.
    """
    from sync.engine import ticket_id

    adapter = engine.adapters[system]
    changed = list(adapter.changed_since(since or EPOCH))
    candidates: list[_Candidate] = []
    failures: list[BackfillFailure] = []
    unrouted: list[BackfillSkip] = []
    already = 0
    for done, item in enumerate(changed, start=1):
        progress("scan", done, len(changed))
        if engine.store.get_link(system.value, item.ticket_id) is not None:
            already += 1
            continue
        try:
            ticket = engine.read(system, item.ticket_id)
        except ConnectorError as exc:
            failures.append(BackfillFailure(item.ticket_id, str(exc)))
            continue
        route = _route(engine, ticket, label)
        if route is None:
            unrouted.append(
                BackfillSkip(ticket.ref.key or item.ticket_id, _unrouted(engine, ticket, label))
            )
            continue
        fields = [n for n in engine.rules.synced_fields() if get_value(ticket, n) is not None]
        seed = ticket.model_copy(
            update={"ref": ticket.ref.model_copy(update={"system": route.target})}
        )
        vendor = to_vendor(engine.mapping, route.target, seed, fields)
        candidates.append(_Candidate(ticket, route, dict(vendor.fields), vendor.transition_to))
    target_system = other(system)
    created, create_failures = _create_all(engine, target_system, candidates, progress)
    failures.extend(create_failures)
    paired = 0
    for done, (candidate, target_id) in enumerate(created, start=1):
        progress("mirror", done, len(created))
        try:
            target_adapter = engine.adapters[target_system]
            if candidate.transition_to and isinstance(target_adapter, JiraAdapter):
                target_adapter.connector.transition_to(target_id, candidate.transition_to)
            target = engine.read(target_system, target_id)
            engine.pair_created(candidate.ticket, target, route=candidate.route.name)
            paired += 1
        except ConnectorError as exc:
            failures.append(BackfillFailure(ticket_id(candidate.ticket), str(exc)))
    return BackfillResult(
        scanned=len(changed),
        paired=paired,
        already_paired=already,
        not_routed=len(unrouted),
        failures=tuple(failures),
        unrouted=tuple(unrouted),
    )


def _route(engine: Engine, ticket: Ticket, label: str) -> Route | None:
    approved = label in ticket.labels
    for route in matching_routes(engine.mapping, ticket, escalation_approved=approved):
        return route
    return None


def _unrouted(engine: Engine, ticket: Ticket, label: str) -> str:
    """Why no route pairs `ticket`, route by route."""
    routes = [r for r in engine.mapping.routes if r.source == ticket.ref.system]
    if not routes:
        return f"no route starts from {ticket.ref.system.value}"
    reasons = []
    for route in routes:
        if route.when == "escalation_approved" and label not in ticket.labels:
            reasons.append(f"no {label} label (route {route.name} pairs escalated records only)")
        elif route.filter is not None:
            reasons.append(f"outside the filter of route {route.name}: {route.filter.expression}")
    return "; ".join(reasons)


def _record(
    engine: Engine, candidate: _Candidate, target: System, made_id: str, made_key: Any
) -> None:
    """Link a record with its new pair as soon as the bulk call answers (before mirroring),
    so an interrupted backfill never creates a second pair for it."""
    from sync.engine import ticket_id

    source = candidate.ticket
    if target is System.JIRA:
        engine.store.put_link(
            jira_key=made_id,
            servicenow_sys_id=source.ref.id,
            servicenow_number=source.ref.key,
            route=candidate.route.name,
        )
    else:
        engine.store.put_link(
            jira_key=ticket_id(source),
            jira_id=source.ref.id,
            servicenow_sys_id=made_id,
            servicenow_number=str(made_key) if made_key else None,
            route=candidate.route.name,
        )


def _chunks(items: Sequence[_Candidate], size: int) -> Iterable[Sequence[_Candidate]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _create_all(
    engine: Engine, target: System, candidates: Sequence[_Candidate], progress: Progress
) -> tuple[list[tuple[_Candidate, str]], list[BackfillFailure]]:
    from sync.engine import ticket_id

    adapter = engine.adapters[target]
    created: list[tuple[_Candidate, str]] = []
    failures: list[BackfillFailure] = []
    done = 0
    for chunk in _chunks(candidates, BATCH_SIZE):
        if isinstance(adapter, JiraAdapter):
            issues = [
                {
                    "project": {"key": c.route.target_project or adapter.project},
                    "issuetype": {"name": c.route.issue_type or adapter.issue_type},
                    **c.payload,
                }
                for c in chunk
            ]
            result = adapter.connector.bulk_create(issues)
            refused = {e.index: e for e in result.errors}
            made = iter(result.created)
            for index, candidate in enumerate(chunk):
                if index in refused:
                    reason = "; ".join(refused[index].messages) or "refused by Jira"
                    failures.append(BackfillFailure(ticket_id(candidate.ticket), reason))
                    continue
                issue = next(made, None)
                if issue is None:
                    failures.append(BackfillFailure(ticket_id(candidate.ticket), "not created"))
                    continue
                key = str(issue.get("key") or issue.get("id"))
                _record(engine, candidate, target, key, key)
                created.append((candidate, key))
        elif isinstance(adapter, ServiceNowAdapter):
            conn = adapter.connector
            requests = [
                BatchRequest(
                    id=str(i),
                    method="POST",
                    url=f"/api/now/table/{c.route.target_table or conn.table}",
                    body={k: "" if v is None else str(v) for k, v in c.payload.items()},
                )
                for i, c in enumerate(chunk)
            ]
            for candidate, answer in zip(chunk, conn.batch(requests), strict=True):
                if not answer.ok:
                    failures.append(
                        BackfillFailure(ticket_id(candidate.ticket), answer.error_message or "")
                    )
                    continue
                body = answer.body if isinstance(answer.body, dict) else {}
                record = body.get("result", body)
                sys_id = str(record.get("sys_id", ""))
                _record(engine, candidate, target, sys_id, record.get("number"))
                created.append((candidate, sys_id))
        else:  # pragma: no cover - only the two adapters exist
            raise TypeError(f"no bulk create for {type(adapter).__name__}")
        done += len(chunk)
        progress("create", done, len(candidates))
    return created, failures
