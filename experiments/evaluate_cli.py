"""``shoprank evaluate``: evaluate one saved agent (baseline checkpoint folder or RL checkpoint folder).

Example::

    shoprank evaluate --checkpoint runs/ppo/checkpoint --env ShopRankStatic-v0 --seeds 5 --sessions 200 \\
        --out runs/ppo/eval --with-baselines retriever,oracle

A baseline checkpoint (a folder with ``baseline.json``) is loaded by :func:`agents.baselines.load_baseline`
(JSON/NPZ/LightGBM text, never pickle), once per seed so every seed starts from the saved state. An RL
checkpoint (``agent.json`` + ``policy.pt``) is read by :mod:`agents.checkpoint`: data only (plain tensors,
JSON checked field by field), the policy network alone (no optimiser, no buffers), and a plug-in the
checkpoint names (a custom simulator, encoder or fusion) is imported only when you name it yourself
(``--simulator``, ``--plugin FIELD=NAME``) or pass ``--trust-plugins``. An RL agent is evaluated in its
own env config (candidates, slate size, world); ``--env`` then only chooses the episode form (e.g.
``ShopRankStatic-v0``: one query per session), ``--catalog`` the catalog (a warning says when it differs
from the training catalog). ``--with-baselines`` adds reference agents evaluated on the same shoppers
(paired differences need ``retriever``). ``--out`` is checked before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from agents.baselines import (BASELINES, BaselineConfig, baseline_factory, is_baseline_checkpoint, load_baseline,
                             read_baseline_meta)
from experiments.compare import parse_seeds
from experiments.evaluate import AgentFactory, evaluate_agents, make_env, resolve_config, write_summary
from experiments.run_folder import RunFolder

DEFAULT_ENV = "ShopRankStatic-v0"
"""The env a baseline checkpoint is evaluated in when ``--env`` is not given."""


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written, before any work: an existing file, or a folder whose
    nearest existing ancestor is not a writable folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder.")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot create or write it ({ancestor} is not a writable folder).")


def parse_plugins(items: Sequence[str], simulator: str | None, text_encoder: str | None) -> dict[str, str]:
    """The plug-in names the user gave: ``--plugin FIELD=NAME`` items, ``--simulator`` and ``--text-encoder``."""
    plugins: dict[str, str] = {}
    for item in items:
        field, sep, name = item.partition("=")
        if not sep or not field.strip():
            raise ConfigError(f"--plugin {item!r} must look like FIELD=NAME (e.g. world.fusion=pkg.mod:factory).")
        plugins[field.strip()] = name.strip()
    if simulator is not None:
        plugins["simulator"] = simulator
    if text_encoder is not None:
        plugins["world.text_encoder"] = text_encoder
    return plugins


@dataclasses.dataclass(frozen=True)
class Plan:
    """What evaluating a checkpoint takes, known from cheap checks alone (no world built, no policy loaded).

    Attributes:
        name: Default agent name in the report.
        env_id: Env to evaluate in.
        config: Its env config.
        load: Loads the agent (the expensive part) -> ``factory(env, seed)``.
    """

    name: str
    env_id: str
    config: Any
    load: Callable[[], AgentFactory]


def rl_agent(args: argparse.Namespace) -> Plan:
    """The plan for an RL checkpoint, evaluated in its own env config."""
    from agents.checkpoint import WEIGHTS_FILE, load_policy, read_checkpoint, read_weights

    plugins = parse_plugins(args.plugin, args.simulator, args.text_encoder)
    meta = read_checkpoint(args.checkpoint, plugins, args.trust_plugins)  # checked before anything is built
    read_weights(args.checkpoint / WEIGHTS_FILE)  # plain tensors? (cheap; their fit is checked once built)
    config = meta.env_config
    env_id = args.env or meta.env_id
    if args.env is not None:  # --env chooses the episode form; the shapes stay the checkpoint's
        config = dataclasses.replace(config, max_queries=resolve_config(args.env).max_queries)
    if args.catalog is not None:
        config = dataclasses.replace(config, world=dataclasses.replace(config.world, catalog=str(args.catalog)))
    resolve_config(env_id, config)  # a known env id

    def load() -> AgentFactory:
        from envs.world import get_world

        agent = load_policy(args.checkpoint, meta, config)  # loaded once, before any evaluation; deterministic
        fingerprint = get_world(config.world).catalog.fingerprint()
        if meta.catalog_fingerprint is not None and meta.catalog_fingerprint != fingerprint:
            print(f"shoprank evaluate: warning: the checkpoint was trained on catalog {meta.catalog_fingerprint}, "
                  f"but this evaluation uses catalog {fingerprint} ({config.world.catalog}); the policy has never "
                  "seen these products.", file=sys.stderr)
        return lambda env, seed: agent

    return Plan(args.checkpoint.stem, env_id, config, load)


def baseline_agent(args: argparse.Namespace) -> Plan:
    """The plan for a baseline checkpoint (loaded once per seed, so every seed starts from the saved state)."""
    for flag, value in (("--simulator", args.simulator), ("--plugin", args.plugin or None),
                        ("--trust-plugins", args.trust_plugins or None)):
        if value is not None:
            raise ConfigError(f"{flag} applies to RL checkpoints; {args.checkpoint} is a baseline checkpoint.")
    env_id = args.env or DEFAULT_ENV
    config = resolve_config(env_id, None, args.catalog, args.text_encoder)
    name = read_baseline_meta(args.checkpoint)["name"]  # checked before any evaluation
    path = args.checkpoint
    return Plan(name, env_id, config, lambda: lambda env, seed: load_baseline(path, env))


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="baseline checkpoint folder (baseline.json) or RL checkpoint folder (agent.json + policy.pt)")
    p.add_argument("--name", default=None, help="agent name in the report (default: from the checkpoint)")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("5"), help="count or comma-separated list")
    p.add_argument("--sessions", type=int, default=200, help="sessions per seed")
    p.add_argument("--env", default=None,
                   help=f"registered env id (default: an RL checkpoint's own env, {DEFAULT_ENV} for a baseline); "
                        "for an RL checkpoint it only sets the episode form (max_queries)")
    p.add_argument("--catalog", default=None, help="'synthetic' or a CSV catalog folder (default: the checkpoint's "
                                                   "or the env's)")
    p.add_argument("--text-encoder", default=None, help="override the world's text encoder")
    p.add_argument("--simulator", default=None,
                   help="RL checkpoints: the simulator plug-in 'package.module:factory' (or 'path/file.py:factory') "
                        "to use, instead of the one the checkpoint names ('' = the default shopper)")
    p.add_argument("--plugin", action="append", default=[], metavar="FIELD=NAME",
                   help="RL checkpoints: a plug-in you choose for an env-config field (world.text_encoder, "
                        "world.image_encoder, world.fusion, simulator); repeatable")
    p.add_argument("--trust-plugins", action="store_true",
                   help="RL checkpoints: import the plug-ins the checkpoint names (only for checkpoints you trust)")
    p.add_argument("--with-baselines", default="retriever",
                   help=f"comma-separated reference baselines from {sorted(BASELINES)} ('' for none)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a finished evaluation in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


@command_errors("evaluate")
def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the checkpoint; returns an exit code (0 ok, 2 bad arguments or checkpoint)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be >= 1, got {args.sessions}.")
    check_out(args.out)
    refs = [n.strip() for n in args.with_baselines.split(",") if n.strip()]
    unknown = [n for n in refs if n not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} in --with-baselines; choose from {sorted(BASELINES)}.")
    if not args.checkpoint.exists():
        raise InputNotFoundError(f"checkpoint {args.checkpoint} does not exist.")
    plan = (baseline_agent if is_baseline_checkpoint(args.checkpoint) else rl_agent)(args)
    env_id, config, name = plan.env_id, plan.config, args.name or plan.name
    names = [name, *(ref for ref in refs if ref != name)]
    run_config = {"checkpoint": str(args.checkpoint), "agents": names, "env": env_id, "env_config": config,
                  "seeds": args.seeds, "sessions": args.sessions}
    with RunFolder(args.out, "evaluate", run_config, seeds=args.seeds, overwrite=args.overwrite) as run:
        agents: dict[str, AgentFactory] = {name: plan.load()}  # the expensive part, once --out is taken
        agents.update({ref: baseline_factory(ref, BaselineConfig()) for ref in refs if ref != name})
        env = make_env(env_id, config)
        df = evaluate_agents(agents, env_id, config, args.seeds, args.sessions, env=env,
                             progress=not args.no_progress)
        with run.staging() as staging:
            markdown = write_summary(df, staging, baseline="retriever")["markdown"].read_text()
        run.finish()
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
