"""The suite is self-contained: vendor material is in tests/fixtures with its source named."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import FIXTURES, ROOT

SOURCE_FILES = ("SOURCES.md", "README.md")
# A path built to the folder beside the clone: `../shared`, `parent / "shared"`, `"shared" / ...`.
_OUTSIDE = re.compile(r"""\.\./shared\b|["']shared["']\s*/|/\s*["']shared["']""")


def _sources_for(path: Path) -> list[Path]:
    """The SOURCES.md or README.md files that may describe `path`: in its folder and the
    folders above it, below tests/fixtures itself (whose README is only an index)."""
    found = []
    for folder in path.parents:
        if folder == FIXTURES:
            break
        found += [folder / name for name in SOURCE_FILES if (folder / name).is_file()]
    return found


def test_no_test_reads_outside_the_repository() -> None:
    """No test or benchmark builds a path to `../shared`, which a fresh clone does not have."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in (ROOT / "tests", ROOT / "bench")
        for path in folder.rglob("*.py")
        if path != Path(__file__).resolve() and _OUTSIDE.search(path.read_text())
    ]
    assert offenders == []


def test_every_fixture_file_has_its_source_named() -> None:
    """Each copied file is named in a SOURCES.md (or README.md) above it, by file name or by its
    folder."""
    unnamed = []
    for path in sorted(FIXTURES.rglob("*")):
        if not path.is_file() or path.suffix == ".md" or path.name.startswith("LICENSE"):
            continue
        texts = [s.read_text() for s in _sources_for(path)]
        group = f"{path.parent.name}/"
        if not any(path.name in text or group in text for text in texts):
            unnamed.append(str(path.relative_to(FIXTURES)))
    assert unnamed == []
