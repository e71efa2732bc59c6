"""Parse a raw RFC 5322 message into plain data, whatever state it arrives in.

`parse_message(raw, limits)` never raises on bad input. Mail is hostile and often broken:
headers that do not parse, a declared charset that lies or none at all, base64 with garbage,
MIME trees nested thousands deep, bodies of many megabytes. Each of those ends as a note on the
result (and the rest of the message is still read), never as an exception:

- headers are read raw and decoded one by one (RFC 2047 words; undecodable bytes replaced);
- a text part is decoded with its declared charset when that works, else as UTF-8, else with the
  charset `charset-normalizer` detects, else as Windows-1252 (which maps every byte);
- the body is the first text/plain part of the message; an HTML-only message is turned into text
  (`inbound_mail.html`); the text is cut at `limits.max_text_chars` with a note;
- attachments are listed with name, type and size; their content is kept only up to
  `limits.max_attachment_bytes` each and `limits.max_attachments_total_bytes` together, and at most
  `limits.max_attachments` of them; the others are listed with the reason they were not kept;
- a delivery status notification (RFC 3464) keeps its per-recipient fields and the headers of the
  returned message (`inbound_mail.bounce` reads them).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from charset_normalizer import from_bytes

from inbound_mail.html import html_to_text, tidy_text

_MSG_ID = re.compile(r"<[^<>\s]+>")
_FILENAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_MAX_PARTS = 500
_MAX_DEPTH = 20
_MAX_HEADER_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of a message is kept; what is over a limit is listed, never silently dropped."""

    max_text_chars: int = 20_000
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments_total_bytes: int = 25 * 1024 * 1024
    max_attachments: int = 20


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment; `content` is None when it was not kept, and `refused` says why."""

    filename: str
    content_type: str
    size: int
    content: bytes | None
    inline: bool = False
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of a delivery status notification (RFC 3464 section 2.3)."""

    address: str
    action: str
    status: str
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The machine-readable part of a DSN and the headers of the message it returns."""

    recipients: tuple[RecipientStatus, ...]
    reporting_mta: str = ""
    returned_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """A message as plain data: addresses lower-cased, ids with their angle brackets."""

    message_id: str | None
    sender: str | None
    sender_name: str
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    reply_to: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    content_type: str
    text: str
    body_from: str  # "plain" | "html" | "none"
    attachments: tuple[Attachment, ...] = ()
    report: DeliveryReport | None = None
    report_type: str | None = None
    notes: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    raw_size: int = 0
    html_quote_removed: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def header_all(self, name: str) -> tuple[str, ...]:
        """Every value of header `name`, in order."""
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key.lower() == wanted)


@dataclass
class _Collected:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    kept_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    parts: int = 0
    report: DeliveryReport | None = None


def decode_header_value(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, controls removed, length bounded."""
    text = value if isinstance(value, str) else str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        # Raw 8-bit bytes in a header (no RFC 2047 words): usually UTF-8, else a legacy charset.
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)[0]
    with contextlib.suppress(ValueError, LookupError, UnicodeError, AssertionError, IndexError):
        text = str(make_header(decode_header(text)))
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()[:_MAX_HEADER_CHARS]


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Text from bytes and a note when the declared charset was wrong or missing."""
    if declared:
        try:
            return data.decode(declared), None
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    guess = from_bytes(data[:200_000]).best()
    encoding = guess.encoding if guess is not None else None
    if encoding:
        try:
            text = data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            text = data.decode("cp1252", "replace")
            encoding = "windows-1252"
    else:
        text = data.decode("cp1252", "replace")
        encoding = "windows-1252"
    said = f"declared as {declared}" if declared else "no charset declared"
    return text, f"text decoded as {encoding} ({said})"


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MSG_ID.findall(value or "")))


def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    for _, address in getaddresses(list(values)):
        address = address.strip().lower()
        if "@" in address and address not in found:
            found.append(address)
    return tuple(found)


def _header_pairs(msg: Message) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, value in msg.raw_items() if hasattr(msg, "raw_items") else msg.items():
        pairs.append((str(name), decode_header_value(value)))
    return tuple(pairs)


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except (ValueError, IndexError, TypeError):
        return None
    if isinstance(value, tuple):
        value = value[2]
    return str(value) if value is not None else None


def _filename(part: Message, index: int, content_type: str) -> str:
    name: object = None
    try:
        name = part.get_filename()
    except (ValueError, IndexError, TypeError, LookupError):
        name = None
    text = decode_header_value(name) if name else ""
    text = _FILENAME_BAD.sub("_", text.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip(" .")
    if not text:
        ext = {"message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html"}.get(
            content_type, ".bin"
        )
        text = f"attachment-{index}{ext}"
    return text[:200]


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError):
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, list):
        return b"".join(m.as_bytes() for m in raw if isinstance(m, Message))
    return b""


def _walk(part: Message, depth: int) -> Iterator[tuple[Message, int]]:
    yield part, depth
    if part.is_multipart() and part.get_content_maintype() == "multipart" and depth < _MAX_DEPTH:
        children = part.get_payload()
        if isinstance(children, list):
            for child in children:
                if isinstance(child, Message):
                    yield from _walk(child, depth + 1)


def _is_attachment(part: Message, content_type: str) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    if content_type in ("text/plain", "text/html"):
        return bool(part.get_filename()) and disposition != "inline"
    return True


def _delivery_report(part: Message) -> tuple[RecipientStatus, ...] | tuple[()]:
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        text = blocks if isinstance(blocks, str) else ""
        blocks = [
            BytesHeaderParser().parsebytes(chunk.strip().encode("utf-8", "replace"))
            for chunk in re.split(r"\r?\n\s*\r?\n", text)
            if chunk.strip()
        ]
    found = []
    for block in blocks:
        if not isinstance(block, Message):
            continue
        recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not recipient:
            continue
        address = decode_header_value(recipient)
        if ";" in address:
            address = address.split(";", 1)[1]
        address = parseaddr(address.strip())[1] or address.strip()
        found.append(
            RecipientStatus(
                address=address.strip().lower(),
                action=decode_header_value(block.get("Action", "")).lower(),
                status=decode_header_value(block.get("Status", "")),
                diagnostic=decode_header_value(block.get("Diagnostic-Code", ""))[:500],
            )
        )
    return tuple(found)


def _returned_headers(part: Message) -> tuple[tuple[str, str], ...]:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return _header_pairs(inner[0])
    data = _payload(part)
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(data[:200_000])
    return _header_pairs(headers)


def _collect(msg: Message, limits: Limits) -> _Collected:
    got = _Collected()
    reporting_mta = ""
    recipients: tuple[RecipientStatus, ...] = ()
    returned: tuple[tuple[str, str], ...] = ()
    in_report = msg.get_content_type() == "multipart/report"
    for part, depth in _walk(msg, 0):
        got.parts += 1
        if got.parts > _MAX_PARTS:
            got.notes.append(f"only the first {_MAX_PARTS} MIME parts were read")
            break
        if depth >= _MAX_DEPTH and part.is_multipart():
            got.notes.append(f"MIME parts nested deeper than {_MAX_DEPTH} levels were not read")
            continue
        content_type = part.get_content_type()
        if part.get_content_maintype() == "multipart":
            continue
        if content_type == "message/delivery-status":
            recipients = _delivery_report(part)
            mta = part.get_payload()
            if isinstance(mta, list) and mta and isinstance(mta[0], Message):
                reporting_mta = decode_header_value(mta[0].get("Reporting-MTA", ""))
            continue
        if in_report and content_type in ("message/rfc822", "text/rfc822-headers"):
            returned = _returned_headers(part)
            continue
        if not _is_attachment(part, content_type):
            data = _payload(part)
            text, note = decode_bytes(data, part.get_content_charset())
            if note:
                got.notes.append(note)
            (got.html if content_type == "text/html" else got.plain).append(text)
            continue
        _attachment(part, content_type, limits, got)
    if recipients or returned:
        got.report = DeliveryReport(recipients, reporting_mta, returned)
    return got


def _attachment(part: Message, content_type: str, limits: Limits, got: _Collected) -> None:
    index = len(got.attachments) + 1
    name = _filename(part, index, content_type)
    data = _payload(part)
    inline = (part.get_content_disposition() or "").lower() == "inline" or bool(
        part.get("Content-ID")
    )
    refused = None
    if len(got.attachments) >= limits.max_attachments:
        refused = f"more than {limits.max_attachments} attachments"
    elif len(data) > limits.max_attachment_bytes:
        refused = f"{_size(len(data))} is over the {_size(limits.max_attachment_bytes)} limit"
    elif got.kept_bytes + len(data) > limits.max_attachments_total_bytes:
        refused = (
            f"the attachments together are over the "
            f"{_size(limits.max_attachments_total_bytes)} limit"
        )
    if refused is None:
        got.kept_bytes += len(data)
    else:
        got.notes.append(f"attachment {name} not kept: {refused}")
    got.attachments.append(
        Attachment(
            filename=name,
            content_type=content_type,
            size=len(data),
            content=None if refused else data,
            inline=inline,
            refused=refused,
        )
    )


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} kB"
    return f"{n} bytes"


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else None


def parse_message(raw: bytes, limits: Limits | None = None) -> ParsedMail:
    """Read `raw` as far as it can be read; problems end up in `notes` and `defects`."""
    limits = limits or Limits()
    notes: list[str] = []
    try:
        msg = message_from_bytes(raw, policy=policy.compat32)
    except Exception as exc:  # the parser should not raise, but input is hostile
        notes.append(f"the message could not be parsed: {type(exc).__name__}")
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[:200_000])
    headers = _header_pairs(msg)

    def first(name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in headers if k.lower() == wanted), None)

    def every(name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(v for k, v in headers if k.lower() == wanted)

    try:
        got = _collect(msg, limits)
    except RecursionError:
        got = _Collected(notes=["the MIME structure is too deeply nested to read"])
    notes.extend(got.notes)
    html_removed = False
    if got.plain:
        text, body_from = "\n\n".join(t for t in got.plain if t.strip()), "plain"
        text = tidy_text(text, keep_indent=True)
    elif got.html:
        text, html_removed = html_to_text(got.html[0])
        body_from = "html"
    else:
        text, body_from = "", "none"
    if len(text) > limits.max_text_chars:
        text = text[: limits.max_text_chars].rstrip()
        notes.append(f"the text was cut at {limits.max_text_chars} characters")
    defects = tuple(
        dict.fromkeys(type(d).__name__ for part, _ in _walk(msg, 0) for d in part.defects)
    )
    sender_name, sender = parseaddr(first("From") or "")
    message_id = _ids(first("Message-ID"))
    report_type = (
        _param(msg, "report-type") if msg.get_content_type() == "multipart/report" else None
    )
    return ParsedMail(
        message_id=message_id[0] if message_id else None,
        sender=sender.strip().lower() if "@" in sender else None,
        sender_name=sender_name.strip(),
        subject=first("Subject") or "",
        date=_date(first("Date")),
        in_reply_to=_ids(first("In-Reply-To")),
        references=_ids(" ".join(every("References"))),
        reply_to=_addresses(every("Reply-To")),
        to=_addresses(every("To")),
        cc=_addresses(every("Cc")),
        headers=headers,
        content_type=msg.get_content_type(),
        text=text,
        body_from=body_from,
        attachments=tuple(got.attachments),
        report=got.report,
        report_type=report_type.lower() if report_type else None,
        notes=tuple(dict.fromkeys(notes)),
        defects=defects,
        raw_size=len(raw),
        html_quote_removed=html_removed,
    )


__all__ = [
    "Attachment",
    "DeliveryReport",
    "Limits",
    "ParsedMail",
    "RecipientStatus",
    "decode_bytes",
    "decode_header_value",
    "parse_message",
]
