"""``shoprank watch``: an agent's sessions as pictures, side by side with the retriever's order.

Example::

    shoprank watch --checkpoint runs/ppo/checkpoint --sessions 3 --out runs/ppo/watch

plays ``--sessions`` sessions (shoppers of ``--seed``, the evaluation's reset seeds) with the agent, and for
every query draws the agent's slate (``render_mode="rgb_array"``, :mod:`envs.render`: product photos, retriever
rank, price, score, the shopper's clicks and purchases, the session in a caption) above the retriever's top
``N`` for the same query. Written to ``--out``: ``watch.html`` (one self-contained page, the sessions in
columns, images inline) and, where the ``video`` extra (moviepy) is installed, ``session_<i>.mp4`` per
session (one frame per query); with ``--frames``, every slate as a PNG.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from encoders.errors import ConfigError, command_errors
from experiments.evaluate_cli import check_out
from experiments.explain import add_checkpoint_arguments, load_checkpoint, make_env

VIDEO_HINT = "MP4s need the video extra: pip install 'shoprank[video]' (moviepy)."


def watch_session(agent: Any, env: Any, reset_seed: int) -> list[dict[str, Any]]:
    """Play one session; per shown slate: ``{"agent": frame, "retriever": frame, "reward": float}`` (frames
    ``uint8 (H, W, 3)``; the retriever frame shows the query's candidates before the agent reranked them)."""
    from envs.render import draw_slate, retriever_view

    base = env.unwrapped
    catalog = base.world.catalog
    obs, _ = env.reset(seed=reset_seed)
    steps: list[dict[str, Any]] = []
    retriever = draw_slate(catalog, retriever_view(base))
    done = False
    while not done:
        extra = {"action_masks": base.action_masks()} if agent.sequential else {}
        action, _ = agent.predict(obs, deterministic=True, **extra)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if "shown_ids" in info:
            steps.append({"agent": env.render(), "retriever": retriever, "reward": float(reward)})
            if not done:
                retriever = draw_slate(catalog, retriever_view(base))
    return steps


def watch_html(sessions: list[list[dict[str, Any]]], heading: str) -> str:
    """The page: one column per session, one row per query (the agent's slate above the retriever's order)."""
    from envs.render import data_uri

    n_rows = max(len(s) for s in sessions)
    head = "".join(f"<th>session {i + 1}: {len(s)} queries, reward {sum(x['reward'] for x in s):.2f}</th>"
                   for i, s in enumerate(sessions))
    rows = []
    for q in range(n_rows):
        cells = []
        for s in sessions:
            if q < len(s):
                cells.append(f'<td><img src="{data_uri(s[q]["agent"])}" alt="agent slate">'
                             f'<div class="ret"><img src="{data_uri(s[q]["retriever"])}" alt="retriever order"></div></td>')
            else:
                cells.append("<td>(session over)</td>")
        rows.append(f"<tr><th>query {q + 1}</th>{''.join(cells)}</tr>")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>shoprank watch</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;table-layout:fixed;width:100%}}
td,th{{border:1px solid #ddd;padding:4px;vertical-align:top;font-size:13px}} img{{width:100%}}
.ret{{opacity:0.75;border-top:1px dashed #aaa;margin-top:4px}}</style></head><body>
<h1>Watching the agent</h1><p>{html.escape(heading)}</p>
<p>Each cell: the agent's slate (frame: blue = clicked, green = bought, red = returned; <em>s</em> = the agent's
score; <em>retriever #r</em> = the product's place in the retriever's order), and below it, faded, the
retriever's own top of the same query.</p>
<table><tr><th></th>{head}</tr>{''.join(rows)}</table></body></html>
"""


def write_videos(sessions: list[list[dict[str, Any]]], out: Path, fps: float = 1.0) -> list[Path]:
    """One MP4 per session (the agent's frames) with moviepy; ``[]`` when moviepy is not installed."""
    if importlib.util.find_spec("moviepy") is None:
        return []
    from moviepy.video.io.ImageSequenceClip import ImageSequenceClip

    paths = []
    for i, steps in enumerate(sessions):
        path = out / f"session_{i + 1}.mp4"
        frames = [s["agent"] for s in steps] or [np.zeros((2, 2, 3), np.uint8)]
        ImageSequenceClip(frames, fps=fps).write_videofile(str(path), logger=None)
        paths.append(path)
    return paths


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank watch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_checkpoint_arguments(p)
    p.add_argument("--sessions", type=int, default=3, help="sessions to play")
    p.add_argument("--seed", type=int, default=0, help="the shoppers (the evaluation's reset seeds of this seed)")
    p.add_argument("--frames", action="store_true", help="also write each slate as session_<i>_query_<q>.png")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    return p


@command_errors("watch")
def main(argv: Sequence[str] | None = None) -> int:
    """Write the page (and the MP4s); returns an exit code."""
    from agents.logging_policy import derive_seed

    args = make_parser().parse_args(argv)
    if not 1 <= args.sessions <= 20:
        raise ConfigError(f"--sessions must be between 1 and 20 (they go side by side on one page), got {args.sessions}.")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}.")
    check_out(args.out)
    agent, config, world, env_id = load_checkpoint(args, "watch")
    env = make_env(agent, config, world, env_id, render_mode="rgb_array")
    sessions = [watch_session(agent, env, derive_seed(args.seed, i)) for i in range(args.sessions)]
    args.out.mkdir(parents=True, exist_ok=True)
    heading = f"{agent.name} checkpoint {args.checkpoint}, {args.sessions} shoppers of seed {args.seed}"
    (args.out / "watch.html").write_text(watch_html(sessions, heading), encoding="utf-8")
    if args.frames:
        from envs.render import png_bytes

        for i, steps in enumerate(sessions):
            for q, step in enumerate(steps):
                (args.out / f"session_{i + 1}_query_{q + 1}.png").write_bytes(png_bytes(step["agent"]))
    videos = write_videos(sessions, args.out)
    print(f"wrote {args.out / 'watch.html'}" + (f" and {len(videos)} MP4s" if videos else f"; {VIDEO_HINT}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
