"""Off-policy evaluation inside the simulator: log sessions under a stochastic logging policy, score
target policies on the logged contexts, and measure their true value on-policy.

Everything runs on the batched ``ShopRankStatic-v0`` (one query per session, ``K`` candidates, a slate of
``N``). A policy ranks the ``K`` candidates of each observation (:class:`SlatePolicy`):

* :class:`DeterministicRanker` shows the top ``N`` by a scorer (retriever order, LambdaMART, any
  baseline): one-hot action probabilities;
* :class:`RankPlackettLuce` draws the slate from a Plackett-Luce distribution with logits
  ``-rank / temperature``, where ``rank`` orders the candidates by a scorer. Because the logits depend on
  the context only through the ranks, the chance that the candidate of rank ``r`` lands in slot ``k`` is
  one ``(K, N)`` table for every context, estimated once with many Gumbel-top-N draws; slate and prefix
  probabilities are exact.

The value of a policy is the expected number of clicks per session. The per-slot estimators (DM ... Switch-DR
and independent IPS) see one row per (session, slot) with the logged candidate's marginal propensity at
its slot; their per-row mean is multiplied by ``N``. The reward model ``q(rank under the logging scorer,
slot)`` is a table of click rates fitted on a separate pilot log, so DM and DR never see the data they score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

import numpy as np

from experiments.ope.core import OPEInputError
from experiments.ope.estimators import BanditData
from experiments.ope.plackett_luce import position_marginals, sample_slates, slot_log_probs
from experiments.ope.slate import SlateData, SlatePropensities

Obs = Mapping[str, np.ndarray]
Scorer = Callable[[Obs], np.ndarray]
"""``batched obs -> float (B, K)`` scores, higher shown higher."""

RETRIEVER_COLUMN = -3
"""Column of ``obs["candidates"]`` holding ``1 - rank / K`` in the retriever's order."""


def retriever_scores(obs: Obs) -> np.ndarray:
    """``(B, K)`` the retriever's order as scores."""
    return np.asarray(obs["candidates"])[..., RETRIEVER_COLUMN].astype(np.float64)


def baseline_scorer(baseline: object) -> Scorer:
    """A scorer from any object with ``scores(obs) -> (K,)`` on one observation (the baselines)."""

    def score(obs: Obs) -> np.ndarray:
        b = np.asarray(obs["mask"]).shape[0]
        return np.stack([np.asarray(baseline.scores({k: v[i] for k, v in obs.items()}), dtype=np.float64)
                         for i in range(b)])

    return score


