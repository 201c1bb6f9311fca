"""deploy/docker-compose.yml, read as Compose would: the services, their settings and
secrets (through deploy/.env, documented by deploy/.env.example), mounts that exist, health
checks that gate start-up, and Prometheus loading the alert rules. No image registry is
reachable here, so the stack itself is not pulled; the service image is checked by
test_image.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SETTINGS = {f"BANDITLOOP_{name.upper()}" for name in Settings.model_fields}
LLM = {"BANDITLOOP_LLM_BASE_URL", "BANDITLOOP_LLM_API_KEY", "BANDITLOOP_LLM_MODEL"}
WEBHOOK_SECRETS = {
    "BANDITLOOP_SENDGRID_PUBLIC_KEY",
    "BANDITLOOP_MAILGUN_SIGNING_KEY",
    "BANDITLOOP_POSTMARK_USERNAME",
    "BANDITLOOP_POSTMARK_PASSWORD",
    "BANDITLOOP_SES_TOPIC_ARNS",
    "BANDITLOOP_CUSTOMERIO_SIGNING_KEY",
    "BANDITLOOP_BRAZE_TOKEN",
    "BANDITLOOP_GENERIC_WEBHOOK_SECRET",
}


def _example() -> dict[str, str]:
    """deploy/.env.example's assignments, commented-out tuning lines included."""
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.match(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match[1]] = match[2]
    return found


def test_the_four_services_start_in_order_of_health() -> None:
    assert set(SERVICES) == {"postgres", "banditloop", "prometheus", "grafana"}
    for name, service in SERVICES.items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", name
        for needed, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, needed)
            assert SERVICES[needed]["healthcheck"]["test"]
    assert set(SERVICES["banditloop"]["depends_on"]) == {"postgres"}
    assert set(SERVICES["prometheus"]["depends_on"]) == {"banditloop"}


def test_banditloop_runs_in_production_shape_on_its_health_checked_port() -> None:
    service = SERVICES["banditloop"]
    command = service["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--workers") + 1] == "2"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    environment = service["environment"]
    assert environment["BANDITLOOP_MODE"] == "production"
    assert environment["BANDITLOOP_PORT"] == port
    assert environment["BANDITLOOP_DATABASE_URL"].startswith("postgresql+psycopg://banditloop:")
    assert "@postgres:5432/banditloop" in environment["BANDITLOOP_DATABASE_URL"]
    assert environment["PROMETHEUS_MULTIPROC_DIR"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    assert f"{port}:{port}" in service["ports"]
    assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
    # Every BANDITLOOP_ name the compose file sets is a real setting (or the port `serve`
    # reads): a typo would be ignored silently.
    assert {n for n in environment if n.startswith("BANDITLOOP_")} <= SETTINGS | {"BANDITLOOP_PORT"}


def test_secrets_llm_and_webhooks_come_from_the_env_file() -> None:
    service = SERVICES["banditloop"]
    assert service["env_file"] == [{"path": ".env", "required": True}]
    example = _example()
    assert {"BANDITLOOP_SIGNING_KEYS", "BANDITLOOP_BOOTSTRAP_ADMIN_KEY"} <= set(example)
    assert LLM <= set(example)
    assert WEBHOOK_SECRETS <= set(example)
    # No typos, and nothing the compose file would override.
    names = {n for n in example if n.startswith("BANDITLOOP_")}
    assert names <= SETTINGS
    assert not names & set(service["environment"])
    # No secret is shipped filled in.
    assert all(example[n] == "" for n in LLM | WEBHOOK_SECRETS | {"BANDITLOOP_SIGNING_KEYS"})
    # Every ${VAR} the compose file interpolates is documented there, and none has a
    # weak default: a missing password stops `docker compose up` with a message.
    raw = (DEPLOY / "docker-compose.yml").read_text()
    interpolated = re.findall(r"\$\{([A-Z_]+)(:?[?-][^}]*)?\}", raw)
    assert {name for name, _ in interpolated} == {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    assert all(rule.startswith(":?") for _, rule in interpolated)
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= set(example)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_example_settings_load_in_production_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("BANDITLOOP_")]:
        monkeypatch.delenv(name)
    values = {k: v for k, v in _example().items() if k.startswith("BANDITLOOP_")}
    values["BANDITLOOP_SIGNING_KEYS"] = "k1:" + "a1b2c3d4" * 4
    env = values | {"BANDITLOOP_MODE": "production"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.mode == "production"
    assert not settings.llm_configured  # empty LLM lines mean: no LLM pass
    monkeypatch.setenv("BANDITLOOP_SIGNING_KEYS", "")
    with pytest.raises(ValueError, match="SIGNING_KEYS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_mounted_file_exists_and_prometheus_loads_the_alerts(tmp_path: Path) -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, volume)
    mounts = dict(v.split(":")[:2] for v in SERVICES["prometheus"]["volumes"])
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert mounts["./alerts.yml"] in config["rule_files"]
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["banditloop:8000"]

    promtool = shutil.which("promtool")
    if promtool is None:
        return  # test_alerts.py insists on promtool under CI
    local = dict(config, rule_files=[str(DEPLOY / "alerts.yml")])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 rules found" in done.stdout + done.stderr
