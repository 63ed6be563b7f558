"""Log every slate an env shows in the interaction-log format of :mod:`simulators.logs`.

Wrap any ShopRank env (per-query or per-slot); each shown slate becomes ``N`` rows (session, slate,
query, position, item, click, purchase, propensity) that the click-model fitting reads::

    env = InteractionLogger(gym.make("ShopRank-v0"))
    ... run episodes ...
    env.recorder.write("runs/log.csv")      # or env.recorder.to_frame()
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from envs.slot_flags import slot_flags
from simulators.logs import LogRecorder


class InteractionLogger(gym.Wrapper):
    """Records shown slates into a :class:`~simulators.logs.LogRecorder`.

    Args:
        env: A ShopRank env (``ShopRank-v0``, ``ShopRankSeq-v0`` and their static variants).
        recorder: Where rows go (a new one by default).
        propensity: Optional ``(obs, action) -> float (N,)`` probability that the logging policy showed each
            slot's item there (for off-policy estimators); NaN when not given.

    Attributes:
        recorder: The rows logged so far.
        session_id: Number of the current session (incremented on every ``reset``).
    """

    def __init__(self, env: gym.Env, recorder: LogRecorder | None = None,
                 propensity: Callable[[dict, np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__(env)
        self.recorder = recorder if recorder is not None else LogRecorder()
        self.propensity = propensity
        self.session_id = -1
        self._obs: dict | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.session_id += 1
        self._obs = obs
        return obs, info

    def step(self, action):
        query = self.env.unwrapped.core.query.text
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "shown_ids" in info:
            items = np.asarray(info["shown_ids"])
            clicks = slot_flags(info, "clicks", len(items), dtype=bool)
            purchases = slot_flags(info, "purchases", len(items), dtype=bool)
            props = self.propensity(self._obs, action) if self.propensity is not None else np.nan
            self.recorder.record(self.session_id, query, items, clicks, purchases, props)
        self._obs = obs
        return obs, reward, terminated, truncated, info
