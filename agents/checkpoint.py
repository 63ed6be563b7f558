"""Save and load RL agent checkpoints: data only, never code.

A checkpoint is a folder with two files:

* ``agent.json``: ``{"format": "shoprank-agent", "format_version": 1, "algo", "agent_config",
  "env_config", "catalog_fingerprint"}`` (configs as plain nested JSON);
* ``policy.pt``: the policy's state dict, plain tensors, read with ``torch.load(weights_only=True)``.

Loading a checkpoint someone else wrote must never run code the user did not choose, so:

* the weights are read with ``weights_only=True`` (a pickle that needs code is refused, not run), must be a
  mapping of names to tensors, and must match the policy's keys and shapes exactly (``strict``);
* the JSON is checked field by field against the config dataclasses (:class:`~agents.factory.AgentConfig`,
  :class:`~envs.config.EnvConfig` and its nested configs) with exact types (a bool is not an int, a
  string is not a number), one :class:`~encoders.errors.CheckpointError` naming the first bad field;
* a config field that names code to import (:data:`PLUGIN_FIELDS`: the simulator factory and the
  encoder / fusion plug-ins, anything not a built-in name) is honoured only when the caller names that
  plug-in itself (``plugins={"simulator": "pkg.mod:factory"}``, CLI ``--simulator``) or passes
  ``trust_plugins=True`` (CLI ``--trust-plugins``); otherwise loading stops with an error naming the field,
  before anything is imported;
* evaluation builds the policy network only: no optimiser, no replay or rollout buffer, no training state.

The JSON carries a ``format_version``; a reader refuses versions newer than :data:`FORMAT_VERSION`, and new
top-level entries are added to :data:`OPTIONAL_KEYS` (with a default for older checkpoints).
"""

from __future__ import annotations

import json
import math
import os
import random
import types
import typing
import warnings
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.factory import AgentConfig, algo_spec, build_agent
from agents.policies import MaskableCandidateScorePolicy
from encoders.errors import CheckpointError, ConfigError, InputNotFoundError
from encoders.registry import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS
from envs import SEQUENTIAL_IDS
from envs.config import EnvConfig, config_to_dict
from envs.layout import FeatureLayout, LayoutMismatchError

FORMAT = "shoprank-agent"
FORMAT_VERSION = 1
"""Version of the ``agent.json`` layout this module writes (and the newest it reads)."""

META_FILE = "agent.json"
WEIGHTS_FILE = "policy.pt"

REQUIRED_KEYS = ("algo", "agent_config", "env_config")
"""Top-level entries every ``agent.json`` has (also those written before ``format_version`` existed)."""

OPTIONAL_KEYS: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "catalog_fingerprint": None,
                                  "feature_layout": None, "env_id": "ShopRank-v0"}
"""Top-level entries a checkpoint may lack, with the value assumed then."""

PLUGIN_FIELDS: dict[str, dict[str, Any]] = {
    "simulator": {"": None},
    "world.text_encoder": TEXT_ENCODERS,
    "world.image_encoder": {"": None, **IMAGE_ENCODERS},
    "world.fusion": FUSIONS,
}
"""``EnvConfig`` fields (dotted paths) that may name code to import, with the built-in names that do not."""

DATA_FIELDS = frozenset({"world.catalog", "world.catalog_columns", "world.cache_dir", "shopper.click_model",
                         "agent.pretrain_target",
                         "agent.slate_policy", "agent.network"})
"""The other text fields of ``EnvConfig`` (dotted) and ``AgentConfig`` (``agent.``): reviewed, they never name
code (paths, column maps, names looked up in a dict). A new text field must join this set or
:data:`PLUGIN_FIELDS` (``tests/test_hostile_inputs.py`` checks that every one is in exactly one)."""


