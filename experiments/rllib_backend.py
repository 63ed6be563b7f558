"""Scale-out: train ShopRank's PPO agent with Ray RLlib across processes or machines.

The optional ``distributed`` extra installs Ray (``pip install shoprank[distributed]``, i.e.
``ray[rllib]``; it pins ``gymnasium==1.2.2`` like this project). Ray is imported lazily, so the rest of
ShopRank works without it.

What RLlib trains is ShopRank's own agent: :class:`agents.rllib_module.ShopRankRLModule` wraps the same
candidate-set policy network SB3's PPO trains and samples slates from the same Plackett-Luce distribution
(see that module for the seam). Its env runners step the batched :class:`~envs.vector_env.ShopRankVectorEnv`
(``num_envs_per_env_runner`` sessions per runner, ``gym_env_vectorize_mode="vector_entry_point"``), built
from a plain-dict :class:`~envs.config.EnvConfig` (so it travels to other machines); each env runner
builds its own :class:`~envs.world.ShopWorld` (the embedding disk cache makes that fast after the first
build on a machine). After training, the module's weights are exported as an ordinary ShopRank checkpoint
(``run_dir/checkpoint``: ``agent.json`` + ``policy.pt``, tensors only) that ``shoprank evaluate --checkpoint``
and ``shoprank compare`` read like any SB3 agent's; RLlib's own algorithm checkpoint (pickles) goes to
``run_dir/rllib_checkpoint`` only when asked for, and evaluation never reads it.

Local (what ``train_rllib`` does by default): a Ray instance is started inside the call with
``num_cpus`` CPUs (default: all of this machine's usable CPUs) and shut down at the end.

On a cluster::

    # on the head node:     ray start --head --port=6379
    # on each worker node:  ray start --address=<head-ip>:6379
    # then, on the head node (or any node of the cluster):
    shoprank train --backend rllib --address auto --env-runners 8 --steps 200000
    # or train_rllib(env_config, num_env_runners=8, iterations=100, run_dir="runs/rllib", address="auto")

Every node needs this project and its data importable (same code, same ``EnvConfig``; a CSV catalog path
must exist on every node). Ray then places the env runners across the nodes; the learner stays on the
driver unless ``num_learners`` > 0.

Command line: ``python -m experiments.rllib_backend --env-runners 1 --iterations 3 --run-dir runs/rllib``
(the CLI's ``shoprank train --backend rllib`` calls :func:`train_rllib` with the same arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from agents.factory import AGENT_PRESETS, AgentConfig, online_env_config
from encoders.errors import ConfigError
from envs.config import EnvConfig, config_from_dict, config_to_dict

ENV_NAME = "ShopRank-rllib-v0"
"""Name under which :func:`make_rllib_env` is registered with ``ray.tune.registry.register_env``."""

RLLIB_AGENT = AGENT_PRESETS["ppo_scratch"].config
"""The agent RLlib trains by default: ``ppo_scratch``'s (its slim network, Plackett-Luce slates, per-slot credit
with ``slot_discount=0``, learning rate, rollout of 2,048 steps, minibatch and 10 epochs)."""


@dataclass(frozen=True)
class RllibConfig:
    """How RLlib runs PPO; the network and PPO's hyperparameters are the agent's :class:`AgentConfig`.

    Attributes:
        agent: Network and PPO hyperparameters (``learning_rate``, ``batch_size`` = SGD minibatch,
            ``n_epochs``, ``gamma``, ``gae_lambda``, ``clip_range``, ``ent_coef``, ``hidden``, ...), as SB3
            reads them.
        train_batch_size: Env steps collected per training iteration (``train_batch_size_per_learner``);
            ``None`` = ``agent.n_steps * agent.n_envs`` (SB3's rollout size).
        num_envs_per_env_runner: Sessions each env runner steps at once.
        vectorize_mode: ``"vector_entry_point"`` (one batched :class:`~envs.vector_env.ShopRankVectorEnv`
            per runner) or ``"sync"`` (Gymnasium's loop over single envs).
        num_learners: Remote learner workers (0 = learn on the driver).
        num_cpus_per_env_runner: CPUs Ray reserves per env runner.
        seed: Seeds RLlib (env runners) and the module's initialisation.
    """

    agent: AgentConfig = RLLIB_AGENT
    train_batch_size: int | None = None
    num_envs_per_env_runner: int = 16
    vectorize_mode: str = "vector_entry_point"
    num_learners: int = 0
    num_cpus_per_env_runner: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train_batch_size is not None and self.train_batch_size < 1:
            raise ConfigError(f"RllibConfig.train_batch_size must be >= 1, got {self.train_batch_size}.")
        if self.num_envs_per_env_runner < 1:
            raise ConfigError(f"RllibConfig.num_envs_per_env_runner must be >= 1, got {self.num_envs_per_env_runner}.")
        if self.vectorize_mode not in ("vector_entry_point", "sync"):
            raise ConfigError(f"RllibConfig.vectorize_mode must be 'vector_entry_point' or 'sync', "
                              f"got {self.vectorize_mode!r}.")

    @property
    def batch_size(self) -> int:
        """Env steps per training iteration."""
        return self.train_batch_size or self.agent.n_steps * self.agent.n_envs


def _import_ray():
    import importlib

    importlib.import_module("agents.rllib_module")  # raises MissingDependencyError with the install hint
    import ray

    return ray


def make_rllib_env(env_ctx: dict | None = None):
    """The env factory given to ``register_env``: ``ShopRank-v0`` for a dict ``EnvConfig`` (``env_ctx``).

    RLlib passes its ``EnvContext`` (a dict subclass); for ``gym_env_vectorize_mode="vector_entry_point"`` it
    adds ``num_envs``, and this returns one :class:`~envs.vector_env.ShopRankVectorEnv` of that many sessions.
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers ShopRank-v0)
    from envs.vector_env import ShopRankVectorEnv

    data = dict(env_ctx or {})
    num_envs = data.pop("num_envs", None)
    config = config_from_dict(data) if data else EnvConfig()
    if num_envs is not None:
        return ShopRankVectorEnv(int(num_envs), config=config)
    return gym.make("ShopRank-v0", config=config)


def register() -> str:
    """Register :func:`make_rllib_env` with Ray Tune's registry as :data:`ENV_NAME`; returns the name."""
    _import_ray()
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_rllib_env)
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


