"""The learnings library: what every experiment sharing it has learnt, kept short.

An experiment's learnings are its view of its library: a loop run reads the active
learnings of its channel and changes them only through the item operations of
`variants.learnings` (add, confirm, supersede, prune), citing arms of any experiment in the
library. On top of those operations the library has two rules of its own:

- Fading. A claim nobody confirms loses weight with a half-life (default 60 days: about two
  monthly campaigns); once its freshness falls below `PRUNE_FRESHNESS` (two half-lives
  without a confirmation) it is pruned, with that reason. An audience's tastes drift, and a
  claim last confirmed a season ago should not steer this month's first proposals.
- The cap (default 20 active claims). Why 20: each active claim goes into every prompt with
  its evidence (about 150 tokens), so 20 cost about 3k tokens, well inside any model's
  context next to the arms; a reviewer reads 20 claims on one screen; and the statistics
  cannot support many more distinct claims: with the ~8 style tags arms carry and a few
  segments, the tag effects whose interval excludes zero number far fewer than 20, so a
  longer list would be padded with claims the evidence does not single out. Over the cap,
  the least supported (then least recently confirmed) claims are pruned
  (`variants.learnings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from variants.learnings import (
    AppliedOp,
    Evidence,
    Learning,
    LearningStatus,
    _cell,
    _id_number,
    _maturity,
    _observed,
    _share,
)

DEFAULT_HALF_LIFE_DAYS = 60.0
PRUNE_FRESHNESS = 0.25  # two half-lives without a confirmation


def freshness(learning: Learning, *, now: datetime, half_life_days: float) -> float:
    """1.0 when just confirmed, halving every `half_life_days` without a confirmation."""
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    age_days = max(0.0, (now - learning.last_confirmed_at).total_seconds() / 86400.0)
    return float(0.5 ** (age_days / half_life_days))


def fade(
    learnings: Sequence[Learning], *, now: datetime, half_life_days: float
) -> tuple[list[Learning], list[AppliedOp]]:
    """Prune active claims whose freshness fell below `PRUNE_FRESHNESS`; returns the new
    state (same order) and what was pruned."""
    state: list[Learning] = []
    pruned: list[AppliedOp] = []
    for item in learnings:
        fresh = freshness(item, now=now, half_life_days=half_life_days)
        if item.status != LearningStatus.ACTIVE or fresh >= PRUNE_FRESHNESS:
            state.append(item)
            continue
        days = (now - item.last_confirmed_at).total_seconds() / 86400.0
        reason = f"faded: not confirmed for {days:.0f} days (half-life {half_life_days:g} days)"
        state.append(
            item.model_copy(update={"status": LearningStatus.PRUNED, "status_reason": reason})
        )
        pruned.append(AppliedOp(op="prune", learning_id=item.id, detail=reason))
    return state, pruned


def applicable(learnings: Sequence[Learning], *, channel: str) -> list[Learning]:
    """The learnings a loop run of a `channel` experiment reads: its channel's, and those
    learnt before channels were recorded. Superseded and pruned ones are kept in the view
    (their ids stay taken and the history stays readable); only active ones are in the
    prompt."""
    return [item for item in learnings if item.channel in (None, channel)]


def render_library_markdown(
    name: str,
    learnings: Sequence[Learning],
    *,
    now: datetime,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
) -> str:
    """The library as a Markdown file: active claims by support with their freshness, where
    each held and failed, and the evidence (with the experiment of each cited arm); then the
    superseded and pruned history."""
    lines = [f"# Learnings library: {_cell(name)}", ""]
    sections = (
        ("Active", LearningStatus.ACTIVE),
        ("Superseded", LearningStatus.SUPERSEDED),
        ("Pruned", LearningStatus.PRUNED),
    )
    for title, status in sections:
        items = sorted(
            (item for item in learnings if item.status == status),
            key=lambda item: (-item.support, _id_number(item.id)),
        )
        if status != LearningStatus.ACTIVE and not items:
            continue
        lines += [f"## {title}", ""]
        if not items:
            lines += ["No active learnings yet.", ""]
        for item in items:
            lines += _item_lines(item, now=now, half_life_days=half_life_days)
    return "\n".join(lines).rstrip() + "\n"


def _item_lines(item: Learning, *, now: datetime, half_life_days: float) -> list[str]:
    fresh = freshness(item, now=now, half_life_days=half_life_days)
    lines = [
        f"### {item.id}: {_cell(item.claim)}",
        "",
        f"- support: {item.support}",
        f"- last confirmed: {item.last_confirmed_at.isoformat()} (freshness {fresh:.2f})",
    ]
    if item.channel:
        lines.append(f"- channel: {_cell(item.channel)}")
    if item.status_reason:
        lines.append(f"- status: {item.status} ({_cell(item.status_reason)})")
    for label, verdicts in (("holds in", item.holds), ("failed in", item.failed)):
        if verdicts:
            places = ", ".join(
                _cell(v.experiment_key) + (f" / {_cell(v.segment)}" if v.segment else "")
                for v in verdicts
            )
            lines.append(f"- {label}: {places}")
    lines += [
        "",
        "| experiment | arm | exposures | successes | observed rate | estimated rate "
        "| 95% interval | maturity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    lines += [_evidence_row(ev) for ev in item.evidence]
    lines.append("")
    return lines


def _evidence_row(ev: Evidence) -> str:
    return (
        f"| {_cell(ev.experiment_key or '')} | {ev.arm_id} | {ev.exposures} | {ev.successes} "
        f"| {_share(_observed(ev))} | {ev.effect:.4f} | {ev.ci_low:.4f} to {ev.ci_high:.4f} "
        f"| {_maturity(ev.maturity)} |"
    )