def ranks(scores: np.ndarray) -> np.ndarray:
    """``int (B, K)``: each candidate's 0-based rank by descending score (ties: lower index first)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return out


class SlatePolicy(Protocol):
    """A ranking policy whose action probabilities the estimators can read."""

    name: str

    def slates(self, obs: Obs, n_slots: int, rng: np.random.Generator) -> np.ndarray:
        """``int (B, N)`` candidate per slot, drawn (or chosen) for each observation."""
        ...

    def slot_log_probs(self, obs: Obs, slates: np.ndarray) -> np.ndarray:
        """``float (B, N)`` ``log P(a_k | a_1..a_{k-1})`` of given slates (``-inf`` where impossible)."""
        ...

    def marginals(self, obs: Obs, n_slots: int) -> np.ndarray:
        """``float (B, K, N)`` ``P(candidate i at slot k)``."""
        ...


@dataclass
class DeterministicRanker:
    """Shows the top ``N`` candidates by ``scorer``."""

    name: str
    scorer: Scorer

    def slates(self, obs: Obs, n_slots: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.argsort(-self.scorer(obs), axis=1, kind="stable")[:, :n_slots]

    def slot_log_probs(self, obs: Obs, slates: np.ndarray) -> np.ndarray:
        mine = self.slates(obs, slates.shape[1])
        same_prefix = np.cumprod(mine == slates, axis=1).astype(bool)
        # conditional probability of slot k given the prefix: 1 if it matches (prefix matched so far)
        return np.where(same_prefix, 0.0, -np.inf)

    def marginals(self, obs: Obs, n_slots: int) -> np.ndarray:
        slates = self.slates(obs, n_slots)
        b, k = slates.shape[0], np.asarray(obs["mask"]).shape[1]
        out = np.zeros((b, k, n_slots))
        out[np.arange(b)[:, None], slates, np.arange(n_slots)[None, :]] = 1.0
        return out


@dataclass
class RankPlackettLuce:
    """Plackett-Luce over ``-rank(scorer) / temperature``.

    Attributes:
        name: Row label.
        scorer: Candidate scores whose ranks the logits use.
        temperature: Larger is closer to uniform; must be > 0.
        n_table_samples: Gumbel-top-N draws for the rank-by-slot table (its entries have standard error
            at most ``0.5 / sqrt(n_table_samples)``).
        seed: Seed of those draws.
    """

    name: str
    scorer: Scorer
    temperature: float = 3.0
    n_table_samples: int = 1_000_000
    seed: int = 12345
    _tables: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise OPEInputError(f"temperature must be > 0, got {self.temperature!r}.")

    def logits(self, obs: Obs) -> np.ndarray:
        return -ranks(self.scorer(obs)).astype(np.float64) / self.temperature

    def slates(self, obs: Obs, n_slots: int, rng: np.random.Generator) -> np.ndarray:
        return sample_slates(self.logits(obs), n_slots, rng)

    def slot_log_probs(self, obs: Obs, slates: np.ndarray) -> np.ndarray:
        return slot_log_probs(self.logits(obs), slates)

    def rank_table(self, n_candidates: int, n_slots: int) -> np.ndarray:
        """``(K, N)`` chance that the candidate of rank ``r`` is shown at slot ``k``."""
        key = (n_candidates, n_slots)
        if key not in self._tables:
            logits = -np.arange(n_candidates, dtype=np.float64)[None, :] / self.temperature
            self._tables[key] = position_marginals(logits, n_slots, np.random.default_rng(self.seed),
                                                   self.n_table_samples)[0]
        return self._tables[key]

    def marginals(self, obs: Obs, n_slots: int) -> np.ndarray:
        r = ranks(self.scorer(obs))
        return self.rank_table(r.shape[1], n_slots)[r]


# --------------------------------------------------------------------------------------------------
# Running policies in the batched env
# --------------------------------------------------------------------------------------------------
def slate_action(slates: np.ndarray, n_candidates: int) -> np.ndarray:
    """``float32 (B, K)`` Box action whose top ``N`` by score is exactly ``slates`` in order."""
    b, n = slates.shape
    action = np.full((b, n_candidates), -1.0, dtype=np.float32)
    action[np.arange(b)[:, None], slates] = np.linspace(1.0, 0.0, n, endpoint=False, dtype=np.float32)[None, :]
    return action


def make_env(batch: int, config: object | None = None):
    """The batched ``ShopRankStatic-v0`` with same-step autoreset (every step is a new session)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the envs)

    kwargs = {} if config is None else {"config": config}
    return gym.make_vec("ShopRankStatic-v0", num_envs=batch, vectorization_mode="vector_entry_point",
                        autoreset_mode="SameStep", **kwargs)


def _check_full(obs: Obs) -> None:
    mask = np.asarray(obs["mask"])
    if np.any(mask.sum(axis=1) < mask.shape[1]):
        raise OPEInputError("the OPE simulation needs every query to return all K candidates (no padding); "
                            "use a catalog large enough for n_candidates.")


Recorder = Callable[[Mapping[str, np.ndarray], int], None]
"""``(info, take)``: receives the env's step ``info`` (``clicked (B, N)``, ``shown_ids (B, N)``, ...) and how
many leading rows belong to the run (the last batch may run past ``n_sessions``)."""


