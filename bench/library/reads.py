"""What a loop run reads from its library's statistics: per-arm sums against every row.

Until this round a loop run read its library's other campaigns hour by hour: for each
experiment, every statistics row of its epoch (one per arm, hour, segment and metric),
summed in Python, plus one query for its arms. It now asks the database for one sum per
arm and metric over all the library's experiments, and for their arms in one statement
(`service.libraries.service.campaign_arms`). The previous read is kept here as the
baseline, not in the product.

A library of `--experiments` campaigns (5 arms each, `--days` of hourly buckets, two
segments, exposures and clicks) on a fresh SQLite file (or `--database-url`); rounds
interleave the two reads and the medians are compared. Both must return the same arms.

Run: .venv/bin/python bench/library/reads.py [--experiments 50] [--days 10] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, event
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bandits.posterior import beta_posterior, pooled_prior  # noqa: E402
from service.core import migrations  # noqa: E402
from service.core.vocabulary import EXPOSURE, success_metric  # noqa: E402
from service.experiments import repository as experiments_repo  # noqa: E402
from service.experiments.schemas import ArmIn, ExperimentCreate  # noqa: E402
from service.experiments.service import create_experiment  # noqa: E402
from service.libraries import repository as library_repo  # noqa: E402
from service.libraries import service as library_domain  # noqa: E402
from service.measuring import stats_repository as stats_repo  # noqa: E402
from service.measuring.stats_repository import Delta, StatKey  # noqa: E402
from service.models import Library  # noqa: E402
from variants.inputs import LibraryArm  # noqa: E402
from variants.learnings import Evidence  # noqa: E402

LIBRARY = "bench"
ARMS = 5
SEGMENTS = ("lapsed", "new")
START = datetime(2026, 1, 5, tzinfo=UTC)


def previous_library_arms(
    session: Session, library: Library, *, exclude_experiment_id: int | None
) -> list[LibraryArm]:
    """Last round's read: every hourly row of every experiment, summed in Python."""
    found: list[LibraryArm] = []
    for experiment in library_domain.experiments_of(session, library):
        if experiment.id is None or experiment.id == exclude_experiment_id:
            continue
        metric = success_metric(experiment.primary_metric, experiment.conversion_name)
        rows = stats_repo.rows_for(
            session, experiment_id=experiment.id, epoch=experiment.epoch, metrics=[EXPOSURE, metric]
        )
        counts: dict[int, list[int]] = {}
        for row in rows:
            entry = counts.setdefault(row.arm_id, [0, 0])
            entry[0 if row.metric == EXPOSURE else 1] += row.count
        arms = {a.id: a for a in experiments_repo.arms(session, experiment_id=experiment.id)}
        ids = [arm_id for arm_id in counts if arm_id in arms]
        n = np.array([counts[i][0] for i in ids], dtype=np.float64)
        s = np.minimum(np.array([counts[i][1] for i in ids], dtype=np.float64), n)
        alpha, beta = pooled_prior(s, n, 2.0)
        posterior = beta_posterior(s, n, alpha, beta)
        low, high = posterior.credible_interval(0.95)
        for i, arm_id in enumerate(ids):
            if n[i] < 300 or s[i] < 5:
                continue
            found.append(
                LibraryArm(
                    evidence=Evidence(
                        arm_id=arm_id,
                        exposures=int(n[i]),
                        successes=int(s[i]),
                        effect=float(posterior.mean[i]),
                        ci_low=float(low[i]),
                        ci_high=float(high[i]),
                        observed_rate=round(float(s[i] / n[i]), 6),
                        experiment_key=experiment.key,
                    ),
                    content=arms[arm_id].content,
                    tags=list(arms[arm_id].tags or []),
                )
            )
    found.sort(key=lambda item: -item.evidence.exposures)
    return found


def current_library_arms(
    session: Session, library: Library, *, exclude_experiment_id: int | None
) -> list[LibraryArm]:
    return library_domain.library_arms(
        session,
        library,
        exclude_experiment_id=exclude_experiment_id,
        min_exposures=300,
        min_successes=5,
    )


