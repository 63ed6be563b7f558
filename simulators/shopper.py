"""The default shopper: hidden intent, visual taste, price sensitivity and willingness to pay; PBM clicks;
purchase funnel; multi-query sessions with dynamics that end when the shopper leaves.

Utility of product ``j`` for a shopper with intent ``q``, taste ``t`` and price sensitivity ``s``::

    u_j = relevance_weight * rel(j, q) + visual_weight * <t, visual_z_j> / sqrt(V)
          - price_weight * s * price_z_j
    attractiveness_j = sigmoid(temperature * (u_j - threshold)) * (1 - boredom) ** dup_above_j
    P(click at slot k) = examination_k * attractiveness_j          (the click model decides)
    P(buy | click)   = sigmoid(buy_bias + buy_relevance * rel + visual_weight * <t, visual_z_j> / sqrt(V)
                               - buy_price * s * price_z_j
                               - buy_over_budget * max(0, log(price_j / budget_j)))
    budget_j = median price of j's product type * exp(w)           (w: the shopper's willingness to pay)

``rel(j, q)`` is the weighted fraction of the intent's facets (type, gender, colour, pattern, material)
that product ``j`` has; ``dup_above_j`` counts the near-duplicates of ``j`` shown above it in the same
slate. Revenue is the price of purchased products (the env's ``RewardSpec`` adds it up). The retriever
sees only the query text, so visual taste and price are what a reranker can add; the observable profile
carries noisy signals of taste and price sensitivity (not of the willingness to pay).

Session dynamics (:meth:`DefaultShopper.transition`), each switchable on its own so users can study them
one at a time (:meth:`ShopperConfig.without_dynamics` turns them all off):

* **drift**: taste moves toward the look of clicked products. Off: ``drift=0``.
* **satisfaction**: a purchase ends the need; the next query has a new intent, or the shopper leaves with
  probability ``1 - p_continue_after_purchase``. Never leaves on it: ``p_continue_after_purchase=1``.
* **fatigue**: patience drops with the share of irrelevant results (``rel < 0.5``) in each slate, and by
  ``no_click_penalty`` more after a slate without clicks. Off: ``fatigue=0``, ``no_click_penalty=0``.
* **boredom**: near-duplicates shown above a product in the same slate make it less attractive, so
  diversity matters. Off: ``boredom=0``.
* **patience**: the shopper leaves once patience reaches 0. Off: ``patience=math.inf``.

The purchase funnel's budget is switched off with ``buy_over_budget=0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from encoders.errors import ConfigError
from simulators.click_models import PositionBasedModel, load_click_model
from simulators.batch import all_true
from simulators.items import INTENT_FACETS, ItemTable
from simulators.kernels import (attract_ufunc, buy_probability_ufunc, drift_and_fatigue, profile_block, purchases_and_dwell,
                                traits_from_draws, utility_ufunc)
from simulators.protocols import ClickModel, ExpectedResponse, Query, Response
from simulators.validation import check_field_types

SEGMENTS = ("women", "men", "any")
_POSSESSIVE = {"women": "women's", "men": "men's"}
_FACET_WEIGHT = {"type": 2.0, "gender": 1.0, "colour": 1.0, "pattern": 1.0, "material": 0.5}
_P_STATE = {"gender": 0.8, "colour": 0.5, "pattern": 0.35, "material": 0.3}
_PRICE_SENSITIVITY_SHAPE, _PRICE_SENSITIVITY_SCALE = 2.0, 0.5  # Gamma prior: mean 1, variance 0.5


@dataclass(frozen=True)
class Intent:
    """What the shopper wants now: facet -> value (stated in the query) and the product it came from."""

    facets: tuple[tuple[str, str], ...]
    target: int


@dataclass(frozen=True)
class ShopperState:
    """Hidden state of one shopper (immutable; transitions return a new one).

    Attributes:
        segment: Index into :data:`SEGMENTS` (gender the shopper shops for).
        taste: ``float32 (V,)`` visual taste over z-scored visual traits.
        price_sensitivity: ``>= 0``; how much a high price lowers utility.
        profile_noise: ``float32 (V + 1,)`` fixed noise of the observable profile for this shopper.
        patience: Remaining patience; the shopper leaves when it drops to 0.
        intent: Current intent, ``None`` before the first query or after a purchase.
        n_queries: Queries issued so far.
        n_purchases: Purchases so far.
        history: Catalog rows of the most recently clicked products (newest last).
        willingness_to_pay: Log of the multiple of a product type's median price the shopper will pay
            without hesitation (their budget); ``inf`` = no budget.
    """

    segment: int
    taste: np.ndarray
    price_sensitivity: float
    profile_noise: np.ndarray
    patience: float
    intent: Intent | None = None
    n_queries: int = 0
    n_purchases: int = 0
    history: tuple[int, ...] = ()
    willingness_to_pay: float = math.inf


@dataclass(frozen=True)
class ShopperConfig:
    """Parameters of the default shopper population.

    Attributes:
        relevance_weight: Weight of intent match in utility.
        visual_weight: Weight of visual taste in utility (0 switches visual taste off).
        price_weight: Weight of price in utility.
        temperature: Sharpness of the attractiveness sigmoid.
        threshold: Utility at which attractiveness is 0.5.
        buy_bias, buy_relevance, buy_price: Purchase-after-click logit terms.
        buy_over_budget: Purchase logit lost per unit of ``log(price / budget)`` above the shopper's
            budget (0 switches the budget off; see :meth:`DefaultShopper.budget`).
        budget_mean, budget_std: Willingness to pay ``w ~ N(budget_mean, budget_std)`` per shopper, as the
            log of the multiple of a product type's median price they accept (0 = the median price).
        profile_noise: Std of the noise on the observable taste/price signals (0 = profile reveals the
            truth, large = profile is useless). The documented knob of how informative the profile is.
        patience: Initial patience (queries' worth of disappointment the shopper tolerates); the shopper
            leaves when it reaches 0. ``math.inf`` switches abandonment off.
        fatigue: Patience lost per slate, scaled by the fraction of irrelevant results in it
            (``rel < 0.5``); 0 switches fatigue off.
        no_click_penalty: Extra patience lost after a slate without any click (0 = off).
        p_continue_after_purchase: Probability a shopper starts a new intent after buying (else leaves);
            1 = a purchase never ends the session (the need is still satisfied: a new intent follows).
        drift: Fraction by which taste moves toward the visual traits of clicked products (0 = off).
        boredom: Fraction of attractiveness a product loses per near-duplicate shown above it in the same
            slate (0 = off). Near-duplicates are products whose ``ItemTable.similarity`` vectors (the text
            vectors in a ``ShopWorld``) have cosine above ``duplicate_threshold``: in the synthetic catalog
            these are mostly the same model in another colour or pattern. Measured with the MiniLM world
            and the retriever's order (1500 one-query sessions): 0.3 bores 0.65 of the 10 slots per slate
            and costs 1.5% of clicks (under 0.3% at ``duplicate_threshold=0.95``); a reranker can avoid
            the loss by moving look-alikes apart.
        duplicate_threshold: Cosine similarity above which two products count as near-duplicates (0.9: mostly
            the same product type, brand and style; 0.95 keeps only near-identical listings).
        history_size: Clicked products remembered.
        query_bank_size: Intents drawn once (with ``query_bank_seed``) into the population's query bank,
            the "query log" sessions sample from; a finite bank lets the env pre-encode every query.
        query_bank_seed: Seed of the query bank (part of the population, not of a session).
        click_model: ``""`` (the default PBM, examination ``0.9 ** k``) or the path of a click-model JSON
            file written by ``shoprank fidelity`` (``<out>/click_models/<model>.json``): the shopper then
            examines the slots as the model fitted to a log does, attractiveness still coming from its
            utility (see :func:`simulators.click_models.load_click_model`).
    """

    relevance_weight: float = 3.0
    visual_weight: float = 2.5
    price_weight: float = 0.6
    temperature: float = 1.6
    threshold: float = 2.6
    buy_bias: float = -2.0
    buy_relevance: float = 2.0
    buy_price: float = 0.8
    buy_over_budget: float = 3.0
    budget_mean: float = 0.0
    budget_std: float = 0.3
    profile_noise: float = 0.5
    patience: float = 3.0
    fatigue: float = 1.0
    no_click_penalty: float = 0.5
    p_continue_after_purchase: float = 0.5
    drift: float = 0.2
    boredom: float = 0.3
    duplicate_threshold: float = 0.9
    history_size: int = 8
    query_bank_size: int = 2000
    query_bank_seed: int = 0
    click_model: str = ""

    def __post_init__(self) -> None:
        check_field_types(self, allow_inf=("patience",))
        for name in ("profile_noise", "patience", "fatigue", "no_click_penalty", "drift", "boredom",
                     "temperature", "price_weight", "buy_over_budget", "budget_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ShopperConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.p_continue_after_purchase <= 1:
            raise ConfigError(
                f"ShopperConfig.p_continue_after_purchase must be in [0, 1], got {self.p_continue_after_purchase}.")
        if self.query_bank_size < 1:
            raise ConfigError(f"ShopperConfig.query_bank_size must be >= 1, got {self.query_bank_size}.")
        if not 0 <= self.drift <= 1:
            raise ConfigError(f"ShopperConfig.drift must be in [0, 1], got {self.drift}.")
        if not 0 <= self.boredom <= 1:
            raise ConfigError(f"ShopperConfig.boredom must be in [0, 1], got {self.boredom}.")
        if not np.isfinite(self.budget_mean):
            raise ConfigError(f"ShopperConfig.budget_mean must be finite, got {self.budget_mean}.")
        if self.history_size < 1:
            raise ConfigError(f"ShopperConfig.history_size must be >= 1, got {self.history_size}.")

    def without_dynamics(self) -> "ShopperConfig":
        """This config with every session dynamic off (no drift, boredom, fatigue or abandonment; a
        purchase moves to a new intent but never ends the session). Switch effects back on with
        ``dataclasses.replace(cfg.without_dynamics(), drift=0.2)`` to study one at a time."""
        return replace(self, drift=0.0, boredom=0.0, fatigue=0.0, no_click_penalty=0.0, patience=math.inf,
                       p_continue_after_purchase=1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# -- the shopper's formulas, shared by DefaultShopper and the batched vector env ---------------------------
# Each takes arrays of any matching shape: (N,) for one slate, (B, N) or (B, K) for a batch of sessions.
def combined_utility(cfg: ShopperConfig, rel: np.ndarray, vis: np.ndarray, price: np.ndarray) -> np.ndarray:
    """``relevance_weight * rel + visual_weight * vis - price_weight * price`` (``price`` = ``s * price_z``)."""
    return utility_ufunc(rel, vis, price, cfg.relevance_weight, cfg.visual_weight, cfg.price_weight)


def attractiveness(cfg: ShopperConfig, util: np.ndarray, duplicates_above: np.ndarray | None) -> np.ndarray:
    """``sigmoid(temperature * (util - threshold)) * (1 - boredom) ** duplicates_above`` (``None``: no boredom)."""
    above = 0.0 if duplicates_above is None or cfg.boredom == 0 else duplicates_above
    return attract_ufunc(util, above, cfg.temperature, cfg.threshold, cfg.boredom)


def purchase_probability(cfg: ShopperConfig, rel: np.ndarray, vis: np.ndarray, price: np.ndarray,
                         over_budget: np.ndarray | None) -> np.ndarray:
    """``P(buy | click)``: sigmoid of the purchase logit of the module docstring (``over_budget`` =
    ``max(0, log(price / budget))``; ``None`` when ``buy_over_budget`` is 0)."""
    over = 0.0 if over_budget is None else over_budget
    return buy_probability_ufunc(rel, vis, price, over, cfg.buy_bias, cfg.buy_relevance, cfg.visual_weight,
                                 cfg.buy_price, cfg.buy_over_budget)


def sample_traits(cfg: ShopperConfig, n: int, visual_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hidden traits of ``n`` new shoppers (the draws of :meth:`DefaultShopper.reset`, batched).

    Returns:
        ``segment int64 (n,)``, ``taste float32 (n, V)``, ``price_sensitivity float64 (n,)`` (Gamma prior,
        mean 1), ``profile_noise float32 (n, V + 1)``, ``willingness_to_pay float64 (n,)``. With ``n = 1``
        the draws equal those of one :meth:`DefaultShopper.reset` (same generator calls, same order).
    """
    segment, taste, price_sensitivity, rest = trait_draws(n, visual_dim, rng)
    taste, noise, willingness = traits_from_draws(taste, rest, cfg.profile_noise, cfg.budget_mean, cfg.budget_std)
    return {"segment": segment, "taste": taste, "price_sensitivity": price_sensitivity, "profile_noise": noise,
            "willingness_to_pay": willingness}


def trait_draws(n: int, visual_dim: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The draws of :func:`sample_traits`, in its order: ``segment int64 (n,)``, ``taste float64 (n, V)``
    standard normals, ``price_sensitivity float64 (n,)`` and ``n (V + 2)`` standard normals (the profile noise's
    ``n (V + 1)``, then the willingness to pay's ``n``: one draw gives the same numbers as those two)."""
    # one shopper: the scalar draw is the same number as the size-1 draw, at a fraction of its cost
    segment = np.array([rng.integers(len(SEGMENTS))]) if n == 1 else rng.integers(len(SEGMENTS), size=n)
    taste = rng.normal(size=(n, visual_dim))
    price_sensitivity = rng.gamma(_PRICE_SENSITIVITY_SHAPE, _PRICE_SENSITIVITY_SCALE, size=n)
    return segment, taste, price_sensitivity, rng.normal(size=n * (visual_dim + 2))


def profile_rows(segment: np.ndarray, taste: np.ndarray, price_sensitivity: np.ndarray,
                 profile_noise: np.ndarray) -> np.ndarray:
    """``float32 (n, S + V + 1)`` observable profiles: segment one-hot, noisy taste, noisy price sensitivity
    (``segment int64 (n,)``, ``taste float32 (n, V)``, ``price_sensitivity float64 (n,)``, ``profile_noise
    float32 (n, V + 1)``; the price entry is the float32 sum of both)."""
    return profile_block(len(SEGMENTS), segment, taste, price_sensitivity, profile_noise)


def segment_bank_table(bank_by_segment: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(table int64 (S, M), counts int64 (S,))``: each segment's query-bank rows, left-aligned, padded."""
    counts = np.array([len(rows) for rows in bank_by_segment], dtype=np.int64)
    table = np.zeros((len(bank_by_segment), max(int(counts.max()), 1)), dtype=np.int64)
    for s, rows in enumerate(bank_by_segment):
        table[s, : len(rows)] = rows
    return table, counts


def sample_bank_rows(table: np.ndarray, counts: np.ndarray, segment: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``int64 (n,)`` query-bank rows drawn uniformly among those fitting each shopper's ``segment (n,)``."""
    if len(segment) == 1:  # one shopper: the scalar draw is the same number at a fraction of the array draw's cost
        row = int(segment[0])
        return table[row:row + 1, rng.integers(int(counts[row]))]  # a Python int bound: half the cost
    return table[segment, rng.integers(counts[segment])]


def sample_response(click_model: ClickModel, attract: np.ndarray, p_buy: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clicks from the click model, purchases among clicks, dwell seconds of clicked slots.

    Args:
        click_model: Any ``ClickModel``.
        attract: ``float (B, N)`` attractiveness per slot (0 on empty slots).
        p_buy: ``float (B, N)`` purchase-given-click probability per slot.
        rng: Generator; the draws are clicks, then one uniform and one Gamma(2, 15) per slot.

    Returns:
        ``(clicks bool (B, N), purchases bool (B, N), dwell float32 (B, N))``.
    """
    clicks = np.asarray(click_model.sample(attract, rng), dtype=bool)
    purchases, dwell = purchases_and_dwell(clicks, p_buy, rng.random(clicks.shape),
                                           rng.gamma(2.0, 15.0, size=clicks.shape))
    return clicks, purchases, dwell


def session_update(cfg: ShopperConfig, taste: np.ndarray, patience: np.ndarray, rel: np.ndarray,
                   visual: np.ndarray, shown: np.ndarray | None, clicks: np.ndarray, purchases: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drift, fatigue, satisfaction and patience of ``B`` shoppers after one slate each.

    Args:
        cfg: Population parameters.
        taste: ``float32 (B, V)``; patience: ``float64 (B,)``.
        rel: ``float (B, N)`` intent match of each slot's product; visual: ``float32 (B, N, V)`` its visual traits.
        shown: ``bool (B, N)`` non-empty slots, or ``None`` when every slot shows a product; clicks,
            purchases: ``bool (B, N)``.
        rng: Generator; one uniform per shopper who bought and still has patience (leave or stay).

    Returns:
        ``(taste float32 (B, V), patience float64 (B,), left bool (B,))`` (see :meth:`DefaultShopper.transition`).
    """
    if shown is None:
        shown = all_true(clicks.shape)
    taste, patience, left, ask = drift_and_fatigue(cfg.drift, cfg.fatigue, cfg.no_click_penalty, taste, patience,
                                                   rel, visual, shown, clicks, purchases)
    return taste, patience, leave_after_purchase(cfg, left, ask, int(np.count_nonzero(ask)), rng)


def leave_after_purchase(cfg: ShopperConfig, left: np.ndarray, ask: np.ndarray, n_ask: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``left (B,)`` after the ``n_ask`` shoppers marked by ``ask (B,)`` (bought, patience left) choose: one
    uniform each, in session order, and each leaves with probability ``1 - p_continue_after_purchase`` (``left``
    changed in place and returned)."""
    if n_ask and len(left) == 1:  # one session: the scalar draw is the same number as the size-1 draw
        left[0] = rng.random() >= cfg.p_continue_after_purchase
    elif n_ask:
        left[ask] = rng.random(n_ask) >= cfg.p_continue_after_purchase
    return left


class DefaultShopper:
    """The built-in shopper population (satisfies ``UserSimulator`` and ``PrivilegedSimulator``).

    Args:
        items: Catalog facts (:class:`ItemTable`).
        config: Population parameters.
        click_model: Any ``ClickModel``; default PBM with examination ``0.9 ** k`` over ``n_slots``.
        n_slots: Slate size ``N`` (for the default click model).
    """

    utility_is_slate_free = True
    """``utility(state, intent, rows)`` equals ``expected_response``'s utilities for any rows (a product's utility
    does not depend on the rest of the slate): :class:`~simulators.batch.LoopShopper` scores all ``K`` candidates
    in one call, unless a subclass overrides one of the three methods."""

    def __init__(self, items: ItemTable, config: ShopperConfig = ShopperConfig(),
                 click_model: ClickModel | None = None, n_slots: int = 10) -> None:
        self.items = items
        self.config = config
        self.click_model = click_model or (load_click_model(config.click_model, n_slots) if config.click_model
                                           else PositionBasedModel.geometric(max(n_slots, 1), 0.9))
        self.visual_dim = items.visual_dim
        self.profile_dim = len(SEGMENTS) + self.visual_dim + 1
        self._log_ref_price = self._reference_log_prices(items)
        self.bank = self._build_bank(np.random.default_rng(config.query_bank_seed))
        self._bank_by_segment = []
        for segment in SEGMENTS:
            ok = [i for i, intent in enumerate(self.bank)
                  if segment == "any" or dict(intent.facets).get("gender", segment) in (segment, "unisex")]
            self._bank_by_segment.append(np.array(ok or range(len(self.bank)), dtype=np.int64))
        self.bank_table, self.bank_counts = segment_bank_table(self._bank_by_segment)

    @staticmethod
    def _reference_log_prices(items: ItemTable) -> np.ndarray:
        """``float (n,)`` log of the median price of each product's type (catalog median if untyped)."""
        logp = np.log(np.maximum(np.asarray(items.prices, dtype=np.float64), 1e-2))
        ref = np.full(items.n, np.median(logp) if items.n else 0.0)
        for member in items.facets.get("type", {}).values():
            if member.any():
                ref[member] = np.median(logp[member])
        return ref

    def _build_bank(self, rng: np.random.Generator) -> list[Intent]:
        """Draw ``query_bank_size`` intents from random catalog products (deduplicated by query text)."""
        bank: dict[str, Intent] = {}
        for _ in range(self.config.query_bank_size):
            target = int(rng.integers(self.items.n))
            values = self.items.item_facets[target]
            chosen = []
            for facet in INTENT_FACETS:
                options = values.get(facet, ())
                if options and (facet == "type" or rng.random() < _P_STATE[facet]):
                    value = options[int(rng.integers(len(options)))]
                    if not (facet == "pattern" and value == "solid"):
                        chosen.append((facet, value))
            intent = Intent(facets=tuple(chosen), target=target)
            bank.setdefault(self.query_text(intent), intent)
        return list(bank.values())

    def known_queries(self) -> list[str]:
        """Every query text this population can type (the env pre-encodes them in one batch)."""
        return [self.query_text(intent) for intent in self.bank]

    # -- sampling -------------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> ShopperState:
        """Sample a shopper: segment, taste ``N(0, I)``, price sensitivity, profile noise, willingness to pay."""
        traits = sample_traits(self.config, 1, self.visual_dim, rng)
        return ShopperState(
            segment=int(traits["segment"][0]), taste=traits["taste"][0],
            price_sensitivity=float(traits["price_sensitivity"][0]), profile_noise=traits["profile_noise"][0],
            patience=float(self.config.patience), willingness_to_pay=float(traits["willingness_to_pay"][0]))

    def profile(self, state: ShopperState) -> np.ndarray:
        """``float32 (profile_dim,)``: segment one-hot, noisy taste, noisy price sensitivity."""
        return profile_rows(np.array([state.segment]), state.taste[None, :], np.array([state.price_sensitivity]),
                            state.profile_noise[None, :])[0]

    def observable_state(self, state: ShopperState) -> ShopperState:
        """The shopper as a perfect model of this population would estimate them from the observation alone.

        Taste and price sensitivity are replaced by their posterior means given the noisy profile
        (taste ``~ N(0, I)`` seen through ``N(0, profile_noise^2)`` noise: ``profile / (1 + noise^2)``;
        price sensitivity by the linear (best linear unbiased) shrinkage of its Gamma prior), and the
        unobserved willingness to pay by its prior mean. The intent is kept: the query states all of its
        facets. Used by the ``profile_oracle`` baseline, the ceiling of what an agent that sees only the
        observation can reach under a myopic objective.
        """
        profile = self.profile(state)
        noise_var = self.config.profile_noise ** 2
        prior_mean = _PRICE_SENSITIVITY_SHAPE * _PRICE_SENSITIVITY_SCALE
        prior_var = _PRICE_SENSITIVITY_SHAPE * _PRICE_SENSITIVITY_SCALE ** 2
        shrink = prior_var / (prior_var + noise_var)
        price_sensitivity = max(0.0, prior_mean + shrink * (float(profile[-1]) - prior_mean))
        return replace(state, taste=(profile[len(SEGMENTS):-1] / (1.0 + noise_var)).astype(np.float32),
                       price_sensitivity=price_sensitivity, willingness_to_pay=self.config.budget_mean)

    def posterior_samples(self, state: ShopperState, n: int, rng: np.random.Generator) -> list[ShopperState]:
        """``n`` draws of the shopper from the posterior of their hidden traits given the observation alone.

        Taste from its exact Gaussian posterior ``N(profile / (1 + s^2), s^2 / (1 + s^2) I)`` (``s`` the
        profile noise); price sensitivity by importance resampling of ``8 n`` draws from its Gamma prior,
        weighted by the likelihood of the noisy profile entry; willingness to pay from its prior. Averaging a
        myopic value over the draws gives the Bayes-optimal observation-only ranker (``benchmarks/ceiling.py``
        compares it with :meth:`observable_state`'s plug-in estimate). With ``profile_noise=0`` taste and
        price sensitivity are the true ones.

        Args:
            state: The true shopper (only what :meth:`profile` shows of it is used, plus the intent).
            n: Number of draws (``>= 1``).
            rng: Generator for the draws.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        cfg = self.config
        profile = self.profile(state)
        observed_taste, observed_price = profile[len(SEGMENTS):-1].astype(np.float64), float(profile[-1])
        noise_var = cfg.profile_noise ** 2
        if noise_var == 0:
            tastes = np.repeat(observed_taste[None], n, axis=0)
            prices = np.full(n, max(observed_price, 0.0))
        else:
            tastes = observed_taste / (1 + noise_var) + np.sqrt(noise_var / (1 + noise_var)) * rng.normal(
                size=(n, self.visual_dim))
            prior = rng.gamma(_PRICE_SENSITIVITY_SHAPE, _PRICE_SENSITIVITY_SCALE, size=8 * n)
            log_w = -0.5 * (observed_price - prior) ** 2 / noise_var
            weights = np.exp(log_w - log_w.max())
            prices = prior[rng.choice(len(prior), size=n, p=weights / weights.sum())]
        wtp = cfg.budget_mean + cfg.budget_std * rng.normal(size=n)
        return [replace(state, taste=tastes[i].astype(np.float32), price_sensitivity=float(prices[i]),
                        willingness_to_pay=float(wtp[i])) for i in range(n)]

    def _sample_intent(self, state: ShopperState, rng: np.random.Generator) -> Intent:
        """An intent from the query bank that fits the shopper's segment."""
        return self.bank[int(sample_bank_rows(self.bank_table, self.bank_counts, np.array([state.segment]), rng)[0])]

    @staticmethod
    def query_text(intent: Intent) -> str:
        """Real query text of an intent, e.g. ``"women's striped blue cotton tee"``."""
        facets = dict(intent.facets)
        words = [_POSSESSIVE.get(facets.get("gender", ""), "")]
        words += [facets.get(f, "") for f in ("pattern", "colour", "material", "type")]
        return " ".join(w for w in words if w)

    def next_query(self, state: ShopperState, rng: np.random.Generator) -> Query:
        """The query for the current intent (a new intent is sampled when there is none)."""
        intent = state.intent if state.intent is not None else self._sample_intent(state, rng)
        return Query(text=self.query_text(intent), intent=intent)

    # -- utilities ------------------------------------------------------------------------------------
    def relevance(self, intent: Intent, rows: np.ndarray) -> np.ndarray:
        """``float (len(rows),)`` weighted fraction of the intent's facets each product has (0 for -1)."""
        rows = np.asarray(rows)
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        score = np.zeros(len(rows))
        total = 0.0
        for facet, value in intent.facets:
            w = _FACET_WEIGHT[facet]
            total += w
            member = self.items.facets[facet].get(value)
            if member is not None:
                score += w * member[safe]
        return np.where(valid, score / max(total, 1e-9), 0.0)

    def _visual_match(self, state: ShopperState, rows: np.ndarray) -> np.ndarray:
        return self.items.visual_z[rows] @ state.taste / np.sqrt(self.visual_dim)

    def budget(self, state: ShopperState, rows: np.ndarray) -> np.ndarray:
        """``float (len(rows),)`` the price the shopper will pay for each product without hesitation.

        ``median price of the product's type * exp(state.willingness_to_pay)``: a budget in currency that
        scales with what such products cost (``inf`` for a shopper without a budget).
        """
        rows = np.where(np.asarray(rows) >= 0, rows, 0)
        return np.exp(self._log_ref_price[rows] + state.willingness_to_pay)

    def _over_budget(self, state: ShopperState, rows: np.ndarray) -> np.ndarray:
        """``float (len(rows),)`` ``max(0, log(price / budget))`` (0 within budget)."""
        logp = np.log(np.maximum(self.items.prices[rows].astype(np.float64), 1e-2))
        return np.maximum(0.0, logp - self._log_ref_price[rows] - state.willingness_to_pay)

    def _duplicates_above(self, slate: np.ndarray) -> np.ndarray | None:
        """``int (N,)`` near-duplicates shown above each slot (``None`` when boredom is off)."""
        cfg = self.config
        if cfg.boredom == 0 or self.items.similarity is None:
            return None
        valid = slate >= 0
        vec = self.items.similarity[np.where(valid, slate, 0)]
        sim = vec @ vec.T
        dup = (sim > cfg.duplicate_threshold) & valid[:, None] & valid[None, :]
        return np.tril(dup, k=-1).sum(axis=1)

    def _utility_terms(self, state: ShopperState, intent: Intent, slate: np.ndarray, rows: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rel, visual match, price term, utility)``, each ``float (N,)``, for catalog ``rows``."""
        rel = self.relevance(intent, slate)
        vis = self._visual_match(state, rows)
        price = state.price_sensitivity * self.items.price_z[rows]
        return rel, vis, price, combined_utility(self.config, rel, vis, price)

    def utility(self, state: ShopperState, intent: Intent, rows: np.ndarray) -> np.ndarray:
        """``float (len(rows),)`` true utility of each product for the intent (0 for ``-1``); the
        ``utility`` of :meth:`item_probabilities` without computing the click and purchase terms."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = rows >= 0
        return np.where(valid, self._utility_terms(state, intent, rows, np.where(valid, rows, 0))[3], 0.0)

    def item_probabilities(self, state: ShopperState, intent: Intent, slate: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Attractiveness (after boredom), purchase-given-click probability and utility of each slot's product.

        Args:
            state: Shopper state.
            intent: The intent being served.
            slate: ``int64 (N,)`` catalog rows, ``-1`` = empty slot.

        Returns:
            ``(attractiveness (N,), p_buy (N,), utility (N,))``; all zero for empty slots.
        """
        cfg = self.config
        slate = np.asarray(slate, dtype=np.int64)
        valid = slate >= 0
        rows = np.where(valid, slate, 0)
        rel, vis, price, util = self._utility_terms(state, intent, slate, rows)
        attract = attractiveness(cfg, util, self._duplicates_above(slate))
        over = self._over_budget(state, rows) if cfg.buy_over_budget > 0 else None
        p_buy = purchase_probability(cfg, rel, vis, price, over)
        return np.where(valid, attract, 0.0), np.where(valid, p_buy, 0.0), np.where(valid, util, 0.0)

    # -- protocol -------------------------------------------------------------------------------------
    def expected_response(self, state: ShopperState, query: Query, slate: np.ndarray) -> ExpectedResponse:
        """Marginal click and purchase probabilities per slot and true utilities (privileged)."""
        attract, p_buy, utility = self.item_probabilities(state, query.intent, slate)
        click = self.click_model.click_probs(attract[None, :])[0]
        return ExpectedResponse(click_prob=click, purchase_prob=click * p_buy, utility=utility)

    def respond(self, state: ShopperState, query: Query, slate: np.ndarray, rng: np.random.Generator) -> Response:
        """Sample clicks from the click model, then purchases among the clicks."""
        attract, p_buy, _ = self.item_probabilities(state, query.intent, slate)
        clicks, purchases, dwell = sample_response(self.click_model, attract[None, :], p_buy[None, :], rng)
        return Response(clicks=clicks[0], purchases=purchases[0], dwell=dwell[0])

    def transition(self, state: ShopperState, query: Query, slate: np.ndarray, response: Response,
                   rng: np.random.Generator) -> tuple[ShopperState, bool]:
        """Apply drift, fatigue, satisfaction and patience; returns ``(new_state, left)``.

        * drift: ``taste <- (1 - drift) * taste + drift * mean(visual_z of clicked products)``;
        * fatigue: ``patience -= fatigue * (share of shown products with rel < 0.5)``, and
          ``no_click_penalty`` more after a slate without clicks;
        * satisfaction: after a purchase the intent is cleared (the next query samples a new one) and the
          shopper leaves with probability ``1 - p_continue_after_purchase``;
        * patience: the shopper leaves when patience is ``<= 0``.
        """
        cfg = self.config
        slate = np.asarray(slate, dtype=np.int64)
        shown = slate >= 0
        clicks = np.asarray(response.clicks, dtype=bool)
        purchases = np.asarray(response.purchases, dtype=bool)
        taste, patience, left = session_update(
            cfg, state.taste[None, :], np.array([state.patience], dtype=np.float64),
            self.relevance(query.intent, slate)[None, :], self.items.visual_z[np.where(shown, slate, 0)][None],
            shown[None, :], clicks[None, :], purchases[None, :], rng)
        clicked = slate[clicks & shown]
        history = (state.history + tuple(int(c) for c in clicked))[-cfg.history_size:]
        bought = bool(purchases.any())
        new_state = replace(state, taste=taste[0], patience=float(patience[0]), n_queries=state.n_queries + 1,
                            n_purchases=state.n_purchases + int(purchases.sum()), history=history,
                            intent=None if bought else query.intent)
        return new_state, bool(left[0])
