"""`explain REF` (a ticket's decision trace) and `policy simulate|check|presets` (tune a policy)."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

import presets
from cli.mapping_cmd import ConfigOption, load_or_exit
from escalation.decision import EngineeringStatus, LedgerView
from escalation.engine import decide
from escalation.explain import explain_data, render_text
from escalation.policy import Policy, load_policy
from escalation.simulate import SnapshotInvalid, simulate, snapshot_from_json
from escalation.simulate import render_text as render_simulation
from mapping.errors import ConfigInvalid
from mapping.model import Status, Ticket

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
    typer.echo(message, err=True)
    return typer.Exit(code)


def read_policy(spec: str) -> Policy:
    """A policy from a file path, or from a preset by name; exit 2 listing every error."""
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
        typer.echo(f"invalid policy ({len(exc.errors)} errors):", err=True)
        for error in exc.errors:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(2) from None


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"--at: not an ISO date-time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _ticket_from_file(path: Path) -> Ticket:
    try:
        return Ticket.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise _fail(f"{path}: not a canonical ticket: {exc}") from None


def _ticket_from_ref(settings: Any, ref: str) -> Ticket:
    try:
        from sync import engine as sync_engine
    except ImportError as exc:
        raise _fail(f"cannot read {ref}: the sync engine is not available ({exc})") from None
    loader = getattr(sync_engine, "load_ticket_for_explain", None)
    if loader is None:
        raise _fail("reading tickets by reference is not available; use --ticket-file")
    ticket: Ticket = loader(settings, ref)
    return ticket


def _ledger_view(settings: Any, ticket: Ticket, at: datetime, policy: Policy) -> LedgerView:
    from sync.ledger import ledger_view
    from sync.store import Store

    store = Store.for_state(settings.state.dir, settings.state.database_url)
    try:
        with store.reading() as tx:
            return ledger_view(tx, ticket, at, policy)
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add `explain` and the `policy` command group."""

    @app.command("explain")
    def explain(
        ref: Annotated[
            str | None,
            typer.Argument(help="jira:KEY, servicenow:<sys_id>, a Jira key or an INC number."),
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
            typer.Option("--engineering-status", help="Status of the paired engineering record."),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """The decision trace for a ticket now: state, each rule and why, counts, what is next.

        Nothing is written: the decision is computed, not recorded.
        """
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
        ticket = (
            _ticket_from_file(ticket_file) if ticket_file else _ticket_from_ref(settings, ref or "")
        )
        view = (
            _ledger_view(settings, ticket, when, chosen) if settings is not None else LedgerView()
        )
        engineering = (
            EngineeringStatus(None, engineering_status) if engineering_status is not None else None
        )
        decision = decide(ticket, view, when, chosen, engineering=engineering)
        if as_json:
            typer.echo(json.dumps(explain_data(ticket, view, decision, when), indent=2))
        else:
            typer.echo(render_text(ticket, view, decision, when))

    group = typer.Typer(help="Check, list and simulate escalation policies.", no_args_is_help=True)

    @group.command("simulate")
    def simulate_cmd(
        tickets: Annotated[
            Path,
            typer.Option(
                "--tickets",
                "-t",
                help="Canonical tickets, one JSON per line.",
                exists=True,
                dir_okay=False,
            ),
        ],
        policy: PolicyOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """What-if: play tickets through the policy in time order; escalations per day,
        refusals by reason, limit hits."""
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
            typer.echo(f"{len(problems)} unreadable lines:", err=True)
            for p in problems[:20]:
                typer.echo(f"  {p}", err=True)
            raise typer.Exit(2)
        report = simulate(chosen, snapshots)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            typer.echo(render_simulation(report))

    @group.command("check")
    def check(
        policy: Annotated[str, typer.Argument(help="A policy TOML file or a preset name.")],
    ) -> None:
        """Validate a policy file; exit 2 listing every error (file, key, reason)."""
        chosen = read_policy(policy)
        levels = " -> ".join(lv.name for lv in chosen.levels)
        typer.echo(f"OK {policy}: policy {chosen.name}; levels {levels}")

    @group.command("presets")
    def list_presets() -> None:
        """List the shipped presets and the folder they are in."""
        typer.echo(f"presets in {presets.presets_dir()}:")
        for name in presets.preset_names():
            typer.echo(f"  {name}: {presets.load_preset(name).description}")

    app.add_typer(group, name="policy")