def build(url: str, experiments: int, days: int, rng: np.random.Generator) -> int:
    """The library's campaigns and their hourly statistics; returns the newest's id."""
    migrations.upgrade(url)
    engine = create_engine(url)
    newest = 0
    with Session(engine) as session:
        for index in range(experiments):
            experiment = create_experiment(
                session,
                ExperimentCreate(
                    key=f"campaign-{index}",
                    name=f"Campaign {index}",
                    arms=[
                        ArmIn(
                            content=f"Campaign {index} line {k}", tags=["question"] if k % 2 else []
                        )
                        for k in range(ARMS)
                    ],
                    library=LIBRARY,
                ),
                actor="bench",
            )
            assert experiment.id is not None
            newest = experiment.id
            arms = experiments_repo.arms(session, experiment_id=experiment.id)
            deltas: dict[StatKey, Delta] = {}
            for arm in arms:
                assert arm.id is not None
                for hour in range(24 * days):
                    at = START + timedelta(hours=hour)
                    for segment in SEGMENTS:
                        shown = int(rng.integers(5, 15))
                        clicks = int(rng.binomial(shown, 0.04))
                        key = (experiment.id, experiment.epoch, segment, arm.id, at, EXPOSURE)
                        deltas[key] = (shown, 0.0, 0.0)
                        if clicks:
                            deltas[(*key[:5], "click")] = (clicks, 0.0)
            stats_repo.add_deltas(session, deltas=deltas)
            session.commit()
    engine.dispose()
    return newest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="banditloop-reads-") as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'reads.db'}"
        newest = build(url, args.experiments, args.days, np.random.default_rng(7))
        engine = create_engine(url)
        statements = {"count": 0}

        @event.listens_for(engine, "after_cursor_execute")
        def _count(*_args: object) -> None:
            statements["count"] += 1

        reads: dict[str, Callable[..., list[LibraryArm]]] = {
            "previous (every hourly row)": previous_library_arms,
            "now (per-arm sums)": current_library_arms,
        }
        times: dict[str, list[float]] = {name: [] for name in reads}
        executed: dict[str, int] = {}
        results: dict[str, list[tuple[int, int, int]]] = {}
        for _round in range(args.rounds):
            for name, read in reads.items():
                with Session(engine) as session:
                    library = library_domain.get_library(session, LIBRARY)
                    before = statements["count"]
                    started = time.perf_counter()
                    found = read(session, library, exclude_experiment_id=newest)
                    times[name].append(time.perf_counter() - started)
                    executed[name] = statements["count"] - before
                    results[name] = sorted(
                        (a.evidence.arm_id, a.evidence.exposures, a.evidence.successes)
                        for a in found
                    )
        with Session(engine) as session:
            fetched = rows_fetched(session, newest)
        first, second = results.values()
        assert first == second, "the two reads disagree"
        base = statistics.median(times["previous (every hourly row)"])
        print(  # noqa: T201
            f"{args.experiments} experiments x {ARMS} arms x {24 * args.days} hours x "
            f"{len(SEGMENTS)} segments; {len(first)} arms returned by both; "
            f"median of {args.rounds} interleaved rounds"
        )
        for name in reads:
            median = statistics.median(times[name])
            print(  # noqa: T201
                f"{name:<28} statements {executed[name]:>4}  rows fetched {fetched[name]:>8}  "
                f"{median * 1000:8.1f} ms  {median / base:5.3f}x"
            )
        engine.dispose()


def rows_fetched(session: Session, newest: int) -> dict[str, int]:
    """The rows each read brings back from the database (statistics and arms)."""
    library = library_domain.get_library(session, LIBRARY)
    experiments = [
        e for e in library_domain.experiments_of(session, library) if e.id not in (None, newest)
    ]
    previous = 0
    for experiment in experiments:
        assert experiment.id is not None
        previous += len(
            stats_repo.rows_for(
                session,
                experiment_id=experiment.id,
                epoch=experiment.epoch,
                metrics=[EXPOSURE, "click"],
            )
        )
        previous += len(experiments_repo.arms(session, experiment_id=experiment.id))
    ids = [e.id for e in experiments if e.id is not None]
    now = len(
        library_repo.arm_totals(
            session,
            epochs={e.id: e.epoch for e in experiments if e.id},
            metrics=[EXPOSURE, "click"],
        )
    ) + len(library_repo.arms_of(session, experiment_ids=ids))
    return {"previous (every hourly row)": previous, "now (per-arm sums)": now}


if __name__ == "__main__":
    main()
