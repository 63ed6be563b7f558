"""Smoke test of the Ray RLlib scale-out backend (skipped when Ray is not installed).

One PPO iteration with one remote env runner on a tiny text-only world. On a 2-core machine most of the
time is Ray's start and the runner's imports (~40-80 s), hence the ``slow`` mark.
"""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="Ray is not in the dev extra: install the distributed extra (make distributed, "
                         "or pip install -c constraints.txt -e '.[distributed]') to run the RLlib backend tests")

from envs import EnvConfig, WorldConfig  # noqa: E402
from experiments.rllib_backend import ENV_NAME, RllibConfig, make_flat_env, train_rllib  # noqa: E402

TINY = EnvConfig(n_candidates=10, slate_size=5, max_queries=3,
                 world=WorldConfig(n_products=300, text_encoder="hashing", image_encoder="", cache_dir=""))


def test_flat_env_is_a_box():
    from envs.config import config_to_dict

    env = make_flat_env(config_to_dict(TINY))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape and obs.ndim == 1
    assert env.action_space.shape == (10,)


@pytest.mark.slow
def test_one_iteration_with_an_env_runner(tmp_path):
    summary = train_rllib(TINY, num_env_runners=1, iterations=1, run_dir=tmp_path, num_cpus=2,
                          config=RllibConfig(train_batch_size=64, minibatch_size=32, num_epochs=1, hidden=(32,)))
    assert summary["env_steps"] >= 64
    assert summary["iterations"][0]["episode_return_mean"] == summary["episode_return_mean"]
    assert (tmp_path / "checkpoint").is_dir()
    saved = json.loads((tmp_path / "rllib_results.json").read_text())
    assert saved["num_env_runners"] == 1 and ENV_NAME
    assert not ray.is_initialized()  # the local instance it started is shut down


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_env_runners"):
        train_rllib(TINY, num_env_runners=-1)
    with pytest.raises(ValueError, match="iterations"):
        train_rllib(TINY, iterations=0)
