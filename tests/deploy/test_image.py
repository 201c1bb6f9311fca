"""The service image, built and checked from outside by scripts/check-image.sh: migrations,
/readyz, /v1/choose, /metrics, a non-root user, Docker's health check and a clean stop.

Part of `make test` (and so of CI): the first run on a machine builds the base root file
system with debootstrap (about 3 minutes) and the dependency layer (about 2); later runs
reuse both and take about a minute. Outside CI, a machine without Docker skips it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-image.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.mark.image
def test_the_image_builds_and_answers_from_outside() -> None:
    if not _in_ci() and not (shutil.which("dockerd") and shutil.which("debootstrap")):
        pytest.skip("no Docker engine here (scripts/ensure-docker.sh installs one)")
    if os.geteuid() != 0 and not shutil.which("sudo"):
        pytest.skip("building the base image needs root")
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    steps = re.findall(r"^check-image: (.*)$", done.stdout, flags=re.MULTILINE)
    for expected in (
        "image built",
        "migrations applied: database at",
        '/readyz: {"status":"ready"',
        "runs as uid",
        "/v1/choose answered arm",
        "/metrics:",
        "docker health check: healthy",
        "stopped cleanly on SIGTERM",
    ):
        assert any(expected in step for step in steps), (expected, steps)
    print(f"image check: {time.monotonic() - started:.0f} s")
    print("\n".join(steps))
