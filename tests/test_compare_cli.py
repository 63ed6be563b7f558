"""``shoprank compare``: the same --set keys as ``shoprank train``, and every agent checked before any training."""

from __future__ import annotations

import json

from experiments import cli
from experiments.config import load_config

FAST = ["--seeds", "1", "--sessions", "2", "--text-encoder", "hashing", "--no-progress"]


def test_compare_and_train_take_the_same_set_keys(tmp_path):
    keys = ["env.max_queries=2", "env.world.image_weight=0", "agent.n_steps=16"]
    train = load_config(None, keys)  # what shoprank train --set accepts
    argv = ["compare", "--agents", "random,retriever", *FAST, "--out", str(tmp_path)]
    assert cli.main([*argv, *[a for k in keys for a in ("--set", k)]]) == 0
    saved = json.loads((tmp_path / "compare_config.json").read_text())
    assert saved["env_config"]["max_queries"] == train.env.max_queries == 2
    assert saved["env_config"]["world"]["image_weight"] == train.env.world.image_weight == 0
    assert saved["agent_overrides"] == ["n_steps=16"] and train.agent.n_steps == 16


def test_the_older_forms_remain_aliases(tmp_path):
    argv = ["compare", "--agents", "random", *FAST, "--out", str(tmp_path), "--set", "max_queries=2",
            "--agent-set", "n_steps=16"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "compare_config.json").read_text())
    assert saved["env_config"]["max_queries"] == 2 and saved["agent_overrides"] == ["n_steps=16"]


def test_a_train_only_key_is_refused(tmp_path, capsys):
    assert cli.main(["compare", "--agents", "random", *FAST, "--out", str(tmp_path),
                     "--set", "total_timesteps=5"]) == 2
    assert ("shoprank compare: error: --set 'total_timesteps=5': compare sets this with its own flags (--agents, "
            "--train-steps, --seeds); --set takes env.<EnvConfig field> or agent.<AgentConfig field>.") \
        in capsys.readouterr().err


def test_every_agent_is_checked_before_any_training(tmp_path, capsys):
    argv = ["compare", "--agents", "retriever,ppo,oracle", *FAST, "--out", str(tmp_path), "--train-steps", "64",
            "--set", "env.simulator=experiments.examples.custom_shopper:make"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert ("shoprank compare: error: agent 'oracle' cannot run in ShopRankStatic-v0 with this config: "
            "PopularityShopper has no expected_response: no oracle possible. (checked before any training; "
            "nothing was trained)") in err
    assert not (tmp_path / "train").exists()


def test_curve_points_sets_how_often_training_is_evaluated(tmp_path):
    argv = ["compare", "--agents", "ppo_scratch", *FAST, "--out", str(tmp_path), "--train-steps", "128",
            "--set", "agent.n_steps=16", "--set", "agent.batch_size=16", "--set", "env.world.n_products=200",
            "--curve-points", "2"]
    assert cli.main(argv) == 0
    import pandas as pd

    curve = pd.read_csv(tmp_path / "train" / "ppo_scratch" / "seed0" / "learning_curve.csv")
    # one evaluation before the first online step, one every 128 // 2 = 64 steps, and one at the end
    assert curve["env_steps"].tolist()[0] == 0
    assert curve["env_steps"].tolist()[1] == 64
    assert len(curve) <= 4
    saved = json.loads((tmp_path / "compare_config.json").read_text())
    assert saved["curve_points"] == 2


def test_the_resolved_rl_configs_are_part_of_the_run_config(monkeypatch):
    from dataclasses import replace

    import agents.factory as factory
    from experiments.compare import rl_agent_configs

    configs = rl_agent_configs(["retriever", "ppo", "ppo_pretrained"], ["learning_rate=0.0002"])
    assert set(configs) == {"ppo", "ppo_pretrained"}
    assert configs["ppo"]["learning_rate"] == 0.0002 and configs["ppo"]["online"] is True
    assert configs["ppo_pretrained"]["online"] is False
    # a preset that changes between an interrupted run and its resumption changes the run's config
    preset = factory.AGENT_PRESETS["ppo"]
    monkeypatch.setitem(factory.AGENT_PRESETS, "ppo", replace(preset, config=replace(preset.config, n_epochs=3)))
    changed = rl_agent_configs(["retriever", "ppo", "ppo_pretrained"], ["learning_rate=0.0002"])
    assert changed["ppo"] != configs["ppo"] and changed["ppo"]["n_epochs"] == 3
