"""Baseline rankers behind SB3's ``predict(obs, deterministic=True) -> (action, None)`` interface.

Every baseline turns an observation of the Box-action envs (``ShopRank-v0``, ``ShopRankStatic-v0``) into
one score per candidate and returns it as an action. Actions are **rank-coded**: the best candidate gets
``1.0``, the worst ``-1.0``, evenly spaced, padding last — so actions stay inside the env's
``Box(-1, 1, (K,))`` (a ``ClipAction`` wrapper cannot reorder them) and ties keep the retriever's order.

| name | what it ranks by | learns |
|------|------------------|--------|
| ``random`` | uniform scores from its own seeded ``np.random.Generator`` | no |
| ``retriever`` | the retriever's order (``1 - rank/K`` feature) | no |
| ``popularity`` | ``log1p`` of per-item click counts from logged sessions | offline (``fit``) |
| ``price`` | ascending price (``-price_z``) | no |
| ``linucb`` | ridge estimate + ``alpha`` x confidence width over :func:`candidate_features` | online (``update``) |
| ``thompson`` | a posterior sample of the ridge model (linear Thompson sampling) | online (``update``) |
| ``lambdamart`` | LightGBM lambdarank trained on logged clicks of a random logging policy | offline (``fit``) |
| ``oracle`` | privileged expected immediate reward (``env.unwrapped.privileged_scores()``) | no |
| ``profile_oracle`` | the same for the shopper estimated from the observation alone (the simulator's ``observable_state``): the ceiling of an observation-only myopic ranker | no |
| ``planner`` | privileged long-term value in ``ShopRank-v1`` (``env.unwrapped.planner_scores()``: immediate value - expected refund + value of the trust change) | no |
| ``profile_planner`` | the same planning on what a shop can know (profile estimate, prior trust, returns expected from gloss and price) | no |
| ``profile_net`` | ``profile_planner`` without the value of trust: expected reward net of the expected refund (a return-aware myopic ranker) | no |

Online bandits learn from clicks: after each step the evaluator calls ``update(obs, action, info)`` with
the observation the action was chosen for; each shown candidate is one sample with reward 1 if clicked
(per-slot purchases are not in ``info``; clicks are the per-item signal). Position bias is not corrected.

Checkpoints (:meth:`Baseline.save`, :func:`load_baseline`) are a folder with ``baseline.json``
(name + parameters), and where there is state ``arrays.npz`` (loaded with ``allow_pickle=False``) or
``model.txt`` (LightGBM's text format). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import gymnasium as gym
import numpy as np

from encoders.errors import CheckpointError, ConfigError, InputNotFoundError, MissingDependencyError
from agents.logging_policy import collect_logs, shown_candidates
from envs.layout import FeatureLayout

CHECKPOINT_VERSION = 1
META_FILE = "baseline.json"
ARRAYS_FILE = "arrays.npz"
MODEL_FILE = "model.txt"
REQUIRED_KEYS = ("candidates", "mask")

Obs = Mapping[str, np.ndarray]


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def scores_to_action(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rank-code scores into an action in ``[-1, 1]`` with the same slate.

    Args:
        scores: ``(K,)`` any real scores (``-inf`` allowed, ``nan`` treated as ``-inf``).
        mask: ``(K,)`` 1 for a real candidate, 0 for padding.

    Returns:
        ``float32 (K,)``: ``linspace(1, -1, K)`` assigned in score order (descending, ties in the
        retriever's order, padding last).
    """
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    k = len(scores)
    keyed = np.where(np.asarray(mask) > 0, -scores, np.inf)
    order = np.argsort(keyed, kind="stable")
    action = np.empty(k, dtype=np.float32)
    action[order] = np.linspace(1.0, -1.0, k) if k > 1 else np.ones(1)
    return action


