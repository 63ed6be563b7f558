"""``shoprank train``: train one RL agent, log to TensorBoard, save a checkpoint, evaluate on held-out shoppers."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agents.factory import train_agent
from experiments.config import TrainConfig, dump_config, load_config


def run_dir_for(root: Path, algo: str) -> Path:
    """A fresh run folder ``root/<algo>-<timestamp>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{algo}-{stamp}"
    suffix = 1
    while path.exists():
        path = Path(root) / f"{algo}-{stamp}-{suffix}"
        suffix += 1
    return path


def train(config: TrainConfig, run_dir: Path, progress: bool = True):
    """Train per ``config`` into ``run_dir`` (``config.yaml``, ``tb/``, ``checkpoint/``, ``train.json``).

    Returns:
        The trained SB3 model.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    start = time.perf_counter()
    model = train_agent(config.algo, config.env, config.total_timesteps, seed=config.seed, run_dir=run_dir,
                        config=config.agent, progress=progress)
    seconds = time.perf_counter() - start
    (run_dir / "train.json").write_text(json.dumps(
        {"algo": config.algo, "total_timesteps": config.total_timesteps, "seed": config.seed,
         "wall_seconds": round(seconds, 1), "steps_per_second": round(config.total_timesteps / seconds, 1)},
        indent=2))
    return model


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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
    except ValueError as exc:
        parser.error(str(exc))
    run_dir = args.run_dir or run_dir_for(args.out, config.algo)
    train(config, run_dir, progress=not args.no_progress)
    print(f"run folder: {run_dir}\n  TensorBoard: tensorboard --logdir {run_dir / 'tb'}\n"
          f"  checkpoint: {run_dir / 'checkpoint'}")
    return 0
