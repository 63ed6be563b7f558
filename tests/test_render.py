"""``render_mode="rgb_array"``: slates as strips of product photos (:mod:`envs.render`) on every env."""

from __future__ import annotations

import dataclasses
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RecordVideo, RenderCollection

import envs  # noqa: F401  (registers the ids)
from envs import EnvConfig, WorldConfig
from envs.render import MARKS, NEUTRAL_FRAME, SlateView, draw_slate, frame_size, png_bytes
from envs.world import get_world

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)
ENV_IDS = ["ShopRank-v0", "ShopRankStatic-v0", "ShopRankSeq-v0", "ShopRankSeqStatic-v0", "ShopRank-v1",
           "ShopRankSeq-v1"]


def make(env_id: str, **kwargs) -> gym.Env:
    config = gym.registry[env_id].kwargs.get("config") or EnvConfig()
    return gym.make(env_id, config=dataclasses.replace(config, world=FAST_WORLD), **kwargs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_env_renders_rgb_frames_of_one_size(env_id):
    env = make(env_id, render_mode="rgb_array")
    assert set(env.metadata["render_modes"]) >= {"ansi", "rgb_array"}
    env.reset(seed=0)
    first = env.render()
    n = env.unwrapped.config.slate_size
    assert first.dtype == np.uint8 and first.shape == frame_size(n) + (3,)
    assert first.shape[0] % 2 == 0 and first.shape[1] % 2 == 0  # H.264 needs even sides
    frames = [first]
    for _ in range(3 * n):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(env.render())
        if terminated or truncated:
            break
    assert {f.shape for f in frames} == {first.shape}
    assert any(not np.array_equal(f, first) for f in frames[1:])  # the picture follows the episode


@pytest.mark.parametrize("env_id", ["ShopRank-v0", "ShopRankSeq-v0"])
def test_ansi_still_renders_text(env_id):
    env = make(env_id, render_mode="ansi")
    env.reset(seed=0)
    assert "query:" in env.render()


def test_unknown_render_mode_is_refused():
    from envs import ShopRankEnv

    with pytest.raises(ValueError, match=r"render_mode must be one of \['ansi', 'rgb_array'\] or None, got 'video'."):
        ShopRankEnv(EnvConfig(world=FAST_WORLD), render_mode="video")


def test_frame_shows_the_shown_slate_with_scores_and_marks():
    env = make("ShopRank-v0", render_mode="rgb_array").unwrapped
    env.reset(seed=3)
    k = env.config.n_candidates
    scores = np.linspace(-1.0, 1.0, k)  # reverses the retriever's order
    env.step(scores)
    from envs.render import env_view

    view = env_view(env)
    last = env._last["outcome"]
    assert np.array_equal(view.rows, last.slate)
    assert view.ranks.tolist() == list(range(k - 1, k - 1 - env.config.slate_size, -1))
    assert np.allclose(view.scores, scores[view.ranks])
    assert np.array_equal(view.clicked, last.clicks) and np.array_equal(view.bought, last.purchases)


def test_sequential_frame_shows_the_slate_once_it_is_full():
    from envs.render import env_view

    env = make("ShopRankSeqStatic-v0", render_mode="rgb_array").unwrapped
    env.reset(seed=2)
    n = env.config.slate_size
    for slot in range(n):
        view = env_view(env)
        if slot:  # the slots placed so far, the rest empty
            assert view.ranks.tolist() == list(range(slot)) + [-1] * (n - slot)
        _, _, terminated, _, _ = env.step(slot)
    assert terminated  # one slate per episode: the order stays full after it was shown
    view = env_view(env)
    assert np.array_equal(view.rows, env._last["outcome"].slate) and view.ranks.tolist() == list(range(n))
    assert np.array_equal(view.clicked, env._last["outcome"].clicks)
    assert "building" not in view.caption[0]


def test_marks_frame_the_photos_in_their_colours(tmp_path):
    catalog = get_world(FAST_WORLD).catalog
    view = SlateView(np.array([0, 1, 2, 3, -1]), ranks=np.array([4, 0, 1, 2, -1]),
                     scores=np.array([1.5, 0.2, -0.3, np.nan, np.nan]), clicked=[True, True, False, False, False],
                     bought=[False, True, False, False, False], returned=[False, False, True, False, False],
                     caption=["query: 'test'", "session: a caption"])
    image = draw_slate(catalog, view, tile_width=120)
    (tmp_path / "slate.png").write_bytes(png_bytes(image))  # to look at by eye
    height, _ = frame_size(5)
    assert image.shape == (height, 600, 3)
    top = 8 + 3 * 14 + 6  # caption, then the photo frames
    corner = {slot: tuple(image[top + 1, slot * 120 + 13]) for slot in range(4)}
    colours = {label: colour for _, label, colour in MARKS}
    assert corner == {0: colours["CLICK"], 1: colours["BUY"], 2: colours["RETURN"], 3: NEUTRAL_FRAME}


def test_render_collection_collects_an_episode():
    env = RenderCollection(make("ShopRank-v0", render_mode="rgb_array"))
    env.reset(seed=1)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    frames = env.render()
    assert len(frames) == steps + 1 and all(f.dtype == np.uint8 and f.ndim == 3 for f in frames)


def _record_episode(env_id: str, folder) -> int:
    env = RecordVideo(make(env_id, render_mode="rgb_array"), str(folder), episode_trigger=lambda e: e == 0,
                      disable_logger=True)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    env.close()
    return steps


def test_record_video_records_an_episode(tmp_path, monkeypatch):
    """RecordVideo hands the env's frames of one episode to moviepy's ``ImageSequenceClip``; moviepy (the
    ``video`` extra) is replaced here by a recorder of what it is given, so this runs without it."""
    given = []

    class Clip:
        def __init__(self, frames, fps):
            given.append((list(frames), fps))

        def write_videofile(self, path, logger=None):
            open(path, "wb").close()

    fake = types.ModuleType("moviepy")
    clip_module = types.ModuleType("moviepy.video.io.ImageSequenceClip")
    clip_module.ImageSequenceClip = Clip
    for name, module in (("moviepy", fake), ("moviepy.video", types.ModuleType("moviepy.video")),
                         ("moviepy.video.io", types.ModuleType("moviepy.video.io")),
                         ("moviepy.video.io.ImageSequenceClip", clip_module)):
        monkeypatch.setitem(sys.modules, name, module)
    steps = _record_episode("ShopRank-v0", tmp_path)
    (frames, fps), = given
    assert fps == 4 and len(frames) == steps + 1
    assert {f.shape for f in frames} == {frame_size(10) + (3,)} and frames[0].dtype == np.uint8
    assert [p.name for p in tmp_path.glob("*.mp4")] == ["rl-video-episode-0.mp4"]


def test_record_video_writes_an_mp4(tmp_path):
    pytest.importorskip("moviepy", reason="the video extra (pip install 'shoprank[video]') is not installed")
    _record_episode("ShopRank-v0", tmp_path)
    video = tmp_path / "rl-video-episode-0.mp4"
    assert video.is_file() and video.stat().st_size > 1000
