"""A long-term shopper: photo gloss, returns, trust and coming back over several visits (``ShopRank-v1``).

In the default shopper (:mod:`simulators.shopper`) nothing a ranker shows today changes tomorrow, so the
myopic oracle is (nearly) optimal over a session. Real shops differ: a product whose photo oversells it
is bought, disappoints at home and is sent back; the shopper trusts the shop less and may not come back.
This module wraps the default shopper (one *visit* = one of its sessions) in a relationship of several
visits with two dynamics, after RecSim's long-term-satisfaction env (clickbait lowers future engagement)
and interest-evolution env (a hidden user state that the recommender moves):

**1. Photo gloss and returns.** Every product ``j`` has a true quality ``quality_j`` (hidden everywhere)
and a *gloss* ``gloss_j``: how much its photo flatters it. Gloss is a fixed random direction of the
product's photo features (``photo`` below; the env passes the image encoder's vectors, so the gloss lies
in the photo part of the fused vector an agent sees, not in the text). Both are z-scored over the
catalog; quality correlates with price (``quality_price``)::

    gloss_j   = z(photo_j @ w),     w ~ N(0, I) from latent_seed
    quality_j = quality_price * price_z_j + sqrt(1 - quality_price^2) * eps_j,   eps_j ~ N(0, 1)

Gloss raises the attraction and the purchase odds now: ``utility += gloss_weight * gloss_j`` (click
attractiveness) and ``logit P(buy | click) += gloss_weight * gloss_j``. A purchase is decided at visit
end (the shopper tries it on at home): it is **returned** with probability::

    P(return_j) = 1 - (1 - return_base) * exp(-return_rate * shortfall_j),  shortfall_j = max(0, gloss_j - quality_j)

``return_base`` covers returns no photo predicts (fit, changed mind). The env takes the purchase's reward
back (reported as ``returns``); the shopper's trust falls by ``trust_returned`` per return.

**2. Trust and retention.** Each shopper has a hidden trust ``tau`` in ``[0, 1]`` (initial value uniform in
``trust_init +- trust_init_spread``). It scales click propensity, and with it purchases:
``attractiveness *= engagement(tau) = engagement_floor + (1 - engagement_floor) * tau``; after each visit
the shopper comes back with probability ``comeback(tau) = comeback_min + (comeback_max - comeback_min) *
tau``, and otherwise the relationship (the episode) ends. Trust moves with what the shop does:
``+ trust_relevant * (share of relevant results, rel >= 0.5)`` and ``- trust_wasted`` after a slate
without a click (a wasted query); ``+ trust_kept`` per kept purchase and ``- trust_returned`` per return
at visit end. The shopper's days since the last visit, ``Exponential(mean_gap_days) / (0.5 + tau)``, are
shop-observable (loyal shoppers come sooner); trust itself never is.

A visit ends when the default shopper leaves (patience, or satisfied after a purchase) or after
``max_queries_per_visit`` queries; the next visit starts with fresh patience and a new intent (taste drift
persists). After ``max_visits`` visits the relationship ends.

**Why planning pays (the defaults).** The myopic oracle ranks by expected immediate reward, which gloss
inflates: it puts flattering photos on top, some are returned (the refund comes at visit end), and each
return costs trust, hence engagement in every later visit and the chance that there is a later visit.
Trust's value is large because a visit is worth much more than one purchase (a visit is several slates
of clicks), so a ranker that gives up a little click-through on glossy, low-quality products to keep
returns down keeps the shopper coming back. With ``returns=False`` and ``trust=False`` (the control,
:meth:`LongTermConfig.without_dynamics`) the planner's value reduces to the myopic oracle's and the gain
disappears. The default rates are grounded: returns are ~15-30% of purchases (online apparel); measured
in ``tests/test_longterm.py`` under the retriever's order and the myopic oracle.

The privileged :func:`planner_scores` ranks by immediate value minus expected refund plus the value of the
expected trust change, with the value of trust solved from the model (:func:`trust_value`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from scipy.special import ndtr

from encoders.errors import ConfigError
from simulators.items import ItemTable
from simulators.protocols import ClickModel, Query, Response
from simulators.shopper import (DefaultShopper, Intent, ShopperConfig, ShopperState, _sigmoid, attractiveness,
                                purchase_probability)
from simulators.validation import check_field_types

VISIT_SIGNALS = ("visit", "days_since_last_visit", "visit_queries", "kept_purchases", "returns")
"""What the shop knows of the relationship (:meth:`LongTermShopper.visit_signals`): visit index / max
visits, days since the last visit / 30, queries this visit / max per visit, kept purchases / 5 and returns
/ 5 so far. Trust is never among them."""


@dataclass(frozen=True)
class LongTermConfig:
    """Parameters of the long-term dynamics (the within-visit shopper is a :class:`ShopperConfig`).

    Attributes:
        gloss_weight: Utility and purchase log-odds added per unit of (z-scored) photo gloss (0 = gloss
            does not sway the shopper; returns still follow the shortfall).
        returns: Whether purchases can be returned (False switches returns off).
        return_base: Probability of a return without any shortfall, in ``[0, 1)``.
        return_rate: Growth of the return probability with the shortfall ``max(0, gloss - quality)`` (``>= 0``).
        quality_price: Correlation of true quality with the price z-score, in ``[-1, 1]``.
        trust: Whether trust moves (False: it stays at its initial value, so nothing a ranker does changes
            engagement or coming back).
        trust_init: Mean initial trust, in ``[0, 1]``.
        trust_init_spread: Half-width of the uniform initial trust around ``trust_init`` (clipped to ``[0, 1]``).
        engagement_floor: Click-propensity multiplier at trust 0 (1 at trust 1), in ``[0, 1]``.
        trust_kept: Trust gained per kept purchase (``>= 0``).
        trust_returned: Trust lost per returned purchase (``>= 0``).
        trust_relevant: Trust gained per slate, times its share of relevant results (``>= 0``).
        trust_wasted: Trust lost per slate without a click (``>= 0``).
        comeback_min: Probability of coming back after a visit at trust 0, in ``[0, 1]``.
        comeback_max: The same at trust 1, in ``[comeback_min, 1]``.
        max_visits: Visits after which the relationship ends (``>= 1``).
        max_queries_per_visit: Queries after which a visit ends (``>= 1``).
        mean_gap_days: Mean days between visits at trust 0.5 (``> 0``).
        latent_seed: Seed of the gloss direction and the quality draws (part of the population).
    """

    gloss_weight: float = 1.0
    returns: bool = True
    return_base: float = 0.05
    return_rate: float = 0.4
    quality_price: float = 0.3
    trust: bool = True
    trust_init: float = 0.6
    trust_init_spread: float = 0.15
    engagement_floor: float = 0.5
    trust_kept: float = 0.04
    trust_returned: float = 0.12
    trust_relevant: float = 0.02
    trust_wasted: float = 0.05
    comeback_min: float = 0.3
    comeback_max: float = 0.9
    max_visits: int = 8
    max_queries_per_visit: int = 10
    mean_gap_days: float = 7.0
    latent_seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("gloss_weight", "return_rate", "trust_kept", "trust_returned", "trust_relevant",
                     "trust_wasted", "trust_init_spread"):
            if getattr(self, name) < 0:
                raise ConfigError(f"LongTermConfig.{name} must be >= 0, got {getattr(self, name)}.")
        for name in ("trust_init", "engagement_floor", "comeback_min", "comeback_max"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"LongTermConfig.{name} must be in [0, 1], got {getattr(self, name)}.")
        if not 0 <= self.return_base < 1:
            raise ConfigError(f"LongTermConfig.return_base must be in [0, 1), got {self.return_base}.")
        if not -1 <= self.quality_price <= 1:
            raise ConfigError(f"LongTermConfig.quality_price must be in [-1, 1], got {self.quality_price}.")
        if self.comeback_max < self.comeback_min:
            raise ConfigError(f"LongTermConfig.comeback_max must be >= comeback_min={self.comeback_min}, "
                              f"got {self.comeback_max}.")
        for name in ("max_visits", "max_queries_per_visit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LongTermConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if not self.mean_gap_days > 0:
            raise ConfigError(f"LongTermConfig.mean_gap_days must be > 0, got {self.mean_gap_days}.")
        if self.latent_seed < 0:
            raise ConfigError(f"LongTermConfig.latent_seed must be >= 0, got {self.latent_seed}.")

    def without_dynamics(self) -> "LongTermConfig":
        """The control: no returns, no trust change and no gloss (visits still happen, at constant trust)."""
        return replace(self, returns=False, trust=False, gloss_weight=0.0)


@dataclass(frozen=True)
class LongTermState:
    """Hidden state of one shopper's relationship with the shop (immutable).

    Attributes:
        shopper: The within-visit default-shopper state.
        trust: Hidden trust in ``[0, 1]``.
        visit: Index of the current visit (0 = first).
        visit_queries: Queries issued in the current visit.
        days_since_last_visit: Days between the previous visit and this one (0 in the first visit).
        pending: Catalog rows bought this visit (kept or returned at the visit's end).
        pending_returned: For each of ``pending``, whether it will be returned (drawn at purchase, hidden).
        returned: Catalog rows returned at the last transition (the env refunds them; usually empty).
        pending_at: For each of ``pending``, ``(query index in the visit, slot)`` where it was bought.
        returned_at: For each of ``returned``, ``(queries ago, slot)`` where it was bought, counted from the
            query that ended the visit (0 = that query): which earlier slate a refund belongs to (an agent may
            credit it there; ``info["returned_slots"]``).
        n_kept: Kept purchases so far.
        n_returns: Returned purchases so far.
    """

    shopper: ShopperState
    trust: float
    visit: int = 0
    visit_queries: int = 0
    days_since_last_visit: float = 0.0
    pending: tuple[int, ...] = ()
    pending_returned: tuple[bool, ...] = ()
    returned: tuple[int, ...] = ()
    pending_at: tuple[tuple[int, int], ...] = ()
    returned_at: tuple[tuple[int, int], ...] = ()
    n_kept: int = 0
    n_returns: int = 0


# -- formulas (arrays of any shape; the batched env calls the same ones) ----------------------------------
def engagement(cfg: LongTermConfig, trust: np.ndarray) -> np.ndarray:
    """Click-propensity multiplier ``engagement_floor + (1 - engagement_floor) * trust``."""
    return cfg.engagement_floor + (1.0 - cfg.engagement_floor) * trust


def comeback_probability(cfg: LongTermConfig, trust: np.ndarray) -> np.ndarray:
    """``comeback_min + (comeback_max - comeback_min) * trust``: probability of another visit."""
    return cfg.comeback_min + (cfg.comeback_max - cfg.comeback_min) * trust


def return_probability(cfg: LongTermConfig, shortfall: np.ndarray) -> np.ndarray:
    """``1 - (1 - return_base) * exp(-return_rate * shortfall)`` (0 with ``returns=False``)."""
    if not cfg.returns:
        return np.zeros_like(np.asarray(shortfall, dtype=np.float64))
    return 1.0 - (1.0 - cfg.return_base) * np.exp(-cfg.return_rate * np.asarray(shortfall, dtype=np.float64))


def expected_return_probability(cfg: LongTermConfig, gloss: np.ndarray, price_z: np.ndarray) -> np.ndarray:
    """``float (n,)`` return probability expected from what a shop can see: the photo's gloss and the price.

    Quality is hidden; given the price it is ``N(mu, sigma^2)`` with ``mu = quality_price * price_z`` and
    ``sigma^2 = 1 - quality_price^2`` (the population model of :func:`product_latents`, whose final z-scoring
    leaves mean 0 and variance 1). For ``X = gloss - quality ~ N(d, sigma^2)``, ``d = gloss - mu``:
    ``E[exp(-a max(0, X))] = Phi(-d / sigma) + exp(-a d + a^2 sigma^2 / 2) Phi(d / sigma - a sigma)``, and
    ``E[P(return)] = 1 - (1 - return_base) * E[exp(-return_rate * shortfall)]`` (0 with ``returns=False``).

    Args:
        cfg: Long-term parameters.
        gloss: ``float (n,)`` the products' gloss (a linear direction of their photo features).
        price_z: ``float (n,)`` their price z-scores.
    """
    gloss = np.asarray(gloss, dtype=np.float64)
    d = gloss - cfg.quality_price * np.asarray(price_z, dtype=np.float64)
    sigma = math.sqrt(max(1.0 - cfg.quality_price ** 2, 0.0))
    if not cfg.returns or sigma == 0.0:
        return return_probability(cfg, np.maximum(d, 0.0))
    a = cfg.return_rate
    kept = ndtr(-d / sigma) + np.exp(-a * d + 0.5 * (a * sigma) ** 2) * ndtr(d / sigma - a * sigma)
    return 1.0 - (1.0 - cfg.return_base) * kept


def glossed_purchase(p_buy: np.ndarray, gloss_shift: np.ndarray) -> np.ndarray:
    """``sigmoid(logit(p_buy) + gloss_shift)``: the purchase odds raised by the photo's gloss."""
    p = np.clip(p_buy, 1e-12, 1 - 1e-12)
    return _sigmoid(np.log(p) - np.log1p(-p) + gloss_shift)


def trust_after_slate(cfg: LongTermConfig, trust: np.ndarray, relevant_share: np.ndarray,
                      no_click: np.ndarray) -> np.ndarray:
    """Trust after a slate: ``+ trust_relevant * relevant_share - trust_wasted * no_click``, clipped to [0, 1]."""
    if not cfg.trust:
        return trust
    return np.clip(trust + cfg.trust_relevant * relevant_share - cfg.trust_wasted * no_click, 0.0, 1.0)


def trust_after_visit(cfg: LongTermConfig, trust: np.ndarray, n_kept: np.ndarray, n_returned: np.ndarray) -> np.ndarray:
    """Trust at a visit's end: ``+ trust_kept * n_kept - trust_returned * n_returned``, clipped to [0, 1]."""
    if not cfg.trust:
        return trust
    return np.clip(trust + cfg.trust_kept * n_kept - cfg.trust_returned * n_returned, 0.0, 1.0)


def product_latents(cfg: LongTermConfig, items: ItemTable, photo: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(gloss (n,), quality (n,))`` float64, both z-scored over the catalog (see the module docstring).

    Args:
        cfg: Long-term parameters (``latent_seed``, ``quality_price``).
        items: The catalog facts (prices; ``visual_z`` when ``photo`` is None).
        photo: ``float (n, d)`` photo features the gloss is a direction of (default: ``items.visual_z``).
    """
    rng = np.random.default_rng([cfg.latent_seed, 13])
    feats = np.asarray(items.visual_z if photo is None else photo, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] != items.n:
        raise ConfigError(f"photo features must be ({items.n}, d) (one row per product), got {feats.shape}.")
    feats = feats - feats.mean(axis=0)
    raw = feats @ rng.normal(size=feats.shape[1])
    gloss = (raw - raw.mean()) / max(float(raw.std()), 1e-9)
    eps = rng.normal(size=items.n)
    price_z = np.asarray(items.price_z, dtype=np.float64)
    quality = cfg.quality_price * price_z + math.sqrt(1.0 - cfg.quality_price ** 2) * eps
    quality = (quality - quality.mean()) / max(float(quality.std()), 1e-9)
    return gloss, quality


class LongTermShopper:
    """The default shopper over several visits, with photo gloss, returns and trust.

    Satisfies ``UserSimulator`` and ``PrivilegedSimulator``; one ``transition`` that ends a visit resolves
    the visit's returns (:attr:`LongTermState.returned`) and draws whether the shopper comes back
    (``left=True`` when not, or after ``max_visits``).

    Args:
        items: Catalog facts.
        config: Long-term parameters.
        shopper: Parameters of the within-visit default shopper.
        photo: ``float (n, d)`` photo features the gloss is read from (default ``items.visual_z``).
        click_model: Any ``ClickModel`` (default: the default shopper's PBM).
        n_slots: Slate size ``N``.
    """

    def __init__(self, items: ItemTable, config: LongTermConfig = LongTermConfig(),
                 shopper: ShopperConfig = ShopperConfig(), photo: np.ndarray | None = None,
                 click_model: ClickModel | None = None, n_slots: int = 10) -> None:
        if not isinstance(config, LongTermConfig):
            raise ConfigError(f"config must be a LongTermConfig, got {type(config).__name__}.")
        self.config = config
        self.items = items
        self.inner = DefaultShopper(items, shopper, click_model=click_model, n_slots=n_slots)
        self.click_model = self.inner.click_model
        self.profile_dim = self.inner.profile_dim
        self.gloss, self.quality = product_latents(config, items, photo)
        self.shortfall = np.maximum(0.0, self.gloss - self.quality)
        self.p_return = return_probability(config, self.shortfall)
        self.p_return_observable = expected_return_probability(config, self.gloss, items.price_z)

    def with_trust_fixed(self) -> "LongTermShopper":
        """A twin of this shopper population (same products, gloss and quality) whose trust never moves."""
        twin = copy.copy(self)
        twin.config = replace(self.config, trust=False)
        return twin

    # -- population -----------------------------------------------------------------------------------
    def known_queries(self) -> list[str]:
        return self.inner.known_queries()

    def reset(self, rng: np.random.Generator) -> LongTermState:
        """A new shopper at their first visit, with initial trust ``U(trust_init +- trust_init_spread)``."""
        cfg = self.config
        shopper = self.inner.reset(rng)
        trust = float(np.clip(cfg.trust_init + cfg.trust_init_spread * (2 * rng.random() - 1), 0.0, 1.0))
        return LongTermState(shopper=shopper, trust=trust)

    def profile(self, state: LongTermState) -> np.ndarray:
        return self.inner.profile(state.shopper)

    def visit_signals(self, state: LongTermState) -> np.ndarray:
        """``float32 (len(VISIT_SIGNALS),)``: what the shop knows of the relationship (never trust)."""
        cfg = self.config
        return np.array([state.visit / cfg.max_visits, state.days_since_last_visit / 30.0,
                         state.visit_queries / cfg.max_queries_per_visit, state.n_kept / 5.0,
                         state.n_returns / 5.0], dtype=np.float32)

    def observable_state(self, state: LongTermState) -> LongTermState:
        """The shopper estimated from the observation: the default shopper's estimate, trust at its prior mean."""
        return replace(state, shopper=self.inner.observable_state(state.shopper), trust=self.config.trust_init)

    def next_query(self, state: LongTermState, rng: np.random.Generator) -> Query:
        return self.inner.next_query(state.shopper, rng)

    # -- response -------------------------------------------------------------------------------------
    def item_probabilities(self, state: LongTermState, intent: Intent, slate: np.ndarray, boredom: bool = True
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(attractiveness (N,), P(buy | click) (N,), utility (N,))`` with gloss and trust; 0 for ``-1``.

        ``boredom=False`` values each product as if shown alone (no near-duplicate above it), for all ``K``
        candidates at once.
        """
        sc = self.inner.config
        slate = np.asarray(slate, dtype=np.int64)
        valid = slate >= 0
        rows = np.where(valid, slate, 0)
        rel, vis, price, util = self.inner._utility_terms(state.shopper, intent, slate, rows)
        shift = self.config.gloss_weight * self.gloss[rows]
        dup = self.inner._duplicates_above(slate) if boredom else None
        attract = attractiveness(sc, util + shift, dup) * engagement(self.config, state.trust)
        over = self.inner._over_budget(state.shopper, rows) if sc.buy_over_budget > 0 else None
        p_buy = glossed_purchase(purchase_probability(sc, rel, vis, price, over), shift)
        return np.where(valid, attract, 0.0), np.where(valid, p_buy, 0.0), np.where(valid, util, 0.0)

    def utility(self, state: LongTermState, intent: Intent, rows: np.ndarray) -> np.ndarray:
        """``float (len(rows),)`` true utility of each product (0 for ``-1``): the default shopper's, which gloss and
        trust leave alone (``item_probabilities``' third output without its click and purchase terms)."""
        return self.inner.utility(state.shopper, intent, rows)

    utility_is_slate_free = True
    """As :attr:`DefaultShopper.utility_is_slate_free`."""

    # The default shopper's response maths, over this shopper's item probabilities (gloss and trust in them):
    # marginal click / purchase probabilities per slot (purchases before returns) and true utilities ...
    expected_response = DefaultShopper.expected_response
    # ... and sampled clicks, purchases among the clicks, and dwell.
    respond = DefaultShopper.respond

    def transition(self, state: LongTermState, query: Query, slate: np.ndarray, response: Response,
                   rng: np.random.Generator) -> tuple[LongTermState, bool]:
        """One query's consequences; returns ``(new_state, relationship_over)``.

        The within-visit dynamics are the default shopper's. Trust moves per slate; at a visit's end the
        visit's purchases are kept or returned (``new_state.returned``), trust moves again and the shopper
        comes back with probability :func:`comeback_probability`. Draws the same amount of randomness
        every call (``N + 2`` uniforms and one exponential) besides the default shopper's own.
        """
        cfg = self.config
        slate = np.asarray(slate, dtype=np.int64)
        shown = slate[slate >= 0]
        u_return = rng.random(len(slate))
        u_back, gap = rng.random(), rng.exponential(cfg.mean_gap_days)
        shopper, visit_over = self.inner.transition(state.shopper, query, slate, response, rng)
        relevant = float(np.mean(self.inner.relevance(query.intent, shown) >= 0.5)) if len(shown) else 0.0
        trust = float(trust_after_slate(cfg, state.trust, relevant, not np.asarray(response.clicks).any()))
        bought_slots = np.flatnonzero(np.asarray(response.purchases, dtype=bool) & (slate >= 0))
        bought = slate[bought_slots]
        will_return = u_return[bought_slots] < self.p_return[bought]
        pending = state.pending + tuple(int(r) for r in bought)
        pending_returned = state.pending_returned + tuple(bool(x) for x in will_return)
        pending_at = state.pending_at + tuple((state.visit_queries, int(n)) for n in bought_slots)
        visit_queries = state.visit_queries + 1
        new = replace(state, shopper=shopper, trust=trust, visit_queries=visit_queries, pending=pending,
                      pending_returned=pending_returned, pending_at=pending_at, returned=(), returned_at=())
        if not (visit_over or visit_queries >= cfg.max_queries_per_visit):
            return new, False
        returned = tuple(r for r, back in zip(pending, pending_returned) if back)
        returned_at = tuple((visit_queries - 1 - q, n) for (q, n), back in zip(pending_at, pending_returned) if back)
        n_kept = len(pending) - len(returned)
        trust = float(trust_after_visit(cfg, trust, n_kept, len(returned)))
        come_back = new.visit + 1 < cfg.max_visits and u_back < float(comeback_probability(cfg, trust))
        fresh = replace(shopper, patience=float(self.inner.config.patience), intent=None)
        new = replace(new, shopper=fresh, trust=trust, visit=new.visit + 1 if come_back else new.visit,
                      visit_queries=0, days_since_last_visit=float(gap / (0.5 + trust)), pending=(),
                      pending_returned=(), pending_at=(), returned=returned, returned_at=returned_at,
                      n_kept=new.n_kept + n_kept,
                      n_returns=new.n_returns + len(returned))
        return new, not come_back

    def returns_of(self, state: LongTermState) -> np.ndarray:
        """``int64 (r,)`` catalog rows returned at the transition that produced ``state``."""
        return np.asarray(state.returned, dtype=np.int64)

    def returned_slots_of(self, state: LongTermState) -> np.ndarray:
        """``int64 (r, 2)`` ``(queries ago, slot)`` where each of :meth:`returns_of` was bought (see
        :attr:`LongTermState.returned_at`)."""
        return np.asarray(state.returned_at, dtype=np.int64).reshape(-1, 2)


# -- the privileged planner --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardWeights:
    """The env's reward weights as the planner needs them (``click``, ``purchase``, ``revenue`` per unit)."""

    click: float = 1.0
    purchase: float = 1.0
    revenue: float = 0.02


def trust_value(cfg: LongTermConfig, trust: float, visits_left: int, visit_value: float) -> float:
    """Reward one unit of trust is worth now, solved from the model: ``d W / d tau``.

    ``W(tau) = visit_value * sum_{i=1..h} engagement(tau) * comeback(tau)^i`` is the value of the ``h =
    visits_left`` visits that may follow this one, each worth ``visit_value`` (a visit's reward at full
    engagement) times the engagement, reached with probability ``comeback^i`` (trust taken as constant
    from here on). Zero with ``trust=False`` or no visit left.
    """
    if not cfg.trust or visits_left <= 0:
        return 0.0
    m, c = float(engagement(cfg, trust)), float(comeback_probability(cfg, trust))
    dm, dc = 1.0 - cfg.engagement_floor, cfg.comeback_max - cfg.comeback_min
    i = np.arange(1, visits_left + 1)
    return float(visit_value * np.sum(dm * c ** i + m * i * c ** (i - 1) * dc))


def candidate_terms(sim: LongTermShopper, state: LongTermState, query: Query, candidates: np.ndarray,
                    weights: RewardWeights, n_slots: int, observable: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(immediate (K,), refund (K,), trust change (K,))`` of each candidate shown alone at the top (privileged;
    with ``observable``, ``r_j`` is the return probability expected from gloss and price,
    :func:`expected_return_probability`, instead of the true one).

    For ``c_j = P(click)`` and ``b_j = P(buy | click)`` at the top slot, ``r_j = P(return)`` and ``g_j =
    purchase + revenue * price_j``:

    * ``immediate_j = c_j * (click + b_j * g_j)`` (what the myopic ``oracle`` ranks by);
    * ``refund_j = c_j * b_j * r_j * g_j`` (the reward a return takes back at visit end);
    * ``trust change_j = c_j b_j ((1 - r_j) trust_kept - r_j trust_returned) + trust_relevant [rel_j >= 0.5] / N``.

    Padding (``-1``) gets ``-inf`` immediate value and zeros elsewhere.
    """
    cfg = sim.config
    candidates = np.asarray(candidates, dtype=np.int64)
    valid = candidates >= 0
    rows = np.where(valid, candidates, 0)
    attract, p_buy, _ = sim.item_probabilities(state, query.intent, candidates, boredom=False)
    alone = np.zeros((len(candidates), n_slots))
    alone[:, 0] = attract
    click = sim.click_model.click_probs(alone)[:, 0]
    gain = weights.purchase + weights.revenue * sim.items.prices[rows].astype(np.float64)
    buy = click * p_buy
    p_ret = (sim.p_return_observable if observable else sim.p_return)[rows]
    immediate = np.where(valid, click * weights.click + buy * gain, -np.inf)
    refund = np.where(valid, buy * p_ret * gain, 0.0)
    relevant = sim.inner.relevance(query.intent, candidates) >= 0.5
    d_trust = buy * ((1 - p_ret) * cfg.trust_kept - p_ret * cfg.trust_returned) + cfg.trust_relevant * relevant / n_slots
    if not cfg.trust:
        d_trust = np.zeros_like(d_trust)
    return immediate, refund, np.where(valid, d_trust, 0.0)


def planner_scores(sim: LongTermShopper, state: LongTermState, query: Query, candidates: np.ndarray,
                   weights: RewardWeights, visit_value: float, n_slots: int, observable: bool = False,
                   value_trust: bool = True) -> np.ndarray:
    """``float (K,)`` privileged long-term value of each candidate shown alone at the top (``-inf`` for padding).

    ``immediate_j - refund_j + trust_value * trust change_j`` (:func:`candidate_terms`, :func:`trust_value`
    with the visits that may follow this one). With ``observable``, the same planning on what a shop can
    know: the shopper's :meth:`LongTermShopper.observable_state` (profile estimate, trust at its prior mean)
    and returns expected from gloss and price (:func:`expected_return_probability`); the ``profile_planner``.

    Args:
        sim: The long-term shopper.
        state: The true hidden state.
        query: The current query.
        candidates: ``int64 (K,)`` catalog rows, ``-1`` = padding.
        weights: The env's reward weights.
        visit_value: Reward of one visit at full engagement (:func:`estimate_visit_value`).
        n_slots: ``N``.
        observable: Plan on the observable estimate instead of the hidden truth.
        value_trust: ``False``: leave out the trust term, i.e. rank by the expected reward net of the expected
            refund (what a return-aware myopic ranker values; the ``profile_net`` baseline).
    """
    if observable:
        state = sim.observable_state(state)
    immediate, refund, d_trust = candidate_terms(sim, state, query, candidates, weights, n_slots, observable)
    lam = trust_value(sim.config, state.trust, sim.config.max_visits - 1 - state.visit, visit_value) if value_trust \
        else 0.0
    return immediate - refund + lam * d_trust


Ranker = Callable[[LongTermState, Query, np.ndarray], np.ndarray]
"""``(state, query, candidates int64 (K,)) -> scores (K,)``: higher is shown higher."""


def play(sim: LongTermShopper, rank: Ranker, retrieve: Callable[[str], np.ndarray], weights: RewardWeights,
         n_slots: int, rng: np.random.Generator, state: LongTermState | None = None, one_visit: bool = False
         ) -> dict[str, float]:
    """Play one relationship (or one visit) of a shopper: a reference loop for studies and tests.

    Each query the top ``N`` candidates by ``rank`` are shown (``-inf`` scores never); the reward is the
    env's (clicks, purchases, revenue) minus the reward of returned purchases.

    Args:
        sim: The long-term shopper.
        rank: Scores the candidates (see :data:`Ranker`).
        retrieve: ``query text -> int64 (K,)`` candidate catalog rows, ``-1`` padded.
        weights: Reward weights.
        n_slots: ``N``.
        rng: The relationship's generator.
        state: Start here instead of a fresh shopper.
        one_visit: Stop when the first visit ends.

    Returns:
        ``reward``, ``purchases`` (before returns), ``returns``, ``visits``, ``queries`` and ``trust`` (final).
    """
    prices = sim.items.prices.astype(np.float64)
    state = sim.reset(rng) if state is None else state
    out = {"reward": 0.0, "purchases": 0.0, "returns": 0.0, "visits": 1.0, "queries": 0.0}
    while True:
        query = sim.next_query(state, rng)
        candidates = np.asarray(retrieve(query.text), dtype=np.int64)
        values = np.where(candidates >= 0, np.asarray(rank(state, query, candidates), dtype=np.float64), -np.inf)
        order = np.argsort(-values, kind="stable")[:n_slots]
        slate = np.full(n_slots, -1, dtype=np.int64)
        slate[: len(order)] = np.where(values[order] > -np.inf, candidates[order], -1)
        response = sim.respond(state, query, slate, rng)
        gain = np.where(response.purchases, weights.purchase + weights.revenue * prices[np.maximum(slate, 0)], 0.0)
        out["reward"] += weights.click * float(response.clicks.sum()) + float(gain.sum())
        out["purchases"] += float(response.purchases.sum())
        out["queries"] += 1
        visit = state.visit
        state, left = sim.transition(state, query, slate, response, rng)
        out["reward"] -= sum(weights.purchase + weights.revenue * prices[r] for r in state.returned)
        out["returns"] += len(state.returned)
        if left or (one_visit and state.visit_queries == 0):
            break
        out["visits"] += float(state.visit > visit)
    out["trust"] = state.trust
    return out


def estimate_visit_value(sim: LongTermShopper, retrieve: Callable[[str], np.ndarray], weights: RewardWeights,
                         n_slots: int, n_shoppers: int = 64, seed: int = 0) -> float:
    """Monte-Carlo reward of one visit at full engagement, net of refunds: the ``visit_value`` of :func:`trust_value`.

    Plays one visit (:func:`play`) of each of ``n_shoppers`` fresh shoppers (own generator from ``seed``;
    trust fixed at 1), showing the top ``N`` candidates by immediate value minus expected refund.

    Args:
        sim: The long-term shopper.
        retrieve: ``query text -> int64 (K,)`` candidate catalog rows (``-1`` padded), the env's retriever.
        weights: The env's reward weights.
        n_slots: ``N``.
        n_shoppers: Visits to average (``>= 1``).
        seed: Seed of the estimate's own generator.
    """
    if n_shoppers < 1:
        raise ConfigError(f"n_shoppers must be >= 1, got {n_shoppers}.")
    rng = np.random.default_rng([seed, 17])
    frozen = sim.with_trust_fixed()

    def net(state: LongTermState, query: Query, candidates: np.ndarray) -> np.ndarray:
        immediate, refund, _ = candidate_terms(frozen, state, query, candidates, weights, n_slots)
        return immediate - refund

    total = sum(play(frozen, net, retrieve, weights, n_slots, rng, replace(frozen.reset(rng), trust=1.0),
                     one_visit=True)["reward"] for _ in range(n_shoppers))
    return total / n_shoppers
