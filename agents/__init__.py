"""Agents: the candidate-set feature extractor, SB3 policies, the agent factory and baselines."""