# ----------------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------------
def save_agent(model, name: str, env_config: EnvConfig, config: AgentConfig, path: Path,
               catalog_fingerprint: str | None = None, env_id: str = "ShopRank-v0") -> Path:
    """Write ``agent.json`` + ``policy.pt`` (tensors only) into folder ``path``.

    Args:
        model: A trained SB3 model (its ``policy`` is saved).
        name: Algorithm name (a key of :data:`agents.factory.ALGOS`).
        env_config: The env config it was trained on.
        config: Its hyperparameters.
        path: Checkpoint folder (created).
        catalog_fingerprint: The training catalog's :meth:`~encoders.catalog.Catalog.fingerprint`; ``None``
            reads it from the (cached) world of ``env_config``.
        env_id: The ``Box``-action env id it was trained in (its spaces are rebuilt from it on load).

    Returns:
        ``path``.
    """
    return save_policy(model.policy, name, env_config, config, path, catalog_fingerprint, _model_layout(model), env_id)


def save_policy(policy: torch.nn.Module, name: str, env_config: EnvConfig, config: AgentConfig, path: Path,
                catalog_fingerprint: str | None = None, layout: FeatureLayout | None = None,
                env_id: str = "ShopRank-v0") -> Path:
    """:func:`save_agent` for a policy network without its SB3 model (e.g. one trained by RLlib,
    :mod:`agents.rllib_module`); ``layout`` is the observation's :class:`~envs.layout.FeatureLayout`."""
    path = Path(path)
    if catalog_fingerprint is None:
        from envs.world import get_world

        catalog_fingerprint = get_world(env_config.world).catalog.fingerprint()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "algo": name, "agent_config": asdict(config),
            "env_config": config_to_dict(env_config), "catalog_fingerprint": catalog_fingerprint,
            "feature_layout": layout.to_dict() if layout is not None else None, "env_id": env_id}
    path.mkdir(parents=True, exist_ok=True)
    (path / META_FILE).write_text(json.dumps(meta, indent=2))
    torch.save({k: v.detach().cpu() for k, v in policy.state_dict().items()}, path / WEIGHTS_FILE)
    return path


# ----------------------------------------------------------------------------------------------------
# read agent.json
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointMeta:
    """What ``agent.json`` says, checked.

    Attributes:
        algo: Algorithm name.
        agent_config: Hyperparameters the policy was built with.
        env_config: Env config it was trained on, with plug-in fields as the caller allowed them.
        catalog_fingerprint: Fingerprint of the training catalog (``None`` in checkpoints older than it).
        format_version: Layout version of the file.
        feature_layout: The observation's :class:`~envs.layout.FeatureLayout` it was trained on (``None`` in
            checkpoints older than it).
        env_id: The ``Box``-action env id it was trained in (``ShopRank-v0`` in checkpoints older than it).
    """

    algo: str
    agent_config: AgentConfig
    env_config: EnvConfig
    catalog_fingerprint: str | None
    format_version: int
    feature_layout: FeatureLayout | None = None
    env_id: str = "ShopRank-v0"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    """A JSON value as an error message names it: its type, and a scalar's value (cut at 80 characters)."""
    return _json_type(value) if value is None or type(value) in (dict, list) else f"{_json_type(value)} {value!r:.80}"