def _check_obs(obs: Any, who: str) -> None:
    if not isinstance(obs, Mapping):
        raise TypeError(f"{who}.predict expects a dict observation, got {type(obs).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in obs]
    if missing:
        raise KeyError(f"{who}.predict: observation is missing keys {missing}; "
                       f"a ShopRank observation has {list(REQUIRED_KEYS)} and more.")
    cand, mask = np.asarray(obs["candidates"]), np.asarray(obs["mask"])
    if cand.ndim not in (2, 3) or cand.shape[:-1] != mask.shape:
        raise ValueError(f"{who}.predict: obs['candidates'] must be (K, F) or (B, K, F) matching "
                         f"obs['mask'] (K,) or (B, K); got {cand.shape} and {mask.shape}.")


def candidate_features(obs: Obs) -> np.ndarray:
    """Per-candidate features for the bandits and LambdaMART.

    ``phi_j = [1, x_j, vec(p ⊗ x_j)]`` where ``x_j`` is candidate ``j``'s row of ``obs["candidates"]``
    (fused vector + retriever score, rank, price z, has-photo) and ``p`` the shopper profile (segment,
    noisy taste, noisy price sensitivity): the profile × candidate products let a linear model learn
    a shopper's visual taste and price sensitivity.

    Args:
        obs: One observation (``candidates (K, C)``, ``profile (P,)``; a missing profile counts as empty).

    Returns:
        ``float32 (K, 1 + C + P*C)``.
    """
    x = np.asarray(obs["candidates"], dtype=np.float32)
    p = np.asarray(obs.get("profile", np.zeros(0)), dtype=np.float32)
    k = x.shape[0]
    inter = (p[None, :, None] * x[:, None, :]).reshape(k, -1)
    return np.concatenate([np.ones((k, 1), dtype=np.float32), x, inter], axis=1)


def _unwrap_env(env: gym.Env | None, who: str) -> Any:
    if env is None:
        raise ValueError(f"{who} needs the environment it ranks for: pass env=...")
    return env.unwrapped


# ----------------------------------------------------------------------------------------------------
# base
# ----------------------------------------------------------------------------------------------------
class Baseline:
    """A score-per-candidate policy with SB3's ``predict`` signature.

    Subclasses implement :meth:`scores` for one (unbatched) observation; :meth:`predict` handles
    validation, batching (``(B, K, F)`` observations) and rank-coding.
    """

    name: ClassVar[str] = ""
    env_bound: ClassVar[bool] = False
    """True when scores read the live env (oracle, popularity): batched observations need ``B == 1``."""

    def scores(self, obs: Obs) -> np.ndarray:
        """``(K,)`` scores of one observation; higher is shown higher."""
        raise NotImplementedError

    def predict(self, obs: Obs, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3-style prediction.

        Args:
            obs: ``candidates (K, F+4)``, ``mask (K,)``, ``profile (P,)``, ... or the same with a batch axis.
            state, episode_start: Ignored (no recurrent state).
            deterministic: Ignored: ``random`` and ``thompson`` always sample from their own seeded
                generator (sampling is how Thompson explores).

        Returns:
            ``(float32 (K,) or (B, K) action, None)``.
        """
        _check_obs(obs, type(self).__name__)
        if np.asarray(obs["candidates"]).ndim == 2:
            return scores_to_action(self.scores(obs), obs["mask"]), None
        batch = np.asarray(obs["candidates"]).shape[0]
        if self.env_bound and batch != 1:
            raise ValueError(f"{type(self).__name__} reads its one env's state: batched observations must "
                             f"have batch size 1, got {batch}.")
        rows = [{key: np.asarray(value)[b] for key, value in obs.items()} for b in range(batch)]
        return np.stack([scores_to_action(self.scores(row), row["mask"]) for row in rows]), None

    def update(self, obs: Obs, action: np.ndarray, info: Mapping[str, Any]) -> None:
        """Learning hook called by the evaluator after each step (no-op for non-learning baselines)."""

    # -- checkpoints ----------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-serialisable constructor parameters."""
        return {}

    def _save_state(self, folder: Path) -> None:
        """Write state files next to ``baseline.json`` (none by default)."""

    def _load_state(self, folder: Path) -> None:
        """Read what :meth:`_save_state` wrote."""

    def save(self, path: str | Path) -> Path:
        """Save to folder ``path`` (created): ``baseline.json`` plus any state file. Returns the folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": "shoprank-baseline", "version": CHECKPOINT_VERSION, "name": self.name,
                "params": self.params()}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        self._save_state(folder)
        return folder

    @classmethod
    def _from_params(cls, params: dict[str, Any], env: gym.Env | None) -> "Baseline":
        return cls(**params)


# ----------------------------------------------------------------------------------------------------
# simple baselines
# ----------------------------------------------------------------------------------------------------
class RandomBaseline(Baseline):
    """Uniformly random order from its own ``np.random.Generator(PCG64(seed))``.

    Args:
        seed: Seed of the agent's generator (never the env's).
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def scores(self, obs: Obs) -> np.ndarray:
        return self.rng.random(np.asarray(obs["mask"]).shape[0])

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _save_state(self, folder: Path) -> None:
        (folder / "rng.json").write_text(json.dumps(self.rng.bit_generator.state))

    def _load_state(self, folder: Path) -> None:
        state_file = folder / "rng.json"
        if state_file.exists():
            self.rng.bit_generator.state = json.loads(state_file.read_text())


class _ColumnBaseline(Baseline):
    """Scores one named feature of ``obs["candidates"]`` (looked up in the env's ``FeatureLayout``).

    Args:
        layout: The env's :class:`~envs.layout.FeatureLayout` (``env.unwrapped.layout``); without it the
            layout is read from each observation's shapes.
    """

    feature: ClassVar[str] = ""
    sign: ClassVar[float] = 1.0

    def __init__(self, layout: FeatureLayout | None = None) -> None:
        self.layout = layout

    def scores(self, obs: Obs) -> np.ndarray:
        layout = self.layout or FeatureLayout.of_observation(obs)
        return self.sign * np.asarray(obs["candidates"])[:, layout.column(self.feature)].astype(np.float64)

    @classmethod
    def _from_params(cls, params: dict[str, Any], env: gym.Env | None) -> "Baseline":
        return cls(**params, layout=_env_layout(env))


def _env_layout(env: gym.Env | None) -> FeatureLayout | None:
    """``env.unwrapped.layout`` (``None`` without an env)."""
    return getattr(env.unwrapped, "layout", None) if env is not None else None


class RetrieverBaseline(_ColumnBaseline):
    """The retriever's own order (the ``retriever_rank`` feature, ``1 - rank/K``)."""

    name = "retriever"
    feature = "retriever_rank"


class PriceBaseline(_ColumnBaseline):
    """Cheapest first (ascending ``price_z`` feature)."""

    name = "price"
    feature = "price_z"
    sign = -1.0


class OracleBaseline(Baseline):
    """Privileged myopic oracle: ranks by each candidate's expected immediate reward at the top slot.

    Reads the hidden truth through ``env.unwrapped.privileged_scores()``, so ``predict`` must be called
    with the observation the env has just returned (the env's current query).

    Args:
        env: The environment being evaluated (any wrapper; it is unwrapped).
    """

    name = "oracle"
    env_bound = True

    def __init__(self, env: gym.Env | None = None) -> None:
        self.env = _unwrap_env(env, "OracleBaseline")
        if not hasattr(self.env, "privileged_scores"):
            raise TypeError(f"OracleBaseline needs an env with privileged_scores(); "
                            f"{type(self.env).__name__} has none.")

    def scores(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.env.privileged_scores(), dtype=np.float64)

    @classmethod
    def _from_params(cls, params: dict[str, Any], env: gym.Env | None) -> "Baseline":
        return cls(env=env)


class ProfileOracleBaseline(OracleBaseline):
    """Myopic oracle that knows the simulator's equations but not the shopper's hidden traits.

    Ranks by the expected immediate reward for the shopper the simulator estimates from the observation
    (``env.unwrapped.privileged_scores(observable=True)``: posterior-mean taste and price sensitivity from
    the noisy profile, prior willingness to pay). Its gap to ``oracle`` is what the observation cannot
    reveal; its reward is (close to) the ceiling of any agent that ranks myopically from the observation.
    """

    name = "profile_oracle"

    def scores(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.env.privileged_scores(observable=True), dtype=np.float64)


class PlannerBaseline(OracleBaseline):
    """Privileged planner of ``ShopRank-v1``: the myopic oracle's value minus the expected refund of a return,
    plus the value of the expected change in the shopper's trust (``env.unwrapped.planner_scores()``, see
    :func:`simulators.longterm.planner_scores`). Bounds agents from above where the future matters.
    """

    name = "planner"

    def __init__(self, env: gym.Env | None = None) -> None:
        super().__init__(env)
        if not hasattr(self.env, "planner_scores"):
            raise TypeError(f"PlannerBaseline needs an env with planner_scores() (ShopRank-v1); "
                            f"{type(self.env).__name__} has none.")

    def scores(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.env.planner_scores(), dtype=np.float64)


class ProfilePlannerBaseline(PlannerBaseline):
    """The planner on what a shop can know (``env.unwrapped.planner_scores(observable=True)``): the shopper's
    profile estimate, trust at its prior mean, and each product's return probability expected from its
    photo's gloss and its price (quality stays hidden; :func:`simulators.longterm.expected_return_probability`).
    Not a bound: a reference for what long-term planning from the observation gains over ``profile_oracle``.
    """

    name = "profile_planner"

    def scores(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.env.planner_scores(observable=True), dtype=np.float64)


class ProfileNetBaseline(PlannerBaseline):
    """``profile_planner`` without the value of trust (``env.unwrapped.planner_scores(observable=True,
    value_trust=False)``): each candidate's expected immediate reward minus its expected refund, for the shopper
    the observation shows. A return-aware *myopic* ranker: its gain over ``profile_oracle`` is what avoiding
    returns is worth, and ``profile_planner``'s gain over it is what valuing trust adds.
    """

    name = "profile_net"

    def scores(self, obs: Obs) -> np.ndarray:
        return np.asarray(self.env.planner_scores(observable=True, value_trust=False), dtype=np.float64)


# ----------------------------------------------------------------------------------------------------
# popularity
# ----------------------------------------------------------------------------------------------------
class PopularityBaseline(Baseline):
    """Most-clicked products first: ``log1p(click count)`` per catalog item.

    Candidate catalog ids are not in the observation, so the baseline reads them from the env it ranks
    for (``env.unwrapped.core.candidates``, the ids the retriever returned — not privileged).

    Args:
        env: The environment being evaluated.
        counts: ``float (n_products,)`` click counts per catalog row (zeros if ``None``).
    """

    name = "popularity"
    env_bound = True

    def __init__(self, env: gym.Env | None = None, counts: np.ndarray | None = None) -> None:
        self.env = _unwrap_env(env, "PopularityBaseline")
        n = int(self.env.world.n_products)
        self.counts = np.zeros(n, dtype=np.float64) if counts is None else np.asarray(counts, dtype=np.float64)
        if self.counts.shape != (n,):
            raise ValueError(f"PopularityBaseline: counts must have shape ({n},) (catalog size), "
                             f"got {self.counts.shape}.")

    def scores(self, obs: Obs) -> np.ndarray:
        ids = np.asarray(self.env.core.candidates)
        return np.where(ids >= 0, np.log1p(self.counts[np.where(ids >= 0, ids, 0)]), -np.inf)

    @classmethod
    def fit(cls, env: gym.Env, n_sessions: int = 1000, seed: int = 0) -> "PopularityBaseline":
        """Count clicks per item over ``n_sessions`` sessions of a uniformly random logging policy."""
        logs = collect_logs(env, RandomBaseline(seed), n_sessions, seed, lambda obs: np.zeros((len(obs["mask"]), 0)))
        agent = cls(env)
        np.add.at(agent.counts, logs.item_ids, logs.clicks.astype(np.float64))
        return agent

    def _save_state(self, folder: Path) -> None:
        np.savez(folder / ARRAYS_FILE, counts=self.counts)

    def _load_state(self, folder: Path) -> None:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
            counts = data["counts"]
        if counts.shape != self.counts.shape:
            raise CheckpointError(f"popularity checkpoint has counts for {counts.shape[0]} products but the env's "
                             f"catalog has {self.counts.shape[0]}: was it saved for another catalog?")
        self.counts = counts.astype(np.float64)

    @classmethod
    def _from_params(cls, params: dict[str, Any], env: gym.Env | None) -> "Baseline":
        return cls(env=env)


# ----------------------------------------------------------------------------------------------------
# linear contextual bandits
# ----------------------------------------------------------------------------------------------------
class _LinearBandit(Baseline):
    """Ridge regression of click on :func:`candidate_features`, updated online (Woodbury, per slate).

    State: ``A_inv = (lam I + X^T X)^-1`` ``(d, d)`` and ``b = X^T y`` ``(d,)``, created on first use.
    """

    def __init__(self, lam: float = 1.0, learn: bool = True) -> None:
        if not lam > 0:
            raise ConfigError(f"{type(self).__name__}: lam must be > 0, got {lam}.")
        self.lam = float(lam)
        self.learn = bool(learn)
        self.a_inv: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.n_updates = 0

    def _ensure(self, d: int) -> None:
        if self.a_inv is None:
            self.a_inv = np.eye(d) / self.lam
            self.b = np.zeros(d)
        elif self.a_inv.shape[0] != d:
            raise ValueError(f"{type(self).__name__} was built for {self.a_inv.shape[0]} features, "
                             f"got observations with {d}: different env shapes?")

    @property
    def theta(self) -> np.ndarray:
        """``(d,)`` ridge estimate ``A^-1 b``."""
        return self.a_inv @ self.b

    def update(self, obs: Obs, action: np.ndarray, info: Mapping[str, Any]) -> None:
        """Add one sample per shown candidate: features of the pre-step ``obs``, reward = clicked.

        Args:
            obs: The observation ``action`` was chosen for (unbatched).
            action: ``(K,)`` the action sent to the env.
            info: The step's info (``shown_ids (N,)``, ``clicked_positions``).
        """
        if not self.learn:
            return
        shown_ids = np.asarray(info["shown_ids"])
        shown = shown_candidates(action, obs["mask"], len(shown_ids))
        slots = np.flatnonzero(shown_ids >= 0)
        if len(slots) == 0:
            return
        y = np.zeros(len(shown_ids))
        y[np.asarray(info["clicked_positions"], dtype=np.int64)] = 1.0
        x = candidate_features(obs)[shown[slots]].astype(np.float64)
        self._ensure(x.shape[1])
        # Woodbury: (A + X^T X)^-1 = A^-1 - A^-1 X^T (I + X A^-1 X^T)^-1 X A^-1
        ax = self.a_inv @ x.T
        inner = np.eye(len(x)) + x @ ax
        self.a_inv -= ax @ np.linalg.solve(inner, ax.T)
        self.a_inv = 0.5 * (self.a_inv + self.a_inv.T)
        self.b += x.T @ y[slots]
        self.n_updates += 1

    def _save_state(self, folder: Path) -> None:
        if self.a_inv is not None:
            np.savez(folder / ARRAYS_FILE, a_inv=self.a_inv, b=self.b, n_updates=np.array(self.n_updates))

    def _load_state(self, folder: Path) -> None:
        path = folder / ARRAYS_FILE
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                self.a_inv, self.b = data["a_inv"].astype(np.float64), data["b"].astype(np.float64)
                self.n_updates = int(data["n_updates"])


class LinUCBBaseline(_LinearBandit):
    """LinUCB: score ``theta·x + alpha * sqrt(x^T A^-1 x)`` (Li et al., 2010), one model shared by all items.

    Args:
        alpha: Exploration width (``>= 0``).
        lam: Ridge regularisation (``> 0``).
        learn: Update online from clicks (``False`` freezes a loaded model).
    """

    name = "linucb"

    def __init__(self, alpha: float = 0.3, lam: float = 1.0, learn: bool = True) -> None:
        if not alpha >= 0:
            raise ConfigError(f"LinUCBBaseline: alpha must be >= 0, got {alpha}.")
        super().__init__(lam=lam, learn=learn)
        self.alpha = float(alpha)

    def scores(self, obs: Obs) -> np.ndarray:
        x = candidate_features(obs).astype(np.float64)
        self._ensure(x.shape[1])
        width = np.sqrt(np.maximum(np.sum((x @ self.a_inv) * x, axis=1), 0.0))
        return x @ self.theta + self.alpha * width

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lam": self.lam, "learn": self.learn}


class ThompsonBaseline(_LinearBandit):
    """Linear Thompson sampling: score with ``theta ~ N(A^-1 b, v^2 A^-1)`` drawn each query.

    Args:
        v: Posterior scale (``> 0``).
        lam: Ridge regularisation (``> 0``).
        seed: Seed of the agent's own generator.
        learn: Update online from clicks.
    """

    name = "thompson"

    def __init__(self, v: float = 0.1, lam: float = 1.0, seed: int = 0, learn: bool = True) -> None:
        if not v > 0:
            raise ConfigError(f"ThompsonBaseline: v must be > 0, got {v}.")
        super().__init__(lam=lam, learn=learn)
        self.v = float(v)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def scores(self, obs: Obs) -> np.ndarray:
        x = candidate_features(obs).astype(np.float64)
        self._ensure(x.shape[1])
        # Scores of theta ~ N(mu, v^2 A^-1) are jointly N(x mu, v^2 x A^-1 x^T): sample them in K dims
        # (a K x K Cholesky instead of d x d), exactly the same distribution.
        cov = x @ self.a_inv @ x.T
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(x)))
        return x @ self.theta + self.v * chol @ self.rng.standard_normal(len(x))

    def params(self) -> dict[str, Any]:
        return {"v": self.v, "lam": self.lam, "seed": self.seed, "learn": self.learn}

    def _save_state(self, folder: Path) -> None:
        super()._save_state(folder)
        (folder / "rng.json").write_text(json.dumps(self.rng.bit_generator.state))

    def _load_state(self, folder: Path) -> None:
        super()._load_state(folder)
        state_file = folder / "rng.json"
        if state_file.exists():
            self.rng.bit_generator.state = json.loads(state_file.read_text())