def run_sessions(env, n_sessions: int, seed: int,
                 step: Callable[[Obs, np.random.Generator], tuple[np.ndarray, Recorder]]) -> None:
    """Run ``n_sessions`` one-query sessions in batches of ``env.num_envs``.

    ``step(obs, rng) -> (slates (B, N), record)``: the slates to show for a batch of observations and a
    :data:`Recorder` for the outcome. The env is reset with a seed drawn first from ``default_rng(seed)``;
    the policy's draws follow from the same generator.
    """
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    done = 0
    k = env.single_action_space.shape[0]
    while done < n_sessions:
        _check_full(obs)
        slates, record = step(obs, rng)
        obs_next, _, _, _, info = env.step(slate_action(slates, k))
        take = min(env.num_envs, n_sessions - done)
        record(info, take)
        done += take
        obs = obs_next


def on_policy_value(env, policy: SlatePolicy, n_sessions: int, seed: int) -> tuple[float, float]:
    """Mean clicks per session of ``policy`` run on-policy, and its standard error."""
    n_slots = slate_size(env)
    totals: list[np.ndarray] = []

    def step(obs: Obs, rng: np.random.Generator):
        slates = policy.slates(obs, n_slots, rng)
        return slates, lambda info, take: totals.append(np.asarray(info["clicked"])[:take].sum(axis=1))

    run_sessions(env, n_sessions, seed, step)
    t = np.concatenate(totals).astype(np.float64)
    return float(t.mean()), float(t.std(ddof=1) / np.sqrt(len(t)))


def slate_size(env) -> int:
    """``N`` of a batched env."""
    return int(env.unwrapped.config.slate_size)


