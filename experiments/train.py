"""``shoprank train``: train one RL agent, log to TensorBoard, save a checkpoint, evaluate on held-out shoppers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from encoders.errors import ConfigError, command_errors
from agents.factory import make_env, train_agent
from experiments.config import TrainConfig, dump_config, load_config
from experiments.learning_curves import CURVE_FILE, write_learning_curves
from experiments.run_folder import RunFolder, atomic_write_json, atomic_write_text


def run_dir_for(root: Path, algo: str) -> Path:
    """A fresh run folder ``root/<algo>-<timestamp>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{algo}-{stamp}"
    suffix = 1
    while path.exists():
        path = Path(root) / f"{algo}-{stamp}-{suffix}"
        suffix += 1
    return path


ROLLOUT_ALGOS = ("ppo", "maskable_ppo")
"""Algorithms that collect whole rollouts of ``n_steps`` per env before each update (SB3's on-policy ones)."""


def steps_to_run(config: TrainConfig) -> tuple[int, int, str]:
    """``(steps, unit, what)``: the env steps SB3 takes for ``config.total_timesteps``, a whole number of
    ``unit`` (SB3 never stops mid-rollout: ``n_steps * n_envs`` for the rollout algorithms, ``train_freq *
    n_envs`` for DQN), and the names of the two factors."""
    name = "n_steps" if config.algo in ROLLOUT_ALGOS else "train_freq"
    unit = config.agent.n_envs * getattr(config.agent, name)
    return -(-config.total_timesteps // unit) * unit, unit, f"{name} x n_envs"


def train(config: TrainConfig, run_dir: Path, progress: bool = True):
    """Train per ``config`` into ``run_dir`` (``config.yaml``, ``tb/``, ``checkpoint/``, ``train.json``, and with
    ``eval_every`` the learning curve: ``learning_curve.csv``, ``learning_curves.png``).

    Returns:
        The trained SB3 model.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    from agents.callbacks import TrainingProgressBar

    steps, unit, what = steps_to_run(config)
    if steps != config.total_timesteps:
        print(f"note: {config.algo} trains in whole rollouts of {unit} env steps ({what}): {steps} steps "
              f"for the {config.total_timesteps} asked (ask a multiple of {unit} to match)", file=sys.stderr)
    bar = TrainingProgressBar(steps, f"train {config.algo} seed {config.seed}", disable=not progress)
    start = time.perf_counter()
    model = train_agent(config.algo, config.env, config.total_timesteps, seed=config.seed, run_dir=run_dir,
                        config=config.agent, callbacks=[bar], eval_every=config.eval_every,
                        eval_sessions=config.eval_sessions)
    seconds = time.perf_counter() - start
    if model.learning_curve:
        write_learning_curves(run_dir.parent, run_dir, make_env(config.env, False), [config.seed],
                              config.eval_sessions, curves_glob=f"{run_dir.name}/{CURVE_FILE}")
    atomic_write_json(run_dir / "train.json",
                      {"algo": config.algo, "total_timesteps": int(model.num_timesteps),
                       "steps_asked": config.total_timesteps, "seed": config.seed, "wall_seconds": round(seconds, 1),
                       "steps_per_second": round(model.num_timesteps / seconds, 1)})
    return model


def train_on_rllib(config: TrainConfig, run_dir: Path, env_runners: int, address: str | None) -> int:
    """PPO on the same registered env with Ray RLlib (``experiments.rllib_backend``)."""
    from experiments.rllib_backend import RllibConfig, train_rllib

    if config.algo != "ppo":
        raise ConfigError(f"--backend rllib trains PPO only, got algo {config.algo!r}; use --algo ppo or --backend sb3.")
    rllib = RllibConfig()
    iterations = max(1, config.total_timesteps // rllib.train_batch_size)
    if config.total_timesteps % rllib.train_batch_size:
        print(f"note: RLlib trains in iterations of {rllib.train_batch_size} env steps: "
              f"{iterations * rllib.train_batch_size} steps for the {config.total_timesteps} asked")
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    summary = train_rllib(config.env, env_runners, iterations, run_dir, address=address, config=rllib)
    atomic_write_text(run_dir / "train.json", json.dumps(
        {k: v for k, v in summary.items() if k != "iterations"}, indent=2, default=str))
    print(f"run folder: {run_dir} (Ray RLlib, {iterations} iterations x {rllib.train_batch_size} steps)")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with TrainConfig fields (see configs/).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set agent.learning_rate=1e-3 (repeatable)")
    parser.add_argument("--algo", help="ppo | maskable_ppo | dqn (overrides the config)")
    parser.add_argument("--steps", type=int, help="total timesteps (overrides the config)")
    parser.add_argument("--seed", type=int, help="seed (overrides the config)")
    parser.add_argument("--catalog", help="'synthetic' or a CSV catalog folder (overrides env.world.catalog)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder of run folders (default runs/)")
    parser.add_argument("--run-dir", type=Path, help="exact run folder (default: OUT/<algo>-<time>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --run-dir")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--backend", choices=["sb3", "rllib"], default="sb3",
                        help="sb3 (default, one process) or rllib (Ray RLlib PPO over env-runner processes; "
                             "needs pip install 'shoprank[distributed]')")
    parser.add_argument("--env-runners", type=int, default=2, help="rllib: env-runner processes")
    parser.add_argument("--address", default=None,
                        help="rllib: an existing Ray cluster ('auto' or 'ray://host:10001'); default: start a local one")


@command_errors("train")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank train", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for flag, key in ((args.algo, "algo"), (args.steps, "total_timesteps"), (args.seed, "seed"),
                      (args.catalog, "env.world.catalog")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    run_dir = args.run_dir or run_dir_for(args.out, config.algo)
    with RunFolder(run_dir, "train", config, seeds=[config.seed], overwrite=args.overwrite) as run:
        if args.backend == "rllib":
            code = train_on_rllib(config, run_dir, args.env_runners, args.address)
            if code == 0:
                run.finish()
            return code
        train(config, run_dir, progress=not args.no_progress)
        run.finish()
    print(f"run folder: {run_dir}\n  TensorBoard: tensorboard --logdir {run_dir / 'tb'}\n"
          f"  checkpoint: {run_dir / 'checkpoint'}")
    return 0
