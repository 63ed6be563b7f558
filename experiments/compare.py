"""``shoprank compare``: agents × seeds × sessions with common random numbers, CIs and paired differences.

Example::

    shoprank compare --agents random,retriever,linucb,lambdamart,oracle,ppo --seeds 5 --sessions 200 \\
        --env ShopRankStatic-v0 --catalog synthetic --out runs/compare --train-steps 50000

Baselines (``random, retriever, popularity, price, linucb, thompson, lambdamart, profile_oracle, oracle``)
are built by :func:`agents.baselines.make_baseline`; RL agents (the presets of
``agents.factory.AGENT_PRESETS``: ``ppo, ppo_scratch, dqn, dqn_scratch, maskable_ppo``) are trained per seed by
``agents.factory.train_agent(name, env_config, total_timesteps, seed, run_dir)`` into
``OUT/train/<name>/seed<k>`` and then evaluated deterministically; ``--agent-set KEY=VALUE`` changes
their ``AgentConfig``. The report (``summary.csv``, ``paired.csv``, ``reward_shares.csv``, ``summary.md``,
plots) lands in ``OUT``.

``OUT`` is a run folder (:mod:`experiments.run_folder`): locked while the comparison runs, with a
``manifest.json`` (config, versions, seeds, git commit, status), every file written atomically. Each
finished (agent, seed) cell is saved at once under ``OUT/cells/``; a comparison that was killed resumes
when rerun with the same arguments (finished cells kept, the rest rerun; the report is the same as an
uninterrupted run's). A finished ``OUT`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym

from encoders.errors import ConfigError, InputNotFoundError, ShopRankError, command_errors
from agents.baselines import BASELINES, BaselineConfig, LambdaMARTConfig, baseline_factory
from experiments.evaluate import AgentFactory, evaluate_agents, make_env, resolve_config, write_summary
from experiments.learning_curves import write_learning_curves
from experiments.rllib_backend import rllib_factory
from experiments.run_folder import CellStore, RunFolder

RL_AGENTS = ("ppo", "ppo_pretrained", "ppo_scratch", "ppo_longterm", "ppo_longterm_pretrained", "dqn", "dqn_pretrained",
             "dqn_scratch", "maskable_ppo")
"""Agents trained by ``agents.factory.train_agent`` (presets in ``agents.factory.AGENT_PRESETS``)."""
RAY_AGENTS = {"rllib_ppo": rllib_factory}
"""Agents trained through Ray RLlib (the ``distributed`` extra): name -> factory builder (see
:func:`experiments.rllib_backend.rllib_factory`)."""
CURVE_SESSIONS = 100
"""Held-out sessions per point of the RL agents' learning curves (and of their reference levels)."""
DEFAULT_AGENTS = "random,retriever,popularity,price,linucb,thompson,lambdamart,profile_oracle,oracle"