def ppo_config(env_dict: dict, num_env_runners: int, config: RllibConfig):
    """RLlib ``PPOConfig`` training :class:`~agents.rllib_module.ShopRankRLModule` on ``env_dict``'s env.

    SB3 PPO's choices carried over: minibatch ``agent.batch_size``, ``agent.n_epochs`` passes, value-loss
    weight 0.5, gradient norm clipped at 0.5, no value clipping, no KL penalty, Adam with ``eps=1e-5``, and
    per-slot credit when ``agent.slot_credit`` (the learner class
    :class:`~agents.rllib_learner.ShopRankPPOLearner`); actions go to the env as the module draws them (no
    normalising or clipping). The env runners' env is ``agent``'s online env
    (:func:`agents.factory.online_env_config`: expected rewards when ``agent.expected_reward``). Not carried
    over: ``agent.target_kl`` (SB3's early stop of the epochs).
    """
    _import_ray()
    from ray.rllib.algorithms.ppo import PPOConfig

    from agents.rllib_learner import ShopRankPPOLearner
    from agents.rllib_module import module_spec

    agent = config.agent
    env = online_env_config(config_from_dict(dict(env_dict)), agent)  # expected rewards when agent.expected_reward
    if env.world.cache_dir and not Path(env.world.cache_dir).is_absolute():
        # env runners do not share the driver's working directory: give them the driver's cache by its full path
        env = replace(env, world=replace(env.world, cache_dir=str(Path(env.world.cache_dir).resolve())))
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=config_to_dict(env), normalize_actions=False, clip_actions=False)
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=config.num_envs_per_env_runner,
                     gym_env_vectorize_mode=config.vectorize_mode,
                     num_cpus_per_env_runner=config.num_cpus_per_env_runner)
        .learners(num_learners=config.num_learners, learner_class=ShopRankPPOLearner)
        .training(train_batch_size_per_learner=config.batch_size, minibatch_size=agent.batch_size,
                  num_epochs=agent.n_epochs, lr=agent.learning_rate, gamma=agent.gamma, lambda_=agent.gae_lambda,
                  clip_param=agent.clip_range, entropy_coeff=agent.ent_coef, use_kl_loss=False,
                  vf_loss_coeff=0.5, vf_clip_param=float("inf"), grad_clip=0.5, grad_clip_by="global_norm")
        .rl_module(rl_module_spec=module_spec(agent, env.slate_size, seed=config.seed))
        .debugging(seed=config.seed)
    )


