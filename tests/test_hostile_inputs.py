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
from encoders.errors import CatalogError, CheckpointError, ConfigError
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


def test_every_text_field_of_a_checkpoint_is_reviewed():
    """A text field names code (a plug-in, gated) or data (reviewed); a new one must be classified."""
    import dataclasses
    import typing

    from agents.checkpoint import DATA_FIELDS, PLUGIN_FIELDS

    def text_fields(cls, prefix=""):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                yield from text_fields(hint, f"{prefix}{f.name}.")
            elif str in (hint, *typing.get_args(hint)):
                yield prefix + f.name

    found = {*text_fields(EnvConfig), *text_fields(AgentConfig, "agent.")}
    assert found == set(PLUGIN_FIELDS) | DATA_FIELDS and not set(PLUGIN_FIELDS) & DATA_FIELDS


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
    plan = rl_agent(args)
    assert (plan.env_id, plan.config.n_candidates, plan.config.slate_size, plan.config.max_queries) == (
        "ShopRankStatic-v0", 10, 5, 1)  # --env: one query; the shapes are the checkpoint's
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


def test_evaluate_checks_out_before_any_work(tmp_path, capsys, checkpoint, monkeypatch):
    out = tmp_path / "taken"
    out.write_text("a file")
    code = cli.main(["evaluate", "--checkpoint", str(tmp_path / "nowhere"), *FAST, "--out", str(out)])
    assert (code, capsys.readouterr().err) == (2, f"shoprank evaluate: error: --out {out} exists and is not a folder.\n")
    # a finished run folder is refused before the policy is loaded
    import agents.checkpoint

    assert _evaluate(checkpoint, tmp_path, capsys)[0] == 0
    monkeypatch.setattr(agents.checkpoint, "load_policy", lambda *a, **k: pytest.fail("loaded before --out checked"))
    code, err = _evaluate(checkpoint, tmp_path, capsys)
    assert code == 2 and err.startswith(f"shoprank evaluate: error: {tmp_path / 'out'} holds a finished run")


def test_a_saved_checkpoint_records_its_format_and_catalog(trained):
    meta = json.loads((trained / META_FILE).read_text())
    assert (meta["format"], meta["format_version"]) == ("shoprank-agent", 1)
    from envs.world import get_world

    assert meta["catalog_fingerprint"] == get_world(FAST_WORLD).catalog.fingerprint()
    agent = load_agent(trained)
    assert agent.policy.optimizer is None and not hasattr(agent, "replay_buffer")


# ----------------------------------------------------------------------------------------------------
# bad input elsewhere: one clear line each (issue 16 item 4)
# ----------------------------------------------------------------------------------------------------
HEADER = "sku,name,description,category,price,image,attributes,colors\n"
ROW = "p1,Red shirt,A red shirt,Men/Tops,{price},{image},,red\n"


def _catalog(folder: Path, price: str = "10", image: str = "a.png", prefix: str = "") -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "products.csv").write_text(prefix + HEADER + ROW.format(price=price, image=image), encoding="utf-8")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")
    return folder


def _bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid 1-bit PNG header of ``width x height`` pixels in a few hundred bytes (never decoded here)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _load(folder: Path):
    from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog

    return load_csv_catalog(CsvCatalogConfig(folder))


def test_a_decompression_bomb_photo_is_refused_by_name(tmp_path, capsys):
    from PIL import Image

    folder = _catalog(tmp_path / "shop", image="bomb.png")
    bomb = _bomb_png(folder / "bomb.png")
    limit = Image.MAX_IMAGE_PIXELS
    reason = (f"image file has more pixels than Pillow decodes safely (PIL.Image.MAX_IMAGE_PIXELS = {limit}; a "
              f"decompression bomb?): {bomb}")
    expected = (f"products.csv row 2 (product 'p1'), column 'image': {reason} (pass allow_missing_images=True to "
                "keep the product without a photo)")
    with pytest.raises(CatalogError) as info:
        _load(folder)
    assert str(info.value) == expected
    assert cli.main(["catalog", "describe", "--catalog", str(folder)]) == 2
    assert capsys.readouterr().err == f"shoprank catalog: error: {expected}\n"


@pytest.mark.parametrize("price, message", [
    ("1e308", "price 1e308 is above 1e+09, the largest price a catalog may hold (a typo or a unit error?)"),
    ("nan", "price nan must be a finite number >= 0"),
    ("inf", "price inf must be a finite number >= 0"),
    ("-0.5", "price -0.5 must be a finite number >= 0"),
])
def test_non_finite_or_absurd_prices_are_refused(price, message, tmp_path):
    with pytest.raises(CatalogError, match=f"^{re.escape(f'products.csv row 2, column {chr(39)}price{chr(39)}: {message}')}$"):
        _load(_catalog(tmp_path, price=price))


def test_a_csv_with_a_utf8_bom_is_read(tmp_path):
    catalog = _load(_catalog(tmp_path, prefix="\ufeff"))
    assert list(catalog.ids) == ["p1"] and catalog.prices.tolist() == [10.0]


