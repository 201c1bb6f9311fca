"""The Grafana dashboard against a real Prometheus scraping a real banditloop process.

`banditloop serve` runs in a subprocess on SQLite (in Prometheus multiprocess mode, as in
deploy/docker-compose.yml), with the scripted copywriter as its LLM; Prometheus scrapes it
every second. After two rounds of traffic every panel query of dashboards/banditloop.json
must return data. `scripts/ensure-prometheus.sh` (run by `make test`) installs Prometheus.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.admin import state_metrics
from service.core import metrics
from service.core.tokens import DecisionSigner
from simulation.copywriter_server import running_copywriter

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "banditloop.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ADMIN_KEY = "bl_dashboard_test_admin_0123456789abcdef"
SIGNING_KEY = "t1:dashboard-test-signing-secret-0123"
POSTMARK = ("postmark", "dashboard-test-password")
EXPERIMENT = "dash-subjects"
SCRAPE_SECONDS = 1.0
REFRESH_SECONDS = 0.3
STARTUP_SECONDS = 60


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that draws something, rows' children included."""
    panels = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def _load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_is_valid_json_with_titled_panels_on_a_datasource() -> None:
    dashboard = _load_dashboard()
    declared = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    declared |= set(state_metrics.NAMES)  # read from the database at scrape time
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "experiment" in variables
    panels = _panels(dashboard)
    assert len(panels) >= 15
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel.get("title"), panel
        assert panel.get("datasource", {}).get("uid"), panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr"), panel["title"]
            assert target.get("datasource") == panel["datasource"], panel["title"]
            for name in re.findall(r"banditloop_[a-z_]+", target["expr"]):
                assert re.sub(r"_(total|bucket|sum|count)$", "", name) in declared, name