# ----------------------------------------------------------------------------------------------------
# LambdaMART
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LambdaMARTConfig:
    """LightGBM lambdarank settings.

    Attributes:
        n_estimators: Boosting rounds.
        max_bin: Histogram bins per feature.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_data_in_leaf: Minimum rows per leaf.
        feature_fraction: Fraction of features sampled per tree.
        num_threads: LightGBM threads (1 by default: reproducible, and fastest on small shared machines).
    """

    n_estimators: int = 150
    max_bin: int = 63
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.5
    num_threads: int = 1


class LambdaMARTBaseline(Baseline):
    """LambdaMART (LightGBM ``lambdarank``) over :func:`candidate_features`, trained on logged clicks.

    The logs come from a uniformly random logging policy (:meth:`fit`), so every candidate appears at
    every slot equally often and click labels are not confounded with the logging policy's order.

    Args:
        model_text: A LightGBM model in text format (``None`` until fitted).
    """

    name = "lambdamart"

    def __init__(self, model_text: str | None = None) -> None:
        self.booster = None
        if model_text is not None:
            self._set_model(model_text)

    def _set_model(self, text: str) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_str=text)

    @classmethod
    def fit(cls, env: gym.Env, n_sessions: int = 1000, seed: int = 0,
            config: LambdaMARTConfig = LambdaMARTConfig()) -> "LambdaMARTBaseline":
        """Log ``n_sessions`` sessions of random rankings in ``env`` and train lambdarank on the clicks."""
        try:
            import lightgbm as lgb
        except ImportError as exc:  # pragma: no cover - optional extra
            raise MissingDependencyError("LambdaMARTBaseline needs lightgbm: pip install 'shoprank[lambdamart]'.") from exc
        logs = collect_logs(env, RandomBaseline(seed), n_sessions, seed, candidate_features, propensity=-1.0)
        params = {"objective": "lambdarank", "learning_rate": config.learning_rate,
                  "num_leaves": config.num_leaves, "min_data_in_leaf": config.min_data_in_leaf,
                  "feature_fraction": config.feature_fraction, "seed": int(seed), "deterministic": True,
                  "force_row_wise": True, "num_threads": config.num_threads, "verbose": -1,
                  "max_bin": config.max_bin, "lambdarank_truncation_level": 20}
        data = lgb.Dataset(logs.features, label=logs.clicks.astype(np.float64), group=logs.groups,
                           params={"max_bin": config.max_bin, "verbose": -1})
        booster = lgb.train(params, data, num_boost_round=config.n_estimators)
        agent = cls()
        agent.booster = booster
        return agent

    def scores(self, obs: Obs) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("LambdaMARTBaseline is not trained: call LambdaMARTBaseline.fit(env, ...) "
                               "or load a checkpoint.")
        return np.asarray(self.booster.predict(candidate_features(obs)), dtype=np.float64)

    def _save_state(self, folder: Path) -> None:
        if self.booster is None:
            raise RuntimeError("LambdaMARTBaseline is not trained: nothing to save.")
        (folder / MODEL_FILE).write_text(self.booster.model_to_string())

    def _load_state(self, folder: Path) -> None:
        path = folder / MODEL_FILE
        if not path.exists():
            raise InputNotFoundError(f"lambdamart checkpoint {folder} has no {MODEL_FILE}.")
        self._set_model(path.read_text())


