"""``shoprank train``: train one RL agent, log to TensorBoard, save a checkpoint, evaluate on held-out shoppers.

Also:

* ``shoprank train --resume RUN_DIR [--steps N]`` continues a run from its checkpoint (policy, optimiser,
  step counter, random generators, the sessions in progress; TensorBoard continues at the same step) up to
  ``N`` steps in all (default: the run's own ``total_timesteps``). With ``--checkpoint-every K`` a run saves a
  resumable checkpoint every ``K`` steps, so a killed run loses at most ``K`` steps and one rollout.
* ``shoprank train --init-from CHECKPOINT --logs LOG [--run-dir DIR]`` fine-tunes a trained PPO policy on new
  logged feedback: the warm start's supervised fit (:func:`agents.pretrain.pretrain_scores`, logged clicks)
  started from the checkpoint's weights. ``LOG`` is a ShopRank log written by ``shoprank ope log`` (its recipe
  replays the logged contexts). The result is a checkpoint that ``--resume`` can train further online.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from encoders.errors import CheckpointError, ConfigError, InputNotFoundError, command_errors
from agents.factory import make_env, train_agent, write_learning_curve
from experiments.config import TrainConfig, dump_config, load_config
from experiments.learning_curves import CURVE_FILE, write_learning_curves
from experiments.run_folder import RunFolder, atomic_write_json, atomic_write_text, jsonable


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


def train(config: TrainConfig, run_dir: Path, progress: bool = True, resume: Path | None = None,
          checkpoint_every: int = 0):
    """Train per ``config`` into ``run_dir`` (``config.yaml``, ``tb/``, ``checkpoint/``, ``train.json``, and with
    ``eval_every`` the learning curve: ``learning_curve.csv``, ``learning_curves.png``).

    Args:
        config: What to train.
        run_dir: The run folder.
        progress: Show the progress bar.
        resume: A checkpoint folder with a training state to continue from (``run_dir``'s own): the learning
            curve keeps its earlier points.
        checkpoint_every: Save a resumable checkpoint every this many env steps (0 = at the end only).

    Returns:
        The trained SB3 model.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    from agents.callbacks import TrainingProgressBar
    from agents.checkpoint import PeriodicCheckpoint, join_curves

    steps, unit, what = steps_to_run(config)
    if steps != config.total_timesteps:
        print(f"note: {config.algo} trains in whole rollouts of {unit} env steps ({what}): {steps} steps "
              f"for the {config.total_timesteps} asked (ask a multiple of {unit} to match)", file=sys.stderr)
    bar = TrainingProgressBar(steps, f"train {config.algo} seed {config.seed}", disable=not progress)
    callbacks = [bar]
    earlier = earlier_curve(run_dir / CURVE_FILE) if resume is not None else None
    resumed = {"resumed_at": resumed_at(resume)} if resume is not None else {}  # before the checkpoint is replaced
    earlier_warm_start = earlier_warm_start_record(run_dir) if resume is not None else {}  # a resumed run fits none
    if checkpoint_every > 0:
        callbacks.append(PeriodicCheckpoint(checkpoint_every, config.algo, config.env, config.agent, run_dir,
                                            earlier))
    start = time.perf_counter()
    model = train_agent(config.algo, config.env, config.total_timesteps, seed=config.seed, run_dir=run_dir,
                        config=config.agent, callbacks=callbacks, eval_every=config.eval_every,
                        eval_sessions=config.eval_sessions, resume=resume)
    seconds = time.perf_counter() - start
    if earlier is not None and model.learning_curve:
        model.learning_curve = join_curves(earlier, model.learning_curve)
        write_learning_curve(model.learning_curve, run_dir / CURVE_FILE)
    if model.learning_curve:
        write_learning_curves(run_dir.parent, run_dir, make_env(config.env, False), [config.seed],
                              config.eval_sessions, curves_glob=f"{run_dir.name}/{CURVE_FILE}")
    atomic_write_json(run_dir / "train.json",
                      {"algo": config.algo, "total_timesteps": int(model.num_timesteps),
                       "steps_asked": config.total_timesteps, "seed": config.seed, "wall_seconds": round(seconds, 1),
                       "steps_per_second": round(model.num_timesteps / seconds, 1),
                       **resumed, **(warm_start_record(model) or earlier_warm_start)})
    return model


def warm_start_record(model) -> dict:
    """``{"warm_start": ...}``: what the model's warm start found (``agents.factory.warm_start``'s report: fit
    seconds, loss per epoch, and a ``trust_reward`` fit's estimated return cost), or ``{}`` without one."""
    report = getattr(model, "warm_start_report", None)
    return {"warm_start": report} if report else {}


def earlier_warm_start_record(run_dir: Path) -> dict:
    """``{"warm_start": ...}`` as the run's earlier ``train.json`` recorded it, or ``{}``."""
    path = run_dir / "train.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    return {"warm_start": earlier["warm_start"]} if "warm_start" in earlier else {}


def earlier_curve(path: Path) -> list[dict[str, float]] | None:
    """The learning-curve rows a run wrote before it was interrupted (``None`` when it wrote none)."""
    import pandas as pd

    if not path.is_file():
        return None
    return pd.read_csv(path).to_dict("records")


def resumed_at(folder: Path) -> int:
    """``num_timesteps`` of the training state in checkpoint ``folder``."""
    from agents.checkpoint import STATE_FILE

    return int(json.loads((Path(folder) / STATE_FILE).read_text())["num_timesteps"])


def train_on_rllib(config: TrainConfig, run_dir: Path, env_runners: int, address: str | None) -> int:
    """PPO on the same registered env with Ray RLlib (``experiments.rllib_backend``)."""
    from experiments.rllib_backend import RllibConfig, train_rllib

    if config.algo != "ppo":
        raise ConfigError(f"--backend rllib trains PPO only, got algo {config.algo!r}; use --algo ppo or --backend sb3.")
    rllib = RllibConfig(agent=config.agent, seed=config.seed)
    iterations = -(-config.total_timesteps // rllib.batch_size)
    if config.total_timesteps % rllib.batch_size:
        print(f"note: RLlib trains in iterations of {rllib.batch_size} env steps: "
              f"{iterations * rllib.batch_size} steps for the {config.total_timesteps} asked")
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    summary = train_rllib(config.env, env_runners, iterations, run_dir, address=address, config=rllib)
    atomic_write_text(run_dir / "train.json", json.dumps(
        {k: v for k, v in summary.items() if k != "iterations"}, indent=2, default=str))
    print(f"run folder: {run_dir} (Ray RLlib, {iterations} iterations x {rllib.batch_size} steps)\n"
          f"  checkpoint: {summary['checkpoint']} (shoprank evaluate --checkpoint ...)")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with TrainConfig fields (see configs/).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set agent.learning_rate=1e-3 (repeatable); a bare "
                             "EnvConfig key stands for env.KEY (--set shopper.click_model=PATH)")
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
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                        help="save a resumable checkpoint every STEPS env steps (default 0: at the end only)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its checkpoint, up to --steps in all (default: its "
                             "config's total_timesteps); the policy ends as an uninterrupted run's would")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                        help="fine-tune this trained PPO checkpoint on --logs (the warm start's supervised fit, "
                             "from its weights) into a new run folder")
    parser.add_argument("--logs", type=Path, help="with --init-from: a ShopRank log written by `shoprank ope log`")
    parser.add_argument("--epochs", type=int, help="with --init-from: passes over the logs (default: the "
                                                   "checkpoint's agent.pretrain_epochs)")
    parser.add_argument("--trust-plugins", action="store_true",
                        help="with --init-from: honour plug-in code named by the checkpoint (only if you trust it)")


