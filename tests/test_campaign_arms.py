"""A campaign file's arms are validated before any work: each wrong combination is named."""

from __future__ import annotations

import pytest
import yaml

from sparklift.allocation.arms import arm
from sparklift.allocation.campaign import load_campaign
from sparklift.config import load_config
from sparklift.errors import ConfigError
from sparklift.measure.feedback import keep_shares

BASE = {"campaign_id": "c", "budgets": {"NL": 100.0}}


@pytest.mark.parametrize(
    "arms, message",
    [
        ({"holdout_share": 0.6, "explore_share": 0.4}, "leaves no customer to target"),
        ({"holdout_share": 0.1, "solver": "exact"}, "holdout_share needs solver: lagrangian"),
        ({"explore_share": 0.05}, "explore_share and explore_budget_share go together"),
        ({"explore_budget_share": 0.1}, "explore_share and explore_budget_share go together"),
        ({"explore_share": 0.05, "explore_budget_share": 1.5}, "explore_budget_share"),
        ({"holdout_share": -0.1}, "holdout_share"),
    ],
)
def test_bad_arms_are_refused_with_the_reason(tmp_path, arms, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE | arms))
    with pytest.raises(ConfigError, match=message):
        load_campaign(path, load_config().allocate)


def test_arms_default_to_none_and_load_when_consistent(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_campaign(path, load_config().allocate).holdout_share == 0.0
    spec = BASE | {"holdout_share": 0.1, "explore_share": 0.02, "explore_budget_share": 0.05}
    path.write_text(yaml.safe_dump(spec))
    loaded = load_campaign(path, load_config().allocate)
    assert (loaded.holdout_share, loaded.explore_share, loaded.seed) == (0.1, 0.02, 0)


def test_arms_are_a_reproducible_random_draw_per_campaign(spark):
    ids = spark.range(1, 20_001).withColumnRenamed("id", "customer_id")

    def draw(campaign: str, seed: int):
        rows = ids.select("customer_id", arm(campaign, seed, 0.2, 0.05).alias("arm"))
        return rows.toPandas().set_index("customer_id")["arm"]

    a, again, other, reseeded = draw("c", 1), draw("c", 1), draw("d", 1), draw("c", 2)
    assert a.equals(again)  # the same campaign and seed: the same arms
    shares = a.value_counts(normalize=True)
    # Binomial(20000, p): 4 standard errors at most
    for name, p in (("holdout", 0.2), ("explore", 0.05), ("policy", 0.75)):
        assert abs(shares[name] - p) < 4 * (p * (1 - p) / len(a)) ** 0.5, shares
    # Another campaign or seed draws independently: about 20% of holdout stays holdout.
    for b in (other, reseeded):
        kept = (b[a == "holdout"] == "holdout").mean()
        assert abs(kept - 0.2) < 0.03, kept
    none = ids.select(arm("c", 1, 0.0, 0.0).alias("arm")).distinct().collect()
    assert [r[0] for r in none] == ["policy"]


def test_feedback_keeps_the_largest_sample_with_the_configured_shares():
    # Group A: 400 held out, 90 + 60 sent V1, V2; shares control 0.5, 0.25 each: the
    # binding arm is V2 (60 / 0.25 = 240 = t): keep 120 control, 60 V1, 60 V2.
    counts = {("A", "control"): 400, ("A", "V1"): 90, ("A", "V2"): 60}
    # Group B: few held out (binding: t = 50 / 0.5 = 100): 50 control, 25 each voucher.
    counts |= {("B", "control"): 50, ("B", "V1"): 100, ("B", "V2"): 100}
    counts |= {("C", "control"): 10, ("C", "V1"): 5}  # no V2 sent: nothing kept
    keep = keep_shares(counts, {"control": 0.5, "V1": 0.25, "V2": 0.25})
    expected = {("A", "control"): 120 / 400, ("A", "V1"): 60 / 90, ("A", "V2"): 1.0}
    expected |= {("B", "control"): 1.0, ("B", "V1"): 0.25, ("B", "V2"): 0.25}
    expected |= {("C", "control"): 0.0, ("C", "V1"): 0.0, ("C", "V2"): 0.0}
    assert keep == pytest.approx(expected)
