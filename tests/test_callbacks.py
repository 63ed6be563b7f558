"""``shop/*`` training curves are means over the sessions that ended in each logging window, with the count."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.logger import KVWriter, Logger

from agents.callbacks import ShopMetricsCallback


class Collect(KVWriter):
    """Keeps every dump's key/values."""

    def __init__(self) -> None:
        self.dumps: list[dict] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.dumps.append({k: v for k, v in key_values.items() if k.startswith("shop/")})

    def close(self) -> None:
        pass


class StubModel:
    def __init__(self) -> None:
        self.out = Collect()
        self.logger = Logger(folder=None, output_formats=[self.out])
        self.num_timesteps = 0

    def get_env(self):
        return None


def slate(reward_parts: tuple[float, float, float], clicked: list[int], ndcg: float, left: bool = False) -> dict:
    clicks, purchases, revenue = reward_parts
    return {"shown_ids": np.array([4, 7, -1]), "clicked_positions": np.array(clicked), "clicks": clicks,
            "purchases": purchases, "revenue": revenue, "ndcg": ndcg, "left": left}


def step(callback: ShopMetricsCallback, infos: list[dict], rewards: list[float], dones: list[bool]) -> None:
    callback.locals = {"infos": infos, "rewards": np.array(rewards), "dones": np.array(dones)}
    callback.on_step()


def test_each_window_logs_means_over_its_finished_sessions_and_their_count():
    model = StubModel()
    cb = ShopMetricsCallback()
    cb.init_callback(model)
    # window 1: env 0 plays a 2-query session (rewards 1 + 2), env 1 a 1-query session (reward 5)
    step(cb, [slate((1, 0, 0), [0], 0.5), slate((2, 1, 30.0), [0, 1], 0.9, left=True)], [1.0, 5.0], [False, True])
    step(cb, [slate((2, 0, 0), [1], 0.7, left=True), {}], [2.0, 0.0], [True, False])
    model.logger.dump(1)
    # window 2: env 1's session ends (reward 3); env 0's session is still open at the dump
    step(cb, [slate((0, 0, 0), [], 0.1), slate((1, 0, 0), [0], 0.2)], [0.0, 3.0], [False, True])
    model.logger.dump(2)
    # window 3: env 0's session ends; a dump with no finished session logs nothing under shop/
    step(cb, [slate((1, 1, 10.0), [1], 0.3), {}], [4.0, 0.0], [True, False])
    model.logger.dump(3)
    model.logger.dump(4)
    first, second, third, fourth = model.out.dumps
    assert first["shop/episodes"] == 2 and first["shop/reward"] == pytest.approx((3.0 + 5.0) / 2)
    assert first["shop/clicks"] == pytest.approx((3 + 2) / 2) and first["shop/revenue"] == pytest.approx(15.0)
    assert first["shop/session_length"] == pytest.approx(1.5) and first["shop/abandon_rate"] == pytest.approx(1.0)
    assert first["shop/ctr"] == pytest.approx(5 / 6)  # clicks over shown products (2 per slate, 3 slates)
    assert first["shop/ndcg"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert first["shop/ctr_pos_1"] == pytest.approx(2 / 3) and first["shop/ctr_pos_2"] == pytest.approx(2 / 3)
    assert "shop/ctr_pos_3" not in first  # slot 3 never showed a product
    assert second["shop/episodes"] == 1 and second["shop/reward"] == pytest.approx(3.0)
    assert second["shop/ndcg"] == pytest.approx(0.2) and second["shop/abandon_rate"] == 0.0
    assert third["shop/episodes"] == 1 and third["shop/reward"] == pytest.approx(4.0)
    assert third["shop/session_length"] == pytest.approx(2.0) and third["shop/ndcg"] == pytest.approx(0.2)
    assert fourth == {}


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_training_logs_every_finished_session_once(tmp_path, algo):
    from dataclasses import replace

    from agents.factory import AgentConfig, train_agent
    from envs import WorldConfig, static_config
    from experiments.plots import read_scalars

    config = AgentConfig(n_envs=1, n_steps=40, batch_size=20, n_epochs=1, hidden=16, heads=2, learning_starts=20,
                         buffer_size=500)
    env_config = replace(static_config(world=WorldConfig(text_encoder="hashing")), max_queries=1,
                         n_candidates=6, slate_size=3)
    model = train_agent(algo, env_config, 200, seed=0, run_dir=tmp_path, config=config)
    scalars = read_scalars(tmp_path / "tb")
    episodes = scalars[scalars.tag == "shop/episodes"].value.to_numpy()
    finished = model._episode_num if algo == "dqn" else 200  # PPO on the static env: one query per session
    if algo == "dqn":  # SB3 dumps DQN's logs every log_interval = 4 episodes: 4 sessions per window
        assert np.all(episodes == 4) and episodes.sum() == 4 * (finished // 4)
    else:  # one window per rollout of n_steps = 40 one-query sessions
        assert np.all(episodes == 40) and episodes.sum() == finished
    reward = scalars[scalars.tag == "shop/reward"].value.to_numpy()
    assert len(reward) == len(episodes) and np.isfinite(reward).all()