def test_compose_provisions_prometheus_grafana_and_this_dashboard() -> None:
    deploy = ROOT / "deploy"
    services = yaml.safe_load((deploy / "docker-compose.yml").read_text())["services"]
    banditloop = services["banditloop"]
    assert "--workers" in banditloop["command"]
    assert banditloop["environment"]["BANDITLOOP_DATABASE_URL"].startswith("postgresql")
    assert banditloop["environment"]["PROMETHEUS_MULTIPROC_DIR"]

    scrape = yaml.safe_load((deploy / "prometheus.yml").read_text())["scrape_configs"]
    assert "banditloop:8000" in scrape[0]["static_configs"][0]["targets"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]

    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    provider = yaml.safe_load((ROOT / "dashboards" / "provisioning.yaml").read_text())
    assert mounts["../dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["../dashboards/provisioning.yaml"].startswith(
        "/etc/grafana/provisioning/dashboards/"
    )
    assert mounts["./grafana/datasources.yaml"].startswith("/etc/grafana/provisioning/datasources/")
    (source,) = yaml.safe_load((deploy / "grafana" / "datasources.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


# --- the live check ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until(check: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    # Generous: importing the app takes seconds, many more on a loaded CI machine.
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} did not come up in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def prometheus_binary() -> str:
    if not os.path.exists(PROMETHEUS):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("prometheus is missing under CI: run scripts/ensure-prometheus.sh")
        pytest.skip("prometheus is not installed (scripts/ensure-prometheus.sh installs it)")
    return PROMETHEUS


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """`banditloop serve` on a free loopback port, with the scripted copywriter as its LLM."""
    with running_copywriter() as (llm_url, _control):
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir()
        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BANDITLOOP_", "PROMETHEUS_MULTIPROC"))
        }
        env |= {
            "BANDITLOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'banditloop.db'}",
            "BANDITLOOP_SIGNING_KEYS": SIGNING_KEY,
            "BANDITLOOP_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "BANDITLOOP_POLICY_REFRESH_SECONDS": str(REFRESH_SECONDS),
            "BANDITLOOP_DECISION_FLUSH_MS": "50",
            "BANDITLOOP_LLM_BASE_URL": llm_url,
            "BANDITLOOP_LLM_API_KEY": "test-key",
            "BANDITLOOP_LLM_MODEL": "copywriter-1",
            "BANDITLOOP_LLM_TIMEOUT_SECONDS": "5",
            "BANDITLOOP_LLM_MAX_RETRIES": "0",
            "BANDITLOOP_POSTMARK_USERNAME": POSTMARK[0],
            "BANDITLOOP_POSTMARK_PASSWORD": POSTMARK[1],
            # As deploy/docker-compose.yml: multiprocess mode, as with several workers.
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        log = tmp_path / "service.log"
        script = Path(sys.executable).with_name("banditloop")
        banditloop = (
            [str(script)] if script.exists() else [sys.executable, "-m", "service.core.cli"]
        )
        command = [*banditloop, "serve", "--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until(
                lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200,
                "banditloop",
                process,
                log,
            )
            yield base
        finally:
            _stop(process)


class Traffic:
    """Drives the service through its public API the way a sender and an ESP would."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )
        self.round = 0
        self.experiment: dict[str, Any] = {}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json()

    def until(self, method: str, path: str, done: Any, **kwargs: Any) -> Any:
        """Repeat a call until `done(body)`. The request session commits (and installs the
        new snapshot) after the response has gone out, so the next request can briefly see
        the state before an admin change."""
        deadline = time.monotonic() + 5
        while True:
            response = self.http.request(method, path, **kwargs)
            if response.status_code < 300 and done(response.json()):
                return response.json()
            assert time.monotonic() < deadline, f"{method} {path}: {response.text}"
            time.sleep(0.05)

    def create_experiment(self) -> None:
        self.experiment = self.call(
            "POST",
            "/v1/experiments",
            json={
                "key": EXPERIMENT,
                "name": "Dashboard subject lines",
                "arms": [
                    {"content": "Ready for the new season edit?", "tags": ["question"]},
                    {"content": "Shop this week's best sellers", "control": True},
                    {"content": "Meet fresh picks in your size"},
                ],
                "min_exposures": 30,
                "min_successes": 1,
                "brief": {"audience": "lapsed shoppers", "goal": "clicks", "brand_voice": "warm"},
                "content_rules": {"max_length": 80},
            },
        )
        self.until("GET", f"/v1/experiments/{EXPERIMENT}", lambda body: True)

    def decide_and_measure(self, units: int) -> None:
        """Keyed decisions (stored at once), unkeyed ones (through the decision log), then
        clicks, unsubscribes concentrated on one arm, an orphan, a dead letter, a webhook."""
        self.round += 1
        send = f"send-{self.round}"
        keyed = self.call(
            "POST",
            "/v1/choose/batch",
            json={
                "experiment": EXPERIMENT,
                "units": [{"unit_id": f"u{i}", "send_id": send} for i in range(units)],
            },
        )["decisions"]
        self.call("POST", "/v1/choose/batch", json={"experiment": EXPERIMENT, "units": [{}] * 20})
        self.call("POST", "/v1/choose", json={"experiment": EXPERIMENT, "unit_id": "solo"})
        self.call(
            "GET", "/v1/choose", params={"experiment": EXPERIMENT, "unit_id": "g", "send_id": send}
        )
        noisy_arm = self.experiment["arms"][2]["id"]
        events = []
        for i, decision in enumerate(keyed):
            did = decision["decision_id"]
            if i % 4 == 0:
                events.append({"event_id": f"{send}-c{i}", "decision_id": did, "type": "click"})
            # The guardrail compares an arm with the others' pooled rate: give it a base.
            if i % 2 == 0 if decision["arm"]["id"] == noisy_arm else i % 20 == 0:
                events.append(
                    {"event_id": f"{send}-u{i}", "decision_id": did, "type": "unsubscribe"}
                )
        events.append(
            {"event_id": f"{send}-forged", "decision_id": "not-a-decision-id", "type": "click"}
        )
        self.call("POST", "/v1/events", json=events)
        self.webhook(keyed[1]["decision_id"])
        self.fallback_and_orphan()

    def webhook(self, decision_id: str) -> None:
        record = {
            "RecordType": "Click",
            "MessageStream": "outbound",
            "MessageID": f"00000000-0000-0000-0000-00000000000{self.round}",
            "Recipient": "john@example.com",
            "ReceivedAt": datetime.now(UTC).isoformat(),
            "Metadata": {"bl_decision": decision_id},
            "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15",
            "OriginalLink": "https://example.com/offer",
        }
        response = self.http.post("/v1/webhooks/postmark", json=record, auth=POSTMARK)
        assert response.status_code < 300, response.text

    def fallback_and_orphan(self) -> None:
        """A paused experiment answers with its fallback, untracked. An event for a decision
        id that is well signed but was never stored (as a crash inside the decision log's
        loss window leaves behind) is an orphan."""
        choose: dict[str, Any] = {"json": {"experiment": EXPERIMENT}}
        self.call("POST", f"/v1/experiments/{EXPERIMENT}/pause")
        fallback = self.until("POST", "/v1/choose", lambda body: body["fallback"], **choose)
        assert fallback["decision_id"] is None
        assert fallback["tracked"] is False
        self.call("POST", f"/v1/experiments/{EXPERIMENT}/resume")
        self.until("POST", "/v1/choose", lambda body: not body["fallback"], **choose)
        kid, secret = SIGNING_KEY.split(":", 1)
        never_stored = DecisionSigner([(kid, secret)]).mint(
            experiment_id=self.experiment["id"],
            epoch=1,
            arm_id=fallback["arm"]["id"],
            segment="",
            propensity=1.0,
            policy_version=fallback["policy_version"],
            issued_at=datetime.now(UTC),
        )
        orphan = {"event_id": f"orphan-{self.round}", "decision_id": never_stored, "type": "click"}
        assert self.call("POST", "/v1/events", json=orphan)["orphans"] == 1

    def loop_run(self) -> None:
        run = self.call("POST", f"/v1/experiments/{EXPERIMENT}/loop-runs")
        assert run["status"] != "failed", run


class Prometheus:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.http.get("/api/v1/query", params=params).json()
        assert body["status"] == "success", f"{expr}: {body}"
        assert body["data"]["resultType"] == "vector", expr
        return list(body["data"]["result"])

    def wait_for_scrapes_after(self, mark: float) -> None:
        """Until two successful scrapes started after `mark`: the later one saw everything,
        and series born just before `mark` have the two samples rate() needs."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            up = self.query('timestamp(up{job="banditloop"} == 1)')
            if up and float(up[0]["value"][1]) >= mark + SCRAPE_SECONDS:
                return
            time.sleep(0.2)
        pytest.fail(f"no successful scrapes after {mark}: {self.query('up')}")

    def wait_for(self, expr: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.query(expr):
                return
            time.sleep(0.2)
        pytest.fail(f"{expr} returned nothing for 15 s")


@pytest.fixture
def prometheus(prometheus_binary: str, service: str, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping the service every second, on a free port."""
    target = service.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_SECONDS:g}s\n"
        f"  scrape_timeout: {SCRAPE_SECONDS:g}s\n"
        "scrape_configs:\n"
        "  - job_name: banditloop\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = _free_port()
    log = tmp_path / "prometheus.log"
    command = [
        prometheus_binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(
            lambda: httpx.get(f"{base}/-/ready", timeout=2).status_code == 200,
            "prometheus",
            process,
            log,
        )
        client = Prometheus(base)
        yield client
        client.http.close()
    finally:
        _stop(process)


@pytest.fixture
def traffic(service: str) -> Iterator[Traffic]:
    client = Traffic(service)
    yield client
    client.http.close()


def _substitute(expr: str, window: str) -> str:
    for name, value in {
        "experiment": EXPERIMENT,
        "__rate_interval": window,
        "__range": window,
        "__interval": window,
    }.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"an unknown variable in {expr}"
    return expr


def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    traffic: Traffic, prometheus: Prometheus
) -> None:
    started, prom = time.time(), prometheus
    traffic.create_experiment()
    # Round one creates every series; round two, after a scrape, makes counters move so
    # rates are non-zero and histogram quantiles defined.
    traffic.decide_and_measure(units=150)
    traffic.loop_run()
    prom.wait_for_scrapes_after(time.time())
    traffic.decide_and_measure(units=60)
    traffic.loop_run()
    # The noisy arm's unsubscribes breach the guardrail once the refresher has seen them.
    prom.wait_for(
        f'banditloop_arm_guardrail_breached{{experiment="{EXPERIMENT}", '
        f'arm="{traffic.experiment["arms"][2]["id"]}", metric="unsubscribe"}} == 1'
    )
    prom.wait_for_scrapes_after(time.time())
    # The `experiment` variable's own query lists the experiment.
    variable = prom.http.get(
        "/api/v1/label/experiment/values", params={"match[]": "banditloop_decisions_total"}
    )
    assert EXPERIMENT in variable.json()["data"]

    at = time.time()
    window = f"{math.ceil(at - started) + 5}s"  # covers every scrape of this test
    empty = []
    for panel in _panels(_load_dashboard()):
        for target in panel["targets"]:
            expr = _substitute(target["expr"], window)
            series = prom.query(expr, at=at)
            values = [float(s["value"][1]) for s in series]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{panel['title']} [{target['refId']}]: {expr} -> {series}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
