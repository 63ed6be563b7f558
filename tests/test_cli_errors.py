"""Bad input anywhere in a job gives one line ``shoprank <command>: error: ...`` and exit status 2."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import envs  # noqa: F401  (registers the ids)
from envs import EnvConfig, WorldConfig, static_config
from experiments import cli
from simulators.shopper import ShopperConfig

FAST = ["--seeds", "1", "--sessions", "2", "--text-encoder", "hashing", "--no-progress"]


def run(argv, capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--catalog", "/nowhere/at/all"], "catalog file not found: /nowhere/at/all/products.csv"),
    (["--set", "simulator=no_such_module:make"], "cannot import simulator 'no_such_module:make': ModuleNotFoundError"),
    (["--set", "simulator=math:sqrt"], "simulator factory 'math:sqrt' failed: TypeError("),
    (["--set", "world.fused_dim=0"], "WorldConfig.fused_dim must be >= 2, got 0."),
    (["--set", "shopper.profile_noise=.nan"], "ShopperConfig.profile_noise must be a finite float, got nan."),
    (["--set", "max_queries=true"], "config key 'max_queries' must be int, got True"),
    (["--set", "shopper.profile_noise=[1,"], "override 'shopper.profile_noise=[1,': the value is not valid YAML"),
    (["--env", "CartPole-v1"], "unknown env id 'CartPole-v1'"),
    (["--env", "ShopRankSeq-v0"], "evaluate_agents needs a Box-action env"),
])
def test_compare_bad_input_is_one_line(extra, message, capsys, tmp_path):
    code, err = run(["compare", "--agents", "random,retriever", *FAST, "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 2
    assert err.startswith("shoprank compare: error: ") and message in err
    assert "Traceback" not in err


def test_compare_checks_its_own_arguments(capsys, tmp_path):
    base = ["compare", "--agents", "random,retriever", *FAST, "--out", str(tmp_path)]
    for extra, message in ((["--log-sessions", "0"], "--log-sessions must be >= 1, got 0."),
                           (["--curve-points", "-1"], "--curve-points must be >= 0, got -1."),
                           (["--seeds", "0,-3"], "--seeds must be >= 0, got '0,-3'.")):
        with pytest.raises(SystemExit):
            cli.main(base + extra)
        assert message in capsys.readouterr().err
    code, err = run(base + ["--baseline", "nope"], capsys)
    assert code == 2 and "--baseline 'nope' must be one of the compared agents ['random', 'retriever']." in err
    # an RL-agent override is checked even when no RL agent is compared
    code, err = run(base + ["--agent-set", "nope=1"], capsys)
    assert code == 2 and "unknown config key(s) ['nope']" in err


def test_traceback_on_request(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPRANK_DEBUG", "1")
    from encoders.csv_catalog import CatalogError

    with pytest.raises(CatalogError, match="catalog file not found"):
        cli.main(["compare", "--agents", "random,retriever", *FAST, "--out", str(tmp_path), "--catalog", "/nowhere"])


def test_train_bad_input(capsys, tmp_path):
    base = ["train", "--steps", "64", "--set", "env.world.text_encoder=hashing", "--no-progress", "--out", str(tmp_path)]
    for extra, message in ((["--algo", "nope"], "unknown RL algorithm 'nope'"),
                           (["--set", "eval_sessions=0"], "eval_sessions must be >= 1 when eval_every > 0, got 0."),
                           (["--seed", "-1"], "seed must be between 0 and 2**32 - 1, got -1.")):
        with pytest.raises(SystemExit):
            cli.main(base + extra)
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written for a config that does not validate
    code, err = run(base + ["--backend", "rllib", "--algo", "dqn"], capsys)
    assert code == 2 and "--backend rllib trains PPO only, got algo 'dqn'" in err


def test_evaluate_broken_checkpoints(capsys, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "agent.json").write_text("{not json")
    (ck / "policy.pt").write_bytes(b"garbage")
    code, err = run(["evaluate", "--checkpoint", str(ck), *FAST, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{ck / 'agent.json'} is not valid JSON" in err
    (ck / "agent.json").write_text(json.dumps({"algo": "ppo"}))
    code, err = run(["evaluate", "--checkpoint", str(ck), *FAST, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not a ShopRank agent checkpoint: missing ['agent_config', 'env_config']" in err


def test_bench_unknown_suite(capsys):
    code, err = run(["bench", "nope"], capsys)
    assert code == 2 and "shoprank bench: error: unknown suite 'nope'; choose one of" in err


def test_config_types_are_checked_where_they_are_built():
    with pytest.raises(ValueError, match=re.escape("EnvConfig.n_candidates must be an int, got True.")):
        EnvConfig(n_candidates=True)
    with pytest.raises(ValueError, match=re.escape("EnvConfig.slate_size must be an int, got '3'.")):
        EnvConfig(slate_size="3")
    with pytest.raises(ValueError, match=re.escape("ShopperConfig.profile_noise must be a finite float, got nan.")):
        ShopperConfig(profile_noise=float("nan"))
    assert ShopperConfig(patience=float("inf")).patience == float("inf")  # inf switches abandonment off
    with pytest.raises(ValueError, match=re.escape("WorldConfig.image_weight must be >= 0, got -2.")):
        WorldConfig(image_weight=-2)
    with pytest.raises(ValueError, match=re.escape("EnvConfig.world must be a WorldConfig, got dict.")):
        EnvConfig(world={})


def test_env_takes_a_dict_config_and_refuses_steps_after_the_end():
    config = static_config(world=WorldConfig(text_encoder="hashing"))
    from envs.config import config_to_dict

    env = gym.make("ShopRankStatic-v0", config=config_to_dict(config))
    assert env.unwrapped.config == config
    env.reset(seed=0)
    k = config.n_candidates
    with pytest.raises(ValueError, match=re.escape(f"action must be a float array of shape ({k},)")):
        env.step("abc")
    _, _, terminated, truncated, _ = env.step(np.zeros(k, dtype=np.float32))
    assert terminated or truncated
    with pytest.raises(RuntimeError, match=re.escape("the episode has ended (terminated or truncated); call reset()")):
        env.unwrapped.step(np.zeros(k, dtype=np.float32))
    with pytest.raises(ValueError, match="config must be an EnvConfig or a dict of its fields, got int"):
        gym.make("ShopRankStatic-v0", config=3)


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """Only ShopRankErrors become one line; anything else (a bare ValueError or NotImplementedError raised
    inside ShopRank is a bug) is re-raised with a note asking to report it."""
    from encoders.errors import ConfigError
    from experiments import catalog_cli

    for bug in (NotImplementedError("a bug, not bad input"), ValueError("a bare ValueError is a bug too")):
        monkeypatch.setattr(catalog_cli, "main", lambda argv, bug=bug: (_ for _ in ()).throw(bug))
        with pytest.raises(type(bug)) as info:
            cli.main(["catalog", "describe"])
        assert info.value.__notes__ == [
            f"shoprank catalog: this {type(bug).__name__} is a bug in ShopRank, not a problem with your input: "
            "please report it (an issue in the project's tracker) with the traceback above."]
    monkeypatch.setenv("SHOPRANK_DEBUG", "0")  # "0" means off
    monkeypatch.setattr(catalog_cli, "main", lambda argv: (_ for _ in ()).throw(ConfigError("bad value\nsecond")))
    assert cli.main(["catalog", "describe"]) == 2
    assert capsys.readouterr().err == "shoprank catalog: error: bad value second\n"  # one line


def test_compare_without_retriever_still_runs(tmp_path):
    assert cli.main(["compare", "--agents", "random,oracle", *FAST, "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(dict.fromkeys(summary.agent)) == ["random", "oracle"] and summary["mean"].notna().all()


def test_optional_fields_take_numbers_yaml_reads_as_text():
    from agents.factory import AgentConfig
    from experiments.config import apply_overrides

    assert apply_overrides(AgentConfig(), ["target_kl=1e-2"]).target_kl == 0.01
    assert apply_overrides(AgentConfig(), ["target_kl=null"]).target_kl is None
    with pytest.raises(ValueError, match=re.escape("config key 'target_kl' must be float, got 'abc'")):
        apply_overrides(AgentConfig(), ["target_kl=abc"])
