"""Tests of the streamed, de-duplicated attachment copier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from mapping.model import Attachment, System
from sync.pipeline.attachments import AttachmentCopier
from sync.pipeline.markers import Marker
from sync.pipeline.plan import AttachmentCopy


class Side:
    """Just enough of an adapter: files to download, uploads and notes recorded."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}
        self.uploads: list[tuple[str, bytes, bool]] = []
        self.types: list[str | None] = []
        self.notes: list[tuple[str, bool, Marker]] = []
        self.chunks_served = 0

    def download(self, attachment_id: str) -> Iterator[bytes]:
        data = self.files[attachment_id]
        for i in range(0, len(data), 8):
            self.chunks_served += 1
            yield data[i : i + 8]

    def upload(
        self, ticket_id: str, filename: str, stream: BinaryIO, content_type: str | None = None
    ) -> None:
        # A SpooledTemporaryFile, never a bytes object handed over whole.
        self.uploads.append((filename, stream.read(), hasattr(stream, "rollover")))
        self.types.append(content_type)

    def find_comment_by_marker(self, ticket_id: str, marker: Marker) -> str | None:
        return next(("n" for _, _, m in self.notes if m == marker), None)

    def add_comment(self, ticket_id: str, body: str, *, public: bool, marker: Marker) -> str:
        self.notes.append((body, public, marker))
        return "n"


def copy(att: Attachment) -> AttachmentCopy:
    return AttachmentCopy(System.JIRA, System.SERVICENOW, att, "DS-1")


def run(copier: AttachmentCopier, source: Side, target: Side, copies: list[Any], **kw: Any):
    return copier.copy_all(
        copies,
        source=source,  # type: ignore[arg-type]
        target=target,  # type: ignore[arg-type]
        source_id="DS-1",
        target_id="sn1",
        target_attachments=kw.get("present", ()),
        existing_markers=kw.get("markers", ()),
    )


def test_copies_through_a_spool_with_hash() -> None:
    """A file is streamed in chunks into a spooled file, hashed and uploaded."""
    source, target = Side({"1": b"0123456789" * 5}), Side()
    (result,) = run(
        AttachmentCopier(max_bytes=None),
        source,
        target,
        [copy(Attachment(id="1", filename="a.log", size=50))],
    )
    assert result.outcome == "copied" and result.size == 50 and result.sha256
    assert target.uploads == [("a.log", b"0123456789" * 5, True)]
    assert source.chunks_served == 7


def test_the_copy_keeps_the_source_content_type() -> None:
    """The upload is typed as the source attachment was, so a log stays text/plain."""
    source, target = Side({"1": b"ERROR boom\n"}), Side()
    run(
        AttachmentCopier(max_bytes=None),
        source,
        target,
        [copy(Attachment(id="1", filename="vpn.log", size=11, mime_type="text/plain"))],
    )
    assert target.types == ["text/plain"]


def test_same_content_twice_in_one_pass_is_copied_once() -> None:
    """Two source attachments with the same name, size and hash make one upload."""
    source, target = Side({"1": b"same", "2": b"same"}), Side()
    copies = [
        copy(Attachment(id="1", filename="x.txt", size=None)),
        copy(Attachment(id="2", filename="x.txt", size=None)),
    ]
    outcomes = [r.outcome for r in run(AttachmentCopier(max_bytes=None), source, target, copies)]
    assert outcomes == ["copied", "duplicate"] and len(target.uploads) == 1


def test_present_on_target_by_name_and_size_is_not_copied() -> None:
    """A file the target already has (name and size) is not downloaded at all."""
    source, target = Side({"1": b"abc"}), Side()
    present = (Attachment(id="z", filename="a.log", size=3),)
    (result,) = run(
        AttachmentCopier(max_bytes=None),
        source,
        target,
        [copy(Attachment(id="1", filename="a.log", size=3))],
        present=present,
    )
    assert result.outcome == "duplicate" and source.chunks_served == 0


def test_stream_over_the_limit_is_noted_once() -> None:
    """A file of unknown size that passes the limit mid-stream is listed in one internal note."""
    source, target = Side({"1": b"x" * 100}), Side()
    planned = [copy(Attachment(id="1", filename="core", size=None))]
    (first,) = run(AttachmentCopier(max_bytes=40), source, target, planned)
    assert first.outcome == "oversized" and target.uploads == []
    body, public, marker = target.notes[0]
    assert "core" in body and public is False
    (second,) = run(AttachmentCopier(max_bytes=40), source, target, planned, markers=[marker])
    assert second.outcome == "noted" and len(target.notes) == 1