def parse_seeds(text: str) -> list[int]:
    """``"5"`` -> ``[0, 1, 2, 3, 4]``; ``"3,7,11"`` -> ``[3, 7, 11]``."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            seeds = list(range(count))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds takes a count (e.g. 5) or a comma-separated list of seeds (e.g. 0,1,2), got {text!r}.") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise argparse.ArgumentTypeError(f"--seeds must be distinct and non-empty, got {text!r}.")
    if min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds must be >= 0, got {text!r}.")
    return seeds


TRAIN_ONLY_KEYS = ("algo", "total_timesteps", "seed", "eval_every", "eval_sessions")
"""``TrainConfig`` keys that ``compare`` sets with its own flags (``--agents``, ``--train-steps``, ``--seeds``)."""


def split_overrides(overrides: Sequence[str], agent_overrides: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """``--set`` items with ``shoprank train``'s keys -> ``(EnvConfig overrides, AgentConfig overrides)``.

    One override syntax for every command: ``env.<EnvConfig field>=value`` (e.g. ``env.world.image_weight=0``)
    and ``agent.<AgentConfig field>=value`` (every RL agent's preset). The older forms remain aliases: a bare
    EnvConfig key (``world.image_weight=0``) and ``--agent-set <AgentConfig field>=value``.

    Raises:
        ConfigError: for a ``TrainConfig`` key ``compare`` sets with a flag of its own (``total_timesteps``...).
    """
    env, agent = [], list(agent_overrides)
    for item in overrides:
        item = item.strip()
        head, dot, rest = item.partition(".")
        if dot and head in ("env", "agent"):
            (env if head == "env" else agent).append(rest)
        elif item.partition("=")[0].strip() in TRAIN_ONLY_KEYS:
            raise ConfigError(f"--set {item!r}: compare sets this with its own flags (--agents, --train-steps, "
                              "--seeds); --set takes env.<EnvConfig field> or agent.<AgentConfig field>.")
        else:
            env.append(item)
    return env, agent


def preflight(names: Sequence[str], env: gym.Env, env_id: str, baseline_config: BaselineConfig,
              agent_overrides: Sequence[str] = ()) -> None:
    """Build each baseline in ``names`` on ``env`` and let it rank one query, and check each RL agent's needs of
    the simulator, before anything trains.

    Catches an agent that cannot work with this env or simulator (e.g. ``oracle``, or an RL agent trained on
    expected rewards, with a custom shopper that has no ``expected_response``) in seconds instead of after
    other agents' training. Offline learners are fitted to a few logged sessions only (the check is about
    compatibility, not quality).

    Raises:
        ConfigError: naming the agent and what it lacks.
    """
    from dataclasses import replace

    quick = replace(baseline_config, n_log_sessions=min(baseline_config.n_log_sessions, 20))
    for name in (n for n in names if n in BASELINES):
        try:
            agent = baseline_factory(name, quick)(env, 0)
            obs, _ = env.reset(seed=0)
            agent.predict(obs, deterministic=True)
        except (ShopRankError, TypeError) as exc:
            raise ConfigError(f"agent {name!r} cannot run in {env_id} with this config: {exc} "
                              "(checked before any training; nothing was trained)") from exc
    core = getattr(env.unwrapped, "core", None)
    for name, config in rl_agent_configs(names, agent_overrides).items():
        if config["online"] and config["expected_reward"] and core is not None and not core.privileged:
            raise ConfigError(f"agent {name!r} cannot run in {env_id} with this config: it trains on expected rewards "
                              f"(expected_reward=True), which need a simulator with expected_response; "
                              f"{type(core.sim).__name__} has none. Add --agent-set expected_reward=false "
                              "(checked before any training; nothing was trained)")


WARM_STARTS = "_warm_starts"
"""Folder of a compare run's ``train/`` where warm-started weights are shared between agents with the same warm
start and seed (``ppo_pretrained`` and ``ppo``; :func:`agents.factory.warm_start`)."""


def rl_factory(name: str, env_config: Any, total_timesteps: int, run_root: Path,
               agent_overrides: Sequence[str] = (), curve_points: int = 10, curve_sessions: int = CURVE_SESSIONS,
               progress: bool = False, env_id: str = "ShopRank-v0") -> AgentFactory:
    """``(env, seed) -> agent`` that trains ``name`` with ``agents.factory.train_agent`` for that seed.

    ``agent_overrides`` (``"field=value"``) change the preset's ``AgentConfig`` (validated here, before
    anything trains). A preset with ``online=False`` (the warm start alone) takes no online step. Each
    run writes its learning curve (``curve_points`` held-out evaluations of ``curve_sessions`` sessions;
    0 = none). With ``progress``, training shows its own bar (steps, reward so far, ETA) under the evaluation's.
    Training runs in ``env_id`` (the compared env; its sequential twin for sequential algorithms). Agents with
    the same algorithm, configs and seed fit their warm start once (``run_root/_warm_starts``), so the warm
    start alone and the warm start + online RL share it exactly."""
    from agents.callbacks import TrainingProgressBar
    from agents.factory import AGENT_PRESETS, train_agent

    preset = AGENT_PRESETS[name]
    config = preset_config(name, agent_overrides)

    def build(env: gym.Env, seed: int) -> Any:
        run_dir = run_root / name / f"seed{seed}"
        if run_dir.exists():  # left by an interrupted attempt at this (unfinished) cell: start it afresh
            shutil.rmtree(run_dir)
        steps = total_timesteps if preset.online else 0
        every = max(steps // curve_points, 1) if curve_points > 0 else 0
        bar = TrainingProgressBar(steps, f"train {name} seed {seed}", position=1, disable=not progress)
        return train_agent(preset.algo, env_config, steps, seed, run_dir, config=config, eval_every=every,
                           eval_sessions=curve_sessions, callbacks=[bar], env_id=env_id,
                           warm_cache=run_root / WARM_STARTS)

    return build


def build_agents(names: Sequence[str], env_config: Any, train_steps: int, run_root: Path,
                 baseline_config: BaselineConfig = BaselineConfig(),
                 agent_overrides: Sequence[str] = (), progress: bool = False,
                 env_id: str = "ShopRank-v0", curve_points: int = 10) -> dict[str, AgentFactory]:
    """Name -> factory for every requested agent; unknown names raise ``ValueError`` listing the choices."""
    known = {**{n: (lambda n=n: baseline_factory(n, baseline_config)) for n in BASELINES},
             **{n: (lambda n=n: rl_factory(n, env_config, train_steps, run_root, agent_overrides,
                                          curve_points=curve_points, progress=progress, env_id=env_id))
                for n in RL_AGENTS},
             **{n: (lambda f=f: f(env_config, train_steps, run_root, agent_overrides, progress=progress, env_id=env_id))
                for n, f in RAY_AGENTS.items()}}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown agent(s) {unknown}; choose from {sorted(known)}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"agents must be distinct, got {list(names)}.")
    return {n: known[n]() for n in names}


def checkpoint_agents(items: Sequence[str], taken: Sequence[str]) -> dict[str, AgentFactory]:
    """``--checkpoint NAME=DIR`` items -> factories of saved RL policies (loaded once, data only; the same policy
    for every seed), refusing a name already taken or a checkpoint whose observation layout is not the env's."""
    from agents.checkpoint import load_agent

    agents: dict[str, AgentFactory] = {}
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint {item!r} must look like NAME=DIR (e.g. student=runs/student).")
        if name in taken or name in agents:
            raise ConfigError(f"--checkpoint name {name!r} is already used by another agent.")
        if not Path(path).exists():
            raise InputNotFoundError(f"checkpoint {path} does not exist.")
        agent = load_agent(Path(path))

        def factory(env: gym.Env, seed: int, agent=agent, path=path) -> Any:
            agent.policy.feature_layout.check_matches(env.unwrapped.layout, f"checkpoint {path}")
            return agent

        agents[name] = factory
    return agents


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--agents", default=DEFAULT_AGENTS,
                   help=f"comma-separated agents: baselines {sorted(BASELINES)} and RL agents "
                        f"{list(RL_AGENTS) + list(RAY_AGENTS)}")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("5"),
                   help="number of seeds (0..n-1) or a comma-separated list")
    p.add_argument("--sessions", type=int, default=200, help="evaluation sessions per seed")
    p.add_argument("--env", default="ShopRankStatic-v0", help="registered env id")
    p.add_argument("--catalog", default=None, help="'synthetic' or a CSV catalog folder (default: the env's)")
    p.add_argument("--text-encoder", default=None, help="override the world's text encoder (e.g. 'hashing')")
    p.add_argument("--out", type=Path, required=True, help="output folder for the report")
    p.add_argument("--train-steps", type=int, default=50_000, help="training timesteps per RL agent and seed")
    p.add_argument("--curve-points", type=int, default=10,
                   help="held-out evaluations per RL training run for its learning curve (0 = no curve)")
    p.add_argument("--log-sessions", type=int, default=1000,
                   help="logged sessions of the random logging policy for popularity / lambdamart")
    p.add_argument("--baseline", default=None,
                   help="agent the paired differences are taken against (default: retriever, when compared)")
    p.add_argument("--ci-over", default="auto", choices=["auto", "seeds", "sessions"],
                   help="CI unit: per-seed means or all sessions (auto: seeds when >= 5 seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (or an unfinished one with another config); an "
                        "unfinished run with the same config is resumed: its finished (agent, seed) cells are kept")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field with shoprank train's keys: env.<EnvConfig field> (e.g. "
                        "env.world.image_weight=0) or agent.<AgentConfig field> of every RL agent's preset (e.g. "
                        "agent.pretrain_sessions=10000); repeatable")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=DIR",
                   help="also evaluate a saved RL checkpoint (e.g. a distilled student) under NAME, the same policy "
                        "for every seed; repeatable")
    p.add_argument("--agent-set", dest="agent_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="older alias of --set agent.KEY=VALUE")
    return p


def _jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else value


def preset_config(name: str, agent_overrides: Sequence[str] = ()) -> Any:
    """The ``AgentConfig`` RL preset ``name`` runs with in a comparison: its own, ``agent_overrides``
    (``"field=value"``) applied and validated."""
    from agents.factory import AGENT_PRESETS
    from experiments.config import apply_overrides

    preset = AGENT_PRESETS[name]
    return apply_overrides(preset.config, list(agent_overrides)) if agent_overrides else preset.config


def rl_agent_configs(names: Sequence[str], agent_overrides: Sequence[str] = ()) -> dict[str, dict]:
    """``name -> AgentConfig`` (as a dict, overrides applied) of each RL preset in ``names``: part of a run's
    config, so an unfinished run is not resumed after a preset changed (its finished cells would mix the two)."""
    from agents.factory import AGENT_PRESETS

    out = {}
    for name in (n for n in names if n in AGENT_PRESETS):
        preset = AGENT_PRESETS[name]
        out[name] = {"algo": preset.algo, "online": preset.online, **asdict(preset_config(name, agent_overrides))}
    return out


@command_errors("compare")
def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; returns a process exit code (0 ok, 2 bad arguments)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error(f"--sessions must be >= 1, got {args.sessions}.")
    if args.train_steps < 1:
        parser.error(f"--train-steps must be >= 1, got {args.train_steps}.")
    if args.log_sessions < 1:
        parser.error(f"--log-sessions must be >= 1, got {args.log_sessions}.")
    if args.curve_points < 0:
        parser.error(f"--curve-points must be >= 0, got {args.curve_points}.")
    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    if not names:
        parser.error(f"--agents names no agent: {args.agents!r}.")
    env_overrides, agent_overrides = split_overrides(args.overrides, args.agent_overrides)
    config = resolve_config(args.env, None, args.catalog, args.text_encoder)
    if env_overrides:
        from experiments.config import apply_overrides

        config = apply_overrides(config, env_overrides)
    if agent_overrides:  # checked even when no RL agent is compared: a typo must not pass silently
        from agents.factory import AgentConfig
        from experiments.config import apply_overrides

        apply_overrides(AgentConfig(), agent_overrides)
    baseline_config = BaselineConfig(n_log_sessions=args.log_sessions, lambdamart=LambdaMARTConfig())
    agents = build_agents(names, config, args.train_steps, args.out / "train", baseline_config,
                          agent_overrides, progress=not args.no_progress, env_id=args.env,
                          curve_points=args.curve_points)
    agents.update(checkpoint_agents(args.checkpoint, names))
    names += [name for name in agents if name not in names]
    preflight(names, make_env(args.env, config), args.env, baseline_config, agent_overrides)
    if args.baseline is not None and args.baseline not in names:
        raise ConfigError(f"--baseline {args.baseline!r} must be one of the compared agents {names}.")
    run_config = {"agents": names, "seeds": args.seeds, "sessions": args.sessions, "env": args.env,
                  "env_config": _jsonable(config), "baseline_config": _jsonable(baseline_config),
                  "train_steps": args.train_steps, "agent_overrides": agent_overrides,
                  "agent_configs": rl_agent_configs(names, agent_overrides),
                  **({"checkpoints": args.checkpoint} if args.checkpoint else {}),
                  **({"curve_points": args.curve_points} if args.curve_points != 10 else {})}
    with RunFolder(args.out, "compare", run_config, seeds=args.seeds, overwrite=args.overwrite,
                   resumable=True) as run:
        run.write_json("compare_config.json", {"argv": list(argv) if argv is not None else sys.argv[1:],
                                               **run_config})
        cells = CellStore(run.file("cells"), args.sessions)
        if run.resumed:
            print(f"{len(cells.done())} of {len(names) * len(args.seeds)} (agent, seed) cells finished earlier: "
                  "kept; the rest run now", file=sys.stderr)
        start = time.time()
        env = make_env(args.env, config)
        df = evaluate_agents(agents, args.env, config, args.seeds, args.sessions, env=env,
                             progress=not args.no_progress, cells=cells)
        with run.staging() as staging:
            paths = write_summary(df, staging, baseline=args.baseline or "retriever", ci_over=args.ci_over)
            write_learning_curves(args.out / "train", staging, env, args.seeds, CURVE_SESSIONS)
            markdown = paths["markdown"].read_text()
        run.finish()
    print(markdown)
    print(f"\n{len(names)} agents x {len(args.seeds)} seeds x {args.sessions} sessions in "
          f"{time.time() - start:.0f}s; report in {args.out}/ (summary.csv, paired.csv, summary.md, *.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