def _check_value(hint: Any, value: Any, where: str, file: Path) -> Any:
    """``value`` if it has exactly the JSON type of annotation ``hint``, else a CheckpointError."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return value
        if option is bool and type(value) is bool:
            return value
        if option is int and type(value) is int:
            return value
        if option is float and type(value) in (int, float) and not math.isnan(value):
            return float(value)
        if option is str and type(value) is str:
            return value
    wanted = " or ".join({bool: "a boolean", int: "an integer", float: "a number (not NaN)", str: "a string",
                          type(None): "null"}.get(o, getattr(o, "__name__", str(o))) for o in options)
    raise CheckpointError(f"{file}: {where} must be {wanted}, got {_got(value)}.")


def _decode(cls: type, data: Any, where: str, file: Path) -> Any:
    """Build dataclass ``cls`` from JSON ``data`` with exact field types (nested dataclasses recursively);
    fields the JSON lacks keep their defaults, unknown fields are refused."""
    if type(data) is not dict:
        raise CheckpointError(f"{file}: {where} must be an object, got {_got(data)}.")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CheckpointError(f"{file}: unknown field(s) {unknown} in {where}; known: {known}.")
    kwargs = {}
    for name, value in data.items():
        hint, path = hints[name], f"{where}.{name}"
        kwargs[name] = (_decode(hint, value, path, file) if is_dataclass(hint)
                        else _check_value(hint, value, path, file))
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{file}: {where}: {exc}") from None


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _set(config: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    return replace(config, **{head: _set(getattr(config, head), rest, value) if rest else value})


def names_code(field: str, value: str) -> bool:
    """Whether ``value`` of plug-in field ``field`` names code to import (not a built-in name)."""
    return value not in PLUGIN_FIELDS[field]


def allow_plugins(env_config: EnvConfig, plugins: Mapping[str, str] | None = None, trust_plugins: bool = False,
                  source: str = "the checkpoint") -> EnvConfig:
    """``env_config`` with its plug-in fields as the caller allows them.

    Args:
        env_config: A config read from a file the user did not necessarily write.
        plugins: Plug-in names the caller chose, by field (dotted path of :data:`PLUGIN_FIELDS`); these
            replace the config's values.
        trust_plugins: Honour every plug-in name in the config.
        source: What the config came from (for the message).

    Raises:
        CheckpointError: naming the first field that names code the caller did not choose (nothing is
            imported before this check).
    """
    plugins = dict(plugins or {})
    unknown = sorted(set(plugins) - set(PLUGIN_FIELDS))
    if unknown:
        raise ConfigError(f"unknown plug-in field(s) {unknown}; plug-in fields: {sorted(PLUGIN_FIELDS)}.")
    for field, value in plugins.items():
        env_config = _set(env_config, field, value)
    if trust_plugins:
        return env_config
    for field in PLUGIN_FIELDS:
        value = _get(env_config, field)
        if field not in plugins and names_code(field, value):
            flag = "--simulator" if field == "simulator" else f"--plugin {field}=..."
            raise CheckpointError(
                f"{source} names code to import in env_config.{field} ({value!r}); ShopRank never imports code "
                f"named by a checkpoint: name the plug-in yourself ({flag}; plugins={{'{field}': ...}} in Python) "
                f"or pass --trust-plugins (trust_plugins=True) if you trust this checkpoint.")
    return env_config


def read_checkpoint(path: Path, plugins: Mapping[str, str] | None = None,
                    trust_plugins: bool = False) -> CheckpointMeta:
    """Read and check ``agent.json`` of checkpoint folder ``path`` (no weights, no code, no world built).

    Args:
        path: Checkpoint folder written by :func:`save_agent`.
        plugins: Plug-in names the caller chose (see :func:`allow_plugins`).
        trust_plugins: Honour the plug-in names the checkpoint gives.

    Raises:
        InputNotFoundError: a file is missing.
        CheckpointError: malformed JSON, a field of the wrong type or value, or a plug-in not allowed.
    """
    path = Path(path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise InputNotFoundError(f"not a ShopRank checkpoint: {p} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON: {exc}") from None
    missing = [key for key in REQUIRED_KEYS if type(meta) is not dict or key not in meta]
    if missing:
        raise CheckpointError(f"{meta_path} is not a ShopRank agent checkpoint: missing {missing}.")
    unknown = sorted(set(meta) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise CheckpointError(f"{meta_path}: unknown entries {unknown}; known: "
                              f"{list(REQUIRED_KEYS) + list(OPTIONAL_KEYS)}.")
    meta = {**OPTIONAL_KEYS, **meta}
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{meta_path}: format must be {FORMAT!r}, got {meta['format']!r:.80}.")
    version = meta["format_version"]
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: format_version {version!r:.80} is not one this ShopRank reads "
                              f"(1 .. {FORMAT_VERSION}); a newer ShopRank may have written it.")
    if type(meta["algo"]) is not str:
        raise CheckpointError(f"{meta_path}: algo must be a string, got {_got(meta['algo'])}.")
    try:
        algo_spec(meta["algo"])
    except ConfigError as exc:
        raise CheckpointError(f"{meta_path}: {exc}") from None
    fingerprint = meta["catalog_fingerprint"]
    if fingerprint is not None and type(fingerprint) is not str:
        raise CheckpointError(f"{meta_path}: catalog_fingerprint must be a string, got {_got(fingerprint)}.")
    layout = meta["feature_layout"]
    if layout is not None:
        try:
            layout = FeatureLayout.from_dict(layout)
        except LayoutMismatchError as exc:
            raise CheckpointError(f"{meta_path}: feature_layout is {exc}") from None
    if meta["env_id"] not in SEQUENTIAL_IDS:
        raise CheckpointError(f"{meta_path}: env_id must be one of {sorted(SEQUENTIAL_IDS)}, got {_got(meta['env_id'])}.")
    agent_config = _decode(AgentConfig, meta["agent_config"], "agent_config", meta_path)
    env_config = _decode(EnvConfig, meta["env_config"], "env_config", meta_path)
    env_config = allow_plugins(env_config, plugins, trust_plugins, source=str(meta_path))
    return CheckpointMeta(meta["algo"], agent_config, env_config, fingerprint, version, layout, meta["env_id"])


# ----------------------------------------------------------------------------------------------------
# load the policy
# ----------------------------------------------------------------------------------------------------
class LoadedAgent:
    """A saved policy with SB3's ``predict`` interface: the network and its weights, nothing to train with.

    Attributes:
        name: Algorithm name.
        sequential: True when the policy picks one candidate per call (``ShopRankSeq-v0``).
        env_config: The env config it was trained on (plug-in fields as the loader allowed them).
        catalog_fingerprint: Fingerprint of the training catalog (``None`` if the checkpoint predates it).
    """

    def __init__(self, name: str, policy, env_config: EnvConfig, catalog_fingerprint: str | None = None) -> None:
        self.name = name
        self.policy = policy
        self.sequential = algo_spec(name).sequential
        self.env_config = env_config
        self.catalog_fingerprint = catalog_fingerprint

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True,
                action_masks: np.ndarray | None = None):
        """SB3-style ``predict``; ``action_masks`` reaches MaskablePPO policies (others read the mask
        from the observation)."""
        if action_masks is not None and isinstance(self.policy, MaskableCandidateScorePolicy):
            return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)
        return self.policy.predict(observation, state, episode_start, deterministic)


def _model_layout(model) -> FeatureLayout | None:
    """The :class:`~envs.layout.FeatureLayout` of an SB3 model's env (``env.unwrapped.layout``)."""
    env = model.get_env()
    if env is None:
        return None
    try:
        return env.get_attr("layout")[0]
    except AttributeError:  # an env without named features
        return None


