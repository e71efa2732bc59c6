"""Cut the quoted history and the signature from the text of a reply.

Which parser: `mail-parser-reply` (MIT, maintained, no dependencies). It knows the "On ... wrote:"
and "From: / Sent:" headers of the common clients in thirteen languages, which is the part that
is tedious to get right. `email-reply-parser` (a port of GitHub's Ruby library) was last released
in 2020 and knows English only; `talon` has been unmaintained since 2017; `quotequail` finds the
quote but does not cut signatures. We use mail-parser-reply's header expression only to find
where the history starts, on a copy whose overlong lines are blanked (the expression is quadratic
in the length of a line that starts like a header, and mail is hostile input). Its signature rules
are not used: they cut everything after a line starting "Thanks," or "- ", which would lose a
customer's words ("Thanks, but it still fails on the second server").

Our own rules, applied to every reply:
- Outlook's header block ("From: ... / Sent: ... / To: ... / Subject: ...", in the client's
  language, with or without bold markers), the "-----Original Message-----" separators and the
  line of underscores Outlook puts above the block; "On <date>, <name> wrote:" (also wrapped over
  two lines) in the languages above;
- lines quoted with `>`;
- signatures: the RFC 3676 delimiter "-- " and everything after it; "Sent from my iPhone",
  "Get Outlook for Android" and the like at the end; a closing line ("Best regards,", "Thanks",
  "Mit freundlichen Grüßen") followed by at most six short lines (name, title, phone) at the end.
Nothing the customer wrote above the history is removed except such a trailing signature, and
indentation is kept (a pasted stack trace stays readable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailparser_reply.parser import EmailMessage as _LibraryMessage

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs")

# Only the top of a long mail is searched for the history header (the reply is above it), and
# lines longer than this are blanked in the copy the header expression reads.
_PROBE_CHARS = 40_000
_PROBE_LINE = 200

_HEADER_WORD = (
    r"(?:From|Sent|Date|To|Cc|Subject|Von|Gesendet|Datum|An|Betreff|De|Envoy[ée]|[ÀA]|Objet|"
    r"Enviado|Para|Asunto|Fecha|Da|Inviato|Oggetto|A|Van|Verzonden|Aan|Onderwerp|Datum|"
    r"Från|Skickat|Till|Ämne|Fra|Sendt|Til|Emne|Od|Wysłano|Do|Temat|Odesláno|Komu|Předmět)"
)
_FROM_LINE = re.compile(
    r"^\s*\**\s*(?:From|Von|De|Da|Van|Från|Fra|Od)\s*\**\s*:\s*\**\s*\S", re.IGNORECASE
)
_HEADER_LINE = re.compile(rf"^\s*\**\s*{_HEADER_WORD}\s*\**\s*:", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|Messaggio originale|Oorspronkelijk bericht|Originalmeddelande|"
    r"Oprindelig meddelelse|Wiadomość oryginalna|Původní zpráva|Forwarded message|"
    r"Weitergeleitete Nachricht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_WROTE_START = re.compile(r"^\s*(?:On|Am|Le|El|Il|Op|Den|Dne|W dniu)\s", re.IGNORECASE)
_WROTE_END = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef|skrev|napsal\(a\)|napsal|napisał\(a\)|"
    r"napisał)\s*:\s*$",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*>")
_SIG_DELIMITER = re.compile(r"^--\s?$")
_MOBILE = re.compile(
    r"^\s*(?:Sent from (?:my )?\S.{0,40}|Get Outlook for \S.{0,30}|Von meinem \S.{0,30} gesendet|"
    r"Gesendet von (?:meinem )?\S.{0,30}|Envoyé de mon \S.{0,30}|Enviado desde mi \S.{0,30}|"
    r"Inviato da \S.{0,30}|Verzonden vanaf \S.{0,30}|Skickat från \S.{0,30})\s*$",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|many|with best|with kind)\s+regards|regards|best|cheers|"
    r"thanks(?: a lot| again| and regards)?|thank you(?: very much)?|many thanks|br|"
    r"mit freundlichen gr(?:ü|ue)(?:ß|ss)en|freundliche gr(?:ü|ue)(?:ß|ss)e|"
    r"viele gr(?:ü|ue)(?:ß|ss)e|"
    r"beste gr(?:ü|ue)(?:ß|ss)e|gr(?:ü|ue)(?:ß|ss)e|lg|mfg|cordialement|bien cordialement|"
    r"salutations|saludos|un saludo|cordiali saluti|saluti|met vriendelijke groet(?:en)?|"
    r"groeten|med vänliga hälsningar|hälsningar|mvh|med venlig hilsen|pozdrawiam|s pozdravem)"
    r"\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_SIGNATURE_LINES = 6
_SIGNATURE_LINE_CHARS = 80


@dataclass(frozen=True, slots=True)
class Stripped:
    """The reply with history and signature removed, and what was removed."""

    text: str
    quoted_removed: bool
    signature_removed: bool


@lru_cache(maxsize=8)
def _library_headers(languages: tuple[str, ...]) -> re.Pattern[str]:
    return _LibraryMessage(text="", languages=list(languages)).HEADER_REGEX


def _header_block_at(lines: list[str], index: int) -> bool:
    """Whether an Outlook-style "From:" header block starts at `index`."""
    if not _FROM_LINE.match(lines[index]):
        return False
    following = [line for line in lines[index + 1 : index + 7] if line.strip()][:4]
    return sum(1 for line in following if _HEADER_LINE.match(line)) >= 2


def _wrote_at(lines: list[str], index: int) -> bool:
    line = lines[index]
    if not _WROTE_START.match(line) or len(line) > 400:
        return False
    if _WROTE_END.search(line):
        return True
    nxt = lines[index + 1] if index + 1 < len(lines) else ""
    return len(nxt) < 200 and bool(_WROTE_END.search(nxt))


def _own_cut(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        if _SEPARATOR.match(line) or _header_block_at(lines, index) or _wrote_at(lines, index):
            return index
        if _UNDERSCORES.match(line):
            rest = [i for i in range(index + 1, min(len(lines), index + 4)) if lines[i].strip()]
            if rest and _header_block_at(lines, rest[0]):
                return index
    return None


def _library_cut(lines: list[str], languages: tuple[str, ...]) -> int | None:
    probe_lines: list[str] = []
    size = 0
    for line in lines:
        stripped = line.strip()
        probe_lines.append(stripped if len(stripped) <= _PROBE_LINE else "\u2063")
        size += len(probe_lines[-1]) + 1
        if size > _PROBE_CHARS:
            break
    probe = "\n".join(probe_lines)
    match = _library_headers(languages).search(probe)
    if match is None:
        return None
    start = match.start()
    while start < len(probe) and probe[start] == "\n":
        start += 1
    return probe.count("\n", 0, start)


def _cut_signature(lines: list[str]) -> tuple[list[str], bool]:
    for index, line in enumerate(lines):
        if _SIG_DELIMITER.match(line):
            return lines[:index], True
    removed = False
    while lines and (not lines[-1].strip() or _MOBILE.match(lines[-1])):
        removed = removed or bool(lines[-1].strip())
        lines = lines[:-1]
    content = [i for i, line in enumerate(lines) if line.strip()]
    for index in reversed(content[-(_SIGNATURE_LINES + 1) :]):
        if _CLOSING.match(lines[index]) and index > 0:
            tail = [line for line in lines[index + 1 :] if line.strip()]
            if len(tail) <= _SIGNATURE_LINES and all(
                len(line.strip()) <= _SIGNATURE_LINE_CHARS for line in tail
            ):
                return lines[:index], True
    return lines, removed


def strip_reply(text: str, *, languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> Stripped:
    """The customer's own words: history, `>` quotes and a trailing signature cut."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cuts = [c for c in (_own_cut(lines), _library_cut(lines, languages)) if c is not None]
    quoted = False
    if cuts:
        lines = lines[: min(cuts)]
        quoted = True
    unquoted = [line for line in lines if not _QUOTED.match(line)]
    quoted = quoted or len(unquoted) != len(lines)
    kept, signature = _cut_signature(unquoted)
    out: list[str] = []
    for line in (line.rstrip() for line in kept):
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return Stripped("\n".join(out), quoted, signature)


__all__ = ["DEFAULT_LANGUAGES", "Stripped", "strip_reply"]
