"""The report in words: the sentences the experiments list leads with."""

from __future__ import annotations

from typing import Any

from bandits.delay_model import TOO_EARLY
from service.console.words import leader_sentence, maturity_words, pct


def _row(arm_id: int, content: str, rate: float, p_best: float, **extra: Any) -> dict[str, Any]:
    return {
        "arm_id": arm_id,
        "content": content,
        "status": "live",
        "control": False,
        "exposures": 1000,
        "estimated_rate": rate,
        "probability_best": p_best,
        "maturity": 0.8,
        "judgement": "judged",
        **extra,
    }


def test_a_challenger_leading_the_control() -> None:
    report = {
        "arms": [
            _row(1, "Our sale starts today", 0.032, 0.07, control=True),
            _row(2, "Subject B", 0.041, 0.93),
        ]
    }
    assert leader_sentence(report) == (
        "“Subject B” leads: 4.1% vs 3.2% for the control, 93% likely best."
    )
    assert maturity_words(report) == "80% of eventual successes have arrived"


def test_the_control_leading_names_the_best_challenger() -> None:
    report = {
        "arms": [
            _row(1, "Control", 0.05, 0.8, control=True),
            _row(2, "B", 0.03, 0.15),
            _row(3, "C", 0.02, 0.05),
        ]
    }
    assert leader_sentence(report) == (
        "The control “Control” leads: 5.0% vs 3.0% for the best challenger, 80% likely best."
    )


def test_too_early_and_empty_states() -> None:
    early = {"arms": [_row(1, "A", 0.1, 0.6, judgement=TOO_EARLY), _row(2, "B", 0.05, 0.4)]}
    assert leader_sentence(early).endswith("60% likely best, too early to judge.")
    assert "1 arm too early to judge" in maturity_words(early)
    assert leader_sentence({"arms": []}) == "No live arm is being served yet."
    quiet = {"arms": [_row(1, "A", 0.5, 0.5, exposures=0), _row(2, "B", 0.5, 0.5, exposures=0)]}
    assert leader_sentence(quiet).startswith("No traffic yet")
    assert maturity_words(quiet) == "no evidence yet"
    assert pct(None) == "–"