# ----------------------------------------------------------------------------------------------------
# registry, factories, checkpoints
# ----------------------------------------------------------------------------------------------------
BASELINES: dict[str, type[Baseline]] = {cls.name: cls for cls in (
    RandomBaseline, RetrieverBaseline, PopularityBaseline, PriceBaseline, LinUCBBaseline, ThompsonBaseline,
    LambdaMARTBaseline, OracleBaseline, ProfileOracleBaseline, PlannerBaseline, ProfilePlannerBaseline,
    ProfileNetBaseline)}
"""Baseline classes by name (the agent names used in summaries)."""


@dataclass(frozen=True)
class BaselineConfig:
    """How :func:`make_baseline` builds (and, for offline learners, trains) a baseline.

    Attributes:
        n_log_sessions: Logged sessions of the random logging policy for ``popularity`` and ``lambdamart``.
        linucb_alpha: LinUCB exploration width.
        thompson_v: Thompson posterior scale.
        lam: Ridge regularisation of both bandits.
        lambdamart: LightGBM settings.
    """

    n_log_sessions: int = 1000
    linucb_alpha: float = 0.3
    thompson_v: float = 0.1
    lam: float = 1.0
    lambdamart: LambdaMARTConfig = field(default_factory=LambdaMARTConfig)


BaselineFactory = Callable[[gym.Env, int, BaselineConfig], Baseline]

