"""Gymnasium environments of ShopRank, registered on import.

* ``ShopRank-v0`` — one step per query of a multi-query session, ``Box(K)`` scores.
* ``ShopRankStatic-v0`` — the same with one query per episode (bandit-style).
  Both have a ``vector_entry_point`` (:class:`envs.vector_env.ShopRankVectorEnv`, array-batched sessions):
  ``gymnasium.make_vec("ShopRank-v0", num_envs=B, vectorization_mode="vector_entry_point")``.
* ``ShopRankSeq-v0`` — one step per slot, ``Discrete(K)`` with ``action_masks()`` (MaskablePPO).
* ``ShopRankSeqStatic-v0`` — the same with one query (one slate) per episode.
* ``ShopRank-v1`` / ``ShopRankSeq-v1`` — one shopper's relationship over several visits: photo gloss,
  returns and hidden trust (:mod:`envs.visits_env`, :mod:`simulators.longterm`); vector entry point
  :class:`envs.visits_env.ShopRankVisitsVectorEnv`.
"""

from __future__ import annotations

import warnings

from gymnasium.envs.registration import register, registry

from envs.config import EnvConfig
from envs.reward import RewardSpec
from envs.seq_env import ShopRankSeqEnv
from envs.shoprank_env import ShopRankEnv
from envs.world import ShopWorld, WorldConfig, get_world

__all__ = ["EnvConfig", "RewardSpec", "SEQUENTIAL_IDS", "ShopRankEnv", "ShopRankSeqEnv", "ShopWorld", "WorldConfig",
           "get_world", "sequential_id", "static_config"]

SEQUENTIAL_IDS: dict[str, str] = {"ShopRank-v0": "ShopRankSeq-v0", "ShopRankStatic-v0": "ShopRankSeqStatic-v0",
                                  "ShopRank-v1": "ShopRankSeq-v1"}
"""Each ``Box``-action env id -> its one-slot-per-step twin (same shoppers, queries and clicks per reset seed
when built with the same config and world): where agents with ``sequential = True`` train and are evaluated."""


def sequential_id(env_id: str) -> str:
    """The sequential twin of ``env_id`` (:data:`SEQUENTIAL_IDS`; a sequential id maps to itself).

    Raises:
        ConfigError: for an id with no sequential twin.
    """
    if env_id in SEQUENTIAL_IDS.values():
        return env_id
    if env_id not in SEQUENTIAL_IDS:
        from encoders.errors import ConfigError

        raise ConfigError(f"env {env_id!r} has no sequential (one slot per step) form; ids that have one: "
                          f"{sorted(SEQUENTIAL_IDS)}.")
    return SEQUENTIAL_IDS[env_id]


def static_config(**overrides) -> EnvConfig:
    """An :class:`EnvConfig` for one query per episode."""
    return EnvConfig(**{"max_queries": 1, **overrides})


# ShopRank-v1 is a different env (the long-term relationship), not a newer ShopRank-v0: gymnasium's
# "ShopRank-v0 is out of date, consider upgrading to v1" would mislead, so it is silenced for these ids only.
warnings.filterwarnings("ignore", message=r".*The environment ShopRank(Seq)?-v0 is out of date",
                        category=DeprecationWarning)


def _register() -> None:
    if "ShopRank-v0" not in registry:
        register(id="ShopRank-v0", entry_point="envs.shoprank_env:ShopRankEnv",
                 vector_entry_point="envs.vector_env:ShopRankVectorEnv")
    if "ShopRankStatic-v0" not in registry:
        register(id="ShopRankStatic-v0", entry_point="envs.shoprank_env:ShopRankEnv",
                 vector_entry_point="envs.vector_env:ShopRankVectorEnv", kwargs={"config": static_config()})
    if "ShopRankSeq-v0" not in registry:
        register(id="ShopRankSeq-v0", entry_point="envs.seq_env:ShopRankSeqEnv")
    if "ShopRankSeqStatic-v0" not in registry:
        register(id="ShopRankSeqStatic-v0", entry_point="envs.seq_env:ShopRankSeqEnv",
                 kwargs={"config": static_config()})
    from envs.visits_env import v1_config

    if "ShopRank-v1" not in registry:
        register(id="ShopRank-v1", entry_point="envs.visits_env:ShopRankVisitsEnv",
                 vector_entry_point="envs.visits_env:ShopRankVisitsVectorEnv", kwargs={"config": v1_config()})
    if "ShopRankSeq-v1" not in registry:
        register(id="ShopRankSeq-v1", entry_point="envs.visits_env:ShopRankSeqVisitsEnv",
                 kwargs={"config": v1_config()})


_register()