# --------------------------------------------------------------------------------------------------
# Logged data and what the estimators read from it
# --------------------------------------------------------------------------------------------------
@dataclass
class RewardTable:
    """``q(rank, slot)``: click rate of the candidate ranked ``rank`` by the logging scorer, shown at ``slot``.

    Attributes:
        table: ``float (K, N)`` (cells never logged hold the slot's mean).
    """

    table: np.ndarray

    @classmethod
    def fit(cls, rank: np.ndarray, clicks: np.ndarray, n_candidates: int) -> "RewardTable":
        """From logged ``rank (S, N)`` (logging-scorer rank of the shown candidate) and ``clicks (S, N)``."""
        n_slots = rank.shape[1]
        slot = np.broadcast_to(np.arange(n_slots), rank.shape)
        idx = (rank * n_slots + slot).ravel()
        n = np.bincount(idx, minlength=n_candidates * n_slots).reshape(n_candidates, n_slots)
        c = np.bincount(idx, weights=clicks.ravel().astype(float), minlength=n.size).reshape(n.shape)
        slot_mean = c.sum(axis=0) / np.maximum(n.sum(axis=0), 1)
        return cls(np.where(n > 0, c / np.maximum(n, 1), slot_mean[None, :]))

    def for_sessions(self, sessions: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """``float (B, K, N)`` ``q`` of every candidate at every slot, from ``rank (B, K)``."""
        return self.table[rank]


@dataclass
class CrossFitRewardTable:
    """:class:`RewardTable` cross-fitted over sessions: a session's ``q`` comes from the other folds.

    Attributes:
        tables: One table per fold.
        fold: ``int (S,)`` fold of each logged session.
    """

    tables: list[RewardTable]
    fold: np.ndarray

    @classmethod
    def fit(cls, rank: np.ndarray, clicks: np.ndarray, n_candidates: int, n_folds: int = 2,
            seed: int = 0) -> "CrossFitRewardTable":
        """From logged ``rank (S, N)`` and ``clicks (S, N)``; folds drawn with ``default_rng(seed)``."""
        fold = np.random.default_rng(seed).integers(n_folds, size=len(rank))
        return cls([RewardTable.fit(rank[fold != f], clicks[fold != f], n_candidates) for f in range(n_folds)], fold)

    def for_sessions(self, sessions: np.ndarray, rank: np.ndarray) -> np.ndarray:
        fold = self.fold[np.minimum(sessions, len(self.fold) - 1)]
        return np.stack([self.tables[f].table for f in range(len(self.tables))])[fold[:, None], rank]


@dataclass
class TargetColumns:
    """What one target policy contributes on the logged sessions, each ``float (S, N)``.

    Attributes:
        marginal: ``pi_e(logged candidate at its slot)``.
        slot_log_prob: ``log pi_e(a_k | a_1..a_{k-1})`` of the logged slate.
        dm: ``sum_a pi_e(a at k) q(a, k)``, the reward model's value of the target at each slot.
    """

    marginal: np.ndarray
    slot_log_prob: np.ndarray
    dm: np.ndarray


@dataclass
class SimLog:
    """Sessions logged under a stochastic policy, with the targets' probabilities on them.

    Attributes:
        clicks: ``bool (S, N)``.
        pscore_marginal: ``float (S, N)`` logging ``P(logged candidate at its slot)``.
        slot_log_prob: ``float (S, N)`` logging ``log P(a_k | a_1..a_{k-1})``.
        q_logged: ``float (S, N)`` reward model at the logged (candidate, slot).
        targets: Per target name, its :class:`TargetColumns`.
    """

    clicks: np.ndarray
    pscore_marginal: np.ndarray
    slot_log_prob: np.ndarray
    q_logged: np.ndarray
    targets: dict[str, TargetColumns]

    @property
    def n_sessions(self) -> int:
        return self.clicks.shape[0]

    def bandit_data(self, target: str, rows: slice = slice(None)) -> BanditData:
        """Per-(session, slot) rows for the bandit estimators; the bootstrap resamples sessions.

        The action space is collapsed to two actions, "the logged candidate" (0) and "any other" (1):
        ``pi_e = (m, 1 - m)`` and ``q = (q_logged, (dm - m q_logged) / (1 - m))``, which gives every
        bandit estimator exactly its value on the full ``K`` actions at ``2 / K`` of the memory.
        """
        t = self.targets[target]
        m = t.marginal[rows].ravel()
        q_log = self.q_logged[rows].ravel()
        dm = t.dm[rows].ravel()
        other = np.where(m < 1, (dm - m * q_log) / np.maximum(1 - m, 1e-300), 0.0)
        dist = np.stack([m, 1 - m], axis=1)[:, :, None]
        q = np.stack([q_log, other], axis=1)[:, :, None]
        s, n_slots = self.clicks[rows].shape
        return BanditData(reward=self.clicks[rows].ravel().astype(np.float64), action=np.zeros(m.size, np.int64),
                          action_dist=np.clip(dist, 0.0, 1.0), pscore=self.pscore_marginal[rows].ravel(),
                          estimated_rewards=q, cluster=np.repeat(np.arange(s), n_slots))

    def slate_data(self, target: str, rows: slice = slice(None)) -> SlateData:
        """One row per (session, slot) with slate, item-position and prefix propensities."""
        t = self.targets[target]
        clicks = self.clicks[rows]
        s, n = clicks.shape
        b_prefix = np.cumsum(self.slot_log_prob[rows], axis=1)
        e_prefix = np.cumsum(t.slot_log_prob[rows], axis=1)
        b_slate = np.repeat(b_prefix[:, -1:], n, axis=1)
        e_slate = np.repeat(e_prefix[:, -1:], n, axis=1)
        return SlateData(
            slate_id=np.repeat(np.arange(s), n), reward=clicks.ravel().astype(np.float64),
            position=np.tile(np.arange(n), s), len_list=n,
            slate=SlatePropensities(np.exp(b_slate).ravel(), np.exp(e_slate).ravel()),
            item_position=SlatePropensities(self.pscore_marginal[rows].ravel(), t.marginal[rows].ravel()),
            cascade=SlatePropensities(np.exp(b_prefix).ravel(), np.exp(e_prefix).ravel()))


def collect(env, logging: RankPlackettLuce, targets: list[SlatePolicy], n_sessions: int, seed: int,
            reward_table: RewardTable | CrossFitRewardTable) -> SimLog:
    """Log ``n_sessions`` sessions under ``logging`` and record every target's probabilities on them.

    Args:
        env: Batched ``ShopRankStatic-v0`` from :func:`make_env`.
        logging: The stochastic logging policy.
        targets: Policies to evaluate (distinct names).
        n_sessions: Sessions to log.
        seed: Seed of the env and the logging policy's draws.
        reward_table: ``q(rank under logging's scorer, slot)`` fitted on a pilot log (or cross-fitted on
            the log itself).
    """
    n_slots = slate_size(env)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("clicks", "pb", "pb_log", "q")}
    tcols: dict[str, list[list[np.ndarray]]] = {t.name: [[], [], []] for t in targets}
    seen = [0]

    def step(obs: Obs, rng: np.random.Generator):
        slates = logging.slates(obs, n_slots, rng)
        b = slates.shape[0]
        rows = np.arange(b)[:, None]
        slot = np.arange(n_slots)[None, :]
        rank_b = ranks(logging.scorer(obs))
        pb = logging.marginals(obs, n_slots)[rows, slates, slot]
        pb_log = logging.slot_log_probs(obs, slates)
        q_cand = reward_table.for_sessions(seen[0] + np.arange(b), rank_b)  # (B, K, N)
        seen[0] += b
        per_target = []
        for t in targets:
            marg = t.marginals(obs, n_slots)
            per_target.append((t.name, marg[rows, slates, slot], t.slot_log_probs(obs, slates),
                               (marg * q_cand).sum(axis=1)))
        q_logged = q_cand[rows, slates, slot]

        def record(info: Mapping[str, np.ndarray], take: int) -> None:
            clicks = np.asarray(info["clicked"], dtype=bool)
            for key, value in (("clicks", clicks), ("pb", pb), ("pb_log", pb_log), ("q", q_logged)):
                cols[key].append(value[:take])
            for name, m, lp, dm in per_target:
                for lst, v in zip(tcols[name], (m, lp, dm)):
                    lst.append(v[:take])

        return slates, record

    run_sessions(env, n_sessions, seed, step)
    return SimLog(np.concatenate(cols["clicks"]), np.concatenate(cols["pb"]), np.concatenate(cols["pb_log"]),
                  np.concatenate(cols["q"]),
                  {name: TargetColumns(*(np.concatenate(v) for v in lists)) for name, lists in tcols.items()})