def env_aliases(overrides: list[str]) -> list[str]:
    """``--set`` items with a bare ``EnvConfig`` key (``shopper.click_model=PATH``) as ``env.`` keys, the alias
    ``shoprank compare`` accepts too; ``TrainConfig``'s own keys are left as they are."""
    from dataclasses import fields

    from envs.config import EnvConfig

    env_keys = {f.name for f in fields(EnvConfig)} - {f.name for f in fields(TrainConfig)}
    return [f"env.{item.strip()}" if item.strip().partition("=")[0].partition(".")[0] in env_keys else item
            for item in overrides]


@command_errors("train")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.checkpoint_every < 0:
        parser.error(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.resume is not None:
        return resume_run(args, parser)
    if args.init_from is not None or args.logs is not None:
        return init_from(args, parser)
    overrides = env_aliases(list(args.overrides))
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
        train(config, run_dir, progress=not args.no_progress, checkpoint_every=args.checkpoint_every)
        run.finish()
    print(f"run folder: {run_dir}\n  TensorBoard: tensorboard --logdir {run_dir / 'tb'}\n"
          f"  checkpoint: {run_dir / 'checkpoint'}")
    return 0



# ----------------------------------------------------------------------------------------------------
# --resume
# ----------------------------------------------------------------------------------------------------
def _only(args: argparse.Namespace, parser: argparse.ArgumentParser, flag: str, allowed: tuple[str, ...]) -> None:
    """Stop when a flag that ``flag`` leaves no room for was given."""
    given = [name for name, value in (("--config", args.config), ("--set", args.overrides), ("--algo", args.algo),
                                      ("--steps", args.steps), ("--seed", args.seed), ("--catalog", args.catalog),
                                      ("--run-dir", args.run_dir), ("--overwrite", args.overwrite),
                                      ("--init-from", args.init_from), ("--logs", args.logs),
                                      ("--resume", args.resume), ("--epochs", args.epochs))
             if value and name != flag and name not in allowed]
    if args.backend != "sb3":
        given.append("--backend")
    if given:
        parser.error(f"{flag} takes the run's own configuration; drop {', '.join(given)}")


def _manifest(run_dir: Path) -> dict:
    from experiments.run_folder import MANIFEST

    path = run_dir / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder of shoprank train (no {MANIFEST}).")
    return json.loads(path.read_text(encoding="utf-8"))


def resume_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--resume RUN_DIR``: continue the run in ``RUN_DIR`` from its checkpoint up to ``--steps`` in all."""
    from agents.checkpoint import resume_folder
    from experiments.run_folder import MANIFEST

    _only(args, parser, "--resume", ("--steps",))
    run_dir = args.resume
    manifest = _manifest(run_dir)
    if manifest.get("command") != "train":
        raise ConfigError(f"{run_dir} holds a run of shoprank {manifest.get('command')}, not of shoprank train.")
    config = load_config(run_dir / "config.yaml", [f"total_timesteps={args.steps}"] if args.steps else [])
    folder = resume_folder(run_dir)
    done = resumed_at(folder)
    if config.total_timesteps <= done:
        raise ConfigError(f"{run_dir} has trained {done} steps already, total_timesteps is {config.total_timesteps}: "
                          f"pass --steps N with N > {done} to train further.")
    with RunFolder(run_dir, "train", config, update=True):
        manifest.update(status="running", pid=os.getpid(), config=jsonable(config),
                        resumed=[*manifest.get("resumed", []),
                                 {"at_step": done, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])
        atomic_write_json(run_dir / MANIFEST, manifest)
        model = train(config, run_dir, progress=not args.no_progress, resume=folder,
                      checkpoint_every=args.checkpoint_every)
        manifest.update(status="finished", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_json(run_dir / MANIFEST, manifest)
    print(f"run folder: {run_dir} (resumed at step {done}, now {model.num_timesteps})\n"
          f"  TensorBoard: tensorboard --logdir {run_dir / 'tb'}\n  checkpoint: {run_dir / 'checkpoint'}")
    return 0


# ----------------------------------------------------------------------------------------------------
# --init-from CHECKPOINT --logs LOG
# ----------------------------------------------------------------------------------------------------
def logged_feedback(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The logged contexts, slates and clicks of a ShopRank log written by ``shoprank ope log``.

    The log's recipe (``<log>.ope.json``) re-creates the contexts: its sessions are replayed in the batched
    ``ShopRankStatic-v0`` with the logged slates, and the replayed clicks must equal the logged ones.

    Returns:
        ``(observations {key: (M, ...)}, shown int64 (M, N) candidate per slot, clicks float32 (M, N))``.

    Raises:
        InputNotFoundError: no log or no recipe.
        ConfigError: a log that does not replay in this build.
    """
    import pandas as pd

    from experiments.ope.cli import RECIPE_FORMAT, RECIPE_SUFFIX
    from experiments.ope.simulate import make_env, run_sessions

    recipe_path = Path(str(path) + RECIPE_SUFFIX)
    if not Path(path).is_file():
        raise InputNotFoundError(f"no log at {path}.")
    if not recipe_path.is_file():
        raise InputNotFoundError(f"{path} has no replay recipe {recipe_path.name}: fine-tuning needs the logged "
                                 "contexts; write the log with `shoprank ope log`.")
    recipe = json.loads(recipe_path.read_text(encoding="utf-8"))
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        raise ConfigError(f"{recipe_path} is not a ShopRank log recipe (format {RECIPE_FORMAT!r}).")
    frame = pd.read_csv(path)
    n, n_slots = int(recipe["n_sessions"]), int(recipe["slate_size"])
    if len(frame) != n * n_slots or "candidate" not in frame:
        raise ConfigError(f"{path} has {len(frame)} rows; its recipe says {n} sessions x {n_slots} slots.")
    logged = frame["candidate"].to_numpy(np.int64).reshape(n, n_slots).copy()
    clicks = frame["click"].to_numpy(bool).reshape(n, n_slots).copy()
    observations: list[dict[str, np.ndarray]] = []
    replayed: list[np.ndarray] = []
    done = [0]

    def step(obs, rng):
        b = np.asarray(obs["mask"]).shape[0]
        chunk = logged[done[0]:done[0] + b]
        slates = np.concatenate([chunk, np.tile(np.arange(n_slots), (b - len(chunk), 1))]) if len(chunk) < b else chunk

        def record(info, take: int) -> None:
            observations.append({k: np.asarray(v)[:take].copy() for k, v in obs.items()})
            replayed.append(np.asarray(info["clicked"])[:take])
            done[0] += take

        return slates, record

    run_sessions(make_env(int(recipe["batch"])), n, int(recipe["seed"]), step)
    if not np.array_equal(np.concatenate(replayed), clicks):
        raise ConfigError(f"{path} does not replay: the env's clicks differ from the logged ones (a log from another "
                          "ShopRank version, catalog or env config).")
    obs = {k: np.concatenate([o[k] for o in observations]) for k in observations[0]}
    return obs, logged, clicks.astype(np.float32)


def fine_tune(checkpoint: Path, logs: Path, run_dir: Path, seed: int = 0, epochs: int | None = None,
              trust_plugins: bool = False, progress: bool = False) -> dict:
    """Fine-tune the PPO policy of ``checkpoint`` on the clicks of ``logs`` into ``run_dir/checkpoint``.

    The policy's candidate scores are fitted to the logged clicks (:func:`agents.pretrain.pretrain_scores`)
    starting from the checkpoint's weights, with the link of its own warm start (``pretrain_target``:
    ``"reward"``, a Poisson log-link fit, here of each slot's click since the logs hold clicks, not purchases
    or revenue; ``"clicks"``, a logistic fit). The result is saved with a training state, so
    ``shoprank train --resume run_dir --steps N`` trains it further online.

    Args:
        checkpoint: A PPO checkpoint folder.
        logs: A log written by ``shoprank ope log`` (see :func:`logged_feedback`).
        run_dir: The new run folder.
        seed: Seeds the minibatch order (and the model built to hold the weights).
        epochs: Passes over the logs (default: the checkpoint's ``pretrain_epochs``).
        trust_plugins: Honour plug-in code named by the checkpoint.
        progress: Progress bar over epochs.

    Returns:
        What ``train.json`` records: ``loss_per_epoch`` (mean loss on the logs, first epoch to last),
        ``target``, ``sessions``, ``init_from``, ``logs``.
    """
    from dataclasses import replace

    from agents.checkpoint import read_checkpoint, read_weights, save_training_checkpoint
    from agents.factory import build_agent
    from agents.pretrain import PretrainConfig, pretrain_scores

    from experiments.ope.simulate import make_env

    meta = read_checkpoint(checkpoint, trust_plugins=trust_plugins)
    if meta.algo != "ppo" or meta.env_id != "ShopRank-v0":
        raise ConfigError(f"--init-from fine-tunes PPO checkpoints of ShopRank-v0 (candidate scores fitted to logged "
                          f"clicks); {checkpoint} holds {meta.algo} trained in {meta.env_id}.")
    logged_env = make_env(1).unwrapped.config  # the env `shoprank ope log` logs in
    for field in ("world", "n_candidates", "slate_size", "history_size"):
        if getattr(meta.env_config, field) != getattr(logged_env, field):
            raise ConfigError(f"{logs} was logged in ShopRankStatic-v0 with its default {field} "
                              f"({getattr(logged_env, field)!r:.120}); {checkpoint} was trained with "
                              f"{getattr(meta.env_config, field)!r:.120}: fine-tuning needs the observations the "
                              "policy was trained on.")
    agent = replace(meta.agent_config, pretrain_epochs=epochs or meta.agent_config.pretrain_epochs)
    observations, shown, clicks = logged_feedback(logs)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(algo="ppo", total_timesteps=1, seed=seed, env=meta.env_config, agent=agent)
    dump_config(config, run_dir / "config.yaml")
    model = build_agent("ppo", meta.env_config, agent, seed, tensorboard_log=str(run_dir / "tb"))
    try:
        model.policy.load_state_dict(read_weights(Path(checkpoint) / "policy.pt"), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint} does not fit its own agent: {' '.join(str(exc).split())}") from None
    pretrain = PretrainConfig(sessions=len(shown), target=agent.pretrain_target, epochs=agent.pretrain_epochs)
    losses = pretrain_scores(model.policy.pi_features_extractor, meta.env_config.n_candidates, observations, shown,
                             clicks, pretrain, seed, progress)
    save_training_checkpoint(model, "ppo", meta.env_config, agent, run_dir, meta.catalog_fingerprint)
    record = {"algo": "ppo", "init_from": str(checkpoint), "logs": str(logs), "sessions": int(len(shown)),
              "epochs": agent.pretrain_epochs, "target": agent.pretrain_target,
              "loss_per_epoch": [round(x, 6) for x in losses], "seed": seed}
    atomic_write_json(run_dir / "train.json", record)
    return record


LOSS_NAMES = {"reward": "Poisson", "net_reward": "Poisson", "clicks": "logistic", "trust_reward": "squared error"}
"""The loss of each warm-start target, as ``--init-from`` reports it."""


def init_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--init-from CHECKPOINT --logs LOG``: fine-tune into a new run folder."""
    if args.init_from is None or args.logs is None:
        parser.error("--init-from and --logs go together: --init-from CHECKPOINT --logs LOG")
    _only(args, parser, "--init-from", ("--logs", "--run-dir", "--seed", "--overwrite", "--epochs"))
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    run_dir = args.run_dir or run_dir_for(args.out, "ppo-finetune")
    seed = args.seed if args.seed is not None else 0
    with RunFolder(run_dir, "train", {"init_from": str(args.init_from), "logs": str(args.logs), "seed": seed},
                   seeds=[seed], overwrite=args.overwrite) as run:
        record = fine_tune(args.init_from, args.logs, run_dir, seed, args.epochs, trust_plugins=args.trust_plugins,
                           progress=not args.no_progress)
        run.finish()
    losses = record["loss_per_epoch"]
    loss = LOSS_NAMES.get(record["target"], record["target"])
    print(f"fine-tuned {args.init_from} on {record['sessions']} logged sessions of {args.logs}: {loss} loss "
          f"{losses[0]:.4f} (epoch 1) -> {losses[-1]:.4f} (epoch {len(losses)})\nrun folder: {run_dir}\n"
          f"  checkpoint: {run_dir / 'checkpoint'} (train it further online: shoprank train --resume {run_dir} "
          "--steps N)")
    return 0
