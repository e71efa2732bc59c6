"""Dockerfile and compose.yaml agree with the settings: names, secrets, services, health check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sync.config.settings import CONFIG_ENV, EXAMPLE_CONFIG, load_settings
from sync.systems.jira import SYSTEM as JIRA
from sync.systems.servicenow import SYSTEM as SERVICENOW
from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    final = lines[stages[-1] :]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in final]


def test_the_daemons_environment_is_settings_the_product_reads(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded with the daemon's environment (secret files swapped for local ones), the settings
    carry the state, queue, listener and every secret compose wires in."""
    env = _environment(compose["services"]["daemon"])
    secrets: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith("ESCALATION_SYNC_") or key == CONFIG_ENV:
            continue
        if key.endswith("_FILE"):
            local = tmp_path / Path(value).name
            local.write_text(f"value of {local.name}\n")
            secrets[key] = local.name
            value = str(local)
        monkeypatch.setenv(key, value)
    settings = load_settings(EXAMPLE_CONFIG)
    assert settings.state.database_url == env["ESCALATION_SYNC_STATE__DATABASE_URL"]
    assert settings.state.queue_url == env["ESCALATION_SYNC_STATE__QUEUE_URL"]
    assert settings.state.workers == int(env["ESCALATION_SYNC_STATE__WORKERS"])
    assert settings.webhooks.host == "0.0.0.0"
    assert settings.webhooks.port == int(env["ESCALATION_SYNC_WEBHOOKS__PORT"])
    assert (
        settings.section(JIRA).api_token is not None
        and settings.section(SERVICENOW).password is not None
    )
    read = {
        "ESCALATION_SYNC_JIRA__API_TOKEN_FILE": settings.section(JIRA).api_token,
        "ESCALATION_SYNC_JIRA__WEBHOOK_SECRET_FILE": settings.section(JIRA).webhook_secret,
        "ESCALATION_SYNC_SERVICENOW__PASSWORD_FILE": settings.section(SERVICENOW).password,
        "ESCALATION_SYNC_SERVICENOW__WEBHOOK_SECRET_FILE": settings.section(
            SERVICENOW
        ).webhook_secret,
    }
    assert set(secrets) == set(read)
    for key, secret in read.items():
        assert secret is not None and secret.get_secret_value() == f"value of {secrets[key]}"


def test_every_secret_file_is_mounted_and_declared(compose: dict[str, Any]) -> None:
    """Each `*_FILE` path is /run/secrets/<name> of a secret the daemon mounts and compose
    declares from a file under ./secrets; the database URL carries no password."""
    daemon = compose["services"]["daemon"]
    env = _environment(daemon)
    mounted = set(daemon["secrets"])
    for key, value in env.items():
        if key.endswith("_FILE"):
            name = Path(value).name
            assert value == f"/run/secrets/{name}" and name in mounted, key
    assert mounted <= set(compose["secrets"])
    for name in compose["secrets"]:
        assert compose["secrets"][name] == {"file": f"./secrets/{name}"}
    assert urlsplit(env["ESCALATION_SYNC_STATE__DATABASE_URL"]).password is None
    assert env["PGPASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "PGPASSWORD_FILE" in ENTRYPOINT.read_text()


def test_state_and_queue_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    """The database URL names the db service, its user and database; the queue the redis
    service; the daemon waits for both to be healthy and publishes its webhook port."""
    services = compose["services"]
    env = _environment(services["daemon"])
    database = urlsplit(env["ESCALATION_SYNC_STATE__DATABASE_URL"])
    db_env = _environment(services["db"])
    assert database.scheme == "postgresql+psycopg"
    assert database.hostname == "db" and database.port == 5432
    assert database.username == db_env["POSTGRES_USER"]
    assert database.path == f"/{db_env['POSTGRES_DB']}"
    assert db_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in services["db"]["secrets"]
    queue = urlsplit(env["ESCALATION_SYNC_STATE__QUEUE_URL"])
    assert queue.scheme == "redis" and queue.hostname == "redis"
    assert services["daemon"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert "healthcheck" in services["db"] and "healthcheck" in services["redis"]
    port = env["ESCALATION_SYNC_WEBHOOKS__PORT"]
    assert f"{port}:{port}" in services["daemon"]["ports"]
    mounts = services["daemon"]["volumes"]
    config = next(m for m in mounts if isinstance(m, dict) and m["source"] == "./config.toml")
    assert config["target"] == env[CONFIG_ENV] and config["read_only"] is True


def test_the_image_runs_the_daemon_as_a_non_root_user_with_a_health_check() -> None:
    """Python 3.11 slim, the wheel with the postgres extra (not the simulators'), a non-root
    user, `run` by default, and a health check on /healthz of the configured port."""
    final = _instructions()
    assert final[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(arg for op, arg in final if op == "RUN")
    assert '"${wheel}[postgres]"' in runs and "simulators" not in runs
    user = [arg for op, arg in final if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("CMD", '["run"]') in final
    assert ("ENTRYPOINT", '["escalation-sync-entrypoint"]') in final
    assert "exec escalation-sync" in ENTRYPOINT.read_text()
    (check,) = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert "escalation-sync-healthcheck" in check
    probe = (ROOT / "docker" / "healthcheck.py").read_text()
    assert "/healthz" in probe and "ESCALATION_SYNC_WEBHOOKS__PORT" in probe
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "ESCALATION_SYNC_WEBHOOKS__HOST=0.0.0.0" in env
