"""Does a reply confirm the fix, or say it is not fixed?

The policy decides what happens (close, reopen, tell engineering); this module only reads the
words. Patterns are regular expressions (case-insensitive) matched against the first few
non-empty lines of the reply with the history already removed, where a person answers the
question. A not-fixed pattern and a confirmation in the same reply ("Yes, but it still fails")
make it `UNCLEAR`: nothing moves, and a person reads the comment. The defaults cover English and
German; admins replace or extend them in the policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

_NEG = (
    r"(?:not|isn'?t|is not|aren'?t|hasn'?t|has not|haven'?t|wasn'?t|doesn'?t|does not|"
    r"didn'?t|did not|never|no longer|won'?t|can'?t|cannot)"
)
DEFAULT_NOT_FIXED: tuple[str, ...] = (
    rf"\b{_NEG}\b[^.!?\n]{{0,40}}\b(?:fixed|resolved|solved|working|work|works|helped|gone)\b",
    r"\bstill\b[^.!?\n]{0,40}\b(?:broken|fail(?:s|ing|ed)?|happen(?:s|ing)|occur(?:s|ring)|"
    r"see(?:ing)?|get(?:ting)?|ha(?:ve|s|ving)|down|not|an issue|a problem|the same|"
    r"crash(?:es|ing)?|error(?:s)?)\b",
    r"\b(?:problem|issue|error|bug)\b[^.!?\n]{0,20}"
    r"\b(?:persists?|again|came back|is back|returned)\b",
    r"\b(?:re-?open|recurr(?:ed|ing|s)?)\b",
    r"^\s*no\b",
    r"\b(?:cannot|can'?t|can not|unable to)\s+confirm\b",
    r"\b(?:funktioniert|geht|läuft)\b[^.!?\n]{0,20}\bnicht\b",
    r"\bnicht\b[^.!?\n]{0,30}\b(?:behoben|gelöst|erledigt)\b",
    r"\b(?:immer noch|noch immer|weiterhin)\b",
    r"^\s*nein\b",
)
DEFAULT_CONFIRMED: tuple[str, ...] = (
    r"^\s*(?:yes|yep|yeah|confirmed|ja|jawohl)\b",
    r"\b(?:is|are|it'?s|that'?s|has been|have been|all|everything'?s?|now)\s+(?:now\s+|all\s+)?"
    r"(?:fixed|resolved|solved|working)\b",
    r"\b(?:works|working)\s+(?:now|again|fine|perfectly|for (?:me|us))\b",
    r"\bi (?:can )?confirm\b",
    r"\b(?:you|please)\s+(?:can\s+|may\s+)?close\b",
    r"\b(?:can|may) be closed\b",
    r"\b(?:funktioniert|geht|läuft)\s+(?:jetzt\s+)?(?:wieder|jetzt)\b",
    r"\b(?:ist|wurde|sind)\s+(?:jetzt\s+|nun\s+)?(?:behoben|gelöst|erledigt)\b",
    r"\bkann geschlossen werden\b",
)


class Verdict(StrEnum):
    """What the reply says about the fix."""

    CONFIRMED = "confirmed"
    NOT_FIXED = "not_fixed"
    UNCLEAR = "unclear"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ReplyPatterns:
    """Compiled confirmation and not-fixed patterns and how many lines they read."""

    confirmed: tuple[re.Pattern[str], ...]
    not_fixed: tuple[re.Pattern[str], ...]
    lines: int = 3

    @classmethod
    def compile(
        cls,
        confirmed: Iterable[str] = DEFAULT_CONFIRMED,
        not_fixed: Iterable[str] = DEFAULT_NOT_FIXED,
        lines: int = 3,
    ) -> ReplyPatterns:
        """Compile both lists; ValueError names every pattern that does not compile."""
        errors: list[str] = []

        def build(name: str, patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
            out = []
            for index, pattern in enumerate(patterns):
                try:
                    out.append(re.compile(pattern, re.IGNORECASE | re.MULTILINE))
                except re.error as exc:
                    errors.append(f"{name}[{index}] {pattern!r}: {exc}")
            return tuple(out)

        compiled = cls(build("confirmed", confirmed), build("not_fixed", not_fixed), lines)
        if errors:
            raise ValueError("; ".join(errors))
        if lines < 1:
            raise ValueError("lines must be at least 1")
        return compiled


DEFAULT_PATTERNS = ReplyPatterns.compile()


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The verdict and the words that decided it (for the note on the ticket)."""

    verdict: Verdict
    matched: tuple[str, ...] = ()


def read_confirmation(text: str, patterns: ReplyPatterns = DEFAULT_PATTERNS) -> Confirmation:
    """Read the first `patterns.lines` non-empty lines of a reply (history already removed)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()][: patterns.lines]
    head = "\n".join(line[:500] for line in lines)
    negative = [m.group(0) for rx in patterns.not_fixed if (m := rx.search(head))]
    positive = [m.group(0) for rx in patterns.confirmed if (m := rx.search(head))]
    if negative and positive:
        return Confirmation(Verdict.UNCLEAR, tuple(negative + positive))
    if negative:
        return Confirmation(Verdict.NOT_FIXED, tuple(negative))
    if positive:
        return Confirmation(Verdict.CONFIRMED, tuple(positive))
    return Confirmation(Verdict.NONE)


__all__ = [
    "DEFAULT_CONFIRMED",
    "DEFAULT_NOT_FIXED",
    "DEFAULT_PATTERNS",
    "Confirmation",
    "ReplyPatterns",
    "Verdict",
    "read_confirmation",
]
