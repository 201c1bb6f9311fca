"""The README documents every setting, and its quickstart has the two commands."""

from __future__ import annotations

from pathlib import Path

from service.core.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [
        f"BANDITLOOP_{name.upper()}"
        for name in Settings.model_fields
        if f"BANDITLOOP_{name.upper()}" not in README
    ]
    assert missing == []


def test_every_setting_has_a_description():
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_quickstart_has_the_two_commands():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make serve" in quickstart
    assert "make test" in quickstart
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