def retry_ray_start(start: Callable[[], Any], attempts: int = 3) -> Any:
    """``start()`` (something that starts a Ray node: ``ray.init``, ``Cluster.add_node``), retried when the node
    misses Ray's fixed 30 s to register at start-up (it does on a heavily loaded machine); other errors and
    the last attempt's are raised."""
    for attempt in range(attempts):
        try:
            return start()
        except Exception as exc:  # Ray raises a bare Exception for this timeout
            if "timed out during startup" not in str(exc) or attempt == attempts - 1:
                raise


def _start_ray(ray, address: str | None, num_cpus: int | None) -> bool:
    """Join ``address`` or start a local instance (unless one runs in this process); True if started here."""
    if ray.is_initialized():
        return False
    # the env runners must import this project: ship its root on their PYTHONPATH
    root = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", ""))
                                                               if p),
                                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
    if address is None:
        cpus = num_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        retry_ray_start(lambda: ray.init(num_cpus=max(int(cpus), 1), include_dashboard=False, log_to_driver=False,
                                         runtime_env=runtime_env))
        return True
    ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    return False


def env_runner_nodes(algo) -> list[str]:
    """Ray node id of each remote env runner of ``algo`` (the driver's node when it samples itself)."""
    import ray

    nodes = algo.env_runner_group.foreach_env_runner(lambda runner: ray.get_runtime_context().get_node_id(),
                                                     local_env_runner=False)
    return list(nodes) if nodes else [ray.get_runtime_context().get_node_id()]


def module_weights(algo) -> dict:
    """The learner's :class:`~agents.rllib_module.ShopRankRLModule` state (``policy.``-prefixed arrays)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return algo.learner_group.get_weights()[DEFAULT_MODULE_ID]


def load_initial_weights(algo, checkpoint: Path) -> None:
    """Start from a ShopRank PPO checkpoint (e.g. SB3-trained): its ``policy.pt`` (tensors only) goes into the
    learner's module, then to every env runner."""
    from agents.checkpoint import read_weights

    set_policy_weights(algo, read_weights(Path(checkpoint) / "policy.pt"), str(checkpoint))


def set_policy_weights(algo, state: dict, source: str) -> None:
    """Put SB3 policy weights (``{name: tensor}``, no prefix) into the learner's module and every env runner;
    ``source`` names them in the error when they do not fit the module."""
    import numpy as np
    from ray.rllib.core import DEFAULT_MODULE_ID

    from agents.rllib_module import PREFIX

    state = {PREFIX + k: v.detach().cpu().numpy() for k, v in state.items()}
    current = module_weights(algo)
    if set(state) != set(current) or any(np.shape(state[k]) != np.shape(current[k]) for k in state):  # 0-d: floats
        raise ConfigError(f"{source} does not fit the RLlib module built from this agent config "
                          f"(keys or shapes differ); fine-tune with the agent config it was trained with.")
    algo.learner_group.set_weights({DEFAULT_MODULE_ID: state})
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)


def warm_started_policy(env_config: EnvConfig, config: RllibConfig, progress: bool = False):
    """The module's network, initialised as the RLlib module is (``config.seed``) and warm-started exactly as SB3's
    ``ppo`` is (:func:`agents.factory.fit_policy_scores` on ``agent.pretrain_sessions`` sessions logged on the
    driver, the same seed streams). Returns ``(policy, losses per epoch)``."""
    import torch

    from agents.factory import fit_policy_scores, make_env, pretrain_config
    from agents.rllib_module import build_sb3_policy

    agent = config.agent
    torch.set_num_threads(agent.torch_threads)  # as SB3's build_agent does
    env = make_env(env_config, sequential=False)
    try:
        policy = build_sb3_policy(env.observation_space, env.action_space, agent, env_config.slate_size, config.seed)
        losses = fit_policy_scores(policy, env, env_config, agent, pretrain_config(agent), config.seed, progress)
    finally:
        env.close()
    return policy, losses


