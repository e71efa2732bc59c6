"""Who is asking: passwords checked with argon2, sessions kept in memory, a throttle on guessing,
and the identity a trusted reverse proxy vouches for.

Sessions live in the daemon's memory, keyed by a random id that is the cookie's only content:
signing out ends one at once, a restart ends them all, and nothing a browser holds can be
replayed after that. A session remembers the person's name and a fingerprint of their password
hash; each request takes the role from the configuration in force, so a reload that removes a
person, lowers their role or changes their password takes effect on their next click.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sync.console.settings import ConsoleSettings, ConsoleUser, Role

_HASHER = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password and the
# timing does not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
MAX_SESSIONS = 10_000


def hash_password(password: str) -> str:
    """An argon2id hash of `password` for `password_hash` (salted; parameters in the string)."""
    return _HASHER.hash(password)


def check_password(user: ConsoleUser | None, password: str) -> bool:
    """Whether `password` is that user's; always does the work of one verification."""
    stored = user.password_hash.get_secret_value() if user and user.password_hash else None
    try:
        return bool(_HASHER.verify(stored or _DUMMY_HASH, password)) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def fingerprint(user: ConsoleUser | None) -> str:
    """A short digest of the user's password hash: it changes when the password does."""
    if user is None or user.password_hash is None:
        return ""
    return hashlib.sha256(user.password_hash.get_secret_value().encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in person as the pages see them."""

    name: str
    role: Role
    via: str  # "password" or "proxy"

    @property
    def may_act(self) -> bool:
        """Operators replay, requeue and resolve; viewers only read."""
        return self.role == "operator"

    @property
    def audit_name(self) -> str:
        """How the audit log names them: `alice (operator, console)`."""
        return f"{self.name} ({self.role}, console)"


@dataclass(slots=True)
class Session:
    """One signed-in browser."""

    id: str
    user: str
    via: str
    csrf: str
    fingerprint: str
    started: float
    seen: float


class Sessions:
    """Sessions in memory, ended after `idle` seconds unused or `lifetime` seconds in all."""

    def __init__(
        self,
        *,
        idle: float,
        lifetime: float,
        clock: Callable[[], float] = time.monotonic,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def configure(self, *, idle: float, lifetime: float) -> None:
        """Take new limits from a reloaded configuration (they apply to current sessions)."""
        self.idle, self.lifetime = idle, lifetime

    def start(self, user: str, *, via: str, fingerprint: str = "") -> Session:
        """A new session (its id and CSRF token are fresh random values)."""
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            user=user,
            via=via,
            csrf=secrets.token_urlsafe(32),
            fingerprint=fingerprint,
            started=now,
            seen=now,
        )
        with self._lock:
            self._prune(now)
            if len(self._by_id) >= self._limit:
                # The oldest go first: a flood of sign-ins cannot grow memory without bound.
                for old in sorted(self._by_id.values(), key=lambda s: s.seen)[: self._limit // 10]:
                    del self._by_id[old.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id (its last use moved to now), or None."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._by_id[session_id]
                return None
            session.seen = now
            return session

    def end(self, session_id: str | None) -> None:
        """Sign out: the id is forgotten at once."""
        if session_id:
            with self._lock:
                self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle or now - session.started > self.lifetime

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if self._expired(s, now)]:
            del self._by_id[key]


@dataclass
class Throttle:
    """Failed sign-ins counted per address and per name; too many in `window` seconds locks
    that address or name out until the oldest failure leaves the window."""

    limit: int
    window: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, *keys: str) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.limit:
                    longest = max(longest, times[0] + self.window - now)
        return longest

    def failed(self, *keys: str) -> None:
        """Count one failure against each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        """A correct password clears that name's count (not the address's)."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        if len(self._failures) > MAX_SESSIONS:
            for stale in [k for k, v in self._failures.items() if not v and k != key]:
                del self._failures[stale]
        return times


def role_of(console: ConsoleSettings, name: str) -> Role | None:
    """A local user's role now (None: no such user any more)."""
    user = console.user(name)
    return user.role if user is not None else None


class ProxyRefused(Exception):
    """A proxy sign-in that must not be believed or let in (the reason is shown, no secret)."""


def trusted(console: ConsoleSettings, peer: str | None) -> bool:
    """Whether the connection comes from one of the configured reverse proxies."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in console.trusted_proxies)


def proxy_identity(
    console: ConsoleSettings, peer: str | None, headers: Mapping[str, str]
) -> Identity:
    """The person the reverse proxy signed in, with the role their groups give them.

    Refused when the connection does not come from a trusted proxy (anyone could send the
    header), when the header is missing, or when `viewer_groups` is set and they are in none.
    """
    if not trusted(console, peer):
        raise ProxyRefused("this address is not a trusted proxy: sign in through the proxy")
    name = (headers.get(console.proxy_user_header) or "").strip()
    if not name or len(name) > 200:
        raise ProxyRefused(f"the proxy named nobody in {console.proxy_user_header}")
    raw_groups = headers.get(console.proxy_groups_header) or ""
    groups = {g.strip() for g in raw_groups.replace(";", ",").split(",") if g.strip()}
    allowed = set(console.viewer_groups) | set(console.operator_groups)
    if console.viewer_groups and not groups & allowed:
        raise ProxyRefused(f"{name} is in none of the console's groups")
    configured = console.user(name)
    role: Role = "viewer"
    if groups & set(console.operator_groups) or (configured and configured.role == "operator"):
        role = "operator"
    return Identity(name, role, "proxy")


def client_address(console: ConsoleSettings, peer: str | None, forwarded_for: str | None) -> str:
    """The browser's address: the peer, or from a trusted proxy the nearest address it was
    forwarded for that is not itself a proxy of ours."""
    if peer and forwarded_for and trusted(console, peer):
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not trusted(console, hop):
                return hop
    return peer or "unknown"


def over_https(console: ConsoleSettings, scheme: str, peer: str | None, proto: str | None) -> bool:
    """Whether the browser reached us over https (a trusted proxy says so in
    X-Forwarded-Proto)."""
    if proto and trusted(console, peer):
        return proto.split(",")[0].strip().lower() == "https"
    return scheme == "https"
