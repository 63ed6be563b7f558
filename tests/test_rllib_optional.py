"""The RLlib backend's parts that need no Ray (run everywhere, also where the distributed extra is absent):
the agents package without Ray, the install hint, and the exact configuration errors."""

from __future__ import annotations

import sys

import pytest

from encoders.errors import ConfigError, MissingDependencyError
from experiments.rllib_backend import RLLIB_AGENT, RllibConfig


def test_agents_work_without_ray_and_the_module_says_how_to_install_it(monkeypatch):
    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if Ray were not installed
    monkeypatch.delitem(sys.modules, "agents.rllib_module", raising=False)
    import agents

    monkeypatch.delattr(agents, "rllib_module", raising=False)
    import agents.checkpoint  # noqa: F401  (the rest of the package does not need Ray)
    import agents.factory  # noqa: F401

    with pytest.raises(MissingDependencyError) as info:
        import agents.rllib_module  # noqa: F401
    assert str(info.value) == ("Ray RLlib is not installed: `pip install shoprank[distributed]` (or `pip install "
                               "-c constraints.txt \"ray[rllib]==2.60.*\"`, or `make distributed`).")
    from experiments.rllib_backend import train_rllib

    with pytest.raises(MissingDependencyError, match="Ray RLlib is not installed"):
        train_rllib(iterations=1)


def test_rllib_config_errors():
    for kwargs, message in (
            ({"train_batch_size": 0}, "RllibConfig.train_batch_size must be >= 1, got 0."),
            ({"num_envs_per_env_runner": 0}, "RllibConfig.num_envs_per_env_runner must be >= 1, got 0."),
            ({"vectorize_mode": "async"},
             "RllibConfig.vectorize_mode must be 'vector_entry_point' or 'sync', got 'async'.")):
        with pytest.raises(ConfigError) as info:
            RllibConfig(**kwargs)
        assert str(info.value) == message
    assert RllibConfig().batch_size == RLLIB_AGENT.n_steps * RLLIB_AGENT.n_envs
    assert RllibConfig(train_batch_size=64).batch_size == 64


def test_the_default_rllib_agent_is_ppo_scratch():
    from agents.factory import AGENT_PRESETS

    assert RLLIB_AGENT == AGENT_PRESETS["ppo_scratch"].config and RLLIB_AGENT.slot_credit


def test_a_warm_start_and_an_initial_checkpoint_are_refused_together(tmp_path):
    from dataclasses import replace

    from experiments.rllib_backend import train_rllib

    config = RllibConfig(agent=replace(RLLIB_AGENT, pretrain_sessions=10))
    with pytest.raises(ConfigError) as info:
        train_rllib(iterations=1, config=config, init_checkpoint=tmp_path)
    assert str(info.value) == ("init_checkpoint and agent.pretrain_sessions > 0 both set: start from the checkpoint "
                               "or warm-start, not both.")
