"""Pictures of slates: the one drawing module of ``render_mode="rgb_array"``, ``shoprank watch`` and ``explain``.

A slate is drawn as a strip of product photos (the catalog's own: rendered by Pillow for the built-in catalog,
read from disk for a CSV catalog such as Luma), one tile per slot, each with its slot and retriever rank,
title, price, the agent's score, and the shopper's response: a blue frame and ``CLICK`` for a click, green and
``BUY`` for a purchase, red and ``RETURN`` for a product returned at the visit's end (``ShopRank-v1``). A
caption above the strip holds the query and the session's state.

Drawing is kept out of the envs' ``step``: an env stores what its last slate was (a few references), and
:func:`render_env` reads them only when ``render()`` is called. Every frame of one env has the same size
(Gymnasium's ``rgb_array`` convention, and what ``gymnasium.wrappers.RecordVideo`` needs), with even sides
(what H.264 video needs).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TILE_WIDTH = 120
"""Width in pixels of one product tile (the photo is drawn at ``TILE_WIDTH - 24`` pixels square)."""
CAPTION_LINES = 3
"""Lines of caption above the strip (fixed, so every frame of an env has the same height)."""
LINE_HEIGHT = 14
"""Pixels per line of text."""
TILE_TEXT_LINES = 5
"""Lines of text under each photo: slot and retriever rank, two of title, price and score, response."""

MARKS = (("clicked", "CLICK", (31, 119, 180)), ("bought", "BUY", (44, 160, 44)), ("returned", "RETURN", (214, 39, 40)))
"""``(SlateView attribute, label, RGB colour)`` of the response marks, weakest first (the strongest frames the photo)."""
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
FAINT = (150, 150, 150)
NEUTRAL_FRAME = (215, 215, 215)


@dataclass
class SlateView:
    """What one picture of a slate shows.

    Attributes:
        rows: ``int64 (N,)`` catalog rows in slot order, ``-1`` = empty slot.
        ranks: ``int64 (N,)`` each product's position in the retriever's order (0 = its top), ``-1`` unknown.
        scores: ``float (N,)`` the agent's score of each product, ``nan`` where it has none.
        clicked, bought, returned: ``bool (N,)`` the shopper's response per slot.
        caption: Lines above the strip (at most :data:`CAPTION_LINES`; longer lines are cut).
    """

    rows: np.ndarray
    ranks: np.ndarray | None = None
    scores: np.ndarray | None = None
    clicked: np.ndarray | None = None
    bought: np.ndarray | None = None
    returned: np.ndarray | None = None
    caption: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.rows)
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.ranks = np.full(n, -1, dtype=np.int64) if self.ranks is None else np.asarray(self.ranks, dtype=np.int64)
        self.scores = np.full(n, np.nan) if self.scores is None else np.asarray(self.scores, dtype=np.float64)
        for name in ("clicked", "bought", "returned"):
            value = getattr(self, name)
            setattr(self, name, np.zeros(n, dtype=bool) if value is None else np.asarray(value, dtype=bool))


def _font(size: int = 11):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's built-in scalable font (FreeType)
    except (TypeError, OSError, ImportError):  # an old Pillow or one without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, width: int, font) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _wrap(draw, text: str, width: int, font, lines: int) -> list[str]:
    """``text`` word-wrapped into at most ``lines`` lines of ``width`` pixels (the last one cut)."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and draw.textlength(line + " " + words[0], font=font) <= width:
            line += " " + words.pop(0)
        if len(out) == lines - 1 and words:
            line = line + " " + " ".join(words)
            words = []
        out.append(_fit(draw, line, width, font))
    return out + [""] * (lines - len(out))


def frame_size(n_slots: int, tile_width: int = TILE_WIDTH) -> tuple[int, int]:
    """``(height, width)`` of a slate picture of ``n_slots`` tiles (both even)."""
    photo = tile_width - 24
    height = 8 + CAPTION_LINES * LINE_HEIGHT + 6 + photo + 8 + TILE_TEXT_LINES * LINE_HEIGHT + 6
    return height + height % 2, n_slots * tile_width + (n_slots * tile_width) % 2