_FACTORIES: dict[str, BaselineFactory] = {
    "random": lambda env, seed, cfg: RandomBaseline(seed),
    "retriever": lambda env, seed, cfg: RetrieverBaseline(_env_layout(env)),
    "price": lambda env, seed, cfg: PriceBaseline(_env_layout(env)),
    "popularity": lambda env, seed, cfg: PopularityBaseline.fit(env, cfg.n_log_sessions, seed),
    "linucb": lambda env, seed, cfg: LinUCBBaseline(alpha=cfg.linucb_alpha, lam=cfg.lam),
    "thompson": lambda env, seed, cfg: ThompsonBaseline(v=cfg.thompson_v, lam=cfg.lam, seed=seed),
    "lambdamart": lambda env, seed, cfg: LambdaMARTBaseline.fit(env, cfg.n_log_sessions, seed, cfg.lambdamart),
    "oracle": lambda env, seed, cfg: OracleBaseline(env),
    "profile_oracle": lambda env, seed, cfg: ProfileOracleBaseline(env),
    "planner": lambda env, seed, cfg: PlannerBaseline(env),
    "profile_planner": lambda env, seed, cfg: ProfilePlannerBaseline(env),
    "profile_net": lambda env, seed, cfg: ProfileNetBaseline(env),
}


