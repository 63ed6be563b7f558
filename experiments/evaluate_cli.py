"""``shoprank evaluate``: evaluate one saved agent (baseline checkpoint folder or RL checkpoint folder).

Example::

    shoprank evaluate --checkpoint runs/ppo/checkpoint --env ShopRankStatic-v0 --seeds 5 --sessions 200 \\
        --out runs/ppo/eval --with-baselines retriever,oracle

A baseline checkpoint (a folder with ``baseline.json``) is loaded by :func:`agents.baselines.load_baseline`
(JSON/NPZ/LightGBM text, never pickle), once per seed so every seed starts from the saved state; an RL
checkpoint (``agent.json`` + ``policy.pt``) by ``agents.factory.load_agent``. No training code runs. ``--with-baselines`` adds reference agents
evaluated on the same shoppers (paired differences need ``retriever``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from agents.baselines import (BASELINES, BaselineConfig, baseline_factory, is_baseline_checkpoint, load_baseline,
                             read_baseline_meta)
from experiments.compare import parse_seeds
from experiments.evaluate import AgentFactory, evaluate_agents, make_env, resolve_config, write_summary


def checkpoint_factory(path: Path) -> tuple[str, AgentFactory]:
    """``(default name, factory(env, seed))`` for a checkpoint path."""
    if is_baseline_checkpoint(path):
        name = read_baseline_meta(path)["name"]  # checked before any evaluation
        return name, lambda env, seed: load_baseline(path, env)
    if not path.exists():
        raise InputNotFoundError(f"checkpoint {path} does not exist.")
    try:
        from agents.factory import load_agent
    except ImportError as exc:
        raise ImportError(f"{path} is not a baseline checkpoint folder, and agents.factory.load_agent "
                          f"(needed for SB3 checkpoints) could not be imported: {exc}") from exc
    agent = load_agent(path)  # loaded (and checked) once, before any evaluation; a deterministic policy
    return path.stem, lambda env, seed: agent


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="baseline checkpoint folder (baseline.json) or RL checkpoint folder (agents.factory.load_agent)")
    p.add_argument("--name", default=None, help="agent name in the report (default: from the checkpoint)")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("5"), help="count or comma-separated list")
    p.add_argument("--sessions", type=int, default=200, help="sessions per seed")
    p.add_argument("--env", default="ShopRankStatic-v0", help="registered env id")
    p.add_argument("--catalog", default=None, help="'synthetic' or a CSV catalog folder (default: the env's)")
    p.add_argument("--text-encoder", default=None, help="override the world's text encoder")
    p.add_argument("--with-baselines", default="retriever",
                   help=f"comma-separated reference baselines from {sorted(BASELINES)} ('' for none)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    return p


@command_errors("evaluate")
def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the checkpoint; returns an exit code (0 ok, 2 bad arguments or checkpoint)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be >= 1, got {args.sessions}.")
    config = resolve_config(args.env, None, args.catalog, args.text_encoder)
    default_name, factory = checkpoint_factory(args.checkpoint)
    refs = [n.strip() for n in args.with_baselines.split(",") if n.strip()]
    unknown = [n for n in refs if n not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} in --with-baselines; choose from {sorted(BASELINES)}.")
    name = args.name or default_name
    agents: dict[str, AgentFactory] = {name: factory}
    agents.update({ref: baseline_factory(ref, BaselineConfig()) for ref in refs if ref != name})
    env = make_env(args.env, config)
    df = evaluate_agents(agents, args.env, config, args.seeds, args.sessions, env=env, progress=not args.no_progress)
    write_summary(df, args.out, baseline="retriever")
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
