"""The decide package: its procedure as documented, a stage's place in it, and its purity."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

import escalation.decide
from escalation.decide import PROCEDURE, decide, play, procedure
from escalation.decide.context import Flow, Run
from escalation.decision import LedgerView
from escalation.policy import Policy
from mapping.model import EscalationState, Ticket

S = EscalationState
PACKAGE = Path(escalation.decide.__file__).parent


def stage_name(stage: object) -> str:
    module = getattr(stage, "__module__", "").rsplit(".", 1)[-1]
    return f"{module}.{getattr(stage, '__name__', '?')}"


def test_docstring_lists_the_stages_in_order() -> None:
    """The package docstring names every stage of PROCEDURE, in the order decide() runs them."""
    doc = escalation.decide.__doc__ or ""
    listed = re.findall(r"^\d+\. ([\w.]+):", doc, flags=re.MULTILINE)
    assert listed == [stage_name(s) for s in PROCEDURE]


def test_added_stage_runs_in_its_place(
    make_ticket: Callable[..., Ticket],
    policy: Policy,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage added to the procedure sees the run as the stages before it left it."""
    seen: list[EscalationState] = []

    def observe(run: Run) -> Flow:
        seen.append(run.state)
        return Flow.NEXT

    after_commands = PROCEDURE.index(play.play_commands) + 1
    stages = (*PROCEDURE[:after_commands], observe, *PROCEDURE[after_commands:])
    monkeypatch.setattr(procedure, "PROCEDURE", stages)
    decision = decide(make_ticket(labels=("escalate",)), LedgerView(), now, policy)
    assert seen == [S.PENDING_APPROVAL]
    assert decision.state is S.PENDING_APPROVAL


def test_done_ends_the_decision(
    make_ticket: Callable[..., Ticket],
    policy: Policy,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage that returns DONE settles the decision: no later stage runs."""

    def settle(run: Run) -> Flow:
        return Flow.DONE

    def fail(run: Run) -> Flow:
        raise AssertionError("a stage ran after the decision was settled")

    monkeypatch.setattr(procedure, "PROCEDURE", (settle, fail))
    decision = decide(make_ticket(labels=("escalate",)), LedgerView(), now, policy)
    assert decision.state is S.NONE and decision.actions == ()


# Pure: the standard library's computing modules, and our pure packages, nothing else.
PURE_IMPORTS = re.compile(
    r"(__future__|collections(\.abc)?|dataclasses|datetime|enum|hashlib|re|typing|zoneinfo"
    r"|escalation(\.\w+)*|mapping(\.\w+)*)$"
)
# The clock's readers (the time module cannot be imported at all), and files.
CLOCK_CALLS = {"now", "utcnow", "today", "open"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_are_pure(path: Path) -> None:
    """No module of decide() imports I/O or reads a clock: time comes in as `now`."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        assert all(PURE_IMPORTS.match(n) for n in names), f"{path.name} imports {names}"
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in CLOCK_CALLS, f"{path.name}:{node.lineno} calls {called}()"
