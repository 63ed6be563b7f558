"""A shopper calibrated on logs: a click model fitted by ``shoprank fidelity`` runs in the env.

* every fitted model's position effects round-trip through the JSON file the env reads;
* the env's click-through by position follows the examination PBM fitted on the Open Bandit Dataset;
* ``shoprank train --set env.shopper.click_model=<fitted PBM>`` runs;
* a bad file stops with an exact message.
"""

from __future__ import annotations

import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from encoders.errors import ConfigError, InputNotFoundError
from envs import EnvConfig, WorldConfig
from simulators.click_models import (CascadeModel, DependentClickModel, DynamicBayesianNetwork, PositionBasedModel,
                                     click_model_from_json, click_model_to_json, load_click_model)
from simulators.fitting import (CascadeEstimator, DBNEstimator, DCMEstimator, PBMEstimator, PRIOR_ONLY, SlateArrays,
                                fitted_model_json, simulate_log)
from simulators.obd import load_obd

WORLD = WorldConfig(text_encoder="hashing")
SESSIONS = 20_000
"""One-query sessions the env runs for the click-through curve (20 batches of 1000)."""
RATIO_TOLERANCE = 0.03
"""Largest gap allowed between the env's CTR(k) / CTR(0) and the fitted examination(k) / examination(0). With
random rankings every slot holds a product of the same expected attractiveness, so the ratio estimates the
examination ratio; its binomial standard error at 20k sessions is ~0.01 (CTR(0) ~ 0.4), and the shopper's
boredom (a product loses attractiveness per look-alike shown above it) lowers lower slots by under 0.01."""


@pytest.fixture(scope="module")
def obd_pbm(shared_data, tmp_path_factory):
    """PBM fitted on the uniform-random OBD log (prior only, as ``shoprank fidelity`` chooses there), as JSON."""
    log = load_obd(shared_data / "obd" / "random" / "all")
    fitted = PBMEstimator(prior_strength=PRIOR_ONLY).fit(SlateArrays.from_log(log))
    path = tmp_path_factory.mktemp("click_models") / "PBM.json"
    path.write_text(json.dumps(fitted_model_json(fitted, 3, PRIOR_ONLY, "obd/random/all")))
    return path


