"""Inputs the content side refuses, and how it says so."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.variants.factories import NOW, make_arm, make_loop_input
from variants.inputs import ArmView, LoopInput
from variants.learnings import LearningOp, apply_operations
from variants.lifecycle import check_transition
from variants.reply import LoopReply
from variants.rules import ContentRules
from variants.similarity import find_near_duplicate, find_semantic_duplicate


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_length": 0}, "greater than or equal to 1"),
        ({"banned_phrases": ["ok", "  "]}, "must not be empty"),
        ({"allowed_placeholders": ["first name"]}, "must be an identifier"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_content_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ContentRules.model_validate(fields)


def test_arm_view() -> None:
    with pytest.raises(ValidationError, match="successes exceed exposures"):
        make_arm(1, "x", exposures=10, successes=11)
    with pytest.raises(ValidationError, match="ci_low is above ci_high"):
        make_arm(1, "x", ci_low=0.5, ci_high=0.4)
    with pytest.raises(ValidationError, match="status"):
        ArmView.model_validate({"id": 1, "content": "x", "status": "paused"})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        make_arm(1, "x", rate=0.03, ci_high=1.5)


def test_loop_input() -> None:
    with pytest.raises(ValidationError, match="arm ids must be unique"):
        make_loop_input(arms=[make_arm(1, "a"), make_arm(1, "b")])
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        make_loop_input(max_live_arms=0)
    with pytest.raises(ValidationError, match="less than or equal to 20"):
        make_loop_input(max_new_variants=21)
    with pytest.raises(ValidationError, match="Extra inputs"):
        LoopInput.model_validate({"auto_aprove": True})


@pytest.mark.parametrize(
    "payload",
    [
        {"learning_ops": [{"op": "rewrite_all", "evidence_arm_ids": [1]}]},
        {"learning_ops": [{"op": "add", "evidence_arm_ids": ["one"]}]},
        {"retire_arm_ids": [{"arm_id": 1}]},
        {"new_variants": [{"text": "no content field"}]},
        {"learning_ops": "none"},
    ],
)
def test_reply_shapes(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LoopReply.model_validate(payload)


def test_learning_operations() -> None:
    with pytest.raises(ValueError, match="cap must be at least 1"):
        apply_operations([], [], evidence={}, cap=0, now=NOW)
    with pytest.raises(ValidationError):
        LearningOp.model_validate({"op": "add", "evidence_arm_ids": None})


def test_lifecycle_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown arm status 'paused'"):
        check_transition("paused", "live")


def test_similarity() -> None:
    with pytest.raises(ValueError, match="threshold"):
        find_near_duplicate("a", [], threshold=0)
    with pytest.raises(ValueError, match="threshold"):
        find_semantic_duplicate([1.0], [], threshold=1.5)
    with pytest.raises(ValueError, match="zero vector"):
        find_semantic_duplicate([0.0, 0.0], [(1, [1.0, 0.0])])
    with pytest.raises(ValueError, match="expected 2"):
        find_semantic_duplicate([1.0, 0.0], [(1, [1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="finite"):
        find_semantic_duplicate([float("nan"), 1.0], [])
    with pytest.raises(ValueError, match="1-D"):
        find_semantic_duplicate([[1.0]], [])