def draw_slate(catalog: Any, view: SlateView, tile_width: int = TILE_WIDTH) -> np.ndarray:
    """Draw a slate as a strip of product photos with a caption.

    Args:
        catalog: The :class:`~encoders.catalog.Catalog` (titles, prices, ``load_images``, ``has_image``).
        view: What to show.
        tile_width: Pixels per tile.

    Returns:
        ``uint8 (H, W, 3)`` with ``(H, W) = frame_size(len(view.rows), tile_width)``.
    """
    from PIL import Image, ImageDraw

    n = len(view.rows)
    height, width = frame_size(n, tile_width)
    photo = tile_width - 24
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, bold = _font(11), _font(12)
    y = 6
    for line in (list(view.caption) + [""] * CAPTION_LINES)[:CAPTION_LINES]:
        draw.text((8, y), _fit(draw, line, width - 16, bold), fill=INK, font=bold)
        y += LINE_HEIGHT
    top = y + 6
    shown = view.rows >= 0
    images = catalog.load_images(view.rows[shown]) if shown.any() else np.zeros((0, 1, 1, 3), np.uint8)
    has_image = np.asarray(catalog.has_image)
    for slot, (row, image_index) in enumerate(zip(view.rows, np.cumsum(shown) - 1)):
        x = slot * tile_width + 12
        frame_colour = NEUTRAL_FRAME
        for name, _, colour in MARKS:
            if getattr(view, name)[slot]:
                frame_colour = colour
        if row < 0:
            draw.rectangle([x, top, x + photo - 1, top + photo - 1], outline=NEUTRAL_FRAME, width=1)
            draw.text((x + 4, top + photo // 2 - 6), "(empty)", fill=FAINT, font=font)
            continue
        thumb = Image.fromarray(images[image_index]).resize((photo - 8, photo - 8), Image.Resampling.BILINEAR)
        draw.rectangle([x, top, x + photo - 1, top + photo - 1], fill=frame_colour)
        canvas.paste(thumb, (x + 4, top + 4))
        if not has_image[row]:
            draw.text((x + 8, top + photo // 2 - 6), "no photo", fill=FAINT, font=font)
        ty = top + photo + 6
        rank = f"   retriever #{view.ranks[slot] + 1}" if view.ranks[slot] >= 0 else ""
        lines = [f"{slot + 1}.{rank}"] + _wrap(draw, str(catalog.titles[row]), tile_width - 10, font, 2)
        score = f"   s {view.scores[slot]:+.2f}" if np.isfinite(view.scores[slot]) else ""
        lines.append(f"{float(catalog.prices[row]):.2f}{score}")
        for line in lines:
            draw.text((x - 6, ty), line, fill=INK, font=font)
            ty += LINE_HEIGHT
        mx = x - 6
        for name, label, colour in MARKS:
            if getattr(view, name)[slot]:
                draw.text((mx, ty), label, fill=colour, font=bold)
                mx += int(draw.textlength(label + " ", font=bold))
    return np.asarray(canvas, dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file bytes of a ``uint8 (H, W, 3)`` image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an image, for ``<img src=...>`` in a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


# -- what an env shows -----------------------------------------------------------------------------------
def _session_caption(env: Any) -> str:
    """The session's counters so far (queries, clicks, purchases, revenue; v1: visits, returns, trust)."""
    core = env.core.core
    clicks, purchases, revenue = core.sessions.totals[0]
    line = (f"session: {env.core.n_queries}/{env.config.max_queries} queries, {int(clicks)} clicks, "
            f"{int(purchases)} purchases, revenue {revenue:.2f}")
    relationship = getattr(core, "relationship_info", None)
    if callable(relationship):  # ShopRank-v1: the relationship now, and the last slate's returns
        info, state = relationship(0), core.state(0)
        line += (f" | visit {int(state.visit) + 1}, returned at the last slate {int(info['returns'])} "
                 f"(refund {info['refund']:.2f}), trust {float(state.trust):.2f} (hidden)")
    return line


def _returned_rows(env: Any) -> np.ndarray:
    """Catalog rows the v1 shopper returned at the last slate (empty for shoppers without returns)."""
    core = env.core.core
    returns_of = getattr(core.sim.user_simulator, "returns_of", None) if hasattr(core.sim, "user_simulator") else None
    if not callable(returns_of) or not hasattr(core, "state"):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(returns_of(core.state(0)), dtype=np.int64)


def env_view(env: Any) -> SlateView:
    """The :class:`SlateView` of a single or sequential ShopRank env (v0 or v1) now.

    * After a shown slate: that slate with its scores (the ``Box`` envs' action), retriever ranks and the
      shopper's clicks, purchases and returns.
    * While the sequential env builds a slate: the slots placed so far.
    * Before the first slate of an episode: the retriever's top ``N`` (what an agent reranks).
    """
    n = env.config.slate_size
    candidates = env.core.candidates
    order = list(getattr(env, "_order", []))
    last = getattr(env, "_last", None)
    state = _session_caption(env) if env.core.started else "session: not started (call reset())"
    target = getattr(env, "_slate_target", None)
    if order and (not callable(target) or len(order) < target()):  # a full order is the slate last shown
        positions = np.full(n, -1, dtype=np.int64)
        positions[: len(order)] = order
        rows = np.where(positions >= 0, candidates[np.maximum(positions, 0)], -1)
        caption = [f"query: {env.core.query_text!r}   building the slate: slot {len(order) + 1} of {n}", state]
        if last is not None:
            caption.append(_last_line(last))
        return SlateView(rows, ranks=positions, caption=caption)
    if last is None:
        if not env.core.started:
            return SlateView(np.full(n, -1), caption=["(call reset() to start a session)", state])
        return retriever_view(env, f"(no slate shown yet: the retriever's top {n})")
    outcome = last["outcome"]
    positions = last.get("positions")
    scores = last.get("scores")
    slot_scores = None
    if scores is not None and positions is not None:
        slot_scores = np.where(positions >= 0, np.asarray(scores, dtype=np.float64)[np.maximum(positions, 0)], np.nan)
    returned = np.isin(outcome.slate, _returned_rows(env)) & (outcome.slate >= 0)
    caption = [f"query: {last['query']!r}   " + _last_line(last), state]
    if outcome.left:
        caption.append("the shopper left after this slate")
    return SlateView(outcome.slate, ranks=positions, scores=slot_scores, clicked=outcome.clicks,
                     bought=outcome.purchases, returned=returned, caption=caption)


def retriever_view(env: Any, caption: str = "the retriever's order") -> SlateView:
    """The retriever's top ``N`` candidates of the env's current query (what an agent reranks)."""
    rows = env.core.candidates[: env.config.slate_size]
    return SlateView(rows, ranks=np.where(rows >= 0, np.arange(len(rows)), -1),
                     caption=[f"query: {env.core.query_text!r}   {caption}", _session_caption(env)])


def _last_line(last: dict) -> str:
    outcome = last["outcome"]
    return (f"last slate: reward {outcome.reward:.2f}, {int(np.sum(outcome.clicks))} clicks, "
            f"{int(np.sum(outcome.purchases))} purchases")


def render_env(env: Any) -> np.ndarray:
    """``render()`` of ``render_mode="rgb_array"``: ``uint8 (H, W, 3)`` picture of :func:`env_view`."""
    return draw_slate(env.world.catalog, env_view(env))


__all__ = ["SlateView", "data_uri", "draw_slate", "env_view", "frame_size", "png_bytes", "render_env", "retriever_view"]
