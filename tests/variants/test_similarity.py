from __future__ import annotations

import numpy as np
import pytest

from variants.similarity import (
    LEXICAL_THRESHOLD,
    cosine_similarity,
    find_near_duplicate,
    find_semantic_duplicate,
    lexical_similarity,
    normalise,
)


def test_normalise_ignores_case_punctuation_emoji_spacing_and_placeholder_spelling() -> None:
    assert normalise("Hi {{first_name}},  NEW arrivals!! 🎉") == normalise(
        "hi {{ first_name }} - new arrivals"
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Last chance: 20% off everything", "last chance - 20% off everything!"),
        ("Last chance: 20% off", "Last chance: 20% off today"),
        ("Is your wardrobe ready for spring?", "Is your wardrobe ready for spring, Anna?"),
    ],
)
def test_rewordings_are_near_duplicates(left: str, right: str) -> None:
    assert lexical_similarity(left, right) >= LEXICAL_THRESHOLD
    match = find_near_duplicate(right, [(7, left)])
    assert match is not None
    assert match.key == 7
    assert match.kind == "lexical"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Last chance: 20% off", "Your 20% discount ends tonight"),
        ("Don't miss out", "Don't miss out, {{ first_name }}"),
        ("Spring sale starts now", "Summer sale starts now"),
    ],
)
def test_different_tests_are_not_duplicates(left: str, right: str) -> None:
    assert find_near_duplicate(right, [(1, left)]) is None


def test_best_match_wins() -> None:
    corpus: list[tuple[int | str, str]] = [
        (1, "Ready for spring"),
        (2, "Ready for spring?!"),
        ("r1", "Something else"),
    ]
    match = find_near_duplicate("ready for spring?", corpus)
    assert match is not None
    assert match.score == pytest.approx(1.0)
    assert match.key == 1  # ties keep the first


def test_empty_corpus() -> None:
    assert find_near_duplicate("anything", []) is None


def test_cosine() -> None:
    assert cosine_similarity([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)


def test_semantic_duplicate_found_above_threshold() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=64)
    close = base + rng.normal(scale=0.05, size=64)
    far = rng.normal(size=64)
    match = find_semantic_duplicate(close, [("far", far), ("base", base)])
    assert match is not None
    assert match.key == "base"
    assert match.kind == "semantic"
    assert match.score > 0.99
    assert find_semantic_duplicate(far, [("base", base)]) is None