def pilot_reward_table(env, logging: RankPlackettLuce, n_sessions: int, seed: int) -> RewardTable:
    """Fit :class:`RewardTable` on a pilot log of ``n_sessions`` under ``logging``."""
    n_slots = slate_size(env)
    ranks_shown: list[np.ndarray] = []
    clicks_all: list[np.ndarray] = []
    k = env.single_action_space.shape[0]

    def step(obs: Obs, rng: np.random.Generator):
        slates = logging.slates(obs, n_slots, rng)
        shown = np.take_along_axis(ranks(logging.scorer(obs)), slates, axis=1)

        def record(info: Mapping[str, np.ndarray], take: int) -> None:
            ranks_shown.append(shown[:take])
            clicks_all.append(np.asarray(info["clicked"], dtype=bool)[:take])

        return slates, record

    run_sessions(env, n_sessions, seed, step)
    return RewardTable.fit(np.concatenate(ranks_shown), np.concatenate(clicks_all), k)


# --------------------------------------------------------------------------------------------------
# ShopRank's own OPE logs: written with their replay recipe, read back with the contexts re-created
# --------------------------------------------------------------------------------------------------
def log_frame(env, logging: RankPlackettLuce, n_sessions: int, seed: int):
    """Log ``n_sessions`` sessions under ``logging`` as a :mod:`simulators.logs` frame.

    Columns: the log schema (``session``, ``slate`` = 0, ``query``, ``position``, ``item``, ``click``,
    ``purchase``, ``propensity`` = the logging policy's chance of this candidate at this slot) plus
    ``candidate`` (index among the K), ``logging_rank`` (its rank by the logging scorer) and
    ``slot_log_prob`` (``log P(a_k | a_1..a_{k-1})`` under the logging policy). ``purchase`` is False:
    the batched env reports purchases per session, not per slot.
    """
    import pandas as pd

    n_slots = slate_size(env)
    parts: list[dict[str, np.ndarray]] = []
    text_of = getattr(env.unwrapped, "query_text", str)

    def step(obs: Obs, rng: np.random.Generator):
        slates = logging.slates(obs, n_slots, rng)
        rows, slot = np.arange(len(slates))[:, None], np.arange(n_slots)[None, :]
        extra = {"candidate": slates, "propensity": logging.marginals(obs, n_slots)[rows, slates, slot],
                 "logging_rank": np.take_along_axis(ranks(logging.scorer(obs)), slates, axis=1),
                 "slot_log_prob": logging.slot_log_probs(obs, slates)}

        def record(info: Mapping[str, np.ndarray], take: int) -> None:
            q = np.asarray(info["query_index"])[:take]
            query = np.asarray([text_of(i) for i in q])
            parts.append({"query": np.repeat(query, n_slots), "item": np.asarray(info["shown_ids"])[:take].ravel(),
                          "click": np.asarray(info["clicked"])[:take].ravel(),
                          **{k: v[:take].ravel() for k, v in extra.items()}})

        return slates, record

    run_sessions(env, n_sessions, seed, step)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return pd.DataFrame({"session": np.repeat(np.arange(n_sessions), n_slots), "slate": 0, "query": cols["query"],
                         "position": np.tile(np.arange(n_slots), n_sessions), "item": cols["item"],
                         "click": cols["click"].astype(bool), "purchase": False,
                         "propensity": cols["propensity"], "candidate": cols["candidate"],
                         "logging_rank": cols["logging_rank"], "slot_log_prob": cols["slot_log_prob"]})


