"""ShopRank's off-policy estimators agree with the Open Bandit Pipeline (obp 0.5.7) to 1e-9.

The reference values were produced by ``tests/fixtures/make_obp_reference.py`` (obp's own estimators on
fixed random arrays; the obp version is stored in the fixture). obp is not a dependency: it pins an old
numpy and PyYAML, so the fixture is generated once in a throwaway venv and checked in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.ope.estimators import (
    BanditData,
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedDR,
    SelfNormalizedIPS,
    SwitchDR,
)
from experiments.ope.slate import (
    SlateData,
    SlateIndependentIPS,
    SlatePropensities,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "obp_reference.json").read_text())

BANDIT = {"IPS": InverseProbabilityWeighting(), "IPS(max_weight=2)": InverseProbabilityWeighting(max_weight=2.0),
          "SNIPS": SelfNormalizedIPS(), "DM": DirectMethod(), "DR": DoublyRobust(), "SNDR": SelfNormalizedDR(),
          "Switch-DR(threshold=3)": SwitchDR(threshold=3.0)}
SLATE = {"slate IPS": SlateStandardIPS(), "independent IPS": SlateIndependentIPS(), "RIPS": SlateRewardInteractionIPS()}


def test_fixture_names_its_obp_version_and_covers_every_estimator():
    assert FIXTURE["obp_version"] == "0.5.7"
    assert set(FIXTURE["bandit"][0]["obp"]) == set(BANDIT)
    assert set(FIXTURE["slate"][0]["obp"]) == set(SLATE)


@pytest.mark.parametrize("case", range(len(FIXTURE["bandit"])))
@pytest.mark.parametrize("name", sorted(BANDIT))
def test_bandit_estimators_match_obp(case, name):
    ref = FIXTURE["bandit"][case]
    data = BanditData(**{k: np.asarray(v) for k, v in ref["inputs"].items()})
    ours = BANDIT[name].estimate(data, np.random.default_rng(0)).estimate
    assert ours == pytest.approx(ref["obp"][name], abs=1e-9, rel=0)


@pytest.mark.parametrize("name", sorted(SLATE))
def test_slate_estimators_match_obp(name):
    ref = FIXTURE["slate"][0]["inputs"]
    props = {kind: SlatePropensities(np.asarray(ref[f"{kind}_behavior"]), np.asarray(ref[f"{kind}_target"]))
             for kind in ("slate", "item_position", "cascade")}
    data = SlateData(np.asarray(ref["slate_id"]), np.asarray(ref["reward"]), np.asarray(ref["position"]),
                     ref["len_list"], **props)
    ours = SLATE[name].estimate(data, np.random.default_rng(0)).estimate
    assert ours == pytest.approx(FIXTURE["slate"][0]["obp"][name], abs=1e-9, rel=0)
