"""The mail sink's IMAP side: every message the sink receives can be read back over IMAP.

A minimal but honest IMAP4rev1 server (RFC 3501) for the demo and for tests on machines without
Dovecot: each envelope recipient of a message the sink accepts is a mailbox, logged in to with
that address and the sink's IMAP password, and the message lands in its INBOX. The subset is
what a mail reader needs, and each command answers as RFC 3501 says:

```
CAPABILITY  NOOP  LOGOUT  LOGIN  LIST  CREATE  APPEND  SELECT  EXAMINE  CLOSE  EXPUNGE
SEARCH / UID SEARCH   ALL, UNDELETED, DELETED, SEEN, UNSEEN, KEYWORD, UNKEYWORD, HEADER, UID
FETCH / UID FETCH     UID, FLAGS, RFC822.SIZE, INTERNALDATE, BODY[] / BODY.PEEK[] (with <o.n>),
                      BODY.PEEK[HEADER], BODY.PEEK[HEADER.FIELDS (...)]
STORE / UID STORE     FLAGS, +FLAGS, -FLAGS (and .SILENT); keywords allowed (PERMANENTFLAGS \\*)
COPY / UID COPY, UID MOVE (RFC 6851), UID EXPUNGE (RFC 4315), IDLE (RFC 2177), LITERAL+
```
Anything else is answered `BAD`, commands in the wrong state `NO`/`BAD`, as a real server does.
No TLS: the sink only ever listens on loopback. UIDVALIDITY is fixed per folder for the life of
the sink, UIDs only grow, and expunged messages are gone.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime

CAPABILITIES = "IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(32)}


@dataclass
class StoredMail:
    """A message in a folder: its UID, flags, bytes and arrival time."""

    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)
    internal_date: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Folder:
    """A folder of one mailbox."""

    uidvalidity: int
    uidnext: int = 1
    mails: list[StoredMail] = field(default_factory=list)

    def add(self, raw: bytes, flags: Iterable[str] = ()) -> StoredMail:
        mail = StoredMail(self.uidnext, raw, set(flags))
        self.uidnext += 1
        self.mails.append(mail)
        return mail


class Mailboxes:
    """Every recipient's folders; shared by the SMTP side (delivers) and the IMAP side (reads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._boxes: dict[str, dict[str, Folder]] = {}
        self._validity = int(time.time())

    def folders(self, user: str) -> dict[str, Folder]:
        """The folders of `user` (created with an INBOX on first use). Hold the lock."""
        key = user.lower()
        if key not in self._boxes:
            self._boxes[key] = {"INBOX": self._new_folder()}
        return self._boxes[key]

    def _new_folder(self) -> Folder:
        self._validity += 1
        return Folder(uidvalidity=self._validity)

    def create(self, user: str, name: str) -> bool:
        """Create a folder; False when it exists."""
        with self.lock:
            folders = self.folders(user)
            if _canonical(name) in folders:
                return False
            folders[_canonical(name)] = self._new_folder()
            return True

    def deliver(self, recipients: Iterable[str], raw: bytes) -> None:
        """Put a copy of `raw` in the INBOX of each recipient (lines ending in CRLF)."""
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        with self.lock:
            for rcpt in recipients:
                self.folders(rcpt)["INBOX"].add(raw, ("\\Recent",))

    def clear(self) -> None:
        """Forget every mailbox."""
        with self.lock:
            self._boxes.clear()


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


# ---- parsing ----------------------------------------------------------------------------------


class BadCommand(Exception):
    """The command does not parse: answered BAD."""