def train_rllib(env_config: EnvConfig | dict | None = None, num_env_runners: int = 1, iterations: int = 1,
                run_dir: str | Path | None = None, *, address: str | None = None, num_cpus: int | None = None,
                config: RllibConfig = RllibConfig(), checkpoint: bool = True, rllib_checkpoint: bool = False,
                init_checkpoint: str | Path | None = None, log=print, on_iteration: Callable | None = None) -> dict:
    """Train ShopRank's PPO agent with RLlib on ``ShopRank-v0`` over ``num_env_runners`` env runners.

    With ``config.agent.pretrain_sessions > 0`` the module is warm-started before RL as SB3's ``ppo`` is
    (:func:`warm_started_policy`, on the driver; the losses go to the summary's ``warm_start_losses``).

    Args:
        env_config: The environment (an :class:`EnvConfig` or its dict form); default ``EnvConfig()``.
        num_env_runners: Remote env-runner processes collecting experience (0 = sample on the driver).
        iterations: Training iterations (``algo.train()`` calls; each collects ``config.batch_size`` steps).
        run_dir: Folder for ``rllib_results.json``, ``env_config.json`` and ``checkpoint/`` (the exported
            ShopRank checkpoint); ``None`` writes nothing.
        address: ``None`` starts a local Ray instance for this call (and shuts it down after); ``"auto"``
            or ``"host:6379"`` / ``"ray://host:10001"`` joins an existing cluster (left running). A Ray
            instance already initialised in this process is reused as is.
        num_cpus: CPUs of the local instance (default: the usable CPUs of this machine; ignored with
            ``address``). Each env runner takes ``config.num_cpus_per_env_runner``.
        config: RLlib settings and the agent's hyperparameters.
        checkpoint: Export the trained module as a ShopRank checkpoint to ``run_dir/checkpoint``.
        rllib_checkpoint: Also save RLlib's algorithm checkpoint (pickles; for resuming with RLlib) to
            ``run_dir/rllib_checkpoint``.
        init_checkpoint: A ShopRank ``ppo`` checkpoint folder to start from (fine-tuning).
        log: Progress printer.
        on_iteration: Called with each iteration's metrics row (e.g. a progress bar's update).

    Returns:
        ``{"iterations": [per-iteration metrics], "episode_return_mean", "env_steps", "wall_s",
        "env_steps_per_s", "num_env_runners", "env_runner_nodes", "checkpoint", "ray_version", ...}``.

    Raises:
        MissingDependencyError: Ray RLlib is not installed (the message says how to install it).
        ConfigError: Bad arguments.
    """
    if num_env_runners < 0:
        raise ConfigError(f"num_env_runners must be >= 0, got {num_env_runners}.")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}.")
    if init_checkpoint is not None and config.agent.pretrain_sessions > 0:
        raise ConfigError("init_checkpoint and agent.pretrain_sessions > 0 both set: start from the checkpoint or "
                          "warm-start, not both.")
    ray = _import_ray()
    if isinstance(env_config, EnvConfig):
        env_dict = config_to_dict(env_config)
    else:
        env_dict = config_to_dict(config_from_dict(dict(env_config or {})))
    algo_config = ppo_config(env_dict, num_env_runners, config)
    if config.agent.expected_reward:  # refused here, before Ray starts, rather than inside every env runner
        from agents.factory import make_env

        make_env(online_env_config(config_from_dict(env_dict), config.agent), sequential=False).close()
    warm, warm_losses = (warm_started_policy(config_from_dict(env_dict), config)
                         if config.agent.pretrain_sessions > 0 else (None, None))
    started = _start_ray(ray, address, num_cpus)
    run_path = Path(run_dir) if run_dir is not None else None
    history: list[dict] = []
    try:
        register()
        t_start = time.perf_counter()
        algo = algo_config.build_algo()
        build_s = time.perf_counter() - t_start
        try:
            if init_checkpoint is not None:
                load_initial_weights(algo, Path(init_checkpoint))
            if warm is not None:
                set_policy_weights(algo, warm.state_dict(), "the warm-started policy")
            nodes = env_runner_nodes(algo)
            for it in range(iterations):
                t0 = time.perf_counter()
                result = algo.train()
                row = {
                    "iteration": it + 1,
                    "episode_return_mean": _metric(result, "env_runners", "episode_return_mean"),
                    "episode_len_mean": _metric(result, "env_runners", "episode_len_mean"),
                    "env_steps_sampled": _metric(result, "env_runners", "num_env_steps_sampled"),
                    "env_steps_lifetime": _metric(result, "num_env_steps_sampled_lifetime"),
                    "sample_s": _metric(result, "timers", "env_runner_sampling_timer"),
                    "learn_s": _metric(result, "timers", "learner_update_timer"),
                    "wall_s": time.perf_counter() - t0,
                }
                history.append(row)
                log(f"[rllib] iter {it + 1}/{iterations}: return {row['episode_return_mean']:.2f}, "
                    f"{row['env_steps_sampled']:.0f} env steps in {row['wall_s']:.1f}s")
                if on_iteration is not None:
                    on_iteration(row)
            weights = module_weights(algo)
            rllib_ckpt = None
            if run_path is not None and rllib_checkpoint:
                rllib_ckpt = str(algo.save_to_path(str((run_path / "rllib_checkpoint").resolve())))
        finally:
            algo.stop()
    finally:
        if started:
            ray.shutdown()
    ckpt = None
    if run_path is not None and checkpoint:
        from agents.rllib_module import export_checkpoint

        ckpt = str(export_checkpoint(weights, config_from_dict(env_dict), config.agent, run_path / "checkpoint"))
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
        "env_runner_nodes": nodes,
        "rllib_config": asdict(config),
        "warm_start_losses": warm_losses,
        "checkpoint": ckpt,
        "rllib_checkpoint": rllib_ckpt,
        "ray_version": ray.__version__,
    }
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        (run_path / "env_config.json").write_text(json.dumps(env_dict, indent=2))
        (run_path / "rllib_results.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


COMPARE_ENV_RUNNERS = 1
"""Env runners of each ``rllib_ppo`` training inside ``shoprank compare`` (a local Ray instance per seed)."""


RLLIB_ENV_IDS = ("ShopRank-v0", "ShopRankStatic-v0")
"""Env ids whose env :func:`make_rllib_env` builds (the ``EnvConfig`` tells them apart)."""


def rllib_factory(env_config: EnvConfig, total_timesteps: int, run_root: Path, agent_overrides: Sequence[str] = (),
                  progress: bool = False, num_env_runners: int = COMPARE_ENV_RUNNERS, env_id: str = "ShopRank-v0"):
    """``shoprank compare``'s ``rllib_ppo``: ``(env, seed) -> agent`` that trains :data:`RLLIB_AGENT` (with
    ``agent_overrides``) through Ray for ``total_timesteps`` env steps (rounded up to whole iterations) into
    ``run_root/rllib_ppo/seed<k>``, then loads the exported ShopRank checkpoint for evaluation (the same
    loader as every saved agent: tensors and checked JSON only)."""
    import shutil

    from agents.checkpoint import load_policy, read_checkpoint
    from agents.rllib_module import check_config
    from experiments.config import apply_overrides

    if env_id not in RLLIB_ENV_IDS:
        raise ConfigError(f"rllib_ppo trains on {list(RLLIB_ENV_IDS)} only, got {env_id!r}.")
    agent = apply_overrides(RLLIB_AGENT, list(agent_overrides)) if agent_overrides else RLLIB_AGENT
    check_config(agent)  # before anything trains
    _import_ray()

    def build(env, seed: int):
        from tqdm.auto import tqdm

        run_dir = Path(run_root) / "rllib_ppo" / f"seed{seed}"
        if run_dir.exists():  # left by an interrupted attempt at this (unfinished) cell: start it afresh
            shutil.rmtree(run_dir)
        config = RllibConfig(agent=agent, seed=seed)
        iterations = -(-total_timesteps // config.batch_size)
        with tqdm(total=iterations * config.batch_size, desc=f"train rllib_ppo seed {seed}", unit="step",
                  position=1, leave=False, disable=not progress, dynamic_ncols=True) as bar:
            summary = train_rllib(env_config, num_env_runners, iterations, run_dir, config=config, log=lambda _: None,
                                  on_iteration=lambda row: bar.update(int(row["env_steps_sampled"])))
        path = Path(summary["checkpoint"])
        return load_policy(path, read_checkpoint(path, trust_plugins=True))  # written by this run, just now

    return build


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.rllib_backend [--env-runners N] [--iterations I] [--run-dir D] [--address A]``."""
    parser = argparse.ArgumentParser(prog="rllib_backend", description="Train ShopRank's PPO agent with Ray RLlib.")
    parser.add_argument("--env-runners", type=int, default=1, help="parallel env-runner processes")
    parser.add_argument("--envs-per-runner", type=int, default=RllibConfig.num_envs_per_env_runner,
                        help="sessions each env runner steps at once (batched vector env)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--address", default=None, help="'auto' or 'host:6379' to use a running cluster")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance")
    parser.add_argument("--train-batch-size", type=int, default=None)
    parser.add_argument("--init-checkpoint", type=Path, default=None, help="ShopRank ppo checkpoint to start from")
    parser.add_argument("--text-encoder", default=None, help="world text encoder (e.g. 'hashing' for speed)")
    args = parser.parse_args(argv)
    env = EnvConfig()
    if args.text_encoder:
        env = replace(env, world=replace(env.world, text_encoder=args.text_encoder))
    try:
        summary = train_rllib(env, args.env_runners, args.iterations, args.run_dir, address=args.address,
                              num_cpus=args.num_cpus, init_checkpoint=args.init_checkpoint,
                              config=RllibConfig(train_batch_size=args.train_batch_size,
                                                 num_envs_per_env_runner=args.envs_per_runner))
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "iterations"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
