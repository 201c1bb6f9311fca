"""Near-duplicate detection for variants: lexical (character trigrams) and semantic
(cosine similarity of embedding vectors).

A new variant that is a light rewording of a live, retired or rejected arm wastes traffic
on a question already answered, so the loop drops it before anyone reviews it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from variants.rules import EMOJI_RE, PLACEHOLDER_RE

# Jaccard similarity of character trigram sets at or above which two texts count as the
# same variant. Calibrated on subject lines: changes of punctuation, case, spacing, emoji,
# placeholder spelling or one trailing word ("Last chance: 20% off" / "last chance - 20%
# off today!") score 0.75-1.0; a changed feature that is worth testing ("Don't miss out" /
# "Don't miss out, {{first_name}}", "Spring sale starts now" / "Summer sale starts now")
# scores about 0.5, and a different angle on the same offer below 0.4.
LEXICAL_THRESHOLD = 0.7
# Cosine similarity at or above which two embeddings count as the same message. Sentence
# embedding models put paraphrases above ~0.9 and merely related texts around 0.6-0.8.
SEMANTIC_THRESHOLD = 0.92
NGRAM = 3

Key = int | str


@dataclass(frozen=True, slots=True)
class Match:
    key: Key
    score: float
    kind: Literal["lexical", "semantic"]
    text: str | None = None


def normalise(text: str) -> str:
    """Case-folded words only: punctuation, emoji and spacing removed, every placeholder
    written as one token so `{{first_name}}` and `{{ first_name }}` agree."""
    text = PLACEHOLDER_RE.sub(lambda match: f" ph{match.group(1).strip().lower()} ", text)
    text = EMOJI_RE.sub(" ", text.casefold())
    text = re.sub(r"[^\w%$€£]+", " ", text)
    return " ".join(text.split())


def shingles(text: str, n: int = NGRAM) -> frozenset[str]:
    padded = f" {normalise(text)} "
    if len(padded) <= n:
        return frozenset({padded})
    return frozenset(padded[i : i + n] for i in range(len(padded) - n + 1))


def jaccard(left: frozenset[str], right: frozenset[str]) -> float:
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def lexical_similarity(left: str, right: str) -> float:
    return jaccard(shingles(left), shingles(right))


def find_near_duplicate(
    text: str,
    corpus: Sequence[tuple[Key, str]],
    *,
    threshold: float = LEXICAL_THRESHOLD,
) -> Match | None:
    """The most similar corpus entry at or above `threshold`, or None."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    target = shingles(text)
    best: Match | None = None
    for key, other in corpus:
        score = jaccard(target, shingles(other))
        if score >= threshold and (best is None or score > best.score):
            best = Match(key=key, score=score, kind="lexical", text=other)
    return best


def _unit(vector: ArrayLike, *, what: str) -> NDArray[np.float64]:
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite")
    norm = float(np.linalg.norm(array))
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError(f"{what} must not be the zero vector")
    return array / norm


def cosine_similarity(left: ArrayLike, right: ArrayLike) -> float:
    a, b = _unit(left, what="left"), _unit(right, what="right")
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.size} and {b.size}")
    return float(np.dot(a, b))


def find_semantic_duplicate(
    vec: ArrayLike,
    corpus_vecs: Sequence[tuple[Key, ArrayLike]],
    *,
    threshold: float = SEMANTIC_THRESHOLD,
) -> Match | None:
    """The corpus vector with the highest cosine similarity at or above `threshold`."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    target = _unit(vec, what="the vector")
    best: Match | None = None
    for key, other in corpus_vecs:
        candidate = _unit(other, what=f"the vector of {key!r}")
        if candidate.shape != target.shape:
            raise ValueError(
                f"the vector of {key!r} has {candidate.size} dimensions, expected {target.size}"
            )
        score = float(np.dot(target, candidate))
        if score >= threshold and (best is None or score > best.score):
            best = Match(key=key, score=score, kind="semantic")
    return best
