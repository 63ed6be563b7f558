"""shoprank bench reward-front: clicks vs revenue under RewardSpec weightings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks.reward_front import label, parse_weights, pareto_mask, plot, study
from envs import WorldConfig, static_config
from envs.reward import RewardSpec


def test_parse_weights_and_messages():
    assert parse_weights("1:0:0, 0:0:1") == [RewardSpec(1.0, 0.0, 0.0), RewardSpec(0.0, 0.0, 1.0)]
    assert label(RewardSpec(1.0, 0.0, 0.02)) == "1:0:0.02"
    with pytest.raises(ValueError, match=re.escape("a weighting is click:purchase:revenue (three numbers), got '1:0'.")):
        parse_weights("1:0")
    with pytest.raises(ValueError, match=re.escape("weights must be >= 0 and not all 0, got '0:0:0'.")):
        parse_weights("0:0:0")


def test_pareto_mask_keeps_the_undominated_points():
    clicks = np.array([1.0, 2.0, 3.0, 2.0, 3.0])
    revenue = np.array([5.0, 4.0, 1.0, 3.0, 1.0])
    assert pareto_mask(clicks, revenue).tolist() == [True, True, True, False, True]   # ties both kept


def test_study_rows_and_plot(tmp_path):
    config = static_config(world=WorldConfig(text_encoder="hashing", n_products=300))
    specs = parse_weights("1:0:0,0:0:1")
    table = study(specs, "ShopRankStatic-v0", seeds=[0, 1], n_sessions=4, config=config)
    assert table[["ranker", "weights"]].values.tolist() == [
        ["oracle", "1:0:0"], ["profile_oracle", "1:0:0"], ["retriever", "—"],
        ["oracle", "0:0:1"], ["profile_oracle", "0:0:1"]]
    assert table.loc[table.ranker != "retriever", "pareto"].groupby(table.ranker).any().all()
    assert (table.clicks_low <= table.clicks).all() and (table.revenue <= table.revenue_high).all()
    assert plot(table, tmp_path / "front.png", "test").stat().st_size > 5000
