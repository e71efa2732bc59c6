"""Copy attachments between paired records, streamed and de-duplicated.

A file is read from the source in chunks into a `SpooledTemporaryFile` (kept in memory up to a
small threshold, on disk beyond it), hashed on the way, and uploaded from there: a large dump
never sits whole in memory. A file already on the target with the same name and size (and the
same SHA-256 when the target reports one) is not copied again, nor is the same content twice in
one pass. A file over the configured limit is not copied; an internal note on the target lists
it instead, once (the note carries an origin marker).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Literal

from escalation.wording import plural
from mapping.model import Attachment
from sync.pipeline.markers import Marker
from sync.pipeline.plan import AttachmentCopy
from sync.systems.base import Adapter

SPOOL_IN_MEMORY = 1024 * 1024
Outcome = Literal["copied", "duplicate", "oversized", "noted"]


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What happened to one planned copy."""

    copy: AttachmentCopy
    outcome: Outcome
    size: int | None
    sha256: str | None


class TooLarge(Exception):
    """The stream passed the size limit before it ended."""


def oversize_marker(copy: AttachmentCopy) -> Marker:
    """The marker of the note that lists a file too large to copy."""
    return Marker(copy.source, copy.source_ticket, f"attachment-{copy.attachment.id}")


def _spool(
    chunks: Iterable[bytes], limit: int | None
) -> tuple[SpooledTemporaryFile[bytes], int, str]:
    # Closed by the caller (or below on failure), so no context manager here.
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise TooLarge
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest()


def _human(size: int | None) -> str:
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return plural(size, "byte") if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


class AttachmentCopier:
    """Copies planned attachments from one adapter to another."""

    def __init__(self, *, max_bytes: int | None) -> None:
        # None or 0: no limit.
        self.max_bytes = max_bytes or None

    def copy_all(
        self,
        copies: Iterable[AttachmentCopy],
        *,
        source: Adapter,
        target: Adapter,
        source_id: str,
        target_id: str,
        target_attachments: Collection[Attachment],
        existing_markers: Collection[Marker] = (),
    ) -> list[CopyResult]:
        """Copy each planned attachment; returns one result per copy, in order."""
        del source_id  # attachments are addressed by their own ids
        present = {(a.filename, a.size): a.sha256 for a in target_attachments}
        done: set[tuple[str, int, str]] = set()
        markers = set(existing_markers)
        results: list[CopyResult] = []
        for copy in copies:
            att = copy.attachment
            if (att.filename, att.size) in present and present[(att.filename, att.size)] in (
                None,
                att.sha256,
            ):
                results.append(CopyResult(copy, "duplicate", att.size, att.sha256))
                continue
            if self.max_bytes is not None and att.size is not None and att.size > self.max_bytes:
                results.append(self._note(copy, target, target_id, markers, att.size))
                continue
            try:
                spool, size, sha = _spool(source.download(att.id), self.max_bytes)
            except TooLarge:
                results.append(self._note(copy, target, target_id, markers, att.size))
                continue
            with spool:
                key = (att.filename, size, sha)
                known = present.get((att.filename, size), "absent")
                if key in done or known in (None, sha):
                    results.append(CopyResult(copy, "duplicate", size, sha))
                    continue
                target.upload(target_id, att.filename, spool, att.mime_type)  # type: ignore[arg-type]
            done.add(key)
            present[(att.filename, size)] = sha
            results.append(CopyResult(copy, "copied", size, sha))
        return results

    def _note(
        self,
        copy: AttachmentCopy,
        target: Adapter,
        target_id: str,
        markers: set[Marker],
        size: int | None,
    ) -> CopyResult:
        marker = oversize_marker(copy)
        if marker in markers or target.find_comment_by_marker(target_id, marker) is not None:
            return CopyResult(copy, "noted", size, None)
        limit = _human(self.max_bytes)
        body = (
            f"Attachment not copied from {copy.source.value} {copy.source_ticket}: "
            f"{copy.attachment.filename} ({_human(size)}) is over the {limit} limit. "
            f"Open it on the {copy.source.value} record."
        )
        target.add_comment(target_id, body, public=False, marker=marker)
        markers.add(marker)
        return CopyResult(copy, "oversized", size, None)
