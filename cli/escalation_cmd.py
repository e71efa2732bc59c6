"""`explain REF` (a ticket's decision trace) and `policy simulate|check|presets` (tune a policy)."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import errors
import presets
from cli.failures import describe, fail, system_name
from cli.mapping_cmd import ConfigOption, load_or_exit
from connectors.errors import ConnectorError, NotFound
from escalation.wording import plural
from mapping.errors import ConfigInvalid
from mapping.model import Status, System

if TYPE_CHECKING:
    from escalation.chat import ChatStatus
    from escalation.decision import EngineeringStatus, LedgerView
    from escalation.history import PastDecision
    from escalation.policy import Policy
    from mapping.model import Ticket
    from sync.config.settings import Settings
    from sync.store.database import Link

PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        "-p",
        help="A policy TOML file or a preset name (default: the configuration's policy).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    # Most refusals here are of the arguments or the policy file: 2 unless told otherwise.
    return fail(message, code)


def read_policy(spec: str) -> Policy:
    """A policy from a file path, or from a preset by name; exit 2 listing every error."""
    from escalation.policy import load_policy  # the policy compiler: start-up time

    path = Path(spec)
    try:
        if path.is_file():
            with path.open("rb") as fh:
                return load_policy(tomllib.load(fh), source=str(path))
        return presets.load_preset(spec)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"{spec}: not valid TOML: {exc}") from None
    except ConfigInvalid as exc:
        typer.echo(f"invalid policy ({plural(len(exc.errors), 'error')}):", err=True)
        for error in exc.errors:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(2) from None


def _check_against(settings: Settings, policy: Policy, spec: str) -> None:
    """Exit 2 listing what the policy needs that the configuration does not give it."""
    from escalation.policy import key_prefix, mapping_gaps, target_gaps  # start-up time
    from sync.config.settings import policy_scopes

    path = Path(spec)
    source = str(path) if path.is_file() else str(presets.preset_path(spec))
    with Path(source).open("rb") as fh:
        prefix = key_prefix(tomllib.load(fh))
    mapping = settings.mapping_model
    scopes = policy_scopes(settings.systems, mapping)
    errors = mapping_gaps(policy, mapping, source=source, prefix=prefix) + target_gaps(
        policy, mapping, scopes, source=source, prefix=prefix
    )
    if errors:
        typer.echo(
            f"policy does not fit {settings.source} ({plural(len(errors), 'error')}):", err=True
        )
        for error in errors:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(2)


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"--at: not an ISO date-time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _ticket_from_file(path: Path) -> Ticket:
    from pydantic import ValidationError  # start-up time

    from mapping.model import Ticket

    try:
        return Ticket.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise _fail(f"{path}: not a canonical ticket: {exc}") from None


def _paired(settings: Settings, system: System, ident: str) -> Link | None:
    # The store (SQLAlchemy) and the composition root load only when a command opens the store
    # (start-up time).
    from sync.runtime.wiring import open_store

    store = open_store(settings)
    try:
        return store.get_link(system.value, ident)
    finally:
        store.close()


def _resolve_ref(settings: Settings, ref: str) -> tuple[str, str | None]:
    """The ref to explain and, when it is the other side of `ref`'s pair, a note saying so.

    The policy reads the ITSM record (requests, approvals, the gate): explaining an engineering
    issue with it would only report that nobody asked for an escalation there.
    """
    from sync.runtime import refs  # the installed systems: start-up time

    system, ident = refs.parse_ref(ref, settings)
    itsm = settings.mapping_model.itsm_systems()
    if system in itsm:
        return ref, None
    itsm_names = " or ".join(sorted(system_name(s.value) for s in itsm))
    link = _paired(settings, system, ident)
    if link is None:
        raise _fail(
            f"{ref} is a {system_name(system.value)} record that is not paired with a "
            f"{itsm_names} record; escalations are decided on {itsm_names} records: "
            f"give one of those (its number or id)",
            1,
        )
    partner = link.partner(system.value)
    other_system, other_id = partner.system, partner.ticket_id
    shown = partner.record_key or other_id
    note = (
        f"{ref} is the engineering side of a pair: explaining the paired "
        f"{system_name(other_system)} record {shown}"
    )
    return f"{other_system}:{other_id}", note


def _ticket_from_ref(settings: Settings, ref: str) -> Ticket:
    from sync.runtime import refs  # the engine and connectors: start-up time

    system, ident = refs.parse_ref(ref, settings)
    try:
        ticket: Ticket = refs.load_ticket_for_explain(settings, ref)
    except NotFound:
        raise _fail(f"{system_name(system.value)} has no record {ident}", 1) from None
    except ConnectorError as exc:
        raise _fail(f"cannot read {ref}: {describe(exc, settings, system.value)}", 1) from None
    except errors.DeadLetter as exc:
        # The record was read but cannot be mapped: the mapping names the value it lacks.
        raise _fail(f"cannot read {ref}: {exc}", 1) from None
    except ValueError as exc:
        # The connectors refuse a half-configured credential or a malformed identifier.
        raise _fail(f"cannot read {ref}: {exc}") from None
    return ticket


def _ledger_view(settings: Settings, ticket: Ticket, at: datetime, policy: Policy) -> LedgerView:
    # The ledger's store (SQLAlchemy) loads only to explain a stored ticket (start-up time).
    from sync.procedure.ledger import ledger_view
    from sync.runtime.wiring import open_store

    store = open_store(settings)
    try:
        with store.reading() as tx:
            return ledger_view(tx, ticket, at, policy)
    finally:
        store.close()


def _export(settings: Settings, since: datetime) -> list[dict[str, Any]]:
    """The snapshots of every ITSM record changed since `since` (see `policy export`)."""
    # The connectors, the store and the replay load only to export (start-up time).
    from escalation.simulate import replay, snapshot_to_json
    from mapping import to_canonical
    from sync.procedure.engineering import engineering_status
    from sync.runtime.wiring import build_adapters, integration_users, open_store

    adapters = build_adapters(settings)
    mapping = settings.mapping_model
    users = [u for u in integration_users(settings).values() if u]

    def read(system: System, ident: str) -> Ticket:
        try:
            ticket: Ticket = to_canonical(mapping, system, adapters[system].read(ident))
        except ConnectorError as exc:
            raise _fail(f"cannot read {system.value}:{ident}: {exc}", 1) from None
        return ticket

    lines: list[dict[str, Any]] = []
    store = open_store(settings)
    try:
        for system in sorted(mapping.itsm_systems()):
            try:
                changed = list(adapters[system].changed_since(since))
            except ConnectorError as exc:
                raise _fail(f"cannot list {system_name(system.value)} records: {exc}", 1) from None
            for item in changed:
                ticket = read(system, item.ticket_id)
                link = store.get_link(system.value, ticket.ref.id)
                engineering = None
                if link is not None:
                    partner = link.partner(system.value)
                    eng = read(System(partner.system), partner.ticket_id)
                    engineering = engineering_status(eng, users)
                lines.extend(snapshot_to_json(s) for s in replay(ticket, engineering))
    finally:
        store.close()
    lines.sort(key=lambda line: str(line["at"]))
    return lines


def _history(settings: Settings, ticket: Ticket) -> list[PastDecision]:
    """The ticket's recorded decisions, oldest first."""
    # The store (SQLAlchemy) loads only to explain a stored ticket (start-up time).
    from escalation.decision import ledger_key
    from sync.procedure.history import decisions_of
    from sync.runtime.wiring import open_store

    store = open_store(settings)
    try:
        with store.reading() as tx:
            return decisions_of(tx, ledger_key(ticket.ref))
    finally:
        store.close()


