"""Learnings: short claims with evidence, changed only by item-level operations.

As in ExpeL, the list is never rewritten wholesale: each operation (add, confirm,
supersede, prune) touches one item, must cite arms with enough evidence, and the list
stays under a cap by pruning the claims with the least support. Superseded and pruned
items are kept (with their evidence) so the history stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CAP = 20
MAX_CLAIM_LENGTH = 300


class LearningStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    PRUNED = "pruned"


class Evidence(BaseModel):
    """One arm's figures at the time a learning cited it. `effect` is the arm's
    delay-corrected success rate (the report's `estimated_rate`) with its interval;
    `observed_rate` is successes / exposures and `maturity` the share of the eventual
    evidence that had arrived (None on items recorded before these were kept)."""

    model_config = ConfigDict(frozen=True)

    arm_id: int
    exposures: Annotated[int, Field(ge=0)]
    successes: Annotated[int, Field(ge=0)]
    effect: float
    ci_low: float
    ci_high: float
    observed_rate: float | None = None
    maturity: float | None = None
    # The experiment the arm belongs to, when a library learning cites another campaign's arm.
    experiment_key: str | None = None


class Verdict(BaseModel):
    """Where a learning was last judged: in one experiment (and segment, "" for all traffic),
    when, and on which arms. A learning keeps one verdict per (experiment, segment) in
    `holds` or in `failed`, whichever the newest judgement said."""

    model_config = ConfigDict(frozen=True)

    experiment_key: str
    segment: str = ""
    at: datetime
    arm_ids: list[int] = Field(default_factory=list)
    # The figures behind a per-segment verdict the statistical pass recorded
    # (variants.segments); None for verdicts from a learning operation.
    detail: str | None = None


class Learning(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # stable per experiment: "L1", "L2", ... (the prompt and the LLM refer to it)
    claim: str
    evidence: list[Evidence]
    support: Annotated[int, Field(ge=0)]
    status: LearningStatus = LearningStatus.ACTIVE
    created_at: datetime
    last_confirmed_at: datetime
    superseded_by: str | None = None
    status_reason: str | None = None
    holds: list[Verdict] = Field(default_factory=list)
    failed: list[Verdict] = Field(default_factory=list)
    channel: str | None = None
    # The arm tags the claim is about (given with the operation, or read from the claim):
    # what the per-segment verdicts judge it on.
    tags: list[str] = Field(default_factory=list)

    @property
    def evidence_arm_ids(self) -> list[int]:
        return [item.arm_id for item in self.evidence]


class LearningOp(BaseModel):
    """One operation on the learnings, as the proposer (or a human) asks for it.

    add: `claim` and evidence; confirm: `learning_id` and evidence (support + 1);
    supersede: `learning_id` (the old claim), the new `claim` and evidence;
    prune: `learning_id` and the evidence that contradicts it.
    `tags` (add, supersede): the arm tags the claim is about; kept only if a cited arm
    carries them, and read from the claim's words when none are given.
    """

    op: Literal["add", "confirm", "supersede", "prune"]
    learning_id: str | None = None
    claim: str | None = None
    evidence_arm_ids: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class AppliedOp(BaseModel):
    model_config = ConfigDict(frozen=True)

    op: Literal["add", "confirm", "supersede", "prune", "cap_prune", "holds", "fails"]
    learning_id: str
    detail: str


class DroppedOp(BaseModel):
    model_config = ConfigDict(frozen=True)

    op: LearningOp
    reason: str


def normalise_claim(claim: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", claim.casefold()).split())


def _next_id(learnings: Iterable[Learning]) -> int:
    numbers = [int(item.id[1:]) for item in learnings if re.fullmatch(r"L\d+", item.id)]
    return max(numbers, default=0) + 1


def _merge_evidence(old: Sequence[Evidence], new: Sequence[Evidence]) -> list[Evidence]:
    # The newest snapshot of an arm replaces the old one: the claim now rests on it.
    by_arm = {item.arm_id: item for item in old}
    by_arm.update({item.arm_id: item for item in new})
    return list(by_arm.values())


def apply_operations(
    current: Sequence[Learning],
    ops: Sequence[LearningOp],
    *,
    evidence: Mapping[int, Evidence],
    cap: int = DEFAULT_CAP,
    now: datetime,
    where: str | None = None,
    channel: str | None = None,
    arm_tags: Mapping[int, Sequence[str]] | None = None,
) -> tuple[list[Learning], list[AppliedOp], list[DroppedOp]]:
    """Apply `ops` in order; returns (new state, applied, dropped with reasons).

    `evidence` maps every arm id that may be cited (arms with at least the minimum
    sample, of this experiment or of any experiment sharing its library) to its figures
    now; an op citing no arm, or any arm outside it, is dropped. The input list is not
    modified. New items get the next free `L<n>` id. `where` is the experiment whose run
    asks: add and confirm record that the claim holds there, prune and supersede that it
    failed there; `channel` is recorded on new items. `arm_tags` (arm id -> its tags) lets
    add and supersede record which tags a claim is about (see `claim_tags`).
    """
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    state: dict[str, Learning] = {item.id: item for item in current}
    applied: list[AppliedOp] = []
    dropped: list[DroppedOp] = []
    touched: set[str] = set()
    next_number = _next_id(current)

    for op in ops:
        reason = _reject_reason(op, state, evidence, touched)
        if reason is not None:
            dropped.append(DroppedOp(op=op, reason=reason))
            continue
        cited = [evidence[arm_id] for arm_id in dict.fromkeys(op.evidence_arm_ids)]
        tags = _op_tags(op, cited, arm_tags or {})
        arm_list = ", ".join(str(item.arm_id) for item in cited)
        if op.op == "add":
            new_id = f"L{next_number}"
            next_number += 1
            state[new_id] = _judged(
                Learning(
                    id=new_id,
                    claim=_clean_claim(op.claim),
                    evidence=cited,
                    support=1,
                    created_at=now,
                    last_confirmed_at=now,
                    channel=channel,
                    tags=tags,
                ),
                where,
                cited,
                now,
                held=True,
            )
            touched.add(new_id)
            applied.append(AppliedOp(op="add", learning_id=new_id, detail=f"arms {arm_list}"))
            continue

        assert op.learning_id is not None  # checked by _reject_reason
        old = state[op.learning_id]
        touched.add(old.id)
        if op.op == "confirm":
            state[old.id] = _judged(
                old.model_copy(
                    update={
                        "support": old.support + 1,
                        "evidence": _merge_evidence(old.evidence, cited),
                        "last_confirmed_at": now,
                    }
                ),
                where,
                cited,
                now,
                held=True,
            )
            applied.append(
                AppliedOp(
                    op="confirm",
                    learning_id=old.id,
                    detail=f"support {old.support} -> {old.support + 1}; arms {arm_list}",
                )
            )
        elif op.op == "supersede":
            new_id = f"L{next_number}"
            next_number += 1
            # The refined claim inherits the support of the one it replaces: it rests on the
            # same evidence plus the arms cited now.
            state[new_id] = _judged(
                Learning(
                    id=new_id,
                    claim=_clean_claim(op.claim),
                    evidence=_merge_evidence(old.evidence, cited),
                    support=old.support,
                    created_at=now,
                    last_confirmed_at=now,
                    holds=list(old.holds),
                    channel=old.channel or channel,
                    tags=tags or list(old.tags),
                ),
                where,
                cited,
                now,
                held=True,
            )
            state[old.id] = _judged(
                old.model_copy(
                    update={
                        "status": LearningStatus.SUPERSEDED,
                        "superseded_by": new_id,
                        "status_reason": f"superseded by {new_id}",
                    }
                ),
                where,
                cited,
                now,
                held=False,
            )
            touched.add(new_id)
            applied.append(
                AppliedOp(
                    op="supersede",
                    learning_id=old.id,
                    detail=f"replaced by {new_id}; arms {arm_list}",
                )
            )
        else:
            state[old.id] = _judged(
                old.model_copy(
                    update={
                        "status": LearningStatus.PRUNED,
                        "status_reason": f"contradicted by arms {arm_list}",
                        "evidence": _merge_evidence(old.evidence, cited),
                    }
                ),
                where,
                cited,
                now,
                held=False,
            )
            applied.append(
                AppliedOp(op="prune", learning_id=old.id, detail=f"contradicted by arms {arm_list}")
            )

    applied.extend(_enforce_cap(state, cap))
    return list(state.values()), applied, dropped


def enforce_cap(
    learnings: Sequence[Learning], cap: int, *, why: str = ""
) -> tuple[list[Learning], list[AppliedOp]]:
    """Prune the least supported active claims over `cap` (the rule every run applies),
    e.g. at once when a library's cap is lowered; `why` is added to each reason."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    state = {item.id: item for item in learnings}
    pruned = _enforce_cap(state, cap, why=why)
    return list(state.values()), pruned


def record_verdict(learning: Learning, verdict: Verdict, *, held: bool) -> Learning:
    """Record the newest verdict for one (experiment, segment): it moves between `holds`
    and `failed`, so each (experiment, segment) is in one list only."""
    place = (verdict.experiment_key, verdict.segment)
    holds = [v for v in learning.holds if (v.experiment_key, v.segment) != place]
    failed = [v for v in learning.failed if (v.experiment_key, v.segment) != place]
    (holds if held else failed).append(verdict)
    return learning.model_copy(update={"holds": holds, "failed": failed})


def _judged(
    learning: Learning,
    where: str | None,
    cited: Sequence[Evidence],
    now: datetime,
    *,
    held: bool,
) -> Learning:
    """The all-traffic verdict of the asking experiment (an operation judges the claim on
    all its traffic; per-segment verdicts come from `variants.segments`)."""
    if where is None:
        return learning
    verdict = Verdict(experiment_key=where, at=now, arm_ids=[item.arm_id for item in cited])
    return record_verdict(learning, verdict, held=held)


def _stem(word: str) -> str:
    """A word reduced enough to match a tag however the claim inflects or spells it:
    questions -> question, personalised -> personalized, emojis -> emoji."""
    word = re.sub(r"is(e|ed|es|ing)$", r"iz\1", word)
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def claim_tags(claim: str, vocabulary: Iterable[str]) -> list[str]:
    """The tags of `vocabulary` the claim names (each tag's words appear in the claim, up
    to plural and -ise/-ize spelling), in vocabulary order."""
    words = [_stem(word) for word in normalise_claim(claim).split()]
    text = f" {' '.join(words)} "
    found: list[str] = []
    for tag in vocabulary:
        stems = " ".join(_stem(word) for word in normalise_claim(tag).split())
        if stems and f" {stems} " in text and tag not in found:
            found.append(tag)
    return found


def _op_tags(
    op: LearningOp, cited: Sequence[Evidence], arm_tags: Mapping[int, Sequence[str]]
) -> list[str]:
    """The tags an add or supersede is about: those given that a cited arm carries, else
    those the claim names among the cited arms' tags."""
    if op.op not in ("add", "supersede"):
        return []
    carried = list(dict.fromkeys(tag for item in cited for tag in arm_tags.get(item.arm_id, ())))
    given = [" ".join(tag.casefold().split()) for tag in op.tags]
    chosen = [tag for tag in dict.fromkeys(given) if tag in carried]
    return chosen or claim_tags(op.claim or "", carried)


def _clean_claim(claim: str | None) -> str:
    return " ".join((claim or "").split())


def _reject_reason(
    op: LearningOp,
    state: Mapping[str, Learning],
    evidence: Mapping[int, Evidence],
    touched: set[str],
) -> str | None:
    if not op.evidence_arm_ids:
        return "cites no evidence: every learning operation must cite arm ids"
    unknown = sorted({arm_id for arm_id in op.evidence_arm_ids if arm_id not in evidence})
    if unknown:
        return (
            f"cites arm ids {unknown} that are unknown or below the minimum sample; "
            "learnings rest only on arms with enough evidence"
        )
    if op.op in ("add", "supersede"):
        claim = _clean_claim(op.claim)
        if not claim:
            return f"{op.op} needs a claim"
        if len(claim) > MAX_CLAIM_LENGTH:
            return f"the claim is {len(claim)} characters, over {MAX_CLAIM_LENGTH}"
        normalised = normalise_claim(claim)
        for item in state.values():
            if item.status == LearningStatus.ACTIVE and normalise_claim(item.claim) == normalised:
                return f"repeats active learning {item.id}; confirm it instead"
        if op.op == "add":
            return None
    if not op.learning_id:
        return f"{op.op} needs a learning_id"
    target = state.get(op.learning_id)
    if target is None:
        return f"unknown learning {op.learning_id!r}"
    if target.status != LearningStatus.ACTIVE:
        return f"learning {target.id} is {target.status}, not active"
    if op.learning_id in touched:
        return f"learning {target.id} was already changed in this run"
    return None


def _enforce_cap(state: dict[str, Learning], cap: int, *, why: str = "") -> list[AppliedOp]:
    active = [item for item in state.values() if item.status == LearningStatus.ACTIVE]
    excess = len(active) - cap
    if excess <= 0:
        return []
    # Lowest support first; among equals the one confirmed longest ago, then the oldest id.
    active.sort(key=lambda item: (item.support, item.last_confirmed_at, _id_number(item.id)))
    pruned: list[AppliedOp] = []
    for item in active[:excess]:
        state[item.id] = item.model_copy(
            update={
                "status": LearningStatus.PRUNED,
                "status_reason": f"pruned to keep the list under {cap} "
                f"(support {item.support}){why}",
            }
        )
        pruned.append(
            AppliedOp(
                op="cap_prune",
                learning_id=item.id,
                detail=f"lowest support ({item.support}) over the cap of {cap}",
            )
        )
    return pruned


def _id_number(learning_id: str) -> int:
    return int(learning_id[1:]) if re.fullmatch(r"L\d+", learning_id) else 0


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _observed(evidence: Evidence) -> float | None:
    if evidence.observed_rate is not None:
        return evidence.observed_rate
    return evidence.successes / evidence.exposures if evidence.exposures else None


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _maturity(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def render_markdown(experiment_key: str, learnings: Sequence[Learning]) -> str:
    """The learnings file: active claims by support, each with its evidence table, then the
    superseded and pruned history. Each evidence row shows the observed rate (successes /
    exposures), the delay-corrected estimate with its interval, and the maturity (the share of
    the eventual evidence that had arrived when the learning cited the arm)."""
    lines = [f"# Learnings: {_cell(experiment_key)}", ""]
    sections = (
        ("Active", LearningStatus.ACTIVE),
        ("Superseded", LearningStatus.SUPERSEDED),
        ("Pruned", LearningStatus.PRUNED),
    )
    for title, status in sections:
        items = [item for item in learnings if item.status == status]
        if status != LearningStatus.ACTIVE and not items:
            continue
        items.sort(key=lambda item: (-item.support, _id_number(item.id)))
        lines += [f"## {title}", ""]
        if not items:
            lines += ["No active learnings yet.", ""]
        for item in items:
            lines += [
                f"### {item.id}: {_cell(item.claim)}",
                "",
                f"- support: {item.support}",
                f"- last confirmed: {item.last_confirmed_at.isoformat()}",
            ]
            if item.status_reason:
                lines.append(f"- status: {item.status} ({_cell(item.status_reason)})")
            lines += [
                "",
                "| arm | exposures | successes | observed rate | estimated rate "
                "| 95% interval | maturity |",
                "| ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            ]
            lines += [
                f"| {ev.arm_id} | {ev.exposures} | {ev.successes} | {_share(_observed(ev))} "
                f"| {ev.effect:.4f} | {ev.ci_low:.4f} to {ev.ci_high:.4f} "
                f"| {_maturity(ev.maturity)} |"
                for ev in item.evidence
            ]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
