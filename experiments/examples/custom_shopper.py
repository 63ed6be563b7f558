"""A popularity-biased shopper: a complete ShopRank plug-in in 30 lines (docs/custom_simulator.md)."""
import numpy as np
from simulators.protocols import Query, Response


class PopularityShopper:
    """Clicks popular products of the queried type near the top, buys 20% of clicks, may leave each query."""
    profile_dim = 1  # observable profile: the shopper's leave probability
    def __init__(self, items, n_slots=10, p_leave=0.3):
        self.types = items.facets["type"]  # product type -> bool (n,) membership; queries name a type
        self.popularity = 1 - np.exp(-np.random.default_rng(0).pareto(1.5, items.n))  # fixed, in [0, 1)
        self.examination, self.p_leave = 0.85 ** np.arange(n_slots), p_leave  # position bias
    def reset(self, rng):  # hidden state: any object you treat as immutable
        return {"p_leave": self.p_leave * rng.uniform(0.5, 1.5)}
    def profile(self, state):
        return np.array([state["p_leave"]], dtype=np.float32)
    def next_query(self, state, rng):
        return Query(text=sorted(self.types)[rng.integers(len(self.types))])
    def respond(self, state, query, slate, rng):  # slate: int64 (N,) catalog rows, -1 = empty slot
        on_topic = np.where(self.types[query.text][slate], 1.0, 0.1)
        p_click = np.where(slate >= 0, self.examination[: len(slate)] * self.popularity[slate] * on_topic, 0.0)
        clicks = rng.random(len(slate)) < p_click
        purchases = clicks & (rng.random(len(slate)) < 0.2)
        return Response(clicks=clicks, purchases=purchases, dwell=np.where(clicks, 30.0, 0.0).astype(np.float32))
    def transition(self, state, query, slate, response, rng):  # -> (new state, left?)
        return state, bool(rng.random() < state["p_leave"])


def make(items, n_slots):  # EnvConfig(simulator="experiments.examples.custom_shopper:make")
    return PopularityShopper(items, n_slots)
