"""The policy snapshot as a frozen, typed object: produced by ``compute_snapshot``, read by
/choose (through ``load_policy``), the report, the history, the loop and the metrics.

It becomes JSON only where it is stored (``to_json``) and is read back with ``from_json``,
which accepts every stored form: figures added later (maturity, observed rates, the prior,
the refresh hint) are optional, so snapshots written before them still load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bandits.eligibility import Streak, streaks_from_json, streaks_to_json
from service.core.vocabulary import OVERALL

Floats = tuple[float, ...]
Bools = tuple[bool, ...]


def _floats(values: Any) -> Floats:
    return tuple(float(v) for v in values)


def _bools(values: Any) -> Bools:
    return tuple(bool(v) for v in values)


def _optional_floats(data: Mapping[str, Any], name: str) -> Floats | None:
    values = data.get(name)
    return None if values is None else _floats(values)


@dataclass(frozen=True)
class SnapshotExperiment:
    key: str
    status: str
    epoch: int
    segment_attribute: str | None
    exposure_event: str
    success_metric: str
    # Share of keyed units held out of the loop (service.deciding.holdout); 0: none.
    holdout_share: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "epoch": self.epoch,
            "segment_attribute": self.segment_attribute,
            "exposure_event": self.exposure_event,
            "success_metric": self.success_metric,
            "holdout_share": self.holdout_share,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotExperiment:
        return cls(
            key=data["key"],
            status=data["status"],
            epoch=int(data["epoch"]),
            segment_attribute=data.get("segment_attribute"),
            exposure_event=data.get("exposure_event", "decision"),
            success_metric=data.get("success_metric", "success"),
            holdout_share=float(data.get("holdout_share") or 0.0),
        )


@dataclass(frozen=True)
class SnapshotArm:
    id: int
    content: str
    payload: dict[str, Any] | None
    control: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content": self.content,
            "payload": self.payload,
            "control": self.control,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotArm:
        return cls(
            id=int(data["id"]),
            content=data["content"],
            payload=data.get("payload"),
            control=bool(data.get("control", False)),
        )


@dataclass(frozen=True)
class SegmentFigures:
    """One segment's figures, every tuple aligned with ``Snapshot.arm_ids``."""

    exposures: Floats
    successes: Floats
    effective_exposures: Floats
    effective_successes: Floats
    allocation: Floats
    exploit: Floats
    eligible: Bools
    exploration_share: float
    probability_best: Floats
    expected_loss: Floats
    posterior_mean: Floats
    ci_low: Floats
    ci_high: Floats
    warming_up: Bools
    # Absent from snapshots written before the delay model (None: read as matured).
    observed_rate: Floats | None = None
    maturity: Floats | None = None
    maturity_low: Floats | None = None
    maturity_high: Floats | None = None
    # The overall segment's pooled prior (alpha, beta); None elsewhere.
    prior: tuple[float, float] | None = None
    # The policy's own 95% interval, before the reported one (``ci_low``/``ci_high``) was
    # widened for a slow tail; absent from older snapshots (None: the same as the reported).
    policy_ci_low: Floats | None = None
    policy_ci_high: Floats | None = None
    # The factor that shrank each arm's prior along with its effective counts (the delay
    # model's doubt, ``CorrectedEvidence.tempered``); absent from older snapshots (None: 1).
    # In a named segment it shrank the counts only: its prior, from the other segments, is
    # held to their evidence after their own doubt (``service.policy.figures.once``).
    prior_scale: Floats | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exposures": list(self.exposures),
            "successes": list(self.successes),
        }
        for name in ("observed_rate", "maturity", "maturity_low", "maturity_high"):
            values = getattr(self, name)
            if values is not None:
                out[name] = list(values)
        for name in ("policy_ci_low", "policy_ci_high", "prior_scale"):
            values = getattr(self, name)
            if values is not None:
                out[name] = list(values)
        out.update(
            {
                "effective_exposures": list(self.effective_exposures),
                "effective_successes": list(self.effective_successes),
                "allocation": list(self.allocation),
                "exploit": list(self.exploit),
                "eligible": list(self.eligible),
                "exploration_share": self.exploration_share,
                "probability_best": list(self.probability_best),
                "expected_loss": list(self.expected_loss),
                "posterior_mean": list(self.posterior_mean),
                "ci_low": list(self.ci_low),
                "ci_high": list(self.ci_high),
                "warming_up": list(self.warming_up),
            }
        )
        if self.prior is not None:
            out["prior"] = list(self.prior)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentFigures:
        prior = data.get("prior")
        exposures = _floats(data["exposures"])
        return cls(
            exposures=exposures,
            successes=_floats(data["successes"]),
            effective_exposures=_floats(data.get("effective_exposures", exposures)),
            effective_successes=_floats(data.get("effective_successes", data["successes"])),
            allocation=_floats(data["allocation"]),
            exploit=_floats(data["exploit"]),
            eligible=_bools(data["eligible"]),
            exploration_share=float(data["exploration_share"]),
            probability_best=_floats(data["probability_best"]),
            expected_loss=_floats(data["expected_loss"]),
            posterior_mean=_floats(data["posterior_mean"]),
            ci_low=_floats(data["ci_low"]),
            ci_high=_floats(data["ci_high"]),
            warming_up=_bools(data.get("warming_up", [False] * len(exposures))),
            observed_rate=_optional_floats(data, "observed_rate"),
            maturity=_optional_floats(data, "maturity"),
            maturity_low=_optional_floats(data, "maturity_low"),
            maturity_high=_optional_floats(data, "maturity_high"),
            prior=(float(prior[0]), float(prior[1])) if prior is not None else None,
            policy_ci_low=_optional_floats(data, "policy_ci_low"),
            policy_ci_high=_optional_floats(data, "policy_ci_high"),
            prior_scale=_optional_floats(data, "prior_scale"),
        )

    def policy_interval(self) -> tuple[Floats, Floats]:
        """The policy's own interval (the reported one for snapshots written without it)."""
        if self.policy_ci_low is None or self.policy_ci_high is None:
            return self.ci_low, self.ci_high
        return self.policy_ci_low, self.policy_ci_high


