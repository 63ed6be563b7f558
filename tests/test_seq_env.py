"""ShopRankSeq-v0 / ShopRankSeqStatic-v0: checkers, masks, determinism, pickling, MaskablePPO smoke test."""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers the envs)
from encoders.synthetic import SyntheticCatalogConfig, generate_catalog
from envs import EnvConfig, ShopRankSeqEnv, ShopWorld, WorldConfig, static_config

FAST = WorldConfig(text_encoder="hashing")
K, N = 20, 10


def _config(env_id: str, **kw) -> EnvConfig:
    return static_config(world=FAST, **kw) if "Static" in env_id else EnvConfig(world=FAST, **kw)


def _make(env_id: str = "ShopRankSeq-v0", **kw) -> gym.Env:
    return gym.make(env_id, config=_config(env_id, **kw))


def _rollout(env: gym.Env, seed: int, max_steps: int = 200) -> list:
    """Random masked actions from a seeded generator; returns everything the env emitted."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(max_steps):
        action = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
        obs, reward, term, trunc, info = env.step(action)
        out.append((action, obs, reward, term, trunc, info))
        if term or trunc:
            break
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return a == b


@pytest.mark.parametrize("env_id", ["ShopRankSeq-v0", "ShopRankSeqStatic-v0"])
def test_env_checkers_pass(env_id: str) -> None:
    env = gym.make(env_id, config=_config(env_id), render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box / 2-D observation advice, shared with ShopRank-v0
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped, warn=True)
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == K
    obs, _ = env.reset(seed=0)
    assert obs["placed"].shape == (K,) and obs["slot"].shape == (N,) and obs["slot"][0] == 1.0
    assert env.observation_space.contains(obs)


def test_static_variant_is_one_slate_per_episode() -> None:
    trace = _rollout(_make("ShopRankSeqStatic-v0"), seed=3)
    steps = trace[1:]
    assert len(steps) == N and (steps[-1][3] or steps[-1][4])
    assert all(s[2] == 0.0 and not s[3] and not s[4] for s in steps[:-1])
    env = _make("ShopRankSeqStatic-v0")
    _rollout(env, seed=3)
    with pytest.raises(RuntimeError, match=re.escape("the episode has ended (terminated or truncated); call reset()")):
        env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))


def test_slate_builds_one_slot_per_step_and_reward_comes_when_full() -> None:
    env = _make()
    obs, _ = env.reset(seed=1)
    core = env.unwrapped.core
    candidates = core.candidates.copy()
    picks = [19, 3, 0, 7, 12, 5, 8, 1, 2, 4]
    for slot, action in enumerate(picks[:-1]):
        obs, reward, term, trunc, info = env.step(action)
        assert reward == 0.0 and not term and not trunc and info["slot"] == slot and not info["slate_done"]
        assert obs["placed"][action] == 1.0 and obs["slot"][slot + 1] == 1.0
        assert obs["placed"].sum() == slot + 1
    obs, reward, term, trunc, info = env.step(picks[-1])
    assert info["slate_done"]
    np.testing.assert_array_equal(info["shown_ids"], candidates[picks])
    prices = env.unwrapped.world.items.prices[info["shown_ids"]]
    # revenue = price of purchased products; reward = RewardSpec of the parts
    assert info["revenue"] == pytest.approx(float(prices[info["purchased_positions"]].sum()), rel=1e-6)
    spec = env.unwrapped.config.reward
    assert reward == pytest.approx(spec.click * info["clicks"] + spec.purchase * info["purchases"]
                                   + spec.revenue * info["revenue"])
    if not (term or trunc):
        assert obs["placed"].sum() == 0 and obs["slot"][0] == 1.0  # next query, fresh slate
        assert env.unwrapped.action_masks().all()


def test_action_masks_and_invalid_actions() -> None:
    env = _make()
    env.reset(seed=2)
    unwrapped = env.unwrapped
    mask = unwrapped.action_masks()
    assert mask.dtype == bool and mask.shape == (K,) and mask.all()
    env.step(4)
    assert not unwrapped.action_masks()[4] and unwrapped.action_masks().sum() == K - 1
    with pytest.raises(ValueError, match=re.escape("action 4 is masked: candidate 4 was already placed in this "
                                                   "slate; choose an index where env.action_masks() is True.")):
        env.step(4)
    with pytest.raises(ValueError, match=re.escape(f"action {K} is out of range: candidate indices are 0 .. {K - 1}.")):
        env.step(K)
    with pytest.raises(ValueError, match=re.escape("action -1 is out of range")):
        env.step(-1)
    with pytest.raises(ValueError, match=re.escape(f"action must be one integer candidate index in [0, {K}), got 2.5")):
        env.step(2.5)
    with pytest.raises(ValueError, match="action must be one integer candidate index"):
        env.step(np.array([1, 2]))
    env.step(np.array([5]))  # numpy scalars / (1,) arrays from predict() are fine
    env.step(np.int64(6))
    assert unwrapped.slot == 3
    # action_space.sample() respects the mask
    for _ in range(20):
        assert unwrapped.action_masks()[env.action_space.sample()]


def test_padded_candidates_are_masked_and_short_slate_is_shown() -> None:
    # 15 products < K = 20 candidates: 5 padded candidates; slate of N = 20 shows after 15 placements.
    full = generate_catalog(SyntheticCatalogConfig(n_products=100))
    small = replace(full, name="tiny-15", source_fingerprint="tiny-15",
                    **{c: getattr(full, c)[:15] for c in ("ids", "titles", "descriptions", "categories",
                                                          "attributes", "prices", "has_image", "visual")})
    world_config = WorldConfig(text_encoder="hashing", image_encoder="", cache_dir="")
    config = EnvConfig(n_candidates=20, slate_size=20, world=world_config)
    env = gym.make("ShopRankSeq-v0", config=config, world=ShopWorld(world_config, catalog=small))
    env.reset(seed=0)
    unwrapped = env.unwrapped
    valid = unwrapped.core.candidates >= 0
    assert valid.sum() == 15
    np.testing.assert_array_equal(unwrapped.action_masks(), valid)
    padded = int(np.flatnonzero(~valid)[0])
    with pytest.raises(ValueError, match=f"action {padded} is masked: candidate {padded} is a padded"):
        env.step(padded)
    for step, action in enumerate(np.flatnonzero(valid)):
        _, _, _, _, info = env.step(int(action))
        assert info["slate_done"] == (step == 14)
    assert (info["shown_ids"] >= 0).sum() == 15 and np.all(info["shown_ids"][15:] == -1)


def test_determinism_same_seed_same_rollout() -> None:
    a, b = _rollout(_make(), seed=11), _rollout(_make(), seed=11)
    assert _same(a, b)
    assert not _same(a, _rollout(_make(), seed=12))


def test_pickle_round_trip_continues_identically() -> None:
    env = _make()
    env.reset(seed=5)
    env.step(0)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.action_space.sample() in np.flatnonzero(clone.unwrapped.action_masks())
    for action in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]:
        out_a, out_b = env.step(action), clone.step(action)
        assert _same(out_a, out_b)
        if out_a[2] or out_a[3]:
            break


def test_privileged_scores_mask_placed_candidates() -> None:
    env = _make()
    env.reset(seed=6)
    scores = env.unwrapped.privileged_scores()
    assert scores.shape == (K,) and np.all(np.isfinite(scores))
    best = int(np.argmax(scores))
    env.step(best)
    after = env.unwrapped.privileged_scores()
    assert after[best] == -np.inf and np.array_equal(np.isfinite(after), env.unwrapped.action_masks())


def test_vec_env_action_masks_and_maskable_ppo_smoke() -> None:
    vec = DummyVecEnv([lambda: _make(), lambda: _make("ShopRankSeqStatic-v0")])
    vec.reset()
    masks = get_action_masks(vec)
    assert masks.shape == (2, K) and masks.all()
    vec.step(np.array([3, 7]))
    masks = get_action_masks(vec)
    assert not masks[0, 3] and not masks[1, 7] and masks.sum() == 2 * (K - 1)
    model = MaskablePPO("MultiInputPolicy", vec, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu",
                        policy_kwargs={"net_arch": [32]})
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    env = _make()
    obs, _ = env.reset(seed=0)
    for _ in range(N):
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=True)
        assert env.unwrapped.action_masks()[int(action)]
        obs, *_ = env.step(action)


def test_render_ansi() -> None:
    env = gym.make("ShopRankSeq-v0", config=_config("ShopRankSeq-v0"), render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert "building slot 2/10" in text and "1. [ 0]" in text
    assert isinstance(env.unwrapped, ShopRankSeqEnv)


def test_subproc_vec_env_action_masks() -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from envs import get_world

    get_world(FAST)  # built once here; forked workers inherit it
    vec = SubprocVecEnv([lambda: _make(), lambda: _make()], start_method="fork")
    try:
        vec.reset()
        vec.step(np.array([0, 19]))
        masks = get_action_masks(vec)
        assert masks.shape == (2, K) and not masks[0, 0] and not masks[1, 19] and masks.sum() == 2 * (K - 1)
    finally:
        vec.close()


@pytest.mark.parametrize("expected", [False, True])
def test_position_rewards_split_the_slate_reward(expected: bool) -> None:
    from envs.reward import RewardSpec

    for env_id in ("ShopRankSeq-v0", "ShopRank-v0"):
        env = _make(env_id, reward=RewardSpec(expected=expected))
        env.reset(seed=4)
        done, seen = False, 0
        while not done:
            action = (int(np.flatnonzero(env.unwrapped.action_masks())[0]) if env_id.startswith("ShopRankSeq")
                      else env.action_space.sample())
            _, reward, term, trunc, info = env.step(action)
            done = term or trunc
            if "position_rewards" in info:
                seen += 1
                shares = info["position_rewards"]
                assert shares.shape == (N,)
                assert shares.sum() == pytest.approx(reward, rel=1e-6)
                if not expected:
                    clicked = np.zeros(N, bool)
                    clicked[info["clicked_positions"]] = True
                    assert np.all(shares[~clicked] == 0.0)
        assert seen >= 1
