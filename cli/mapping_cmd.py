"""`mapping check` and `mapping preview`: validate configuration, preview a mapping offline."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.options import system_option
from escalation.wording import plural
from mapping.model import System

if TYPE_CHECKING:
    from mapping import ConfigError, Mapping
    from sync.config.settings import Settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $ESCALATION_SYNC_CONFIG, else config.example.toml).",
        show_default=False,
    ),
]


def load_or_exit(config: Path | None, *, secrets: bool = False, webhooks: bool = False) -> Settings:
    """Load settings, or print every configuration error and exit 2.

    With `secrets` (commands that talk to the systems), a credential the configuration lacks is
    such an error too, named by the environment variable that sets it; with `webhooks` (the
    commands that receive them or check for them), a missing webhook secret is a warning.
    """
    # Imported when a command loads its configuration, not with --help (start-up time).
    from mapping import ConfigInvalid
    from sync.config.secrets import missing_secrets
    from sync.config.settings import config_path, load_settings
    from sync.runtime.logs import configure_logging, settings_secrets

    try:
        settings = load_settings(config)
    except ConfigInvalid as exc:
        _refuse(exc.errors)
    if secrets:
        lacking = missing_secrets(settings)
        source = str(config_path(config))
        required = [m.as_error(source) for m in lacking if m.required]
        if required:
            _refuse(required)
        for warning in lacking if webhooks else ():
            typer.echo(f"warning: {warning}", err=True)
    # Every command that loads the configuration masks its secrets in whatever it logs.
    configure_logging(secrets=settings_secrets(settings))
    return settings


def _refuse(errors: Sequence[ConfigError]) -> NoReturn:
    typer.echo(f"invalid configuration ({plural(len(errors), 'error')}):", err=True)
    for error in errors:
        typer.echo(f"  {error}", err=True)
    raise typer.Exit(2)


def flowing_fields(mapping: Mapping, source: System) -> list[str]:
    """Canonical fields a change in `source` is copied from: those the sync carries across
    (read on both sides, written on the other) that `source` owns or shares."""
    # The sync rules load only for a preview (start-up time).
    from sync.pipeline.plan import sync_rules

    synced = sync_rules(mapping).synced_fields()
    return [f for f in synced if mapping.owner(f) in (source.value, "both")]


def vendor_record(system: System, document: dict[str, Any]) -> dict[str, Any]:
    """Accept a record as the vendor prints it (a Table API `result`, a webhook's `issue`)."""
    # The installed systems load only for a preview (start-up time).
    from sync.systems import registry as systems

    return systems.get(system).vendor_record(document)


def register(app: typer.Typer) -> None:
    """Add the `mapping` command group."""
    group = typer.Typer(help="Check and preview mapping files.", no_args_is_help=True)

    @group.command("check")
    def check(config: ConfigOption = None) -> None:
        """Validate the whole configuration offline, secrets included (each missing one named
        by the environment variable that sets it); exit 2 listing every error (file, key,
        reason)."""
        from sync.config.settings import config_path  # start-up time: settings load here

        settings = load_or_exit(config, secrets=True, webhooks=True)
        mapping = settings.mapping_model
        systems = ", ".join(s.value for s in mapping.systems)
        policy = settings.compiled_policy
        policy_text = f", policy {getattr(policy, 'name', None) or 'loaded'}" if policy else ""
        typer.echo(
            f"OK {config_path(config)}: systems {systems}; "
            f"{plural(len(mapping.field_names()), 'field')}; "
            f"{plural(len(mapping.routes), 'route')}{policy_text}"
        )

    @group.command("preview")
    def preview(
        record: Annotated[Path, typer.Argument(help="A vendor record as JSON.", exists=True)],
        system: Annotated[System, system_option("The record's system.")],
        config: ConfigOption = None,
    ) -> None:
        """Print the canonical ticket and the payload that would be written to the other system."""
        # The mapping code loads when a record is previewed (start-up time).
        from mapping import to_canonical, to_vendor
        from sync.pipeline.plan import get_value

        settings = load_or_exit(config)
        mapping = settings.mapping_model
        try:
            document = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            typer.echo(f"{record}: not a JSON record: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            ticket = to_canonical(mapping, system, vendor_record(system, document))
        except ValueError as exc:
            typer.echo(f"{record}: cannot map: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            other = mapping.partner_of(system)
        except ValueError as exc:
            typer.echo(f"cannot preview: {exc}", err=True)
            raise typer.Exit(2) from None
        # As the engine creates a pair: a field with no value is left out, not blanked.
        fields = [f for f in flowing_fields(mapping, system) if get_value(ticket, f) is not None]
        write = to_vendor(mapping, other, ticket, fields)
        out = {
            "canonical": ticket.model_dump(mode="json"),
            "write_to": other.value,
            "payload": {
                "fields": write.fields,
                "transition_to": write.transition_to,
                "transition_fields": write.transition_fields,
            },
        }
        json.dump(out, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")

    app.add_typer(group, name="mapping")
