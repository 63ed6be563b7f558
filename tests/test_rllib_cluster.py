"""A real two-node Ray cluster on this machine (loopback): a head and a worker node, ShopRank's agent trained
through the cluster's address with one env runner per node, and the exported checkpoint evaluated.

Skipped without Ray (``make distributed`` installs it); ``slow`` (two raylets, two env-runner processes:
~1-3 min on a 2-core machine). Run it alone with ``pytest tests/test_rllib_cluster.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not in the dev extra: install the distributed extra (make distributed, "
                         "or pip install -c constraints.txt -e '.[dev,distributed]') to run the RLlib backend tests")

from agents.checkpoint import load_agent  # noqa: E402
from envs import EnvConfig, WorldConfig  # noqa: E402
from experiments.evaluate import evaluate_agents  # noqa: E402
from experiments.rllib_backend import RLLIB_AGENT, RllibConfig, retry_ray_start, train_rllib  # noqa: E402

TINY = EnvConfig(n_candidates=10, slate_size=5, max_queries=3,
                 world=WorldConfig(n_products=300, text_encoder="hashing", image_encoder="", cache_dir=""))


@pytest.mark.slow
def test_env_runners_on_two_nodes_and_the_checkpoint_evaluates(tmp_path):
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    # one CPU per node and one CPU per env runner: Ray can only place the two runners one on each node
    cluster = retry_ray_start(lambda: Cluster(initialize_head=True,
                                              head_node_args={"num_cpus": 1, "include_dashboard": False}))
    try:
        worker = retry_ray_start(lambda: cluster.add_node(num_cpus=1))
        cluster.wait_for_nodes(timeout=120)
        config = RllibConfig(agent=replace(RLLIB_AGENT, batch_size=32, n_epochs=1), train_batch_size=64,
                             num_envs_per_env_runner=4, num_cpus_per_env_runner=1)
        summary = train_rllib(TINY, num_env_runners=2, iterations=2, run_dir=tmp_path, address=cluster.address,
                              config=config)
        assert ray.is_initialized()  # joined, not started: a cluster given by address is left running
        nodes = summary["env_runner_nodes"]
        assert sorted(nodes) == sorted([cluster.head_node.node_id, worker.node_id])
        assert summary["env_steps"] >= 128
    finally:
        ray.shutdown()
        cluster.shutdown()
    agent = load_agent(tmp_path / "checkpoint")
    df = evaluate_agents({"rllib_ppo": lambda env, seed: agent}, "ShopRank-v0", TINY, [0], 5, progress=False)
    assert len(df) == 5 and np.isfinite(df["reward"]).all()
