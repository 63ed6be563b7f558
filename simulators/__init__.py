"""Simulated shoppers: the UserSimulator protocol, the default shopper, click models, logs and fitting."""
