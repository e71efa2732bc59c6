"""`escalation-sync teams sign-in`: the device-code flow against the identity platform's
documented answers writes the msal token cache the Teams notifier then posts with."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from typer.testing import CliRunner

from cli.app import build
from connectors.retry import RetryPolicy
from connectors.teams import SignedInUserTokens, TeamsConnector
from sync.notify.channels.teams import Settings
from tests.connectors.graph_fake import APP_TOKEN, USER_TOKEN, GraphFake

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
FIXTURES = ROOT / "tests" / "fixtures" / "vendor" / "teams"
TENANT = "tenant-1"
CLIENT = "client-1"
LOGIN = f"https://login.microsoftonline.com/{TENANT}"
ACCOUNT = "escalations@example.com"
TEAM = "57fb72d0-d811-46f4-8947-305e6072eaa5"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def id_token(username: str) -> str:
    """An unsigned JWT with the claims msal reads to name the account (it does not verify
    signatures; the token endpoint is trusted over TLS)."""
    now = int(time.time())
    claims = {
        "aud": CLIENT,
        "iss": f"{LOGIN}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": "00000001-0000-4000-8000-000000000000",
        "tid": TENANT,
        "sub": "subject-1",
        "name": "Escalations",
        "preferred_username": username,
    }
    return f"{_b64({'typ': 'JWT', 'alg': 'none'})}.{_b64(claims)}."


@pytest.fixture
def login() -> Iterator[responses.RequestsMock]:
    """The tenant's OpenID configuration, its device-code endpoint, and a token endpoint that
    answers "authorization pending" once, then the tokens."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            f"{LOGIN}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{LOGIN}/oauth2/v2.0/token",
                "authorization_endpoint": f"{LOGIN}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{LOGIN}/oauth2/v2.0/devicecode",
                "issuer": f"{LOGIN}/v2.0",
            },
        )
        mock.post(f"{LOGIN}/oauth2/v2.0/devicecode", json=fixture("device-code.response.200.json"))
        yield mock


def tokens_for(mock: responses.RequestsMock, username: str) -> None:
    answer = fixture("device-code-token.response.200.json")
    answer["id_token"] = id_token(username)
    answer["client_info"] = _b64({"uid": "00000001-0000-4000-8000-000000000000", "utid": TENANT})
    mock.post(
        f"{LOGIN}/oauth2/v2.0/token",
        json=fixture("device-code-token.pending.400.json"),
        status=400,
    )
    mock.post(f"{LOGIN}/oauth2/v2.0/token", json=answer)


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        EXAMPLE.read_text()
        + f'\n[notify.teams]\ntenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\n'
        + f'team_id = "{TEAM}"\nusername = "{ACCOUNT}"\n'
    )
    monkeypatch.setenv("ESCALATION_SYNC_STATE__DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ESCALATION_SYNC_NOTIFY__TEAMS__CLIENT_SECRET", "app-secret")
    return path


def sign_in(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(build(), ["teams", "sign-in", "--config", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_sign_in_writes_the_cache_the_notifier_posts_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: responses.RequestsMock
) -> None:
    """The person is shown the page and the code, the flow polls past "authorization pending",
    and the token cache lands in the state folder, readable by its owner only; a Teams
    connector reading that cache then posts with the signed-in account's token."""
    path = config(tmp_path, monkeypatch)
    tokens_for(login, ACCOUNT)
    code, out, err = sign_in(path)
    assert code == 0, err
    assert "enter the code FJ7X2QKLM" in out
    cache = tmp_path / "state" / "teams-token-cache.json"
    assert f"signed in as {ACCOUNT}; token cache written to {cache}" in out
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    asked = [c.request for c in login.calls if str(c.request.url).endswith("/devicecode")]
    assert "ChannelMessage.Send" in str(asked[0].body)
    assert "app-secret" not in out + err

    graph = GraphFake(login, signed_in=ACCOUNT)
    graph.add_team(TEAM)
    user = SignedInUserTokens(TENANT, CLIENT, cache, username=ACCOUNT, session=requests.Session())
    assert user() == USER_TOKEN
    teams = TeamsConnector(
        app_token=lambda: APP_TOKEN,
        user_token=user,
        session=requests.Session(),
        retry=RetryPolicy(attempts=2, sleep=lambda _s: None),
    )
    made = teams.ensure_channel(TEAM, "DS-7 signed in", marker="[escalation-sync INC7]")
    assert teams.post(made.conversation, "<p>hello</p>", key="INC7:hello").created


def test_signing_in_as_someone_else_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: responses.RequestsMock
) -> None:
    """A person who signs in with their own account instead of the service account is told so
    and no cache is written."""
    path = config(tmp_path, monkeypatch)
    tokens_for(login, "somebody@example.com")
    code, _, err = sign_in(path)
    assert code == 1
    assert f"signed in as somebody@example.com, not {ACCOUNT}" in err
    assert not (tmp_path / "state" / "teams-token-cache.json").exists()


def test_sign_in_needs_a_teams_table(tmp_path: Path) -> None:
    """Without [notify.teams] the command says what to add and exits 2."""
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text())
    code, _, err = sign_in(path)
    assert code == 2 and "[notify.teams]" in err
    assert Settings.model_fields["token_cache"].default == Path("teams-token-cache.json")


def test_doctor_checks_both_teams_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: responses.RequestsMock
) -> None:
    """doctor's Teams lines: the application's token passes, the signed-in account fails until
    the sign-in has written its cache (the fix says to run it), then passes."""
    from sync.doctor.chat import check_teams

    path = config(tmp_path, monkeypatch)
    teams = Settings(
        tenant_id=TENANT, client_id=CLIENT, client_secret="app-secret", username=ACCOUNT
    )
    state = tmp_path / "state"
    login.post(
        f"{LOGIN}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": APP_TOKEN},
    )
    [app, user] = check_teams(teams, state)
    assert (app.verdict.value, user.verdict.value) == ("PASS", "FAIL")
    assert "teams-token-cache.json" in user.detail
    assert "escalation-sync teams sign-in" in user.fix
    login.remove(responses.POST, f"{LOGIN}/oauth2/v2.0/token")
    tokens_for(login, ACCOUNT)
    assert sign_in(path)[0] == 0
    [_, user] = check_teams(teams, state)
    assert user.verdict.value == "PASS" and ACCOUNT in user.detail
