"""deploy/alerts.yml under `promtool test rules`: each alert fires on the series written in
alerts_cases.yml, stays quiet where it should, and each has a runbook in the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts.yml"
CASES = Path(__file__).with_name("alerts_cases.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture(scope="module")
def promtool() -> str:
    if not os.path.exists(PROMTOOL):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("promtool is missing under CI: run scripts/ensure-prometheus.sh")
        pytest.skip("promtool is not installed (scripts/ensure-prometheus.sh installs it)")
    return PROMTOOL


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_are_valid(promtool: str) -> None:
    done = _run(promtool, "check", "rules", str(RULES), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(_alerts()) == {
        "BanditloopDown",
        "BanditloopGuardrailSuspension",
        "BanditloopDeadLettersRising",
        "BanditloopPolicySnapshotStale",
        "BanditloopWebhookSignatureFailures",
        "BanditloopLoopRunsFailing",
        "BanditloopDecisionLogFlushFailing",
    }


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = _run(promtool, "test", "rules", CASES.name, cwd=CASES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_seen_firing_in_the_cases() -> None:
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert fired == set(_alerts())


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_the_cases_catch_an_alert_that_never_fires(
    promtool: str, alert: str, tmp_path: Path
) -> None:
    """Each alert's cases fail against a copy of the rules where that alert is dead."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = "vector(1) > 2"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    cases = yaml.safe_load(CASES.read_text())
    cases["rule_files"] = ["alerts.yml"]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(cases))
    done = _run(promtool, "test", "rules", "cases.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert f"alertname: {alert}" in done.stdout + done.stderr


def test_every_alert_has_a_runbook_section_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)
    }
    for name, rule in _alerts().items():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == name.lower()
        assert anchor in headings, f"README.md has no section for {name}"
