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
