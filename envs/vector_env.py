"""``ShopRankVectorEnv``: ``B`` shopping sessions stepped at once with array operations.

The batched form of :class:`~envs.shoprank_env.ShopRankEnv` (``ShopRank-v0``): both run the same array core
(:class:`~envs.core.EnvCore`), the single env with ``B = 1`` and this one with ``B = num_envs``. It is
registered as the ``vector_entry_point`` of ``ShopRank-v0`` and ``ShopRankStatic-v0``::

    vec = gymnasium.make_vec("ShopRank-v0", num_envs=256, vectorization_mode="vector_entry_point",
                             config=EnvConfig(...))

Any simulator runs here: the default shopper in arrays (:class:`~envs.shoppers.DefaultShopperBatch`: its
query bank is retrieved once, one step is a few compiled calls over all ``B`` sessions),
a custom ``config.simulator`` through :class:`~envs.shoppers.LoopShopper` (one call per session). Personalised
retrieval (``personalize_query > 0``) and expected rewards (``RewardSpec.expected``) are supported too.

Random numbers come from one generator, drawn in session order: with ``B = 1`` and the same seed this env
replays the single env exactly (tested), episode after episode; with ``B > 1`` the sessions differ from
``B`` single envs but follow the same distributions (tested).

Autoreset
---------
``metadata["autoreset_mode"]`` is :attr:`AutoresetMode.NEXT_STEP` (Gymnasium 1.x's default): when a
session ends at step ``t`` (``terminated`` or ``truncated``), the observation returned is the final one;
at step ``t + 1`` that sub-env ignores its action, starts a new session and returns its first
observation with reward 0 and ``terminated = truncated = False``. ``autoreset_mode=AutoresetMode.SAME_STEP``
is also supported: the first observation of the new session is returned at step ``t`` itself and the
final one goes to ``info["final_obs"]`` (a batched ``Dict`` of arrays, valid where ``info["_final_obs"]``).

``info`` (per step, arrays over ``B`` with Gymnasium's ``_key`` masks, False for rows that were reset
instead of stepped): ``clicks``, ``purchases``, ``revenue`` ``(B,)``, ``ndcg`` ``(B,)``, ``left`` ``(B,)``,
``clicked`` / ``purchased`` ``bool (B, N)`` (clicked / purchased positions), ``shown_ids`` ``int64 (B, N)``, ``position_rewards``
``float (B, N)`` (each slot's share of the reward) and ``query_index``
``(B,)`` (row of the env's query table; ``env.query_text(i)`` is the text).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from encoders.errors import ConfigError
from envs.config import EnvConfig, resolve_env_config
from envs.core import SCORE_BOUND, EnvCore, episode_end, observation_space
from envs.session import make_simulator
from envs.world import ShopWorld, get_world
from simulators.protocols import UserSimulator


class ShopRankVectorEnv(VectorEnv):
    """``B`` ``ShopRank-v0`` sessions stepped with array operations (see the module docstring).

    Args:
        num_envs: ``B``, sessions stepped at once.
        config: Environment config (shared by all sessions).
        world: A pre-built world to share (built from ``config.world`` when ``None``).
        simulator: Any ``UserSimulator`` (overrides ``config.simulator``); the default shopper is batched in
            arrays, others run one call per session.
        render_mode: Only ``None`` (vector envs do not render here).
        autoreset_mode: :attr:`AutoresetMode.NEXT_STEP` (default) or :attr:`AutoresetMode.SAME_STEP`.
        **_: Ignored (e.g. ``max_episode_steps`` that ``make_vec`` may pass; ``config.max_queries`` rules).

    Observation space: ``batch_space`` of ``ShopRank-v0``'s ``Dict`` (each key gets a leading ``B``); its
    columns are named by ``env.layout`` (:class:`~envs.layout.FeatureLayout`).
    Action space: ``Box(-SCORE_BOUND, SCORE_BOUND, (B, K), float32)``; any finite scores are accepted, a wrong
    shape or a NaN/inf raises ``ValueError``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}
    env_core: type = EnvCore
    """The array core class (a subclass adds rules, e.g. ``ShopRank-v1``'s returns)."""
    extra_info: tuple[str, ...] = ()
    """``info`` keys ``(B,)`` a subclass adds, which :func:`sb3_vec_env` copies into each session's ``infos`` row."""

    def __init__(self, num_envs: int = 1, config: EnvConfig | None = None, world: ShopWorld | None = None,
                 simulator: UserSimulator | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **_: Any) -> None:
        if int(num_envs) < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}.")
        if render_mode is not None:
            raise ConfigError(f"ShopRankVectorEnv does not render; render_mode must be None, got {render_mode!r}.")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ConfigError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {self.autoreset_mode}.")
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.num_envs = int(num_envs)
        self.config = resolve_env_config(config)  # the one validation the single env shares
        self.world = world if world is not None else get_world(self.config.world)
        self.core = self.env_core(self.config, self.world, simulator or make_simulator(self.config, self.world),
                            self.num_envs)
        self.layout = self.core.layout
        k = self.config.n_candidates
        self.single_observation_space = observation_space(self.layout)
        self.single_action_space = spaces.Box(-SCORE_BOUND, SCORE_BOUND, shape=(k,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def query_text(self, index: int) -> str:
        """The query text of ``info["query_index"]`` entry ``index`` (a row of the env's query table)."""
        return self.core.table.text(int(index))

    # -- gymnasium API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start ``B`` sessions (or only those in ``options["reset_mask"]``, ``bool (B,)``).

        ``seed`` must be an ``int`` (one generator drives all sessions) or ``None``.
        """
        if isinstance(seed, (list, tuple)):
            raise ConfigError("ShopRankVectorEnv draws all sessions from one generator: pass one int seed.")
        super().reset(seed=seed)
        rows = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            rows = np.asarray(options["reset_mask"], dtype=bool)
            if rows.shape != (self.num_envs,):
                raise ConfigError(f"options['reset_mask'] must be bool ({self.num_envs},), got shape {rows.shape}.")
            if self.core.sessions is None:
                rows = np.ones(self.num_envs, dtype=bool)
        self.core.start(None if rows.all() else rows, self.np_random)
        self._needs_reset[rows] = False
        q = self.core.sessions.query
        return self.core.observation(), {"query_index": q.copy(), "_query_index": rows.copy()}

    def _check_action(self, actions: Any) -> np.ndarray:
        actions = np.asarray(actions)
        shape = (self.num_envs, self.config.n_candidates)
        if actions.shape != shape:
            raise ValueError(f"actions must have shape {shape}, got {actions.shape}.")
        if actions.dtype.kind == "c":
            raise ValueError(f"actions must be real scores (float or int), got dtype {actions.dtype}.")
        if not np.issubdtype(actions.dtype, np.number) or not np.all(np.isfinite(actions)):
            raise ValueError("actions contain NaN or infinite scores.")
        return actions

    def step(self, actions: np.ndarray):
        """Show the top-``N`` slate of every session and apply the shoppers' responses.

        Args:
            actions: ``float (B, K)`` candidate scores (retriever order).

        Returns:
            ``(obs, rewards (B,), terminated (B,), truncated (B,), info)`` (see the module docstring).
        """
        if self.core.sessions is None:
            raise RuntimeError("call reset() before step().")
        actions = self._check_action(actions)
        cfg, core, rng = self.config, self.core, self.np_random
        b, n = self.num_envs, cfg.slate_size
        stepped = ~self._needs_reset
        if stepped.any():
            # rows to be reset are stepped too (results discarded) when that is harmless to the simulator:
            # cheaper than taking the others apart; at B = 1 nothing is shown then (replays the single env)
            whole = stepped.all() or getattr(core.sim, "steps_ended_sessions", False)
            res = core.show(core.slate_positions(actions), rng, None if whole else np.flatnonzero(stepped))
            reward, left = res.reward, res.left
            terminated, truncated = episode_end(left, core.sessions.n_queries, cfg.max_queries)
            terminated, truncated = terminated & stepped, truncated & stepped
            go_on = np.flatnonzero(stepped & ~(terminated | truncated))
            if len(go_on):
                core.next_queries(go_on, rng)
            info = {"clicks": res.parts[:, 0], "purchases": res.parts[:, 1], "revenue": res.parts[:, 2],
                    "ndcg": res.ndcg, "left": left, "clicked": res.clicks, "purchased": res.purchases,
                    "shown_ids": res.slate,
                    "position_rewards": res.position_rewards}
        else:
            reward, left = np.zeros(b), np.zeros(b, dtype=bool)
            terminated, truncated = np.zeros(b, dtype=bool), np.zeros(b, dtype=bool)
            info = {"clicks": np.zeros(b), "purchases": np.zeros(b), "revenue": np.zeros(b),
                    "ndcg": np.full(b, np.nan), "left": left, "clicked": np.zeros((b, n), dtype=bool),
                    "purchased": np.zeros((b, n), dtype=bool),
                    "shown_ids": np.full((b, n), -1, dtype=np.int64), "position_rewards": np.zeros((b, n))}
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            redo = self._needs_reset
            if redo.any():
                core.start(None if redo.all() else redo, rng)
                reward = np.where(redo, 0.0, reward)
            self._needs_reset = done
            obs = core.observation()
        else:  # SAME_STEP
            obs = core.observation()
            if done.any():
                info["final_obs"] = obs
                info["_final_obs"] = done.copy()
                core.start(None if done.all() else done, rng)
                obs = core.observation()
        info["query_index"] = core.sessions.query.copy()
        info.update({f"_{key}": stepped for key in ("clicks", "purchases", "revenue", "ndcg", "left", "clicked",
                                                    "purchased", "shown_ids", "position_rewards")})
        info["_query_index"] = np.ones(b, dtype=bool)
        return obs, reward.astype(np.float64), terminated, truncated, info

    # -- privileged -----------------------------------------------------------------------------------
    def privileged_utilities(self) -> np.ndarray | None:
        """``float (B, K)`` the shoppers' true utility of every candidate (oracle/metrics only), or ``None``
        when the simulator does not reveal it."""
        return self.core.sim.utilities(self.core.sessions.shopper, self.core.sessions.query, self.core.candidates)


def sb3_vec_env(num_envs: int = 4, config: EnvConfig | None = None, seed: int | None = None,
                env_id: str = "ShopRank-v0", **kwargs: Any):
    """A stable-baselines3 ``VecEnv`` backed by one :class:`ShopRankVectorEnv` (SAME_STEP autoreset): the
    ``vector_entry_point`` registered for ``env_id`` (e.g. ``ShopRank-v1``'s ``ShopRankVisitsVectorEnv``),
    built with ``config``; each row of ``infos`` also carries the vector env's ``extra_info`` keys.

    Drop-in for ``DummyVecEnv([make ShopRank-v0] * num_envs)`` in SB3 (``PPO(policy, sb3_vec_env(8, cfg))``)
    without the per-env Python loop: SB3's conventions are kept (``dones`` = terminated or truncated, the
    final observation in ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]``, and the
    single env's per-step ``info`` keys incl. ``clicked_positions`` and ``purchased_positions``). Building the ``infos`` list is the
    one per-session loop left (SB3's format is a list of dicts).
    """
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv as SB3VecEnv

    class ShopRankSB3VecEnv(SB3VecEnv):
        def __init__(self, env: ShopRankVectorEnv) -> None:
            self.env = env
            super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
            self._actions: np.ndarray | None = None
            self._first_seed = seed

        def reset(self):
            first = self._seeds[0] if self._seeds[0] is not None else self._first_seed
            self._first_seed = None
            obs, _ = self.env.reset(seed=first)
            self._reset_seeds()
            self._reset_options()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = actions

        def step_wait(self):
            obs, reward, term, trunc, info = self.env.step(self._actions)
            done = term | trunc
            final = info.get("final_obs")
            infos = []
            for i in range(self.num_envs):
                row = {"clicks": float(info["clicks"][i]), "purchases": float(info["purchases"][i]),
                       "revenue": float(info["revenue"][i]), "ndcg": float(info["ndcg"][i]),
                       "left": bool(info["left"][i]), "shown_ids": info["shown_ids"][i],
                       "clicked_positions": np.flatnonzero(info["clicked"][i]),
                       "purchased_positions": np.flatnonzero(info["purchased"][i]),
                       "position_rewards": info["position_rewards"][i]}
                row.update({key: info[key][i] for key in extra})
                if done[i]:
                    row["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
                    row["terminal_observation"] = {k: v[i] for k, v in final.items()}
                infos.append(row)
            return obs, reward.astype(np.float32), done, infos

        def close(self) -> None:
            self.env.close()

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

        def set_attr(self, attr_name, value, indices=None) -> None:
            setattr(self.env, attr_name, value)

        def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
            raise NotImplementedError("ShopRankSB3VecEnv batches all sessions in one env: no per-env methods.")

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(list(self._get_indices(indices)))

    vec = vector_env_of(env_id, num_envs, config, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    extra = tuple(getattr(vec, "extra_info", ()))
    return ShopRankSB3VecEnv(vec)


def vector_env_of(env_id: str, num_envs: int, config: EnvConfig | None = None, **kwargs: Any) -> ShopRankVectorEnv:
    """The ``vector_entry_point`` registered for ``env_id`` (e.g. ``ShopRank-v1``'s ``ShopRankVisitsVectorEnv``)
    with ``num_envs`` sessions, built with ``config`` (``None``: the id's registered config) and ``kwargs``
    (``world``, ``autoreset_mode``, ...).

    Raises:
        ConfigError: ``env_id`` is not registered or has no vector entry point.
    """
    import envs  # noqa: F401  (registers the ids)

    spec = gym.registry.get(env_id)
    if spec is None or spec.vector_entry_point is None:
        raise ConfigError(f"env {env_id!r} has no vector entry point; ids that have one: "
                          f"{sorted(k for k, v in gym.registry.items() if k.startswith('ShopRank') and v.vector_entry_point)}.")
    vector_class = load_env_creator(spec.vector_entry_point)
    if config is None:
        config = spec.kwargs.get("config")
    return vector_class(num_envs=num_envs, config=config, **kwargs)


def make_vector_env(num_envs: int = 1, config: EnvConfig | None = None, **kwargs: Any) -> ShopRankVectorEnv:
    """``vector_entry_point`` of ``ShopRank-v0`` / ``ShopRankStatic-v0`` (see :class:`ShopRankVectorEnv`)."""
    return ShopRankVectorEnv(num_envs=num_envs, config=config, **kwargs)


__all__ = ["ShopRankVectorEnv", "make_vector_env", "sb3_vec_env", "vector_env_of"]
_ = gym  # gymnasium is the API this module implements
