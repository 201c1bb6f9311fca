"""Browser helpers for the console's end-to-end tests: sign in, count page loads and
keystrokes, check accessibility with axe-core, keep screenshots as test artifacts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("BANDITLOOP_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
# WCAG 2 A and AA (labels, contrast, names, landmarks' basics) and axe's best practices
# (one h1, headings in order, content inside landmarks).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@dataclass
class Counter:
    """Page loads (main-frame navigations) and keystrokes, for the keyboard-only pass."""

    page: Any
    loads: int = 0
    keys: int = 0
    typed: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("load", lambda _page: self._loaded())

    def _loaded(self) -> None:
        self.loads += 1
        self.log.append(self.page.url)

    def press(self, key: str) -> None:
        self.keys += 1
        self.page.keyboard.press(key)

    def type(self, text: str) -> None:
        self.keys += len(text)
        self.typed += len(text)
        self.page.keyboard.type(text)


def sign_in(page: Any, base: str, *, name: str, key: str) -> None:
    page.goto(f"{base}/console/sign-in")
    page.fill("#name", name)
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/experiments")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{AXE} is missing under CI: run scripts/ensure-axe.sh")
        pytest.skip("axe-core is not installed (scripts/ensure-axe.sh installs it)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text())
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        {
            "id": v["id"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
    ]


def check_page(page: Any, name: str, database: str) -> None:
    """Accessibility by axe-core, a visible keyboard focus, and a screenshot kept."""
    violations = axe_violations(page)
    assert violations == [], f"{name}: {violations}"
    # The first Tab reaches the skip link, and focus is drawn (not an invisible outline).
    # Start the keyboard's walk at the top of the page, as a fresh load does.
    page.evaluate(
        "() => { const s = document.createElement('span'); s.tabIndex = -1; s.id = 'tab-start';"
        " document.body.prepend(s); s.focus(); }"
    )
    page.keyboard.press("Tab")
    page.evaluate("document.getElementById('tab-start').remove()")
    focus = page.evaluate(
        "() => { const el = document.activeElement; const s = getComputedStyle(el);"
        " return {tag: el.tagName, text: el.textContent.trim(), outline: s.outlineStyle,"
        " width: parseFloat(s.outlineWidth)}; }"
    )
    assert focus["text"] == "Skip to content", (name, focus)
    assert focus["outline"] != "none", (name, focus)
    assert focus["width"] >= 2, (name, focus)
    page.evaluate("document.activeElement.blur()")
    screenshot(page, name, database)


def screenshot(page: Any, name: str, database: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}-{database}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