@dataclass(frozen=True)
class GuardrailRates:
    """One guardrail metric's figures per served arm."""

    rate: Floats
    reference_rate: Floats
    probability_exceeds: Floats
    events: Floats

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": list(self.rate),
            "reference_rate": list(self.reference_rate),
            "probability_exceeds": list(self.probability_exceeds),
            "events": list(self.events),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardrailRates:
        return cls(
            rate=_floats(data["rate"]),
            reference_rate=_floats(data["reference_rate"]),
            probability_exceeds=_floats(data["probability_exceeds"]),
            events=_floats(data.get("events", [])),
        )


@dataclass(frozen=True)
class Breach:
    """Why a live arm breached: the metrics, and every metric's evidence (stored with the
    arm's status change as it is)."""

    metrics: tuple[str, ...]
    figures: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "figures": dict(self.figures)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Breach:
        return cls(metrics=tuple(data.get("metrics", ())), figures=dict(data.get("figures", {})))


@dataclass(frozen=True)
class GuardrailFigures:
    looks: int
    breached: Mapping[int, Breach] = field(default_factory=dict)
    # Absent when there was nothing to check yet.
    rates: Mapping[str, GuardrailRates] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "looks": self.looks,
            "breached": {str(k): v.to_json() for k, v in self.breached.items()},
        }
        if self.rates is not None:
            out["rates"] = {m: r.to_json() for m, r in self.rates.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardrailFigures:
        rates = data.get("rates")
        return cls(
            looks=int(data.get("looks", 0)),
            breached={int(k): Breach.from_json(v) for k, v in data.get("breached", {}).items()},
            rates=(
                {m: GuardrailRates.from_json(r) for m, r in rates.items()}
                if rates is not None
                else None
            ),
        )


@dataclass(frozen=True)
class RefreshHint:
    """When the delay corrections go stale: the youngest cohort still in the window."""

    youngest_age_hours: float | None
    window_hours: float

    def to_json(self) -> dict[str, Any]:
        return {"youngest_age_hours": self.youngest_age_hours, "window_hours": self.window_hours}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RefreshHint:
        youngest = data.get("youngest_age_hours")
        return cls(
            youngest_age_hours=None if youngest is None else float(youngest),
            window_hours=float(data.get("window_hours", 0.0)),
        )


@dataclass(frozen=True)
class RetirementVerdict:
    eligible: bool
    since: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "eligible": self.eligible,
            "since": self.since.isoformat() if self.since is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetirementVerdict:
        since = data.get("since")
        return cls(
            eligible=bool(data.get("eligible", False)),
            since=datetime.fromisoformat(since) if since else None,
        )


@dataclass(frozen=True)
class Snapshot:
    computed_at: datetime
    experiment: SnapshotExperiment
    # Every arm's content, not only the served ones: a keyed decision read back after its
    # arm was retired must still answer with the text it was given.
    arms: tuple[SnapshotArm, ...]
    arm_ids: tuple[int, ...]  # the served arms, the order of every per-arm tuple
    fallback_arm_id: int | None
    segments: Mapping[str, SegmentFigures] = field(default_factory=dict)
    refresh: RefreshHint | None = None
    guardrails: GuardrailFigures | None = None
    # The primary metric's delay model (``bandits.delay_model.DelayModel.to_json``).
    delay: Mapping[str, Any] | None = None
    changes: Mapping[int, datetime] | None = None  # arm id -> hour of a detected change
    streaks: Mapping[int, Streak] | None = None
    retirement: Mapping[int, RetirementVerdict] | None = None

    @property
    def overall(self) -> SegmentFigures | None:
        return self.segments.get(OVERALL)

    def arm(self, arm_id: int) -> SnapshotArm | None:
        return next((a for a in self.arms if a.id == arm_id), None)

    @property
    def contradicted(self) -> tuple[str, ...]:
        """The segments (``OVERALL`` for all traffic) whose delay fit the data contradicted
        (``service.policy.compute``): how much is still to come there is unknown, so the
        report and the loop call their arms too early to judge."""
        return tuple((self.delay or {}).get("contradicted") or ())

    def contradicted_curves(self, name: str) -> tuple[Floats, Floats] | None:
        """For a contradicted segment (``contradicted``): the delay curves its arms' figures
        used, on ``delay.edges_hours``, the central one and the "slow wave" bound (the
        smallest F the data allow); the other bound, "nothing more to come", is F = 1 at
        every age so far (``service.policy.figures.contradicted_curves``). None where the
        segment is not contradicted, or in a snapshot written before the curves were kept."""
        if name not in self.contradicted:
            return None
        curves = ((self.delay or {}).get("bounds") or {}).get(name)
        if not isinstance(curves, Mapping):
            return None
        return _floats(curves["values"]), _floats(curves["least_values"])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "computed_at": self.computed_at.isoformat(),
            "experiment": self.experiment.to_json(),
            "arms": [a.to_json() for a in self.arms],
            "arm_ids": list(self.arm_ids),
            "fallback_arm_id": self.fallback_arm_id,
            "segments": {name: seg.to_json() for name, seg in self.segments.items()},
        }
        if self.refresh is not None:
            out["refresh"] = self.refresh.to_json()
        if self.guardrails is not None:
            out["guardrails"] = self.guardrails.to_json()
        if self.delay is not None:
            out["delay"] = dict(self.delay)
        if self.changes is not None:
            out["changes"] = {str(k): v.isoformat() for k, v in self.changes.items()}
        if self.streaks is not None:
            out["streaks"] = streaks_to_json(self.streaks)
        if self.retirement is not None:
            out["retirement"] = {str(k): v.to_json() for k, v in self.retirement.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        def opt(name: str) -> Any:
            return data.get(name)

        refresh, guardrails, changes = opt("refresh"), opt("guardrails"), opt("changes")
        streaks, retirement = opt("streaks"), opt("retirement")
        return cls(
            computed_at=datetime.fromisoformat(data["computed_at"]),
            experiment=SnapshotExperiment.from_json(data["experiment"]),
            arms=tuple(SnapshotArm.from_json(a) for a in data["arms"]),
            arm_ids=tuple(int(a) for a in data["arm_ids"]),
            fallback_arm_id=(
                int(data["fallback_arm_id"]) if data.get("fallback_arm_id") is not None else None
            ),
            segments={
                name: SegmentFigures.from_json(seg)
                for name, seg in (data.get("segments") or {}).items()
            },
            refresh=RefreshHint.from_json(refresh) if refresh else None,
            guardrails=GuardrailFigures.from_json(guardrails) if guardrails else None,
            delay=dict(opt("delay")) if opt("delay") else None,
            changes=(
                {int(k): datetime.fromisoformat(v) for k, v in changes.items()}
                if changes is not None
                else None
            ),
            streaks=streaks_from_json(streaks) if streaks is not None else None,
            retirement=(
                {int(k): RetirementVerdict.from_json(v) for k, v in retirement.items()}
                if retirement is not None
                else None
            ),
        )
