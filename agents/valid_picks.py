"""Run agents that ignore action masks (stock SB3 ``DQN``, ``A2C``, ...) in ``ShopRankSeq-v0``.

``ShopRankSeq-v0`` refuses a masked pick (a candidate already placed in the slate, or a padded one) with a
``ValueError``: its agents are meant to read ``env.action_masks()`` (``MaskablePPO``, ShopRank's own
``dqn``). An algorithm that cannot read masks would crash on its first masked pick; wrapped in
:class:`ValidPicks` it runs, each masked pick replaced by a valid one::

    from stable_baselines3 import DQN
    env = ValidPicks(gymnasium.make("ShopRankSeq-v0", config=EnvConfig(...)))
    DQN("MultiInputPolicy", env).learn(10_000)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class ValidPicks(gym.Wrapper):
    """Replaces a masked pick with the next valid candidate in the retriever's order.

    Action ``a`` of ``Discrete(K)`` becomes the first index ``>= a`` where ``action_masks()`` is True
    (wrapping around to 0), so a policy that picks a placed candidate gets the next one down the list it
    ranked from. ``info["picked"]`` is the candidate actually placed and ``info["remapped"]`` says whether
    it differs from the action (the share of remapped picks tells how often the policy ignored the mask).

    Args:
        env: ``ShopRankSeq-v0`` or ``ShopRankSeqStatic-v0`` (anything with ``action_masks()``).
    """

    def __init__(self, env: gym.Env) -> None:
        if not callable(getattr(env.unwrapped, "action_masks", None)):
            raise TypeError(f"ValidPicks wraps an env with action_masks() (ShopRankSeq-v0), got {env.unwrapped}.")
        super().__init__(env)

    def action_masks(self) -> np.ndarray:
        """``bool (K,)`` of the wrapped env (so mask-aware agents still see it)."""
        return self.env.unwrapped.action_masks()

    def valid_pick(self, action: Any) -> int:
        """The candidate index that :meth:`step` places for ``action``."""
        mask = self.action_masks()
        k = len(mask)
        index = int(np.asarray(action).flat[0]) % k
        order = np.roll(np.arange(k), -index)  # index, index + 1, ..., K - 1, 0, ..., index - 1
        return int(order[np.argmax(mask[order])])

    def step(self, action: Any):
        pick = self.valid_pick(action)
        obs, reward, terminated, truncated, info = self.env.step(pick)
        return obs, reward, terminated, truncated, {**info, "picked": pick,
                                                    "remapped": pick != int(np.asarray(action).flat[0])}
