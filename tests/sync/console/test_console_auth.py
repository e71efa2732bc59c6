"""Passwords, sessions, the sign-in throttle and the identity a trusted proxy vouches for."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sync.console.auth import (
    ProxyRefused,
    Sessions,
    Throttle,
    check_password,
    client_address,
    fingerprint,
    hash_password,
    over_https,
    proxy_identity,
)
from sync.console.settings import ConsoleSettings, ConsoleUser


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ann() -> ConsoleUser:
    """A user with a hashed password."""
    return ConsoleUser(name="ann", role="operator", password_hash=SecretStr(hash_password("pw-1")))


def test_hash_is_argon2id_and_salted() -> None:
    """The same password hashes differently each time, as argon2id."""
    first, second = hash_password("same"), hash_password("same")
    assert first.startswith("$argon2id$")
    assert first != second


def test_check_password(ann: ConsoleUser) -> None:
    """The right password passes; a wrong one, or an unknown user, does not."""
    assert check_password(ann, "pw-1")
    assert not check_password(ann, "pw-2")
    assert not check_password(None, "pw-1")


def test_fingerprint_changes_with_the_password(ann: ConsoleUser) -> None:
    """A new password gives a new fingerprint, which ends the sessions signed in with the old."""
    other = ann.model_copy(update={"password_hash": SecretStr(hash_password("pw-1"))})
    assert fingerprint(ann) and fingerprint(ann) != fingerprint(other)


def test_sessions_expire_when_idle_and_at_their_lifetime() -> None:
    """A session ends after its idle time unused, and after its lifetime even when used."""
    clock = Clock()
    sessions = Sessions(idle=60, lifetime=300, clock=clock)
    first = sessions.start("ann", via="password")
    clock.now += 59
    assert sessions.get(first.id) is first
    clock.now += 61
    assert sessions.get(first.id) is None
    second = sessions.start("ann", via="password")
    for _ in range(6):
        clock.now += 50
        assert sessions.get(second.id) is second
    clock.now += 1
    assert sessions.get(second.id) is None


def test_session_ids_and_tokens_are_random_and_sign_out_forgets() -> None:
    """Each session has its own unguessable id and CSRF token; ending one forgets it at once."""
    sessions = Sessions(idle=60, lifetime=300)
    a, b = sessions.start("ann", via="password"), sessions.start("ann", via="password")
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 40
    sessions.end(a.id)
    assert sessions.get(a.id) is None
    assert sessions.get(b.id) is b
    assert sessions.get("") is None and sessions.get("made-up") is None


def test_sessions_are_bounded() -> None:
    """Past the limit the least recently used sessions go, so memory cannot grow without end."""
    sessions = Sessions(idle=60, lifetime=300, limit=20)
    for _ in range(50):
        sessions.start("ann", via="password")
    assert len(sessions) <= 20


def test_throttle_locks_out_then_lets_in_again() -> None:
    """After `limit` failures the key waits until the oldest leaves the window."""
    clock = Clock()
    throttle = Throttle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.wait("address:1.2.3.4") == 0
        throttle.failed("address:1.2.3.4")
    assert throttle.wait("address:1.2.3.4") == pytest.approx(60)
    assert throttle.wait("address:5.6.7.8") == 0
    clock.now += 61
    assert throttle.wait("address:1.2.3.4") == 0


def _proxy(**overrides: object) -> ConsoleSettings:
    values: dict[str, object] = {
        "enabled": True,
        "auth": "proxy",
        "trusted_proxies": ["10.0.0.0/8"],
        "operator_groups": ["sre"],
    }
    values.update(overrides)
    return ConsoleSettings.model_validate(values)


def test_proxy_header_believed_only_from_trusted_addresses() -> None:
    """The same header from an untrusted address signs nobody in."""
    console = _proxy()
    headers = {"X-Forwarded-User": "pat", "X-Forwarded-Groups": "sre, support"}
    assert proxy_identity(console, "10.1.2.3", headers).role == "operator"
    with pytest.raises(ProxyRefused):
        proxy_identity(console, "192.0.2.7", headers)
    with pytest.raises(ProxyRefused):
        proxy_identity(console, None, headers)


def test_proxy_roles_from_groups() -> None:
    """Groups decide the role; without viewer_groups anyone the proxy signed in may view."""
    console = _proxy()
    assert proxy_identity(console, "10.0.0.1", {"X-Forwarded-User": "sam"}).role == "viewer"
    gated = _proxy(viewer_groups=["support"])
    with pytest.raises(ProxyRefused):
        proxy_identity(gated, "10.0.0.1", {"X-Forwarded-User": "sam", "X-Forwarded-Groups": "hr"})
    seen = proxy_identity(
        gated, "10.0.0.1", {"X-Forwarded-User": "sam", "X-Forwarded-Groups": "support"}
    )
    assert seen.role == "viewer"
    with pytest.raises(ProxyRefused):
        proxy_identity(console, "10.0.0.1", {})


def test_forwarded_address_and_scheme_only_from_trusted_proxies() -> None:
    """X-Forwarded-For and -Proto are read from a trusted proxy and ignored from anyone else."""
    console = _proxy()
    assert client_address(console, "10.0.0.2", "198.51.100.9, 10.0.0.3") == "198.51.100.9"
    assert client_address(console, "203.0.113.5", "198.51.100.9") == "203.0.113.5"
    assert over_https(console, "http", "10.0.0.2", "https")
    assert not over_https(console, "http", "203.0.113.5", "https")
    assert over_https(console, "https", "203.0.113.5", None)
