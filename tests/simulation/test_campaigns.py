from __future__ import annotations

from simulation.campaigns import CampaignConfig, campaign_table, compare_campaigns
from simulation.holdout_coverage import coverage


def test_two_short_campaigns_run_with_and_without_the_library() -> None:
    results = compare_campaigns(CampaignConfig(campaigns=2, days=2, sends_per_day=600), seeds=1)
    for runs in results.values():
        assert [campaign.index for campaign in runs[0]] == [1, 2]
        for campaign in runs[0]:
            assert 0.01 < campaign.first_week_rate < 0.06
    # The first campaign has nothing to read: both runs send the same.
    assert results["library"][0][0] == results["no library"][0][0]
    assert "best achievable" in campaign_table(results)


def test_the_holdout_interval_covers_the_true_lift_about_as_often_as_it_says() -> None:
    result = coverage(runs=150, level=0.90, seed=5)
    assert 0.82 <= result.coverage <= 0.97
