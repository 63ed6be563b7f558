"""Scale-out: train PPO on ``ShopRank-v0`` with Ray RLlib across processes or machines.

The optional ``distributed`` extra installs Ray (``pip install shoprank[distributed]``, i.e.
``ray[rllib]``; it pins ``gymnasium==1.2.2`` like this project). Ray is imported lazily, so the rest of
ShopRank works without it.

The env RLlib trains is the same registered ``ShopRank-v0``, built by each env runner from a plain-dict
:class:`~envs.config.EnvConfig` (so it travels to other machines), with its ``Dict`` observation flattened
by ``gymnasium.wrappers.FlattenObservation`` (RLlib's default PPO module expects a ``Box``). Each env runner
builds its own :class:`~envs.world.ShopWorld` from the config (the embedding disk cache makes that fast
after the first build on a machine).

Local (what ``train_rllib`` does by default): a Ray instance is started inside the call with
``num_cpus`` CPUs (default: all of this machine's usable CPUs) and shut down at the end.

On a cluster::

    # on the head node:     ray start --head --port=6379
    # on each worker node:  ray start --address=<head-ip>:6379
    # then, from any node (or with RAY_ADDRESS set), point the trainer at it:
    train_rllib(env_config, num_env_runners=64, iterations=100, run_dir="runs/rllib", address="auto")
    # or "ray://<head-ip>:10001" through Ray Client from outside the cluster.

Every node needs this project and its data importable (same code, same ``EnvConfig``; a CSV catalog path
must exist on every node). Ray then places the env runners across the nodes; the learner stays on the
driver unless ``num_learners`` > 0.

Command line: ``python -m experiments.rllib_backend --env-runners 2 --iterations 3 --run-dir runs/rllib``
(the CLI's ``shoprank train --backend rllib`` calls :func:`train_rllib` with the same arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from encoders.errors import ConfigError, MissingDependencyError
from envs.config import EnvConfig, config_from_dict, config_to_dict

ENV_NAME = "ShopRank-rllib-v0"
"""Name under which the flattened ``ShopRank-v0`` is registered with ``ray.tune.registry.register_env``."""

INSTALL_HINT = ("Ray RLlib is not installed: `pip install shoprank[distributed]` "
                "(or `pip install -c constraints.txt \"ray[rllib]==2.60.*\"`).")


@dataclass(frozen=True)
class RllibConfig:
    """PPO settings of the RLlib run (RLlib's names).

    Attributes:
        train_batch_size: Env steps collected per training iteration (``train_batch_size_per_learner``).
        minibatch_size: SGD minibatch size.
        num_epochs: Passes over each train batch.
        lr: Adam learning rate.
        gamma: Discount per query.
        lambda_: GAE lambda.
        num_envs_per_env_runner: Envs each runner steps (RLlib vectorises them itself).
        num_learners: Remote learner workers (0 = learn on the driver).
        hidden: Widths of the MLP torso (RLlib's ``fcnet_hiddens``).
        seed: Seeds RLlib (env runners and module initialisation).
    """

    train_batch_size: int = 1000
    minibatch_size: int = 128
    num_epochs: int = 4
    lr: float = 3e-4
    gamma: float = 0.9
    lambda_: float = 0.9
    num_envs_per_env_runner: int = 1
    num_learners: int = 0
    hidden: tuple[int, ...] = (128, 128)
    seed: int = 0


def _import_ray():
    try:
        import ray  # noqa: F401
        from ray.rllib.algorithms.ppo import PPOConfig  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return ray


def make_flat_env(env_ctx: dict | None = None):
    """``FlattenObservation(gym.make("ShopRank-v0", config=...))`` from a dict ``EnvConfig`` (``env_ctx``).

    The env factory given to ``register_env``; RLlib passes its ``EnvContext`` (a dict subclass).
    """
    import gymnasium as gym
    from gymnasium.wrappers import FlattenObservation

    import envs  # noqa: F401  (registers ShopRank-v0)

    data = {k: v for k, v in dict(env_ctx or {}).items()}
    config = config_from_dict(data) if data else EnvConfig()
    return FlattenObservation(gym.make("ShopRank-v0", config=config))


def register() -> str:
    """Register :func:`make_flat_env` with Ray Tune's registry as :data:`ENV_NAME`; returns the name."""
    _import_ray()
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_flat_env)
    return ENV_NAME


def _metric(result: dict, *path: str, default: float = float("nan")) -> float:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    try:
        return float(node)
    except (TypeError, ValueError):
        return default


def train_rllib(env_config: EnvConfig | dict | None = None, num_env_runners: int = 2, iterations: int = 1,
                run_dir: str | Path | None = None, *, address: str | None = None, num_cpus: int | None = None,
                config: RllibConfig = RllibConfig(), checkpoint: bool = True, log=print) -> dict:
    """Train RLlib PPO on ``ShopRank-v0`` with ``num_env_runners`` parallel env runners.

    Args:
        env_config: The environment (an :class:`EnvConfig` or its dict form); default ``EnvConfig()``.
        num_env_runners: Remote env-runner processes collecting experience (0 = sample on the driver).
        iterations: Training iterations (``algo.train()`` calls; each collects ``train_batch_size`` steps).
        run_dir: Folder for ``rllib_results.json``, ``env_config.json`` and ``checkpoint/``; ``None`` writes
            nothing.
        address: ``None`` starts a local Ray instance for this call (and shuts it down after); ``"auto"``
            or ``"ray://host:10001"`` joins an existing cluster (left running). A Ray instance already
            initialised in this process is reused as is.
        num_cpus: CPUs of the local instance (default: the usable CPUs of this machine; ignored with
            ``address``). Each env runner takes one CPU; the driver's learner shares them.
        config: PPO settings.
        checkpoint: Save the trained algorithm to ``run_dir/checkpoint``.
        log: Progress printer.

    Returns:
        ``{"iterations": [per-iteration metrics], "episode_return_mean", "env_steps", "wall_s",
        "env_steps_per_s", "num_env_runners", "checkpoint", "ray_version"}``.

    Raises:
        ImportError: Ray RLlib is not installed (the message says how to install it).
        ValueError: Bad arguments.
    """
    if num_env_runners < 0:
        raise ConfigError(f"num_env_runners must be >= 0, got {num_env_runners}.")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}.")
    ray = _import_ray()
    from ray.rllib.algorithms.ppo import PPOConfig

    if isinstance(env_config, EnvConfig):
        env_dict = config_to_dict(env_config)
    else:
        env_dict = config_to_dict(config_from_dict(dict(env_config or {})))
    started = False
    if not ray.is_initialized():
        if address is None:
            cpus = num_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
            # the env runners must import this project: ship its root on their PYTHONPATH
            root = str(Path(__file__).resolve().parents[1])
            ray.init(num_cpus=max(int(cpus), 1), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                         p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}})
        else:
            ray.init(address=address, log_to_driver=False)
        started = address is None
    register()
    algo_config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_dict)
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=config.num_envs_per_env_runner,
                     num_cpus_per_env_runner=1)
        .learners(num_learners=config.num_learners)
        .training(train_batch_size_per_learner=config.train_batch_size, minibatch_size=config.minibatch_size,
                  num_epochs=config.num_epochs, lr=config.lr, gamma=config.gamma, lambda_=config.lambda_)
        .rl_module(model_config={"fcnet_hiddens": list(config.hidden)})
        .debugging(seed=config.seed)
    )
    run_path = Path(run_dir) if run_dir is not None else None
    history: list[dict] = []
    t_start = time.perf_counter()
    algo = algo_config.build_algo()
    build_s = time.perf_counter() - t_start
    try:
        for it in range(iterations):
            t0 = time.perf_counter()
            result = algo.train()
            row = {
                "iteration": it + 1,
                "episode_return_mean": _metric(result, "env_runners", "episode_return_mean"),
                "episode_len_mean": _metric(result, "env_runners", "episode_len_mean"),
                "env_steps_sampled": _metric(result, "env_runners", "num_env_steps_sampled"),
                "env_steps_lifetime": _metric(result, "num_env_steps_sampled_lifetime"),
                "wall_s": time.perf_counter() - t0,
            }
            history.append(row)
            log(f"[rllib] iter {it + 1}/{iterations}: return {row['episode_return_mean']:.2f}, "
                f"{row['env_steps_sampled']:.0f} env steps in {row['wall_s']:.1f}s")
        ckpt = None
        if run_path is not None and checkpoint:
            ckpt = str(algo.save_to_path(str((run_path / "checkpoint").resolve())))
    finally:
        algo.stop()
        if started:
            ray.shutdown()
    train_s = sum(r["wall_s"] for r in history)
    steps = sum(r["env_steps_sampled"] for r in history if r["env_steps_sampled"] == r["env_steps_sampled"])
    summary = {
        "iterations": history,
        "episode_return_mean": history[-1]["episode_return_mean"],
        "env_steps": steps,
        "build_s": build_s,
        "wall_s": train_s,
        "env_steps_per_s": steps / train_s if train_s > 0 else float("nan"),
        "num_env_runners": num_env_runners,
        "rllib_config": asdict(config),
        "checkpoint": ckpt,
        "ray_version": ray.__version__,
    }
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        (run_path / "env_config.json").write_text(json.dumps(env_dict, indent=2))
        (run_path / "rllib_results.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.rllib_backend [--env-runners N] [--iterations I] [--run-dir D] [--address A]``."""
    parser = argparse.ArgumentParser(prog="rllib_backend", description="Train PPO on ShopRank-v0 with Ray RLlib.")
    parser.add_argument("--env-runners", type=int, default=2, help="parallel env-runner processes")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--address", default=None, help="'auto' or 'ray://host:10001' to use a running cluster")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance")
    parser.add_argument("--train-batch-size", type=int, default=RllibConfig.train_batch_size)
    parser.add_argument("--text-encoder", default=None, help="world text encoder (e.g. 'hashing' for speed)")
    args = parser.parse_args(argv)
    env = EnvConfig()
    if args.text_encoder:
        from dataclasses import replace

        env = replace(env, world=replace(env.world, text_encoder=args.text_encoder))
    try:
        summary = train_rllib(env, args.env_runners, args.iterations, args.run_dir, address=args.address,
                              num_cpus=args.num_cpus, config=RllibConfig(train_batch_size=args.train_batch_size))
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "iterations"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
