"""One line per check: what was checked, whether it passed, and how to fix it when it did not."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """A check's outcome; SKIP when a check it depends on failed (it is not run)."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check of one system."""

    system: str
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        """Whether the check failed."""
        return self.verdict is Verdict.FAIL

    def line(self) -> str:
        """`FAIL jira internal-comment role: ... (fix: ...)`."""
        text = f"{self.verdict.value} {self.system} {self.name}: {self.detail}"
        return f"{text} (fix: {self.fix})" if self.fix and self.failed else text


def passed(system: str, name: str, detail: str) -> CheckResult:
    """A check that passed."""
    return CheckResult(system, name, Verdict.PASS, detail)


def failed(system: str, name: str, detail: str, fix: str) -> CheckResult:
    """A check that failed, with what to do about it."""
    return CheckResult(system, name, Verdict.FAIL, detail, fix)


def skipped(system: str, name: str, why: str) -> CheckResult:
    """A check not run because one it depends on failed."""
    return CheckResult(system, name, Verdict.SKIP, f"not checked: {why}")
