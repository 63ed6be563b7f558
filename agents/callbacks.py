"""TensorBoard logging of shopping metrics during SB3 training (keys under ``shop/``)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


class ShopMetricsCallback(BaseCallback):
    """Logs shopping metrics as means over the sessions that finished in each logging window.

    The window is the span between two dumps of the SB3 logger (each PPO rollout; every
    ``log_interval`` episodes for DQN): every metric is aggregated over all the sessions that ended in it,
    never a single episode's snapshot, and ``shop/episodes`` says how many that was. Keys:
    ``shop/reward``, ``shop/clicks``, ``shop/purchases``, ``shop/revenue`` (per session),
    ``shop/session_length`` (queries per session), ``shop/abandon_rate`` (share of sessions the shopper
    left), ``shop/ctr`` (clicks per shown product), ``shop/ndcg`` (mean over the sessions' slates) and
    ``shop/ctr_pos_{k}`` (CTR of slot ``k``); in ``ShopRank-v1`` also ``shop/returns`` (returned purchases
    per session), ``shop/visits`` (visits per session) and ``shop/trust`` (the shopper's hidden trust at
    the session's end, for analysis only). Slate steps are recognised by ``"shown_ids"`` in ``info``;
    a session still open at a dump counts in the window where it ends.

    A dump is detected by ``shop/episodes`` having left the logger's pending values
    (``Logger.name_to_value``, which ``Logger.dump`` clears): stable-baselines3 2.x, pinned in
    ``pyproject.toml``.
    """

    KEY = "shop/episodes"

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._open: dict[int, dict[str, Any]] = {}
        self._window: list[dict[str, Any]] = []

    @staticmethod
    def _new_session() -> dict[str, Any]:
        return {"reward": 0.0, "clicks": 0.0, "purchases": 0.0, "revenue": 0.0, "shown": 0.0, "queries": 0.0,
                "left": 0.0, "ndcg": [], "pos_clicks": None, "pos_shown": None, "returns": 0.0,
                "trust": np.nan, "visits": np.nan}

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", np.zeros(len(infos), dtype=bool))
        rewards = self.locals.get("rewards", np.zeros(len(infos)))
        if self._window and self.KEY not in self.logger.name_to_value:  # the logger dumped the last window
            self._window = []
        finished = False
        for i, info in enumerate(infos):
            acc = self._open.setdefault(i, self._new_session())
            acc["reward"] += float(rewards[i])
            if "shown_ids" in info:
                shown = (np.asarray(info["shown_ids"]) >= 0).astype(np.float64)
                clicked = np.zeros(len(shown))
                clicked[np.asarray(info["clicked_positions"], dtype=int)] = 1.0
                for key in ("clicks", "purchases", "revenue"):
                    acc[key] += float(info[key])
                acc["shown"] += float(shown.sum())
                acc["queries"] += 1.0
                acc["left"] = float(info.get("left", False))
                if "visits" in info:  # ShopRank-v1: the relationship over visits
                    acc["returns"] += float(info["returns"])
                    acc["trust"], acc["visits"] = float(info["trust"]), float(info["visits"])
                if np.isfinite(info.get("ndcg", np.nan)):
                    acc["ndcg"].append(float(info["ndcg"]))
                acc["pos_clicks"] = clicked if acc["pos_clicks"] is None else acc["pos_clicks"] + clicked
                acc["pos_shown"] = shown if acc["pos_shown"] is None else acc["pos_shown"] + shown
            if dones[i]:
                self._window.append(self._open.pop(i))
                finished = True
        if finished:
            self._record()
        return True

    def _record(self) -> None:
        """Record the window's aggregates (``record`` overwrites: the values at dump time cover it all)."""
        window = self._window
        for key in ("reward", "clicks", "purchases", "revenue"):
            self.logger.record(f"shop/{key}", float(np.mean([s[key] for s in window])))
        self.logger.record("shop/session_length", float(np.mean([s["queries"] for s in window])))
        self.logger.record("shop/abandon_rate", float(np.mean([s["left"] for s in window])))
        visited = [s for s in window if np.isfinite(s["visits"])]
        if visited:
            for key in ("returns", "trust", "visits"):
                self.logger.record(f"shop/{key}", float(np.mean([s[key] for s in visited])))
        shown = sum(s["shown"] for s in window)
        if shown > 0:
            self.logger.record("shop/ctr", sum(s["clicks"] for s in window) / shown)
        ndcg = [v for s in window for v in s["ndcg"]]
        if ndcg:
            self.logger.record("shop/ndcg", float(np.mean(ndcg)))
        slates = [s for s in window if s["pos_shown"] is not None]
        if slates:
            pos_clicks = np.sum([s["pos_clicks"] for s in slates], axis=0)
            pos_shown = np.sum([s["pos_shown"] for s in slates], axis=0)
            for k, (c, n) in enumerate(zip(pos_clicks, pos_shown)):
                if n > 0:
                    self.logger.record(f"shop/ctr_pos_{k + 1}", float(c / n))
        self.logger.record(self.KEY, len(window))


class TrainingProgressBar(BaseCallback):
    """A progress bar of training alone: env steps done of the total, the mean reward of the last
    ``window`` finished sessions ("reward so far") and the ETA (tqdm's rate estimate).

    It is a separate bar from any evaluation bar (``position`` puts it below one) and closes at the end
    of training.

    Args:
        total: Env steps the run will take (SB3 rounds PPO up to whole rollouts: pass that number).
        desc: Label, e.g. ``"train ppo seed 0"``.
        window: Finished sessions the reward is averaged over.
        position: tqdm line (1 = under an enclosing evaluation bar).
        disable: No bar at all.
    """

    def __init__(self, total: int, desc: str = "train", window: int = 100, position: int = 0,
                 disable: bool = False) -> None:
        super().__init__()
        self.total, self.desc, self.position, self.disable = total, desc, position, disable
        self.finished: deque[float] = deque(maxlen=window)
        self._running: dict[int, float] = {}
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", position=self.position,
                        leave=self.position == 0, disable=self.disable, dynamic_ncols=True)
        self.bar.update(self.num_timesteps)  # a warm start or a resumed model may have counted steps already

    def _on_step(self) -> bool:
        rewards = self.locals.get("rewards", ())
        dones = self.locals.get("dones", np.zeros(len(rewards), dtype=bool))
        for i, reward in enumerate(rewards):
            self._running[i] = self._running.get(i, 0.0) + float(reward)
            if dones[i]:
                self.finished.append(self._running.pop(i))
        step = self.num_timesteps - self.bar.n
        if step > 0:
            if self.finished:
                self.bar.set_postfix(reward=f"{np.mean(self.finished):.3f}", refresh=False)
            self.bar.update(step)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class HParamsCallback(BaseCallback):
    """Writes the run's hyperparameters as TensorBoard's HPARAMS table at the start of training.

    Args:
        hparams: Flat ``name -> number | str | bool`` (e.g. ``dataclasses.asdict(AgentConfig)``).
    """

    def __init__(self, hparams: dict) -> None:
        super().__init__()
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}

    def _on_training_start(self) -> None:
        from stable_baselines3.common.logger import HParam

        self.logger.record("hparams", HParam(self.hparams, {"shop/reward": 0.0, "eval/reward": 0.0}),
                           exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


def held_out_metrics(agent: Any, env, n_sessions: int, seed: int) -> dict[str, float]:
    """Mean shopping metrics of ``agent`` (anything with SB3's ``predict``), acting deterministically, over
    ``n_sessions`` held-out sessions of ``env`` reset with ``derive_seed(seed, i, stream=3)``.

    Returns:
        ``reward, clicks, purchases, revenue, abandon_rate, session_length`` per session, ``ctr`` (clicks
        per shown product) and ``ndcg`` (mean over slates).
    """
    from agents.logging_policy import derive_seed

    sums: dict[str, float] = defaultdict(float)
    ndcgs: list[float] = []
    masked = hasattr(env.unwrapped, "action_masks")
    for i in range(n_sessions):
        obs, _ = env.reset(seed=derive_seed(seed, i, stream=3))
        done = False
        while not done:
            kwargs = {"action_masks": env.unwrapped.action_masks()} if masked else {}
            try:
                action, _ = agent.predict(obs, deterministic=True, **kwargs)
            except TypeError:
                action, _ = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            sums["reward"] += float(reward)
            done = terminated or truncated
            if "shown_ids" in info:
                sums["clicks"] += info["clicks"]
                sums["purchases"] += info["purchases"]
                sums["revenue"] += info["revenue"]
                sums["shown"] += float((np.asarray(info["shown_ids"]) >= 0).sum())
                sums["session_length"] += 1
                if np.isfinite(info.get("ndcg", np.nan)):
                    ndcgs.append(float(info["ndcg"]))
                if done:
                    sums["abandon_rate"] += float(info.get("left", False))
    n = float(n_sessions)
    out = {key: sums[key] / n for key in ("reward", "clicks", "purchases", "revenue", "abandon_rate",
                                            "session_length")}
    out["ctr"] = sums["clicks"] / max(sums["shown"], 1.0)
    out["ndcg"] = float(np.mean(ndcgs)) if ndcgs else float("nan")
    return out


class HeldOutEvalCallback(BaseCallback):
    """A learning curve: at the start of training, every ``eval_every`` steps and at the end, run the current
    policy deterministically on held-out shoppers, log the shopping metrics under ``eval/`` (reward, clicks,
    purchases, revenue, ctr, ndcg, abandon_rate, session_length) and append them to :attr:`curve`.

    Held-out sessions are reset with ``derive_seed(seed, i, stream=3)``: never the training shoppers, nor
    the final comparison's (stream 0). The same sessions serve every evaluation, so the curve's points are
    paired.

    Args:
        env: A single env of the kind the model acts in (per-query or per-slot).
        n_sessions: Sessions per evaluation.
        eval_every: Environment steps between evaluations.
        seed: Base seed of the held-out stream.
        wall_offset: Seconds already spent before ``learn()`` (e.g. a warm start), added to ``wall_s``.

    Attributes:
        curve: One dict per evaluation: ``env_steps``, ``wall_s`` (since the agent started training) and
            the metrics.
    """

    def __init__(self, env, n_sessions: int = 100, eval_every: int = 5000, seed: int = 0,
                 wall_offset: float = 0.0) -> None:
        super().__init__()
        self.env = env
        self.n_sessions = n_sessions
        self.eval_every = eval_every
        self.seed = seed
        self.wall_offset = wall_offset
        self.curve: list[dict[str, float]] = []
        self._next = eval_every
        self._start = 0.0

    def _record(self) -> None:
        metrics = self.evaluate()
        for key, value in metrics.items():
            self.logger.record(f"eval/{key}", value)
        self.curve.append({"env_steps": float(self.num_timesteps),
                           "wall_s": self.wall_offset + time.perf_counter() - self._start, **metrics})

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._next = self.num_timesteps + self.eval_every
        self._record()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.eval_every
            self._record()
        return True

    def _on_training_end(self) -> None:
        if self.curve and self.curve[-1]["env_steps"] < self.num_timesteps:
            self._record()

    def evaluate(self, agent: Any = None) -> dict[str, float]:
        """Mean shopping metrics of ``agent`` (default: the model being trained) on the held-out sessions."""
        return held_out_metrics(self.model if agent is None else agent, self.env, self.n_sessions, self.seed)
