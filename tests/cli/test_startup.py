"""Start-up: `--help` and `--version` load no simulator nor heavy library; completion works."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

from tests.conftest import ROOT

# Libraries only the commands that use them may load (the daemon's server, the store, the
# queue, the connectors, the mail and chat transports, the simulators' SMTP server).
HEAVY = (
    "aiosmtpd",
    "alembic",
    "bs4",
    "exchangelib",
    "fastapi",
    "httpx",
    "huey",
    "imapclient",
    "jinja2",
    "jira",
    "msal",
    "prometheus_client",
    "psycopg",
    "python_multipart",
    "redis",
    "requests",
    "slack_sdk",
    "sqlalchemy",
    "starlette",
    "structlog",
    "tenacity",
    "uvicorn",
)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_sync.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def imported_modules(*args: str) -> set[str]:
    """The modules `escalation-sync ARGS` imports, from `python -X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "run_sync.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "cli.app" in names
    return names


def _loaded(names: set[str], top: str) -> list[str]:
    return sorted(n for n in names if n == top or n.startswith(f"{top}."))


def test_help_imports_no_simulator_nor_heavy_library() -> None:
    """`--help` builds every command without importing a simulator or a heavy library."""
    names = imported_modules("--help")
    assert _loaded(names, "simulators") == []
    assert {top: _loaded(names, top) for top in HEAVY if _loaded(names, top)} == {}


def test_version_imports_no_heavy_library_either() -> None:
    """`--version` is as light as `--help`."""
    names = imported_modules("--version")
    assert _loaded(names, "simulators") == []
    assert [top for top in HEAVY if _loaded(names, top)] == []


def test_version_is_the_installed_package_version() -> None:
    """`--version` prints the distribution's version from its metadata and exits 0."""
    result = _cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"escalation-sync {version('escalation-sync')}\n"


def test_completion_script_is_printed_for_bash() -> None:
    """`--show-completion bash` prints a script bound to the escalation-sync command."""
    # Typer's switch for naming the shell instead of detecting the one the test runs under.
    result = _cli(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "_ESCALATION_SYNC_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _escalation_sync_completion escalation-sync" in result.stdout


def test_completion_offers_commands_and_choices() -> None:
    """The shell's completion request is answered with commands, subcommands and choices."""

    def complete(words: str) -> list[str]:
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        result = _cli(
            env={
                "_ESCALATION_SYNC_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": cword,
            }
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("escalation-sync dead") == ["deadletters"]
    assert complete("escalation-sync deadletters ") == ["list", "replay"]
    assert complete("escalation-sync backfill --system ") == ["jira", "servicenow"]