def tokenize(data: bytes) -> list[object]:
    """Arguments of a command line: atoms and quoted strings as str, literals as bytes, lists."""
    pos = 0
    stack: list[list[object]] = [[]]
    while pos < len(data):
        ch = data[pos : pos + 1]
        if ch == b" ":
            pos += 1
        elif ch == b"(":
            stack.append([])
            pos += 1
        elif ch == b")":
            if len(stack) == 1:
                raise BadCommand("unbalanced parenthesis")
            done = stack.pop()
            stack[-1].append(done)
            pos += 1
        elif ch == b'"':
            out = bytearray()
            pos += 1
            while True:
                if pos >= len(data):
                    raise BadCommand("unterminated quoted string")
                c = data[pos : pos + 1]
                if c == b"\\":
                    out += data[pos + 1 : pos + 2]
                    pos += 2
                elif c == b'"':
                    pos += 1
                    break
                else:
                    out += c
                    pos += 1
            stack[-1].append(out.decode("utf-8", "replace"))
        elif ch == b"\x00":
            # A literal spliced in by the line reader: \x00<length>\x00<bytes>.
            end = data.index(b"\x00", pos + 1)
            size = int(data[pos + 1 : end])
            stack[-1].append(bytes(data[end + 1 : end + 1 + size]))
            pos = end + 1 + size
        else:
            start = pos
            depth = 0
            while pos < len(data):
                c = data[pos : pos + 1]
                if c == b"[":
                    depth += 1
                elif c == b"]":
                    depth -= 1
                elif depth == 0 and c in (b" ", b"(", b")"):
                    break
                pos += 1
            stack[-1].append(data[start:pos].decode("utf-8", "replace"))
    if len(stack) != 1:
        raise BadCommand("unbalanced parenthesis")
    return stack[0]


def sequence(text: str, largest: int) -> set[int]:
    """The numbers of an IMAP sequence set ("1:3,5,7:*"), `*` being `largest`."""
    found: set[int] = set()
    for part in text.split(","):
        if not re.fullmatch(r"(\d+|\*)(:(\d+|\*))?", part):
            raise BadCommand(f"bad sequence set {text!r}")
        low, _, high = part.partition(":")
        a = largest if low == "*" else int(low)
        b = a if not high else (largest if high == "*" else int(high))
        if b < a:
            a, b = b, a
        found.update(range(a, b + 1))
    return found


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flags(flags: Iterable[str]) -> str:
    return "(" + " ".join(sorted(f for f in flags if f != "\\Recent")) + ")"


# ---- one connection ---------------------------------------------------------------------------


