"""The CSRF token comparison and the browser's own account of where a request started."""

from __future__ import annotations

from sync.console.csrf import new_token, same_origin, tokens_match


def test_tokens() -> None:
    """Tokens are random; only the same token matches, and a missing one never does."""
    token = new_token()
    assert token != new_token() and len(token) >= 40
    assert tokens_match(token, token)
    assert not tokens_match(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not tokens_match(token, None)
    assert not tokens_match(None, None)
    assert not tokens_match("", "")


def test_same_origin() -> None:
    """A POST from another site is refused by its Origin or Sec-Fetch-Site header."""
    ours = "http://127.0.0.1:8090"
    assert same_origin({"origin": "http://127.0.0.1:8090"}, ours)
    assert same_origin({}, ours)
    assert same_origin({"sec-fetch-site": "same-origin"}, ours)
    assert not same_origin({"origin": "https://evil.example"}, ours)
    assert not same_origin({"origin": "null"}, ours)
    assert not same_origin({"sec-fetch-site": "cross-site"}, ours)
    assert same_origin({"origin": "https://console.example.com"}, "https://console.example.com:443")
