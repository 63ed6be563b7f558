"""TensorBoard logging of shopping metrics during SB3 training (keys under ``shop/``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


class ShopMetricsCallback(BaseCallback):
    """Accumulates per-session shopping metrics from the env's ``info`` and logs their means each rollout.

    Logged keys: ``shop/reward``, ``shop/clicks``, ``shop/purchases``, ``shop/revenue`` (per session),
    ``shop/ctr`` (clicks per shown product), ``shop/ndcg`` (mean over slates), ``shop/abandon_rate``
    (sessions ended by the shopper leaving), ``shop/session_length`` (queries), and
    ``shop/ctr_pos_{k}`` (CTR by position). Slate steps are recognised by ``"shown_ids"`` in ``info``.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._open: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._sessions: list[dict[str, float]] = []
        self._ndcg: list[float] = []
        self._pos_clicks: np.ndarray | None = None
        self._pos_shown: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones", np.zeros(len(infos), dtype=bool))
        rewards = self.locals.get("rewards", np.zeros(len(infos)))
        for i, info in enumerate(infos):
            acc = self._open[i]
            acc["reward"] += float(rewards[i])
            if "shown_ids" in info:
                shown = np.asarray(info["shown_ids"]) >= 0
                acc["clicks"] += info["clicks"]
                acc["purchases"] += info["purchases"]
                acc["revenue"] += info["revenue"]
                acc["shown"] += float(shown.sum())
                acc["queries"] += 1
                acc["left"] = float(info.get("left", False))
                if np.isfinite(info.get("ndcg", np.nan)):
                    self._ndcg.append(float(info["ndcg"]))
                if self._pos_clicks is None:
                    self._pos_clicks = np.zeros(len(shown))
                    self._pos_shown = np.zeros(len(shown))
                clicked = np.zeros(len(shown))
                clicked[np.asarray(info["clicked_positions"], dtype=int)] = 1
                self._pos_clicks += clicked
                self._pos_shown += shown
            if dones[i]:
                self._sessions.append(dict(acc))
                del self._open[i]
        return True

    def _on_rollout_end(self) -> None:
        if self._sessions:
            for key in ("reward", "clicks", "purchases", "revenue"):
                self.logger.record(f"shop/{key}", float(np.mean([s.get(key, 0.0) for s in self._sessions])))
            shown = sum(s.get("shown", 0.0) for s in self._sessions)
            self.logger.record("shop/ctr", sum(s.get("clicks", 0.0) for s in self._sessions) / max(shown, 1.0))
            self.logger.record("shop/abandon_rate", float(np.mean([s.get("left", 0.0) for s in self._sessions])))
            self.logger.record("shop/session_length", float(np.mean([s.get("queries", 0.0) for s in self._sessions])))
            self._sessions = []
        if self._ndcg:
            self.logger.record("shop/ndcg", float(np.mean(self._ndcg)))
            self._ndcg = []
        if self._pos_clicks is not None:
            for k, (c, n) in enumerate(zip(self._pos_clicks, self._pos_shown)):
                self.logger.record(f"shop/ctr_pos_{k + 1}", float(c / max(n, 1.0)))
            self._pos_clicks = None
            self._pos_shown = None


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


class HeldOutEvalCallback(BaseCallback):
    """Every ``eval_every`` steps, run the current policy deterministically on held-out shoppers and log
    the same shopping metrics under ``eval/`` (reward, clicks, purchases, revenue, ctr, ndcg,
    abandon_rate, session_length).

    Held-out sessions are reset with ``derive_seed(seed, i, stream=3)``: never the training shoppers.

    Args:
        env: A single env of the kind the model acts in (per-query or per-slot).
        n_sessions: Sessions per evaluation.
        eval_every: Environment steps between evaluations.
        seed: Base seed of the held-out stream.
    """

    def __init__(self, env, n_sessions: int = 100, eval_every: int = 5000, seed: int = 0) -> None:
        super().__init__()
        self.env = env
        self.n_sessions = n_sessions
        self.eval_every = eval_every
        self.seed = seed
        self._next = eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.eval_every
            for key, value in self.evaluate().items():
                self.logger.record(f"eval/{key}", value)
        return True

    def evaluate(self) -> dict[str, float]:
        """Mean shopping metrics over ``n_sessions`` held-out sessions."""
        from agents.logging_policy import derive_seed

        sums: dict[str, float] = defaultdict(float)
        ndcgs: list[float] = []
        masked = hasattr(self.env.unwrapped, "action_masks")
        for i in range(self.n_sessions):
            obs, _ = self.env.reset(seed=derive_seed(self.seed, i, stream=3))
            done = False
            while not done:
                kwargs = {"action_masks": self.env.unwrapped.action_masks()} if masked else {}
                try:
                    action, _ = self.model.predict(obs, deterministic=True, **kwargs)
                except TypeError:
                    action, _ = self.model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, info = self.env.step(action)
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
        n = float(self.n_sessions)
        out = {key: sums[key] / n for key in ("reward", "clicks", "purchases", "revenue", "abandon_rate",
                                                "session_length")}
        out["ctr"] = sums["clicks"] / max(sums["shown"], 1.0)
        out["ndcg"] = float(np.mean(ndcgs)) if ndcgs else float("nan")
        return out
