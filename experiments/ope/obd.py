"""Off-policy evaluation on Open Bandit Dataset logs (Saito et al. 2021).

An OBD campaign log has one row per shown (impression, position): the item (action, one of ``A``), the
position (one of ``L = 3``), the click and the logging policy's propensity. The policies that can act on
these contexts are context-free item-by-position distributions ``pi(a | k)`` (:class:`ContextFreePolicy`):
the uniform random policy and "the policy that produced another log" (:func:`policy_of_log`: the
empirical frequency of each item at each position in that log, an unbiased estimate of its
time-averaged choice probabilities; Bernoulli TS's posterior changes over time, so its logged propensities
differ from row to row).

The reward model of DM / DR is the click rate of each (item, position), smoothed towards the position's
click rate with ``prior_strength`` pseudo-impressions, cross-fitted: rows of one fold get a model fitted
on the other folds (folds are impressions). The bootstrap resamples impressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.ope.core import Bootstrap, OPEInputError, OPEResult
from experiments.ope.estimators import BanditData, BanditEstimator, run_all, standard_estimators
from simulators.obd import load_obd, n_items


@dataclass(frozen=True, eq=False)
class OBDLog:
    """An OBD campaign log as arrays.

    Attributes:
        action: ``int (n,)`` item id.
        position: ``int (n,)`` 0-based position.
        reward: ``float (n,)`` click.
        pscore: ``float (n,)`` logging propensity.
        impression: ``int (n,)`` impression id (rows shown together).
        n_actions: Items ``A`` (from ``item_context.csv``, else the largest id + 1).
        len_list: Positions ``L``.
        path: Where it was read from.
    """

    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    impression: np.ndarray
    n_actions: int
    len_list: int
    path: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "OBDLog":
        """Read a campaign CSV (or a folder holding one) with :func:`simulators.obd.load_obd`."""
        log = load_obd(path)
        action = log["item"].to_numpy(np.int64)
        n_act = n_items(path) or int(action.max()) + 1
        return cls(action, log["position"].to_numpy(np.int64), log["click"].to_numpy(np.float64),
                   log["propensity"].to_numpy(np.float64), log["session"].to_numpy(np.int64), n_act,
                   int(log["position"].max()) + 1, str(path))

    @property
    def n_rows(self) -> int:
        return len(self.action)

    def on_policy_value(self) -> tuple[float, float]:
        """Mean click (the logging policy's own CTR) and its standard error."""
        return float(self.reward.mean()), float(self.reward.std(ddof=1) / np.sqrt(self.n_rows))


@dataclass(frozen=True, eq=False)
class ContextFreePolicy:
    """``pi(a | k)``, the same for every context.

    Attributes:
        name: Row label.
        probs: ``float (A, L)``, each column sums to 1.
    """

    name: str
    probs: np.ndarray

    def action_dist(self, n_rounds: int) -> np.ndarray:
        """``(n, A, L)`` for the estimators."""
        return np.broadcast_to(self.probs, (n_rounds, *self.probs.shape))


def uniform_policy(n_actions: int, len_list: int) -> ContextFreePolicy:
    """Every item equally likely at every position."""
    return ContextFreePolicy("random", np.full((n_actions, len_list), 1.0 / n_actions))


def policy_of_log(path: str | Path, n_actions: int, len_list: int) -> ContextFreePolicy:
    """The policy that produced the log at ``path``: empirical frequency of each item at each position."""
    other = OBDLog.load(path)
    if other.n_actions > n_actions or other.len_list > len_list:
        raise OPEInputError(f"the log at {path} has {other.n_actions} items and {other.len_list} positions, more than "
                            f"the evaluated log's {n_actions} and {len_list}.")
    counts = np.zeros((n_actions, len_list))
    np.add.at(counts, (other.action, other.position), 1.0)
    shown = counts.sum(axis=0)
    if np.any(shown == 0):
        raise OPEInputError(f"the log at {path} never shows position {int(np.flatnonzero(shown == 0)[0])}: its "
                            "policy is unknown there.")
    return ContextFreePolicy(f"logged:{path}", counts / shown)


def crossfit_reward_model(log: OBDLog, n_folds: int = 2, prior_strength: float = 10.0,
                          seed: int = 0) -> np.ndarray:
    """``(n, A, L)`` cross-fitted smoothed click rate of each (item, position).

    Args:
        log: The evaluated log.
        n_folds: Folds over impressions (>= 2).
        prior_strength: Pseudo-impressions at the position's click rate.
        seed: Seed of the fold assignment.
    """
    if n_folds < 2:
        raise OPEInputError(f"n_folds must be >= 2, got {n_folds}.")
    _, imp = np.unique(log.impression, return_inverse=True)
    fold_of_imp = np.random.default_rng(seed).integers(n_folds, size=imp.max() + 1)
    fold = fold_of_imp[imp.ravel()]
    out = np.empty((log.n_rows, log.n_actions, log.len_list))
    for f in range(n_folds):
        train = fold != f
        shows = np.zeros((log.n_actions, log.len_list))
        clicks = np.zeros_like(shows)
        np.add.at(shows, (log.action[train], log.position[train]), 1.0)
        np.add.at(clicks, (log.action[train], log.position[train]), log.reward[train])
        mu = clicks.sum(axis=0) / np.maximum(shows.sum(axis=0), 1.0)
        out[fold == f] = (clicks + prior_strength * mu) / (shows + prior_strength)
    return out


def bandit_data(log: OBDLog, policy: ContextFreePolicy, seed: int = 0) -> BanditData:
    """The estimators' input: the log, ``policy``'s action distribution and the cross-fitted reward model."""
    if policy.probs.shape != (log.n_actions, log.len_list):
        raise OPEInputError(f"policy {policy.name} covers {policy.probs.shape[0]} items x {policy.probs.shape[1]} "
                            f"positions but the log has {log.n_actions} x {log.len_list}.")
    return BanditData(reward=log.reward, action=log.action, action_dist=policy.action_dist(log.n_rows),
                      pscore=log.pscore, position=log.position, estimated_rewards=crossfit_reward_model(log, seed=seed),
                      cluster=log.impression)


def evaluate(log: OBDLog, policy: ContextFreePolicy, estimators: tuple[BanditEstimator, ...] = standard_estimators(),
             seed: int = 0, bootstrap: Bootstrap = Bootstrap()) -> list[OPEResult]:
    """Every estimator's value of ``policy`` (mean click per shown (impression, position)) on ``log``."""
    return run_all(estimators, bandit_data(log, policy, seed), seed=seed, bootstrap=bootstrap)
