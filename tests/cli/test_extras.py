"""The simulators' server-only dependencies are an extra; commands needing it say so in a line."""

from __future__ import annotations

import importlib.metadata
from importlib.metadata import PackageNotFoundError, requires

import pytest
from typer.testing import CliRunner

from cli.app import build
from cli.extras import extra_requirements, missing_for


def _without(monkeypatch: pytest.MonkeyPatch, absent: str) -> None:
    """Pretend the distribution `absent` is not installed."""
    real = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name == absent:
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def test_the_daemon_does_not_require_the_simulators_servers() -> None:
    """aiosmtpd and python-multipart are requirements of the `simulators` extra only."""
    always = [r for r in requires("escalation-sync") or [] if "extra ==" not in r]
    names = " ".join(always).lower()
    assert "aiosmtpd" not in names and "multipart" not in names
    assert {"aiosmtpd", "python-multipart"} <= set(extra_requirements("simulators"))


def test_the_test_extra_brings_the_simulators_extra() -> None:
    """Installing `.[test]` installs what the simulators need, so the suite can run them."""
    assert missing_for("simulators") == []
    test_extra = [r for r in requires("escalation-sync") or [] if 'extra == "test"' in r]
    assert any(r.startswith("escalation-sync[") and "simulators" in r for r in test_extra)


@pytest.mark.parametrize("command", [["demo"], ["simulators"]])
def test_missing_extra_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Without aiosmtpd, `demo` and `simulators` exit 2 with one line naming the extra."""
    _without(monkeypatch, "aiosmtpd")
    result = CliRunner().invoke(build(), command)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"escalation-sync {command[0]} needs the 'simulators' extra" in lines[0]
    assert "missing: aiosmtpd" in lines[0]
    assert "pip install 'escalation-sync[simulators]'" in lines[0]
    assert "Traceback" not in result.output
