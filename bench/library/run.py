"""Six campaigns with the learnings library and without it; and the holdout coverage study.

    .venv/bin/python bench/library/run.py --seeds 3
    .venv/bin/python bench/library/run.py --coverage

Prints, per campaign, the mean true click rate of what was sent in its first week and
overall, with the library and without it (mean over the seeds); or how often the
holdout's lift interval covered the true lift.
"""

from __future__ import annotations

import argparse

from simulation.campaigns import CampaignConfig, campaign_table, compare_campaigns
from simulation.holdout_coverage import main as coverage_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--campaigns", type=int, default=6)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--sends", type=int, default=2000, help="sends per day")
    parser.add_argument("--seed", type=int, default=11, help="the first seed")
    parser.add_argument(
        "--no-tentative", action="store_true", help="the copywriter adds firm claims only"
    )
    parser.add_argument(
        "--single-tag", action="store_true", help="variants follow one claimed tag only"
    )
    parser.add_argument("--coverage", action="store_true")
    args = parser.parse_args()
    if args.coverage:
        coverage_main()
        return
    config = CampaignConfig(
        campaigns=args.campaigns,
        days=args.days,
        sends_per_day=args.sends,
        seed=args.seed,
        tentative=not args.no_tentative,
        combine=not args.single_tag,
    )
    print(campaign_table(compare_campaigns(config, seeds=args.seeds)))  # noqa: T201


if __name__ == "__main__":
    main()