def read_weights(weights_path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``weights_path``: plain tensors by name (``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: for a file torch cannot read as plain tensors (e.g. a pickle that needs code: refused,
            never run) or that is not a mapping of names to tensors.
    """
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or a pickle that needs code (refused, never run)
        raise CheckpointError(f"{weights_path} is not a weights file written by save_agent "
                              f"({type(exc).__name__}; only plain tensors are loaded, never pickled code).") from None
    if not isinstance(state, Mapping) or not all(type(k) is str and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise CheckpointError(f"{weights_path} must hold a mapping of parameter names to tensors, "
                              f"got {type(state).__name__}.")
    return dict(state)


def build_policy(algo: str, env_config: EnvConfig, config: AgentConfig, env_id: str = "ShopRank-v0"):
    """The untrained policy network of ``algo`` for ``env_config`` in ``env_id``, without its algorithm: the model
    is built with the smallest buffers and dropped, and the policy's optimiser removed."""
    model = build_agent(algo, env_config, replace(config, buffer_size=1, learning_starts=0), n_envs=1, env_id=env_id,
                        online=False)
    policy = model.policy
    policy.feature_layout = _model_layout(model)
    policy.optimizer = None
    model.env.close()
    del model
    policy.set_training_mode(False)
    return policy


def load_policy(path: Path, meta: CheckpointMeta, env_config: EnvConfig | None = None) -> LoadedAgent:
    """The policy of checkpoint folder ``path`` (described by ``meta`` from :func:`read_checkpoint`).

    Args:
        path: Checkpoint folder.
        meta: Its checked ``agent.json``.
        env_config: The config to build the policy's spaces with (default ``meta.env_config``); the caller
            may change what does not shape the observation (e.g. the catalog, ``max_queries``).

    Raises:
        CheckpointError: weights that are not plain tensors, or that do not fit the policy (the full list
            of missing, unexpected and mis-shaped parameters: keys are matched strictly).
    """
    weights_path = Path(path) / WEIGHTS_FILE
    state = read_weights(weights_path)  # before any model is built: a bad file costs nothing
    env_config = meta.env_config if env_config is None else env_config
    policy = build_policy(meta.algo, env_config, meta.agent_config, meta.env_id)
    if meta.feature_layout is not None and policy.feature_layout is not None:
        try:
            policy.feature_layout.check_matches(meta.feature_layout, f"checkpoint {Path(path)}")
        except LayoutMismatchError as exc:
            raise CheckpointError(str(exc)) from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # weights of another architecture or config
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{weights_path} does not fit the agent described by {META_FILE}: {detail}") from None
    return LoadedAgent(meta.algo, policy, env_config, meta.catalog_fingerprint)


def load_agent(path: Path, plugins: Mapping[str, str] | None = None, trust_plugins: bool = False) -> LoadedAgent:
    """Load the policy of a checkpoint folder written by :func:`save_agent`, for evaluation
    (:func:`read_checkpoint` then :func:`load_policy`).

    Args:
        path: Checkpoint folder.
        plugins: Plug-in names the caller chose, by field (e.g. ``{"simulator": "pkg.mod:factory"}``);
            they replace the checkpoint's.
        trust_plugins: Honour the plug-in names the checkpoint gives (only for checkpoints you trust).

    Raises:
        InputNotFoundError: a file is missing.
        CheckpointError: bad JSON or weights, a plug-in not allowed, or weights that do not fit the policy.
    """
    return load_policy(path, read_checkpoint(path, plugins, trust_plugins))


# ----------------------------------------------------------------------------------------------------
# training state: what `shoprank train --resume` needs beyond the policy (data only, like the rest)
# ----------------------------------------------------------------------------------------------------
STATE_FILE = "training_state.json"
"""Counters and random-generator states (JSON) of a checkpoint that training can resume from."""
STATE_TENSORS = "training_state.pt"
"""Optimiser state, torch's generator, the env's sessions in progress and SB3's last observation: plain
tensors and numbers, read with ``torch.load(weights_only=True)``."""
STATE_FORMAT = "shoprank-training-state"
PREVIOUS = "checkpoint.previous"
"""Where :func:`save_training_checkpoint` keeps the last checkpoint while it renames a new one in place."""


def _array_tree(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> bool:
    """Put every array of dataclass tree ``obj`` into ``out`` as ``prefix.field...``; False when the tree holds
    anything else (e.g. a custom simulator's Python objects: its sessions cannot be saved as data)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return all(_array_tree(getattr(obj, f.name), f"{prefix}.{f.name}", out) for f in fields(obj))
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        out[prefix] = torch.from_numpy(np.array(obj, copy=True))
        return True
    return False


def _restore_tree(template: Any, prefix: str, tensors: Mapping[str, torch.Tensor], where: Path) -> Any:
    """``template`` (a dataclass tree of arrays, built by the env) with every array replaced by the saved one
    (same shape and dtype required): classes come from the running code, only numbers from the file."""
    if is_dataclass(template) and not isinstance(template, type):
        return replace(template, **{f.name: _restore_tree(getattr(template, f.name), f"{prefix}.{f.name}",
                                                          tensors, where) for f in fields(template)})
    saved = tensors.get(prefix)
    if saved is None:
        raise CheckpointError(f"{where}: no {prefix!r}; the env's sessions changed shape since it was saved.")
    array = saved.numpy()
    if array.shape != template.shape or array.dtype != template.dtype:
        raise CheckpointError(f"{where}: {prefix!r} is {array.dtype} {array.shape}, the env has {template.dtype} "
                              f"{template.shape} (another env config or ShopRank version).")
    return array.copy()


def _jsonable_state(state: Any) -> Any:
    """A random generator's state (dicts, tuples, arrays, ints) as plain JSON values."""
    if isinstance(state, dict):
        return {k: _jsonable_state(v) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return [_jsonable_state(v) for v in state]
    if isinstance(state, np.ndarray):
        return state.tolist()
    if isinstance(state, np.generic):
        return state.item()
    return state


def _batched_env(model):
    """The :class:`~envs.vector_env.ShopRankVectorEnv` behind an SB3 model's env, or ``None`` (a DummyVecEnv)."""
    from envs.vector_env import ShopRankVectorEnv

    inner = getattr(model.get_env(), "env", None)
    return inner if isinstance(inner, ShopRankVectorEnv) else None


def training_state(model) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(json, tensors)``: everything an SB3 model needs to continue training exactly where it is, taken at
    an update boundary (between two rollouts).

    JSON: ``num_timesteps``, ``n_updates``, ``episode_num``, SB3's recent episode stats, the states of NumPy's
    global generator (SB3 shuffles minibatches with it), Python's ``random``, the action space's generator and
    the env's ``np.random.Generator`` (or each env's, for a ``DummyVecEnv``), and ``exact``: whether the
    sessions in progress were saved too. Tensors: the optimiser's ``state_dict``, torch's generator state,
    SB3's last observation and episode starts, and (batched env, array-state shoppers) every array of the
    sessions in progress.
    """
    env = model.get_env()
    tensors: dict[str, Any] = {"optimizer": model.policy.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    last_obs = model._last_obs
    if isinstance(last_obs, dict):
        tensors.update({f"last_obs.{k}": torch.from_numpy(np.array(v, copy=True)) for k, v in last_obs.items()})
    elif last_obs is not None:
        tensors["last_obs"] = torch.from_numpy(np.array(last_obs, copy=True))
    if model._last_episode_starts is not None:
        tensors["last_episode_starts"] = torch.from_numpy(np.array(model._last_episode_starts, copy=True))
    batched = _batched_env(model)
    exact = False
    if batched is not None:
        generators = [batched.np_random.bit_generator.state]
        exact = (batched.core.sessions is not None and batched.config.personalize_query == 0
                 and _array_tree(batched.core.sessions, "sessions", tensors))
        if not exact:
            tensors = {k: v for k, v in tensors.items() if not k.startswith("sessions.")}
    else:
        generators = [e.unwrapped.np_random.bit_generator.state for e in getattr(env, "envs", [])]
    meta = {"format": STATE_FORMAT, "format_version": 1, "num_timesteps": int(model.num_timesteps),
            "n_updates": int(getattr(model, "_n_updates", 0)), "episode_num": int(model._episode_num),
            "ep_info_buffer": [{k: float(v) for k, v in e.items()} for e in (model.ep_info_buffer or [])],
            "numpy_global": _jsonable_state(np.random.get_state(legacy=False)),
            "python_random": _jsonable_state(random.getstate()),
            "action_space": _jsonable_state(model.action_space.np_random.bit_generator.state),
            "env_generators": _jsonable_state(generators), "exact": exact}
    return meta, tensors


def save_training_checkpoint(model, name: str, env_config: EnvConfig, config: AgentConfig, run_dir: Path,
                             catalog_fingerprint: str | None = None, env_id: str = "ShopRank-v0") -> Path:
    """Write ``run_dir/checkpoint``: the policy (:func:`save_agent`) and its training state
    (:func:`training_state`), all or nothing.

    The files go to a temporary folder first; the old checkpoint is renamed to :data:`PREVIOUS`, the new one
    renamed in, and the old one removed. A run killed at any moment leaves a whole checkpoint in
    ``checkpoint`` or, between the two renames, in ``checkpoint.previous`` (:func:`resume_folder` finds it).

    Returns:
        ``run_dir / "checkpoint"``.
    """
    import shutil

    from encoders.atomic_files import TMP_MARK, fsync_dir

    run_dir = Path(run_dir)
    final, previous = run_dir / "checkpoint", run_dir / PREVIOUS
    tmp = run_dir / f".checkpoint{TMP_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_agent(model, name, env_config, config, tmp, catalog_fingerprint, env_id=env_id)
    meta, tensors = training_state(model)
    torch.save(tensors, tmp / STATE_TENSORS)
    (tmp / STATE_FILE).write_text(json.dumps(meta))
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(tmp, final)
    fsync_dir(run_dir)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def resume_folder(run_dir: Path) -> Path:
    """The checkpoint of run folder ``run_dir`` to resume from (``checkpoint``, or ``checkpoint.previous`` left by
    a run killed while renaming a new one in place).

    Raises:
        InputNotFoundError: neither holds a training state.
    """
    run_dir = Path(run_dir)
    for folder in (run_dir / "checkpoint", run_dir / PREVIOUS):
        if (folder / STATE_FILE).is_file() and (folder / STATE_TENSORS).is_file():
            return folder
    raise InputNotFoundError(f"nothing to resume in {run_dir}: no checkpoint/{STATE_FILE} (a run folder of "
                             "`shoprank train` holds one once it has saved a checkpoint: at the end, or every "
                             "--checkpoint-every steps).")


def _set_generator(generator, state: Any, what: str, where: Path) -> None:
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: {what} is not a generator state this NumPy accepts ({exc}).") from None


def restore_training_state(model, folder: Path) -> dict[str, Any]:
    """Load the policy weights and training state of checkpoint ``folder`` into ``model``, a fresh SB3 model
    built with the checkpoint's configs (:func:`~agents.factory.build_agent`), so that ``model.learn(...,
    reset_num_timesteps=False)`` continues the run.

    Returns:
        The training state's JSON (``num_timesteps``, ``exact``, ...).

    Raises:
        InputNotFoundError: a file is missing.
        CheckpointError: files that are not plain data, or that do not fit ``model`` and its env.
    """
    folder = Path(folder)
    state_path, tensor_path = folder / STATE_FILE, folder / STATE_TENSORS
    for p in (state_path, tensor_path, folder / WEIGHTS_FILE):
        if not p.is_file():
            raise InputNotFoundError(f"cannot resume from {folder}: {p.name} is missing.")
    try:
        meta = json.loads(state_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_path} is not valid JSON: {exc}") from None
    if type(meta) is not dict or meta.get("format") != STATE_FORMAT or meta.get("format_version") != 1:
        raise CheckpointError(f"{state_path} is not a ShopRank training state (format {STATE_FORMAT!r}, version 1).")
    for key in ("num_timesteps", "n_updates", "episode_num"):
        if type(meta.get(key)) is not int or meta[key] < 0:
            raise CheckpointError(f"{state_path}: {key} must be an integer >= 0, got {_got(meta.get(key))}.")
    try:
        tensors = torch.load(tensor_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that needs code is refused, never run
        raise CheckpointError(f"{tensor_path} is not a training state written by ShopRank ({type(exc).__name__}; "
                              "only plain tensors and numbers are loaded, never pickled code).") from None
    if not isinstance(tensors, dict) or "optimizer" not in tensors or "torch_rng" not in tensors:
        raise CheckpointError(f"{tensor_path} must hold the optimiser state and torch's generator state.")
    try:
        model.policy.load_state_dict(read_weights(folder / WEIGHTS_FILE), strict=True)
        model.policy.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{folder} does not fit the agent it is resumed into: {detail}") from None
    try:
        np.random.set_state(meta["numpy_global"])
        random.setstate((meta["python_random"][0], tuple(meta["python_random"][1]), meta["python_random"][2]))
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{state_path}: a random generator state is malformed ({exc}).") from None
    _set_generator(model.action_space.np_random, meta.get("action_space"), "action_space", state_path)
    env = model.get_env()
    model._last_obs = env.reset()  # builds the env's sessions (the template the saved arrays go into)
    batched = _batched_env(model)
    envs = [batched] if batched is not None else [e.unwrapped for e in getattr(env, "envs", [])]
    generators = meta.get("env_generators")
    if not isinstance(generators, list) or len(generators) != len(envs):
        raise CheckpointError(f"{state_path}: env_generators must hold {len(envs)} generator state(s).")
    for e, g in zip(envs, generators):
        _set_generator(e.np_random, g, "env_generators", state_path)
    if meta.get("exact") is True:
        if batched is None:
            raise CheckpointError(f"{state_path}: saved sessions need the batched env (agent.batched_env).")
        batched.core.sessions = _restore_tree(batched.core.sessions, "sessions", tensors, tensor_path)
    obs = {k[len("last_obs."):]: v.numpy().copy() for k, v in tensors.items() if k.startswith("last_obs.")}
    if meta.get("exact") is True and obs:
        model._last_obs = obs
    elif meta.get("exact") is True and "last_obs" in tensors:
        model._last_obs = tensors["last_obs"].numpy().copy()
    if meta.get("exact") is True and "last_episode_starts" in tensors:
        model._last_episode_starts = tensors["last_episode_starts"].numpy().copy()
    else:
        model._last_episode_starts = np.ones(env.num_envs, dtype=bool)
    model.num_timesteps = meta["num_timesteps"]
    model._episode_num = meta["episode_num"]
    if hasattr(model, "_n_updates"):
        model._n_updates = meta["n_updates"]
    from collections import deque

    model.ep_info_buffer = deque(meta.get("ep_info_buffer", []), maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    return meta


class PeriodicCheckpoint(BaseCallback):
    """An SB3 callback that saves a resumable checkpoint (:func:`save_training_checkpoint`) every ``every`` env
    steps, at the first update boundary past each multiple (SB3 calls ``on_rollout_start`` right after an
    update), so a killed run loses at most ``every`` steps plus one rollout.

    With a held-out learning curve (``model.learning_curve``), its points so far are written to
    ``run_dir/learning_curve.csv`` too, after ``earlier`` (a resumed run's points from before it resumed).

    Args:
        every: Env steps between checkpoints (> 0).
        name, env_config, config: What :func:`save_agent` records.
        run_dir: The run folder (``run_dir/checkpoint``).
        earlier: Learning-curve rows of the run before it was resumed.
        env_id: The ``Box``-action env id it trains in.
    """

    def __init__(self, every: int, name: str, env_config: EnvConfig, config: AgentConfig, run_dir: Path,
                 earlier: list[dict[str, float]] | None = None, env_id: str = "ShopRank-v0") -> None:
        super().__init__()
        self.env_id = env_id
        self.earlier = list(earlier or [])
        if every <= 0:
            raise ConfigError(f"--checkpoint-every must be > 0 env steps, got {every}.")
        self.every, self.name, self.env_config, self.config = every, name, env_config, config
        self.run_dir = Path(run_dir)
        self._next = every
        self._fingerprint: str | None = None

    def _on_training_start(self) -> None:
        from envs.world import get_world

        self._next = (self.num_timesteps // self.every + 1) * self.every
        self._fingerprint = get_world(self.env_config.world).catalog.fingerprint()

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next:
            save_training_checkpoint(self.model, self.name, self.env_config, self.config, self.run_dir,
                                     self._fingerprint, env_id=self.env_id)
            curve = getattr(self.model, "learning_curve", None)
            if curve:
                from agents.factory import write_learning_curve
                from encoders.atomic_files import atomic_path

                with atomic_path(self.run_dir / "learning_curve.csv") as tmp:
                    write_learning_curve(join_curves(self.earlier, curve), tmp)
            self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True


def join_curves(earlier: list[dict[str, float]], later: list[dict[str, float]]) -> list[dict[str, float]]:
    """A resumed run's learning curve: the earlier run's points before the resumed run's first one, then its own."""
    if not later:
        return list(earlier)
    return [row for row in earlier if row["env_steps"] < later[0]["env_steps"]] + list(later)