@pytest.mark.parametrize("image", ["../outside.png", "/etc/hostname", "sub/../../outside.png", "link.png"])
def test_image_paths_stay_inside_the_catalog_folder(image, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    folder = _catalog(tmp_path / "shop", image=image)
    (folder / "link.png").symlink_to(tmp_path / "outside.png")  # a link out of the folder counts as outside
    expected = (f"products.csv row 2, column 'image': image path '{image}' points outside the catalog folder "
                f"{folder.resolve()}; photos must live inside it")
    with pytest.raises(CatalogError, match=f"^{re.escape(expected)}$"):
        _load(folder)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_candidates": 10**9}, "n_candidates must be <= 1000 (every step observes and scores all K candidates), "
                              "got 1000000000."),
    ({"n_candidates": 0}, "n_candidates must be >= 1, got 0."),
    ({"n_candidates": 20, "slate_size": 21}, "slate_size must be between 1 and n_candidates=20, got 21."),
    ({"slate_size": 0}, "slate_size must be between 1 and n_candidates=20, got 0."),
    ({"max_queries": 10**7}, "max_queries must be <= 100000, got 10000000."),
    ({"history_size": 10**6}, "history_size must be <= 1000, got 1000000."),
])
def test_k_and_n_are_bounded(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        EnvConfig(**kwargs)


@pytest.mark.parametrize("name", ["fused_dim", "query_dim"])
def test_vector_widths_are_bounded(name):
    with pytest.raises(ConfigError, match=f"^{re.escape(f'WorldConfig.{name} must be <= 4096, got 100000.')}$"):
        WorldConfig(**{name: 100_000})


def test_an_absurd_k_is_one_line_on_the_command_line(tmp_path, capsys):
    code = cli.main(["compare", "--agents", "random,retriever", "--seeds", "1", "--sessions", "2", "--no-progress",
                     "--text-encoder", "hashing", "--set", "n_candidates=100000000", "--out", str(tmp_path)])
    assert (code, capsys.readouterr().err) == (2, "shoprank compare: error: n_candidates must be <= 1000 (every step "
                                                  "observes and scores all K candidates), got 100000000.\n")


@pytest.mark.parametrize("kwargs, message", [
    ({"click": float("nan")}, "RewardSpec.click must be a finite float, got nan."),
    ({"purchase": float("inf")}, "RewardSpec.purchase must be a finite float, got inf."),
    ({"revenue": "0.02"}, "RewardSpec.revenue must be a finite float, got '0.02'."),
    ({"click": True}, "RewardSpec.click must be a finite float, got True."),
    ({"revenue": 1e308}, "RewardSpec.revenue must be between -1e+06 and 1e+06, got 1e+308."),
    ({"purchase": -2e6}, "RewardSpec.purchase must be between -1e+06 and 1e+06, got -2000000.0."),
    ({"expected": "yes"}, "RewardSpec.expected must be a bool, got 'yes'."),
    ({"expected": 1}, "RewardSpec.expected must be a bool, got 1."),
])
def test_every_reward_spec_field_is_validated(kwargs, message):
    from envs.reward import RewardSpec

    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        RewardSpec(**kwargs)


@pytest.mark.parametrize("config, message", [
    ({"n_candidates": 5, "slate_size": 6}, "slate_size must be between 1 and n_candidates=5, got 6."),
    ({"nope": 1}, "unknown EnvConfig field(s) ['nope']; known: "),
    ({"reward": {"click": "x"}}, "RewardSpec.click must be a finite float, got 'x'."),
    (3, "config must be an EnvConfig or a dict of its fields, got int."),
    ("ShopRank-v0", "config must be an EnvConfig or a dict of its fields, got str."),
])
def test_single_and_vector_env_share_one_validation(config, message):
    import gymnasium as gym

    from envs.vector_env import ShopRankVectorEnv

    messages = []
    for make in (lambda: gym.make("ShopRank-v0", config=config), lambda: gym.make("ShopRankSeq-v0", config=config),
                 lambda: ShopRankVectorEnv(num_envs=2, config=config)):
        with pytest.raises(ConfigError) as info:
            make()
        messages.append(str(info.value))
    assert messages[0].startswith(message) and messages == [messages[0]] * 3


def test_a_plugin_from_a_file_path_needs_no_pythonpath(tmp_path, monkeypatch):
    import gymnasium as gym

    (tmp_path / "my_shop").mkdir()
    (tmp_path / "my_shop" / "shopper.py").write_text(
        "from simulators.shopper import DefaultShopper, ShopperConfig\n\n"
        "class FileShopper(DefaultShopper):\n    pass\n\n"
        "def make(items, n_slots):\n    return FileShopper(items, ShopperConfig(), n_slots=n_slots)\n")
    monkeypatch.chdir(tmp_path)  # relative to the working directory, not on sys.path
    assert str(tmp_path) not in sys.path
    env = gym.make("ShopRank-v0", config=EnvConfig(world=FAST_WORLD, simulator="my_shop/shopper.py:make"))
    assert type(env.unwrapped.core.sim).__name__ == "FileShopper"
    env.reset(seed=0)
    missing = tmp_path / "my_shop" / "nope.py"
    with pytest.raises(ConfigError, match=f"^{re.escape(f'cannot import simulator {chr(39)}my_shop/nope.py:make{chr(39)}: FileNotFoundError: no plug-in file at {missing}')}$"):
        gym.make("ShopRank-v0", config=EnvConfig(world=FAST_WORLD, simulator="my_shop/nope.py:make"))
