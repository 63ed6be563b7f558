"""What a returned purchase costs beyond its refund, estimated from logged relationships (``ShopRank-v1``).

A return takes the purchase's reward back (the ``net_reward`` target already does that) and it also costs
the shopper's trust, which shows up later as fewer and less engaged visits. That second cost is invisible in
the slate's own reward, so a warm start fitted to each slot's net reward ranks like a return-aware myopic
ranker (``profile_net``) and misses what the ``planner`` gains.

:func:`estimate_return_cost` measures it from the logs alone, as a shop could: for every logged visit, the
reward of the rest of the relationship is regressed (ordinary least squares) on that visit's returned
purchases, with the visit's kept purchases, clicks, queries and its index as controls. The logging policy
ranks at random, so which purchases come back is decided by the products shown (their photo's gloss), not by
the shopper, and the coefficient on returns reads as the reward a return costs later. Conditioning on kept
purchases and clicks absorbs most of a shopper's own engagement; what is left (engaged shoppers buy, return
and come back more) biases the estimate towards zero, i.e. towards under-valuing trust.

The ``"trust_reward"`` warm-start target (:mod:`agents.pretrain`) is each slot's net reward minus this cost
where the slot's purchase was returned: a per-slot label whose expectation ranks like ``immediate - refund -
value of the trust a return loses``, the part of the ``planner``'s value that carries most of its gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.errors import ConfigError


@dataclass(frozen=True)
class ReturnCost:
    """The estimated later cost of one return.

    Attributes:
        cost: Reward of the rest of the relationship lost per returned purchase (``>= 0``; a non-negative
            estimate is clipped to 0, i.e. no cost beyond the refund).
        coefficient: The regression coefficient on returns itself (negative when returns cost later reward).
        stderr: Its standard error (OLS, homoscedastic).
        visits: Logged visits in the regression.
    """

    cost: float
    coefficient: float
    stderr: float
    visits: int


def estimate_return_cost(session: np.ndarray, visit: np.ndarray, slate_reward: np.ndarray, returned: np.ndarray,
                         purchased: np.ndarray, clicked: np.ndarray) -> ReturnCost:
    """Regress each logged visit's future reward on its returns (see the module docstring).

    Args:
        session: ``int (M,)`` relationship of each logged slate; a relationship's slates are contiguous and in
            order.
        visit: ``(M,)`` visit index of each slate within its relationship (any values that differ between
            visits and are equal within one).
        slate_reward: ``float (M,)`` reward of each slate net of refunds.
        returned: ``(M, N)`` 1 where the slot's purchase was returned later.
        purchased: ``(M, N)`` 1 where the slot's product was bought.
        clicked: ``(M, N)`` 1 where the slot was clicked.

    Returns:
        The :class:`ReturnCost`.

    Raises:
        ConfigError: Mismatched lengths, or fewer logged visits than regressors (too few logs to estimate).
    """
    session = np.asarray(session)
    m = len(session)
    arrays = {"visit": visit, "slate_reward": slate_reward, "returned": returned, "purchased": purchased,
              "clicked": clicked}
    for name, value in arrays.items():
        if len(value) != m:
            raise ConfigError(f"estimate_return_cost: {name} has {len(value)} rows, session has {m}.")
    visit = np.asarray(visit)
    new_visit = np.ones(m, dtype=bool)
    new_visit[1:] = (session[1:] != session[:-1]) | (visit[1:] != visit[:-1])
    visit_id = np.cumsum(new_visit) - 1  # (M,) number of each slate's visit, in log order
    n_visits = int(visit_id[-1]) + 1 if m else 0

    def per_visit(values: np.ndarray) -> np.ndarray:  # (M,) -> (V,) sums over each visit's slates
        return np.bincount(visit_id, weights=np.asarray(values, dtype=np.float64), minlength=n_visits)

    reward = per_visit(slate_reward)
    returns = per_visit(np.asarray(returned).sum(axis=1))
    kept = per_visit(np.asarray(purchased).sum(axis=1)) - returns
    clicks = per_visit(np.asarray(clicked).sum(axis=1))
    queries = per_visit(np.ones(m))
    index_in_session, future = _visit_index_and_future(session[new_visit], reward)
    levels = int(index_in_session.max()) + 1 if n_visits else 1
    dummies = (index_in_session[:, None] == np.arange(levels)[None, :]).astype(np.float64)
    x = np.column_stack([returns, kept, clicks, queries, dummies])
    if n_visits <= x.shape[1]:
        raise ConfigError(f"estimate_return_cost needs more logged visits than regressors ({x.shape[1]}); got "
                          f"{n_visits} (log more relationships).")
    beta, _, rank, _ = np.linalg.lstsq(x, future, rcond=None)
    residual = future - x @ beta
    sigma2 = float(residual @ residual) / max(n_visits - rank, 1)
    cov = sigma2 * np.linalg.pinv(x.T @ x)
    coefficient = float(beta[0])
    return ReturnCost(cost=max(-coefficient, 0.0), coefficient=coefficient, stderr=float(np.sqrt(cov[0, 0])),
                      visits=n_visits)


def _visit_index_and_future(visit_session: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index (V,), future (V,))``: each visit's index within its relationship and the reward of that
    relationship's later visits, for visits listed in order with ``visit_session (V,)`` their relationship."""
    starts = np.ones(len(visit_session), dtype=bool)
    starts[1:] = visit_session[1:] != visit_session[:-1]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(visit_session)] - 1
    running = np.cumsum(reward)
    return np.arange(len(visit_session)) - first[group], running[last][group] - running
