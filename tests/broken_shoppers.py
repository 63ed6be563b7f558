"""Plug-in shoppers with one defect each, shared by the conformance and env plug-in tests."""

from __future__ import annotations

import numpy as np

from experiments.examples.custom_shopper import PopularityShopper
from simulators.protocols import Response


class FloatClicks(PopularityShopper):
    def respond(self, state, query, slate, rng):
        r = super().respond(state, query, slate, rng)
        return Response(clicks=r.clicks.astype(float), purchases=r.purchases, dwell=r.dwell)


class Raises(PopularityShopper):
    def respond(self, state, query, slate, rng):
        raise KeyError("no such item")


class WrongProfile(PopularityShopper):
    def profile(self, state):
        return np.zeros(3, dtype=np.float32)


class StringQuery(PopularityShopper):
    def next_query(self, state, rng):
        return "red dress"


class BareTransition(PopularityShopper):
    def transition(self, state, query, slate, response, rng):
        return True