@dataclass
class ReplayedLogging:
    """Shows the logged slates in order, reporting the probabilities of the policy that logged them.

    Attributes:
        policy: The logging policy (re-creates its probabilities from the replayed contexts).
        logged: ``int (S, N)`` logged candidate per slot, in session order.
    """

    policy: RankPlackettLuce
    logged: np.ndarray
    _next: int = 0

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def scorer(self) -> Scorer:
        return self.policy.scorer

    def slates(self, obs: Obs, n_slots: int, rng: np.random.Generator) -> np.ndarray:
        b = np.asarray(obs["mask"]).shape[0]
        chunk = self.logged[self._next:self._next + b]
        self._next += b
        if len(chunk) < b:  # past the end of the log: any valid slates (their outcome is not recorded)
            filler = np.tile(np.arange(n_slots), (b - len(chunk), 1))
            chunk = np.concatenate([chunk, filler]) if len(chunk) else filler
        return chunk

    def slot_log_probs(self, obs: Obs, slates: np.ndarray) -> np.ndarray:
        return self.policy.slot_log_probs(obs, slates)

    def marginals(self, obs: Obs, n_slots: int) -> np.ndarray:
        return self.policy.marginals(obs, n_slots)


@dataclass
class PlackettLuce:
    """A stochastic policy given by per-context PL logits (e.g. a PPO policy with a Plackett-Luce head);
    marginals are estimated by sampling.

    Attributes:
        name: Row label.
        logit_fn: ``batched obs -> float (B, K)`` logits.
        n_samples: Draws per context for the marginals.
        seed: Seed of those draws.
    """

    name: str
    logit_fn: Callable[[Obs], np.ndarray]
    n_samples: int = 2000
    seed: int = 0

    def slates(self, obs: Obs, n_slots: int, rng: np.random.Generator) -> np.ndarray:
        return sample_slates(self.logit_fn(obs), n_slots, rng)

    def slot_log_probs(self, obs: Obs, slates: np.ndarray) -> np.ndarray:
        return slot_log_probs(self.logit_fn(obs), slates)

    def marginals(self, obs: Obs, n_slots: int) -> np.ndarray:
        return position_marginals(self.logit_fn(obs), n_slots, np.random.default_rng(self.seed), self.n_samples)
