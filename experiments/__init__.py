"""Experiments: the shoprank CLI, training, evaluation, comparison and reports."""