def _chat_status(settings: Settings, ticket: Ticket, policy: Policy) -> ChatStatus | None:
    """What the chat notifiers did for the ticket's room, as the daemon's step reads it."""
    # The store and the notifiers load only to explain a stored ticket (start-up time).
    from sync.notify.registry import build_notifiers
    from sync.procedure.step import PolicyEscalation
    from sync.runtime.wiring import open_store

    step = PolicyEscalation(policy, notifiers=build_notifiers(settings))
    store = open_store(settings)
    try:
        with store.reading() as tx:
            return step.chat_status(tx, ticket)
    finally:
        store.close()


def _engineering_now(settings: Settings, ticket: Ticket) -> tuple[EngineeringStatus | None, str]:
    """The paired engineering record read now, and a line saying what was read."""
    # The engine and connectors load only to read a live record (start-up time).
    from sync.procedure.engineering import engineering_status
    from sync.runtime import refs
    from sync.runtime.wiring import integration_users

    link = _paired(settings, ticket.ref.system, ticket.ref.id)
    if link is None:
        return None, "none paired"
    partner = link.partner(ticket.ref.system.value)
    other_system, other_id = partner.system, partner.ticket_id
    try:
        eng = refs.load_ticket_for_explain(settings, f"{other_system}:{other_id}")
    except ConnectorError as exc:
        return None, f"{other_id} could not be read: {describe(exc, settings, other_system)}"
    status = engineering_status(eng, [u for u in integration_users(settings).values() if u])
    assignee = f", assigned to {eng.assignee.name or eng.assignee.email}" if eng.assignee else ""
    name = eng.ref.key or eng.ref.id
    shown = eng.status.value if eng.status else "status unknown"
    return status, f"{name} is {shown}{assignee} (read now)"


