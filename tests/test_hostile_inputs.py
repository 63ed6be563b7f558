"""Hostile and malformed input: refused with one exact message, and nothing named by the input runs.

Checkpoints (issue 16 item 1): a plug-in name, a pickle instead of tensors, wrong JSON types, weights of
another shape. Bad input everywhere else (issue 16 item 4) follows below.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from agents.checkpoint import META_FILE, WEIGHTS_FILE, load_agent, read_checkpoint
from agents.factory import AgentConfig, train_agent
from encoders.errors import CheckpointError
from envs import EnvConfig, WorldConfig
from experiments import cli

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)
TINY = AgentConfig(n_steps=32, batch_size=32, n_epochs=1, hidden=16, heads=2, n_envs=1)
CONFIG = EnvConfig(n_candidates=10, slate_size=5, max_queries=2, world=FAST_WORLD)
FAST = ["--seeds", "1", "--sessions", "2", "--no-progress", "--with-baselines", ""]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real checkpoint (PPO, K = 10, N = 5), trained for a few steps; tests copy and tamper with it."""
    run = tmp_path_factory.mktemp("run")
    train_agent("ppo", CONFIG, total_timesteps=32, seed=0, run_dir=run, config=TINY)
    return run / "checkpoint"


@pytest.fixture()
def checkpoint(trained, tmp_path) -> Path:
    copy = tmp_path / "ck"
    copy.mkdir()
    for name in (META_FILE, WEIGHTS_FILE):
        (copy / name).write_bytes((trained / name).read_bytes())
    return copy


@pytest.fixture()
def hostile_module(tmp_path, monkeypatch) -> tuple[str, Path]:
    """A module that writes a marker file as soon as it is imported, and a factory that kills the process."""
    name = f"hostile_plugin_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported.marker"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{name}.py").write_text(
        f"import os, pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "def make(*args, **kwargs):\n    os.kill(os.getpid(), 9)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    return name, marker


def _edit(checkpoint: Path, change) -> None:
    meta = json.loads((checkpoint / META_FILE).read_text())
    change(meta)
    (checkpoint / META_FILE).write_text(json.dumps(meta))


