"""`--help` of every command reads cleanly: no value type shown for flags, no cut sentences."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from cli.app import build, reflow


def command_paths() -> list[list[str]]:
    """The argument path of every command and group, the root included."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(build()), [])
    return paths


def help_text(path: list[str]) -> str:
    result = CliRunner().invoke(build(), [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_no_help_shows_a_type_for_a_flag() -> None:
    """No `--help` output of any command shows `<bool>`, the flags' `--help` included."""
    paths = command_paths()
    assert len(paths) > 20
    for path in paths:
        out = help_text(path)
        assert "<bool>" not in out, (path, out)
        assert "--help" in out


def test_help_paragraphs_are_not_cut_mid_sentence() -> None:
    """Docstring paragraphs wrapped in the source print as one flowing paragraph."""
    out = help_text(["simulators"])
    assert (
        "the printed snippet, merged into a copy of config.example.toml, points the daemon" in out
    )
    listing = help_text(["policy"])
    assert "escalations per day, refusals by reason, limit hits." in listing


def test_reflow_keeps_paragraphs_and_verbatim_blocks() -> None:
    """Lines of a paragraph are joined; blank lines and \\b blocks are kept."""
    assert reflow("One\n  two.\n\nThree\nfour.") == "One two.\n\nThree four."
    assert reflow("Lead.\n\n\b\na\nb") == "Lead.\n\n\b\na\nb"
    assert reflow(None) is None