def _ctr_by_position(config: EnvConfig, seed: int = 0) -> np.ndarray:
    """``float (N,)`` click-through rate per slot over :data:`SESSIONS` one-query sessions ranked at random."""
    vec = gym.make_vec("ShopRankStatic-v0", num_envs=1000, vectorization_mode="vector_entry_point", config=config,
                       autoreset_mode="SameStep")
    rng = np.random.default_rng(seed)
    vec.reset(seed=seed)
    clicks = np.zeros(config.slate_size)
    for _ in range(SESSIONS // 1000):
        _, _, _, _, info = vec.step(rng.uniform(-1, 1, (1000, config.n_candidates)).astype(np.float32))
        clicks += info["clicked"].sum(axis=0)
    vec.close()
    return clicks / SESSIONS


def test_env_click_through_by_position_follows_the_fitted_examination(obd_pbm):
    fitted = np.asarray(json.loads(obd_pbm.read_text())["examination"])
    base = EnvConfig(n_candidates=20, slate_size=3, max_queries=1, world=WORLD)
    calibrated = replace(base, shopper=replace(base.shopper, click_model=str(obd_pbm)))
    ctr = _ctr_by_position(calibrated)
    assert np.abs(ctr / ctr[0] - fitted / fitted[0]).max() < RATIO_TOLERANCE, (ctr / ctr[0], fitted)
    default = _ctr_by_position(base)  # the default shopper's 0.9 ** k: the check can tell them apart
    assert np.abs(default / default[0] - fitted / fitted[0]).max() > 4 * RATIO_TOLERANCE


@pytest.mark.slow
def test_train_runs_on_the_fitted_click_model(obd_pbm, tmp_path):
    from experiments.train import main

    tiny = ["--set", "env.max_queries=1", "--set", "env.world.text_encoder=hashing", "--set", "agent.hidden=16",
            "--set", "agent.heads=2", "--set", "agent.n_steps=16", "--set", "agent.batch_size=16",
            "--set", "agent.n_envs=2", "--set", "eval_sessions=3"]
    assert main(["--algo", "ppo", "--steps", "32", "--run-dir", str(tmp_path), "--no-progress", *tiny,
                 "--set", f"shopper.click_model={obd_pbm}", "--set", "env.slate_size=3"]) == 0  # bare = env.
    meta = json.loads((tmp_path / "checkpoint" / "agent.json").read_text())
    assert meta["env_config"]["shopper"]["click_model"] == str(obd_pbm)


@pytest.mark.parametrize("estimator, kind", [(PBMEstimator(), PositionBasedModel), (CascadeEstimator(), CascadeModel),
                                             (DCMEstimator(), DependentClickModel),
                                             (DBNEstimator(), DynamicBayesianNetwork)])
def test_every_fitted_model_round_trips_to_the_env_click_model(tmp_path, estimator, kind):
    rng = np.random.default_rng(0)
    truth = DependentClickModel((0.6, 0.4, 0.3))
    log = simulate_log(truth, rng.uniform(0.1, 0.6, (5, 20)), 400, rng, n_slots=4)
    fitted = estimator.fit(SlateArrays.from_log(log))
    path = tmp_path / "model.json"
    path.write_text(json.dumps(fitted_model_json(fitted, 4, 1.0, "simulated")))
    model = load_click_model(path, 4)
    assert type(model) is kind and model == fitted.model
    a = rng.uniform(0, 1, (7, 4))
    np.testing.assert_array_equal(model.click_probs(a), fitted.model.click_probs(a))
    exam = json.loads(path.read_text())["examination_at_prior"]
    prior = fitted.attractiveness.prior
    np.testing.assert_allclose(np.asarray(exam) * prior, fitted.model.click_probs(np.full((1, 4), prior))[0])


GOOD = click_model_to_json(PositionBasedModel((1.0, 0.7, 0.5)), 3)


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "m.json: not a ShopRank click model (format must be 'shoprank-click-model', got 'other'); "
                          "write one with `shoprank fidelity`."),
    ({"format_version": 2}, "m.json: format_version 2 is not one this ShopRank reads (1 .. 1)."),
    ({"model": "UBM"}, "m.json: 'model' must be one of ['DBN', 'DCM', 'PBM', 'cascade'], got 'UBM'."),
    ({"n_positions": 0}, "m.json: 'n_positions' must be an integer >= 1, got 0."),
    ({"n_positions": True}, "m.json: 'n_positions' must be an integer >= 1, got True."),
    ({"examination": [1.0, 0.7]}, "m.json: 'examination' must be a list of 3 probabilities (one per position), "
                                  "got a list of 2."),
    ({"examination": "1,0.7,0.5"}, "m.json: 'examination' must be a list of 3 probabilities (one per position), "
                                   "got str."),
    ({"examination": [1.0, 1.5, 0.5]}, "m.json: 'examination'[1] must be a probability in [0, 1], got 1.5."),
    ({"examination": [1.0, None, 0.5]}, "m.json: 'examination'[1] must be a probability in [0, 1], got None."),
    ({"examination": None, "continuation": [0.5, 0.5]},
     "m.json: unknown key(s) ['continuation'] for a PBM model; known: ['attractiveness_prior', 'examination', "
     "'examination_at_prior', 'format', 'format_version', 'model', 'n_positions', 'note', 'prior_strength', "
     "'source']."),
    ({"model": "DBN", "examination": None, "persistence": 0.9},
     "m.json: a DBN model needs ['satisfaction']."),
    ({"model": "DBN", "examination": None, "persistence": 0.9, "satisfaction": -0.1},
     "m.json: 'satisfaction' must be a probability in [0, 1], got -0.1."),
])
def test_bad_click_model_json_is_refused_with_an_exact_message(change, message):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if not (v is None and k in ("examination",))}
    with pytest.raises(ConfigError) as err:
        click_model_from_json(data, "m.json")
    assert str(err.value) == message


def test_click_model_file_errors_are_exact(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(InputNotFoundError) as err:
        load_click_model(missing, 3)
    assert str(err.value) == (f"no click model file at {missing}: write one with `shoprank fidelity --out DIR` "
                              "(DIR/click_models/<model>.json).")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as err:
        load_click_model(bad, 3)
    assert str(err.value).startswith(f"{bad} is not valid JSON: ")
    short = tmp_path / "PBM.json"
    short.write_text(json.dumps(GOOD))
    with pytest.raises(ConfigError) as err:
        load_click_model(short, 10)
    assert str(err.value) == (f"{short}: the PBM model was fitted on 3 positions but the env shows 10 (slate_size); "
                              "set env.slate_size <= 3 (e.g. --set env.slate_size=3).")
    with pytest.raises(ConfigError) as err:  # the env's own default slate of 10 slots
        gym.make("ShopRank-v0", config=EnvConfig(world=WORLD, shopper=replace(EnvConfig().shopper,
                                                                              click_model=str(short))))
    assert "fitted on 3 positions but the env shows 10" in str(err.value)
