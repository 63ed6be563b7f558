"""Typed run configuration: dataclasses with field docs, YAML files and ``key.sub=value`` overrides."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from encoders.errors import ConfigError
from agents.factory import ALGOS, AgentConfig
from envs.config import EnvConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``shoprank train`` needs.

    Attributes:
        algo: ``ppo`` (``ShopRank-v0``), ``maskable_ppo`` or ``dqn`` (``ShopRankSeq-v0``).
        total_timesteps: Environment steps to train for.
        seed: Seed of the model, the envs and exploration.
        eval_every: Steps between held-out evaluations logged to TensorBoard under ``eval/`` (0 = none).
        eval_sessions: Held-out sessions per evaluation.
        env: Environment config.
        agent: Agent hyperparameters.
    """

    algo: str = "ppo"
    total_timesteps: int = 50_000
    seed: int = 0
    eval_every: int = 5000
    eval_sessions: int = 100
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"unknown RL algorithm {self.algo!r}; choose one of {sorted(ALGOS)}.")
        if self.total_timesteps <= 0:
            raise ConfigError(f"total_timesteps must be > 0, got {self.total_timesteps}.")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be between 0 and 2**32 - 1, got {self.seed}.")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be >= 0 (0 = no held-out evaluation), got {self.eval_every}.")
        if self.eval_every > 0 and self.eval_sessions < 1:
            raise ConfigError(f"eval_sessions must be >= 1 when eval_every > 0, got {self.eval_sessions}.")


def _build(cls: type, data: dict, path: str) -> Any:
    """Instantiate dataclass ``cls`` from a nested dict, naming any unknown key with its full path."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{path or cls.__name__}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"'{path}'" if path else "the top level"
        raise ConfigError(f"unknown config key(s) {unknown} in {where}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        sub = f"{path}.{name}" if path else name
        if is_dataclass(hint):
            kwargs[name] = _build(hint, value, sub)
        else:
            kwargs[name] = _coerce(value, hint, sub)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` as the field's type ``hint``. Numbers YAML reads as strings are converted: PyYAML parses
    ``1e-3`` and ``1e5`` (no dot) as text, so ``--set agent.learning_rate=1e-3`` must still give a float
    and ``total_timesteps=1e5`` an int (integral values only)."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:  # Optional[X] / X | None
        return None if value is None else _coerce(value, next(a for a in args if a is not type(None)), path)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key '{path}' must be {hint.__name__}, got {value!r}")
    if hint in (int, float) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and (hint is float or number.is_integer()):
            return hint(number)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"config key '{path}' must be {hint.__name__}, got {value!r}")
    return value


def _set(data: dict, item: str) -> None:
    """Apply one ``a.b=value`` override (value parsed as YAML) to a nested dict."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value")
    key, _, raw = item.partition("=")
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override '{item}': the value is not valid YAML") from None


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """A copy of dataclass ``config`` with ``a.b=value`` overrides applied and validated."""
    data = asdict(config)
    for item in overrides:
        _set(data, item)
    return _build(type(config), data, "")


def load_config(path: Path | None = None, overrides: list[str] | None = None, cls: type = TrainConfig) -> Any:
    """Read a YAML file (optional), apply ``a.b=value`` overrides (values parsed as YAML), validate.

    Raises:
        ValueError: for unknown keys, wrong types or malformed overrides, naming the key.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of TrainConfig fields, got {type(data).__name__}")
    for item in overrides or []:
        _set(data, item)
    return _build(cls, data, "")


def dump_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML (and JSON beside it, for scripts), each file atomically."""
    from experiments.run_folder import atomic_write_text

    data = asdict(config)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(data, indent=2))