class Session:
    """One client connection."""

    def __init__(
        self,
        boxes: Mailboxes,
        password: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.boxes = boxes
        self.password = password
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.selected: str | None = None
        self.readonly = False
        self.known = 0  # messages the client was told about (EXISTS)

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        self.writer.write(data + b"\r\n")
        await self.writer.drain()

    async def read_command(self) -> bytes | None:
        """A command with its literals spliced in, or None at end of stream."""
        data = bytearray()
        while True:
            line = await self.reader.readline()
            if not line:
                return None
            if len(data) + len(line) > 1_000_000:
                raise BadCommand("command too long")
            line = line.rstrip(b"\r\n")
            literal = re.search(rb"\{(\d+)(\+?)\}$", line)
            if literal is None:
                data += line
                return bytes(data)
            size = int(literal.group(1))
            if size > 50_000_000:
                raise BadCommand("literal too large")
            data += line[: literal.start()]
            if not literal.group(2):
                await self.send("+ Ready for literal data")
            payload = await self.reader.readexactly(size)
            data += b"\x00" + str(size).encode() + b"\x00" + payload

    async def run(self) -> None:
        await self.send(f"* OK [CAPABILITY {CAPABILITIES}] escalation-sync mail sink ready")
        while True:
            try:
                command = await self.read_command()
            except BadCommand as exc:
                await self.send(f"* BAD {exc}")
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if command is None:
                return
            tag, _, rest = command.partition(b" ")
            name, _, args = rest.partition(b" ")
            tag_text = tag.decode("ascii", "replace")
            if not tag or not name:
                await self.send("* BAD missing tag or command")
                continue
            try:
                done = await self.dispatch(tag_text, name.decode().upper(), args)
            except BadCommand as exc:
                await self.send(f"{tag_text} BAD {exc}")
                continue
            if done:
                return

    async def dispatch(self, tag: str, name: str, args: bytes) -> bool:
        if name == "UID":
            sub, _, rest = args.partition(b" ")
            return await self.dispatch_uid(tag, sub.decode().upper(), rest)
        if name == "CAPABILITY":
            await self.send(f"* CAPABILITY {CAPABILITIES}")
        elif name == "NOOP" or name == "CHECK":
            await self.report_new()
        elif name == "LOGOUT":
            await self.send("* BYE logging out")
            await self.send(f"{tag} OK LOGOUT completed")
            return True
        elif name == "LOGIN":
            await self.login(tag, tokenize(args))
            return False
        elif self.user is None:
            await self.send(f"{tag} NO [AUTHENTICATIONFAILED] log in first")
            return False
        elif name == "LIST":
            await self.list_folders(tokenize(args))
        elif name == "CREATE":
            (folder,) = self._strings(tokenize(args), 1)
            if not self.boxes.create(self.user, folder):
                await self.send(f"{tag} NO [ALREADYEXISTS] folder exists")
                return False
        elif name == "APPEND":
            code = self.append(tokenize(args))
            if code is None:
                await self.send(f"{tag} NO [TRYCREATE] no such folder")
                return False
            await self.send(f"{tag} OK [{code}] APPEND completed")
            return False
        elif name in ("SELECT", "EXAMINE"):
            (folder,) = self._strings(tokenize(args), 1)
            await self.select(tag, folder, readonly=name == "EXAMINE")
            return False
        elif self.selected is None:
            await self.send(f"{tag} BAD no folder selected")
            return False
        elif name == "CLOSE":
            if not self.readonly:
                await self.expunge(None, quiet=True)
            self.selected = None
        elif name == "EXPUNGE":
            await self.expunge(None)
        elif name == "IDLE":
            await self.idle()
        elif name in ("SEARCH", "FETCH", "STORE", "COPY"):
            return await self.dispatch_uid(tag, name, args, by_uid=False)
        else:
            await self.send(f"{tag} BAD unknown command {name}")
            return False
        await self.send(f"{tag} OK {name} completed")
        return False

    async def dispatch_uid(self, tag: str, name: str, args: bytes, *, by_uid: bool = True) -> bool:
        if self.user is None or self.selected is None:
            await self.send(f"{tag} BAD {'log in' if self.user is None else 'select'} first")
            return False
        tokens = tokenize(args)
        if name == "SEARCH":
            await self.search(tokens, by_uid)
        elif name == "FETCH":
            await self.fetch(tokens, by_uid)
        elif name == "STORE":
            await self.store(tokens, by_uid)
        elif name in ("COPY", "MOVE"):
            code = await self.copy(tokens, by_uid, move=name == "MOVE")
            if code is None:
                await self.send(f"{tag} NO [TRYCREATE] no such folder")
                return False
            await self.send(f"{tag} OK [{code}] {name} completed")
            return False
        elif name == "EXPUNGE" and by_uid:
            (uids,) = self._strings(tokens, 1)
            await self.expunge(uids)
        else:
            await self.send(f"{tag} BAD unknown UID command {name}")
            return False
        await self.send(f"{tag} OK {'UID ' if by_uid else ''}{name} completed")
        return False

    # ---- commands ----

    @staticmethod
    def _strings(tokens: list[object], count: int) -> list[str]:
        if len(tokens) != count:
            raise BadCommand("wrong number of arguments")
        out = []
        for token in tokens:
            if isinstance(token, bytes):
                out.append(token.decode("utf-8", "replace"))
            elif isinstance(token, str):
                out.append(token)
            else:
                raise BadCommand("expected a string")
        return out

    async def login(self, tag: str, tokens: list[object]) -> None:
        user, password = self._strings(tokens, 2)
        if password != self.password or "@" not in user:
            await self.send(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials")
            return
        self.user = user.lower()
        await self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] logged in")

    async def list_folders(self, tokens: list[object]) -> None:
        reference, pattern = self._strings(tokens, 2)
        if pattern == "":
            await self.send('* LIST (\\Noselect) "/" ""')
            return
        assert self.user is not None
        with self.boxes.lock:
            names = list(self.boxes.folders(self.user))
        wanted = (reference + pattern).replace("%", "*")
        for folder in names:
            if fnmatch.fnmatchcase(folder, wanted) or (
                wanted.upper() == "INBOX" and folder == "INBOX"
            ):
                await self.send(f'* LIST () "/" {_quote(folder)}')

    def append(self, tokens: list[object]) -> str | None:
        """APPEND folder [(flags)] ["date"] literal; the APPENDUID code, None for no folder."""
        if len(tokens) < 2 or not isinstance(tokens[-1], bytes):
            raise BadCommand("APPEND needs a folder and a literal message")
        name = tokens[0]
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        flags = tokens[1] if len(tokens) > 2 and isinstance(tokens[1], list) else []
        assert self.user is not None
        with self.boxes.lock:
            folder = self.boxes.folders(self.user).get(_canonical(str(name)))
            if folder is None:
                return None
            added = folder.add(tokens[-1], {str(f) for f in flags} | {"\\Recent"})
            return f"APPENDUID {folder.uidvalidity} {added.uid}"

    def _folder(self) -> Folder:
        assert self.user is not None and self.selected is not None
        return self.boxes.folders(self.user)[self.selected]

    async def select(self, tag: str, name: str, *, readonly: bool) -> None:
        assert self.user is not None
        with self.boxes.lock:
            folders = self.boxes.folders(self.user)
            folder = folders.get(_canonical(name))
            if folder is None:
                self.selected = None
                await self.send(f"{tag} NO no such folder")
                return
            recent = sum(1 for m in folder.mails if "\\Recent" in m.flags)
            if not readonly:
                for mail in folder.mails:
                    mail.flags.discard("\\Recent")
            exists, validity, uidnext = len(folder.mails), folder.uidvalidity, folder.uidnext
        self.selected, self.readonly, self.known = _canonical(name), readonly, exists
        await self.send(f"* FLAGS ({' '.join(SYSTEM_FLAGS)})")
        await self.send(f"* OK [PERMANENTFLAGS ({' '.join(SYSTEM_FLAGS)} \\*)] flags permitted")
        await self.send(f"* {exists} EXISTS")
        await self.send(f"* {recent} RECENT")
        await self.send(f"* OK [UIDVALIDITY {validity}] UIDs valid")
        await self.send(f"* OK [UIDNEXT {uidnext}] predicted next UID")
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        await self.send(f"{tag} OK [{mode}] {'EXAMINE' if readonly else 'SELECT'} completed")

    async def report_new(self) -> None:
        if self.selected is None:
            return
        with self.boxes.lock:
            count = len(self._folder().mails)
        if count != self.known:
            self.known = count
            await self.send(f"* {count} EXISTS")

    def _targets(self, text: str, by_uid: bool) -> list[tuple[int, StoredMail]]:
        mails = self._folder().mails
        if not mails:
            return []
        if by_uid:
            wanted = sequence(text, mails[-1].uid)
            return [(i + 1, m) for i, m in enumerate(mails) if m.uid in wanted]
        wanted = sequence(text, len(mails))
        return [(i + 1, m) for i, m in enumerate(mails) if i + 1 in wanted]

    async def search(self, tokens: list[object], by_uid: bool) -> None:
        # The criteria are checked even when the folder is empty: a bad key is BAD either way.
        self._matches(StoredMail(1, b""), list(tokens), 1)
        with self.boxes.lock:
            mails = list(enumerate(self._folder().mails, start=1))
            found = [(seq, mail) for seq, mail in mails if self._matches(mail, list(tokens), seq)]
        numbers = [str(mail.uid if by_uid else seq) for seq, mail in found]
        await self.send("* SEARCH" + "".join(f" {n}" for n in numbers))

    def _matches(self, mail: StoredMail, tokens: list[object], seq: int) -> bool:
        # Every key is parsed even after one fails, so a bad key is BAD whatever the mail.
        if not tokens:
            raise BadCommand("SEARCH needs criteria")
        result = True
        i = 0
        while i < len(tokens):
            key = str(tokens[i]).upper()
            i += 1
            if key == "ALL":
                continue
            if key in ("DELETED", "UNDELETED", "SEEN", "UNSEEN"):
                flag = "\\Deleted" if "DELETED" in key else "\\Seen"
                result &= (flag in mail.flags) != key.startswith("UN")
            elif key in ("KEYWORD", "UNKEYWORD"):
                if i >= len(tokens):
                    raise BadCommand(f"{key} needs a flag")
                word = str(tokens[i])
                i += 1
                result &= (word in mail.flags) != (key == "UNKEYWORD")
            elif key == "HEADER":
                if i + 1 >= len(tokens):
                    raise BadCommand("HEADER needs a name and a value")
                name, value = str(tokens[i]), tokens[i + 1]
                i += 2
                text = value.decode() if isinstance(value, bytes) else str(value)
                headers = BytesHeaderParser(policy=compat32).parsebytes(mail.raw)
                values = headers.get_all(name, [])
                result &= any(text.lower() in str(v).lower() for v in values)
            elif key == "UID":
                if i >= len(tokens):
                    raise BadCommand("UID needs a sequence set")
                wanted = sequence(str(tokens[i]), mail.uid)
                i += 1
                result &= mail.uid in wanted
            else:
                raise BadCommand(f"unsupported search key {key}")
        return result

    async def fetch(self, tokens: list[object], by_uid: bool) -> None:
        if len(tokens) != 2 or not isinstance(tokens[0], str):
            raise BadCommand("FETCH needs a sequence set and items")
        items_token = tokens[1]
        items = (
            [str(t) for t in items_token] if isinstance(items_token, list) else [str(items_token)]
        )
        items = [i.upper() if "[" not in i else i for i in items]
        if by_uid and "UID" not in items:
            items.insert(0, "UID")
        with self.boxes.lock:
            targets = self._targets(tokens[0], by_uid)
            replies = []
            for seq, mail in targets:
                parts: list[bytes] = []
                for item in items:
                    parts.append(self._fetch_item(mail, item))
                replies.append(f"* {seq} FETCH (".encode() + b" ".join(parts) + b")")
        for reply in replies:
            await self.send(reply)

    def _fetch_item(self, mail: StoredMail, item: str) -> bytes:
        upper = item.upper()
        if upper == "UID":
            return f"UID {mail.uid}".encode()
        if upper == "FLAGS":
            return f"FLAGS {_flags(mail.flags)}".encode()
        if upper == "RFC822.SIZE":
            return f"RFC822.SIZE {len(mail.raw)}".encode()
        if upper == "INTERNALDATE":
            stamp = format_datetime(mail.internal_date).replace(",", "")
            return f'INTERNALDATE "{stamp}"'.encode()
        match = re.fullmatch(r"BODY(\.PEEK)?\[([^\]]*)\](?:<(\d+)\.(\d+)>)?", item, re.I)
        if match is None:
            raise BadCommand(f"unsupported fetch item {item}")
        section = match.group(2).upper()
        if section == "":
            data = mail.raw
        elif section == "HEADER":
            data = mail.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        elif section.startswith("HEADER.FIELDS"):
            names = re.findall(r"[\w-]+", section.split("(", 1)[1]) if "(" in section else []
            headers = BytesHeaderParser(policy=compat32).parsebytes(mail.raw)
            lines = [
                f"{k}: {v}".encode("utf-8", "surrogateescape")
                for k, v in headers.items()
                if k.upper() in names
            ]
            data = b"\r\n".join(lines) + b"\r\n\r\n"
        elif section == "TEXT":
            data = mail.raw.split(b"\r\n\r\n", 1)[-1]
        else:
            raise BadCommand(f"unsupported section {section}")
        label = f"BODY[{match.group(2)}]"
        if match.group(3) is not None:
            start, length = int(match.group(3)), int(match.group(4))
            data = data[start : start + length]
            label += f"<{start}>"
        if match.group(1) is None and "\\Seen" not in mail.flags and not self.readonly:
            mail.flags.add("\\Seen")
        return f"{label} {{{len(data)}}}\r\n".encode() + data

    async def store(self, tokens: list[object], by_uid: bool) -> None:
        if len(tokens) != 3 or not isinstance(tokens[0], str) or not isinstance(tokens[1], str):
            raise BadCommand("STORE needs a sequence set, an action and flags")
        if self.readonly:
            raise BadCommand("folder is read-only")
        action = tokens[1].upper()
        flags_token = tokens[2]
        flags = (
            {str(f) for f in flags_token} if isinstance(flags_token, list) else {str(flags_token)}
        )
        if action.removesuffix(".SILENT") not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise BadCommand(f"bad STORE action {action}")
        replies = []
        with self.boxes.lock:
            for seq, mail in self._targets(tokens[0], by_uid):
                if action.startswith("+"):
                    mail.flags |= flags
                elif action.startswith("-"):
                    mail.flags -= flags
                else:
                    mail.flags = flags | ({"\\Recent"} & mail.flags)
                if not action.endswith(".SILENT"):
                    uid = f" UID {mail.uid}" if by_uid else ""
                    replies.append(f"* {seq} FETCH (FLAGS {_flags(mail.flags)}{uid})")
        for reply in replies:
            await self.send(reply)

    async def copy(self, tokens: list[object], by_uid: bool, *, move: bool) -> str | None:
        sequence_set, destination = self._strings(tokens, 2)
        assert self.user is not None
        expunged: list[int] = []
        with self.boxes.lock:
            folders = self.boxes.folders(self.user)
            target = folders.get(_canonical(destination))
            if target is None:
                return None
            source_uids, target_uids = [], []
            for seq, mail in self._targets(sequence_set, by_uid):
                copied = target.add(mail.raw, mail.flags | {"\\Recent"})
                source_uids.append(str(mail.uid))
                target_uids.append(str(copied.uid))
                if move:
                    expunged.append(seq)
            if move:
                folder = self._folder()
                for seq in sorted(expunged, reverse=True):
                    del folder.mails[seq - 1]
                self.known -= len(expunged)
            code = f"COPYUID {target.uidvalidity} {','.join(source_uids)} {','.join(target_uids)}"
        if move:
            await self.send(f"* OK [{code}] moved")
            for seq in sorted(expunged, reverse=True):
                await self.send(f"* {seq} EXPUNGE")
        return code

    async def expunge(self, uids: str | None, *, quiet: bool = False) -> None:
        if self.readonly:
            raise BadCommand("folder is read-only")
        removed: list[int] = []
        with self.boxes.lock:
            folder = self._folder()
            wanted = sequence(uids, folder.mails[-1].uid) if uids and folder.mails else None
            for seq in range(len(folder.mails), 0, -1):
                mail = folder.mails[seq - 1]
                if "\\Deleted" in mail.flags and (wanted is None or mail.uid in wanted):
                    del folder.mails[seq - 1]
                    removed.append(seq)
            self.known -= len(removed)
        if not quiet:
            for seq in removed:
                await self.send(f"* {seq} EXPUNGE")

    async def idle(self) -> None:
        await self.send("+ idling")
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), timeout=0.2)
            except TimeoutError:
                await self.report_new()
                continue
            if not line:
                raise ConnectionError("client went away while idling")
            if line.strip().upper() == b"DONE":
                return
            raise BadCommand("expected DONE")


class ImapServer:
    """Serves `Mailboxes` over IMAP on its own thread and event loop."""

    def __init__(self, boxes: Mailboxes, host: str, port: int, password: str) -> None:
        self.boxes = boxes
        self.host = host
        self._requested_port = port
        self.password = password
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await Session(self.boxes, self.password, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def start(self) -> ImapServer:
        """Bind and serve in the background; returns once the port accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self._requested_port)
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            self._server.close()
            # Connections still open are closed, so their sessions end before the loop does.
            for writer in list(self._writers):
                writer.close()
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=5))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="mail-sink-imap", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"mail sink could not serve IMAP: {failure[0]}")
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None