def make_baseline(name: str, env: gym.Env, seed: int = 0, config: BaselineConfig = BaselineConfig()) -> Baseline:
    """Build (and for ``popularity``/``lambdamart`` train, in ``env``) the baseline called ``name``.

    Args:
        name: One of :data:`BASELINES`.
        env: The env it will rank for (used for training logs and by env-bound baselines).
        seed: The agent's seed (its own generator; log sessions use reset seeds derived from it).
        config: Hyperparameters.
    """
    if name not in _FACTORIES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {sorted(_FACTORIES)}.")
    return _FACTORIES[name](env, seed, config)


def baseline_factory(name: str, config: BaselineConfig = BaselineConfig()) -> Callable[[gym.Env, int], Baseline]:
    """``(env, seed) -> Baseline`` for :func:`experiments.evaluate.evaluate_agents`."""
    if name not in _FACTORIES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {sorted(_FACTORIES)}.")
    return lambda env, seed: make_baseline(name, env, seed, config)


def is_baseline_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a baseline checkpoint (``baseline.json``)."""
    return (Path(path) / META_FILE).is_file()


def load_baseline(path: str | Path, env: gym.Env | None = None) -> Baseline:
    """Load a baseline saved by :meth:`Baseline.save` (JSON/NPZ/LightGBM text only; never unpickles).

    Args:
        path: The checkpoint folder.
        env: Needed by env-bound baselines (``oracle``, ``popularity``).
    """
    folder = Path(path)
    meta = read_baseline_meta(folder)
    agent = BASELINES[meta["name"]]._from_params(dict(meta.get("params", {})), env)
    agent._load_state(folder)
    return agent


def read_baseline_meta(path: str | Path) -> dict[str, Any]:
    """The checked ``baseline.json`` of a baseline checkpoint folder (format, version and a known ``name``).

    Raises:
        FileNotFoundError: no ``baseline.json`` in ``path``.
        ValueError: unreadable JSON, another format or version, or an unknown baseline name.
    """
    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise InputNotFoundError(f"{folder} is not a baseline checkpoint: {META_FILE} not found.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        meta = {}
    if meta.get("format") != "shoprank-baseline" or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{meta_path}: unsupported checkpoint format {meta.get('format')!r} version "
                         f"{meta.get('version')!r} (expected 'shoprank-baseline' version {CHECKPOINT_VERSION}).")
    if meta.get("name") not in BASELINES:
        raise CheckpointError(f"{meta_path}: unknown baseline {meta.get('name')!r}; choose from {sorted(BASELINES)}.")
    return meta


__all__ = ["BASELINES", "Baseline", "BaselineConfig", "LambdaMARTBaseline", "LambdaMARTConfig", "LinUCBBaseline",
           "OracleBaseline", "PlannerBaseline", "PopularityBaseline", "PriceBaseline", "ProfileOracleBaseline",
           "ProfileNetBaseline", "ProfilePlannerBaseline", "RandomBaseline",
           "RetrieverBaseline",
           "ThompsonBaseline", "baseline_factory", "candidate_features", "is_baseline_checkpoint",
           "load_baseline", "make_baseline", "read_baseline_meta", "scores_to_action"]