def _evaluate(checkpoint: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["evaluate", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "out"), *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("field", ["simulator", "world.fusion", "world.text_encoder", "world.image_encoder"])
def test_a_plugin_named_by_a_checkpoint_is_never_imported(field, checkpoint, hostile_module, tmp_path, capsys):
    module, marker = hostile_module
    plugin = f"{module}:make"

    def plant(meta):
        section = meta["env_config"]
        *parents, last = field.split(".")
        for part in parents:
            section = section[part]
        section[last] = plugin

    _edit(checkpoint, plant)
    flag = "--simulator" if field == "simulator" else f"--plugin {field}=..."
    expected = (f"{checkpoint / META_FILE} names code to import in env_config.{field} ({plugin!r}); ShopRank never "
                f"imports code named by a checkpoint: name the plug-in yourself ({flag}; plugins={{'{field}': ...}} "
                "in Python) or pass --trust-plugins (trust_plugins=True) if you trust this checkpoint.")
    with pytest.raises(CheckpointError) as info:
        load_agent(checkpoint)
    assert str(info.value) == expected
    code, err = _evaluate(checkpoint, tmp_path, capsys)
    assert code == 2 and err == f"shoprank evaluate: error: {expected}\n"
    assert not marker.exists() and module not in sys.modules  # nothing imported, nothing ran


def test_a_plugin_runs_only_when_the_user_names_or_trusts_it(checkpoint, tmp_path, monkeypatch):
    marker = tmp_path / "factory.marker"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "friendly_shopper.py").write_text(
        "import pathlib\nfrom simulators.shopper import DefaultShopper, ShopperConfig\n"
        "def make(items, n_slots):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "    return DefaultShopper(items, ShopperConfig(), n_slots=n_slots)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    _edit(checkpoint, lambda meta: meta["env_config"].update(simulator="friendly_shopper:make"))
    with pytest.raises(CheckpointError):
        read_checkpoint(checkpoint)
    # the user's own choice replaces the checkpoint's: here the default shopper
    assert read_checkpoint(checkpoint, plugins={"simulator": ""}).env_config.simulator == ""
    assert not marker.exists()
    agent = load_agent(checkpoint, trust_plugins=True)  # trusted: the factory runs while the policy is built
    assert agent.env_config.simulator == "friendly_shopper:make" and marker.read_text() == "ran"
    marker.unlink()
    agent = load_agent(checkpoint, plugins={"simulator": "friendly_shopper:make"})  # named by the user
    assert marker.read_text() == "ran"


def test_a_pickle_instead_of_tensors_is_refused_and_not_run(checkpoint, tmp_path, capsys):
    marker = tmp_path / "pickle.marker"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    weights = checkpoint / WEIGHTS_FILE
    for write in (lambda: weights.write_bytes(pickle.dumps({"w": Payload()})),
                  lambda: torch.save({"w": Payload()}, weights)):
        write()
        expected = (f"{weights} is not a weights file written by save_agent (UnpicklingError; only plain tensors "
                    "are loaded, never pickled code).")
        with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
            load_agent(checkpoint)
        code, err = _evaluate(checkpoint, tmp_path, capsys)
        assert code == 2 and err == f"shoprank evaluate: error: {expected}\n"
        assert not marker.exists()
    torch.save([torch.zeros(2)], weights)  # tensors, but not a state dict
    with pytest.raises(CheckpointError, match=re.escape(
            f"{weights} must hold a mapping of parameter names to tensors, got list.")):
        load_agent(checkpoint)


@pytest.mark.parametrize("section, key, value, message", [
    ("agent_config", "n_steps", "512", "agent_config.n_steps must be an integer, got a string '512'."),
    ("agent_config", "n_steps", 512.0, "agent_config.n_steps must be an integer, got a number 512.0."),
    ("agent_config", "slot_credit", 1, "agent_config.slot_credit must be a boolean, got an integer 1."),
    ("agent_config", "target_kl", "x", "agent_config.target_kl must be a number (not NaN) or null, got a string 'x'."),
    ("agent_config", "learning_rate", None, "agent_config.learning_rate must be a number (not NaN), got null."),
    ("agent_config", "hidden", -4, "agent_config: AgentConfig.hidden must be > 0, got -4."),
    ("agent_config", "rm_rf", True, "unknown field(s) ['rm_rf'] in agent_config; known: "),
    ("env_config", "slate_size", True, "env_config.slate_size must be an integer, got a boolean True."),
    ("env_config", "world", [], "env_config.world must be an object, got an array."),
    ("env_config", "simulator", 7, "env_config.simulator must be a string, got an integer 7."),
    ("env_config", "slate_size", 11, "env_config: slate_size must be between 1 and n_candidates=10, got 11."),
    (None, "algo", ["ppo"], "algo must be a string, got an array."),
    (None, "algo", "a2c", "unknown RL algorithm 'a2c'; choose one of ['dqn', 'maskable_ppo', 'ppo']."),
    (None, "format_version", 99, "format_version 99 is not one this ShopRank reads (1 .. 1); a newer ShopRank "
                                 "may have written it."),
    (None, "catalog_fingerprint", 3, "catalog_fingerprint must be a string, got an integer 3."),
    (None, "extra", {}, "unknown entries ['extra']; known: "),
])
def test_wrong_json_types_are_refused_by_field(section, key, value, message, checkpoint):
    _edit(checkpoint, lambda meta: (meta[section] if section else meta).__setitem__(key, value))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(checkpoint)
    assert str(info.value).startswith(f"{checkpoint / META_FILE}: {message}")


def test_nested_types_are_checked_too(checkpoint):
    _edit(checkpoint, lambda meta: meta["env_config"]["world"].update(fused_dim="32"))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{checkpoint / META_FILE}: env_config.world.fused_dim must be an integer, got a string '32'.")):
        read_checkpoint(checkpoint)


def test_weights_of_another_shape_list_every_mismatch(checkpoint):
    weights = checkpoint / WEIGHTS_FILE
    state = torch.load(weights, weights_only=True)
    missing = sorted(state)[:3]
    for key in missing:
        del state[key]
    state["surprise.weight"] = torch.zeros(1)
    torch.save(state, weights)
    with pytest.raises(CheckpointError) as info:
        load_agent(checkpoint)
    message = str(info.value)
    assert message.startswith(f"{weights} does not fit the agent described by {META_FILE}: Error(s) in loading "
                              "state_dict for ")
    assert all(f'"{key}"' in message for key in missing)  # the whole list, not its first line
    assert 'Unexpected key(s) in state_dict: "surprise.weight"' in message and "\n" not in message


def test_evaluate_uses_the_checkpoints_own_env_config(checkpoint, tmp_path, capsys):
    """Trained with K = 10, N = 5 (the registered envs have K = 20, N = 10): evaluated as trained."""
    from experiments.evaluate_cli import make_parser, rl_agent

    args = make_parser().parse_args(["--checkpoint", str(checkpoint), "--env", "ShopRankStatic-v0",
                                     "--out", str(tmp_path / "o")])
    _, factory, env_id, config = rl_agent(args)
    assert (config.n_candidates, config.slate_size, config.max_queries) == (10, 5, 1)  # --env: one query
    code = cli.main(["evaluate", "--checkpoint", str(checkpoint), *FAST, "--out", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "summary.csv").is_file()
    assert "warning" not in capsys.readouterr().err


def test_evaluate_warns_about_another_catalog(checkpoint, tmp_path, capsys):
    _edit(checkpoint, lambda meta: meta.update(catalog_fingerprint="0123456789abcdef"))
    code, err = _evaluate(checkpoint, tmp_path, capsys)
    assert code == 0
    assert err.startswith("shoprank evaluate: warning: the checkpoint was trained on catalog 0123456789abcdef, but "
                          "this evaluation uses catalog ")
    assert err.endswith("(synthetic); the policy has never seen these products.\n")


def test_evaluate_checks_out_before_any_work(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("a file")
    code = cli.main(["evaluate", "--checkpoint", str(tmp_path / "nowhere"), *FAST, "--out", str(out)])
    assert (code, capsys.readouterr().err) == (2, f"shoprank evaluate: error: --out {out} exists and is not a folder.\n")


def test_a_saved_checkpoint_records_its_format_and_catalog(trained):
    meta = json.loads((trained / META_FILE).read_text())
    assert (meta["format"], meta["format_version"]) == ("shoprank-agent", 1)
    from envs.world import get_world

    assert meta["catalog_fingerprint"] == get_world(FAST_WORLD).catalog.fingerprint()
    agent = load_agent(trained)
    assert agent.policy.optimizer is None and not hasattr(agent, "replay_buffer")