def register(app: typer.Typer) -> None:
    """Add `explain` and the `policy` command group."""

    @app.command("explain")
    def explain(
        ref: Annotated[
            str | None,
            typer.Argument(
                metavar="REF",
                help="jira:KEY, servicenow:<sys_id>, a Jira key or an INC number "
                "(or give --ticket-file instead).",
                show_default=False,
            ),
        ] = None,
        ticket_file: Annotated[
            Path | None,
            typer.Option("--ticket-file", help="A canonical ticket (JSON) instead of REF."),
        ] = None,
        policy: PolicyOption = None,
        config: ConfigOption = None,
        at: Annotated[
            str | None, typer.Option("--at", help="Decide as of this ISO time (default: now).")
        ] = None,
        engineering_status: Annotated[
            Status | None,
            typer.Option(
                "--engineering-status",
                metavar="<status>",
                help="Status of the paired engineering record: "
                + ", ".join(s.value for s in Status)
                + ".",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """The decision trace for a ticket now: state, each rule and why, counts, what is next.

        Nothing is written: the decision is computed, not recorded.
        """
        # The policy engine loads only to decide (start-up time).
        from escalation.decide import decide
        from escalation.decision import EngineeringStatus, LedgerView
        from escalation.explain import explain_data, render_text

        if (ref is None) == (ticket_file is None):
            raise _fail("give either REF or --ticket-file")
        when = _parse_at(at)
        # A ticket file with an explicit policy needs no configuration (and no ledger).
        settings = load_or_exit(config) if (ref is not None or config is not None) else None
        if policy is not None:
            chosen = read_policy(policy)
        elif settings is not None and settings.compiled_policy is not None:
            chosen = settings.compiled_policy
        else:
            raise _fail("no escalation policy: pass --policy or configure [escalation]")
        note = None
        if ticket_file is not None:
            ticket = _ticket_from_file(ticket_file)
        else:
            # A REF is read with the configuration: `settings` was loaded above.
            assert settings is not None and ref is not None
            resolved, note = _resolve_ref(settings, ref)
            ticket = _ticket_from_ref(settings, resolved)
        view = (
            _ledger_view(settings, ticket, when, chosen) if settings is not None else LedgerView()
        )
        engineering = (
            EngineeringStatus(None, engineering_status) if engineering_status is not None else None
        )
        history: list[PastDecision] = []
        live: str | None = None
        if ref is not None and settings is not None:
            history = _history(settings, ticket)
            if engineering is None:
                engineering, live = _engineering_now(settings, ticket)
        chat = _chat_status(settings, ticket, chosen) if settings is not None else None
        decision = decide(ticket, view, when, chosen, engineering=engineering, chat=chat)
        if as_json:
            eng_data = None
            if engineering is not None:
                eng_data = {
                    "ref": engineering.ref.key or engineering.ref.id if engineering.ref else None,
                    "status": engineering.status.value if engineering.status else None,
                    "assignee": engineering.assignee.model_dump() if engineering.assignee else None,
                    "read": "live" if live is not None else "given",
                }
            data = explain_data(ticket, view, decision, when, history, eng_data)
            if note is not None:
                data["requested_ref"] = ref
                data["note"] = note
            typer.echo(json.dumps(data, indent=2))
        else:
            if note is not None:
                typer.echo(f"{note}\n")
            typer.echo(render_text(ticket, view, decision, when, history, live))

    @app.command("report")
    def report_cmd(
        since: Annotated[
            str,
            typer.Option(
                "--since",
                help="First day (or ISO moment) of the period: 2026-11-01.",
                show_default=False,
            ),
        ],
        until: Annotated[
            str | None,
            typer.Option("--until", help="End of the period, not included (default: now)."),
        ] = None,
        output: Annotated[
            str, typer.Option("--format", "-f", help="table, csv or json.")
        ] = "table",
        config: ConfigOption = None,
    ) -> None:
        """The review of escalations requested in a period: by cause, type (category), level
        and approver; how many were escalated, ended without running, joined another or were
        resolved; hours from request to approval and from approval to the end (median and
        90th percentile). Read from the decisions the daemon recorded.
        """
        # The report (and below, the store) load only to report (start-up time).
        from escalation.history import episodes
        from escalation.report import build_report, render_csv, render_table

        if output not in ("table", "csv", "json"):
            raise _fail(f"--format: one of table, csv, json (not {output!r})")
        start = _parse_at(since)
        end = _parse_at(until)
        if end <= start:
            raise _fail("--until must be after --since")
        settings = load_or_exit(config)
        from sync.procedure.history import decisions_since
        from sync.runtime.wiring import open_store

        store = open_store(settings)
        try:
            with store.reading() as tx:
                past = decisions_since(tx, start)
        finally:
            store.close()
        built = build_report(episodes(past), start, end)
        if output == "json":
            typer.echo(json.dumps(built.to_dict(), indent=2))
        elif output == "csv":
            typer.echo(render_csv(built), nl=False)
        else:
            typer.echo(render_table(built))

    group = typer.Typer(help="Check, list and simulate escalation policies.", no_args_is_help=True)

    @group.command("simulate")
    def simulate_cmd(
        tickets: Annotated[
            Path,
            typer.Option(
                "--tickets",
                "-t",
                help="Ticket snapshots, one JSON object per line (format above).",
                exists=True,
                dir_okay=False,
            ),
        ],
        policy: PolicyOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """What-if: play tickets through the policy in time order; escalations per day,
        refusals by reason, limit hits.

        The tickets file holds one JSON object per line, in any order: a canonical ticket (the
        "canonical" object `mapping preview` prints), decided at its `updated` time; or
        {"ticket": {...}, "at": "2026-03-11T09:00:00Z", "engineering": {"status": "resolved"}}
        to give the moment and the paired engineering record's status. A ticket appears once
        for each state it passed through, its comments accumulating. The source tree has a
        sample: docs/simulate-tickets.jsonl.
        """
        # The simulation (policy engine, pydantic validation) loads only to run (start-up time).
        from pydantic import ValidationError

        from escalation.simulate import SnapshotInvalid, simulate, snapshot_from_json
        from escalation.simulate import render_text as render_simulation

        if policy is not None:
            chosen = read_policy(policy)
        else:
            settings = load_or_exit(config)
            if settings.compiled_policy is None:
                raise _fail("no escalation policy: pass --policy or configure [escalation]")
            chosen = settings.compiled_policy
        snapshots = []
        problems: list[str] = []
        with tickets.open() as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    snapshots.append(snapshot_from_json(json.loads(line)))
                except (json.JSONDecodeError, ValidationError, SnapshotInvalid, ValueError) as exc:
                    first = str(exc).splitlines()[0]
                    problems.append(f"{tickets}:{n}: {first}")
        if problems:
            typer.echo(f"{plural(len(problems), 'unreadable line')}:", err=True)
            for p in problems[:20]:
                typer.echo(f"  {p}", err=True)
            raise typer.Exit(2)
        report = simulate(chosen, snapshots)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            typer.echo(render_simulation(report))

    @group.command("export")
    def export_cmd(
        since: Annotated[
            str,
            typer.Option(
                "--since", help="Tickets changed since this day or ISO moment.", show_default=False
            ),
        ],
        out: Annotated[
            Path,
            typer.Option("--out", "-o", help="The JSONL file to write (for `policy simulate`)."),
        ],
        config: ConfigOption = None,
    ) -> None:
        """Export tickets from the live systems as the file `policy simulate --tickets` reads.

        Reads every ITSM record changed since --since, with its comments, and, when it is
        paired, the engineering record's status now; each ticket becomes the snapshots it went
        through (after each comment, then as it is now), so a what-if run decides its requests
        and approvals in the order they were written. Nothing is written to the systems.
        """
        start = _parse_at(since)
        settings = load_or_exit(config)
        lines = _export(settings, start)
        out.write_text("".join(json.dumps(line) + "\n" for line in lines))
        typer.echo(f"wrote {plural(len(lines), 'snapshot')} to {out}")

    @group.command("check")
    def check(
        policy: Annotated[
            str | None,
            typer.Argument(
                help="A policy TOML file or a preset name (default: the configuration's).",
                show_default=False,
            ),
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Validate a policy; exit 2 listing every error (file, key, reason).

        With --config, also check it against that configuration: every field a rule reads is
        read by the mapping, every level's project is one the configuration works in (its Jira
        project and JQL, its ServiceNow table), and every routing field (queue, assignment
        group, component, team) is written by the mapping on the target system.
        """
        if policy is None and config is None:
            raise _fail("give a policy, --config, or both")
        settings = load_or_exit(config) if config is not None else None
        if policy is None:
            assert settings is not None
            chosen = settings.compiled_policy
            if chosen is None:
                raise _fail("the configuration has no escalation policy")
            name = str(settings.source)
        else:
            chosen = read_policy(policy)
            name = policy
            if settings is not None:
                _check_against(settings, chosen, policy)
        levels = " -> ".join(lv.name for lv in chosen.levels)
        against = f" against {settings.source}" if settings is not None else ""
        typer.echo(f"OK {name}: policy {chosen.name}; levels {levels}{against}")

    @group.command("presets")
    def list_presets() -> None:
        """List the shipped presets and the folder they are in."""
        typer.echo(f"presets in {presets.presets_dir()}:")
        for name in presets.preset_names():
            typer.echo(f"  {name}: {presets.load_preset(name).description}")

    app.add_typer(group, name="policy")
