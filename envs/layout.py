"""Named features of the ShopRank observation: which columns of which block hold what.

:class:`FeatureLayout` is built with the env (from its config and world) and exposed as
``env.unwrapped.layout`` (the vector env has one too). Consumers look features up by name instead of by
column position, so adding a feature cannot silently shift meanings::

    layout = env.unwrapped.layout
    rank = obs["candidates"][..., layout.column("retriever_rank")]      # (..., K)
    fused = obs["candidates"][..., layout.columns("fused")]             # (..., K, F)

It is JSON-serialisable (:meth:`to_dict` / :meth:`from_dict`), so checkpoints save it and refuse to load
under an env whose layout differs (:meth:`check_matches`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoders.errors import ConfigError

LAYOUT_VERSION = 1
"""Bumped when the meaning of a named feature changes without its name changing."""

CANDIDATE_EXTRAS = ("retriever_score", "retriever_rank", "price_z", "has_photo")
"""Per-candidate numeric features after the fused vector, in column order: retriever score, retriever rank
score ``1 - rank / K``, price z-score, has-photo flag (0/1)."""

SESSION_FEATURES = ("queries_used", "clicks", "purchases", "last_ctr")
"""Columns of the ``session`` block: queries so far / budget, clicks so far / 10, purchases so far / 5, the
last slate's click-through rate."""


class LayoutMismatchError(ConfigError):
    """Two feature layouts differ (e.g. a checkpoint trained under another observation layout)."""


@dataclass(frozen=True)
class FeatureLayout:
    """Names of the observation's columns.

    Attributes:
        blocks: ``(key, shape)`` of every observation block, in the order the env builds them.
        candidates: ``(name, start, stop)`` column ranges of the ``candidates`` block's last axis.
        session: Names of the ``session`` block's columns, in order.
        version: :data:`LAYOUT_VERSION` of the code that built it.
        attribute_buckets: Ids of the ``attributes`` block (hashed attribute ids, :mod:`envs.attributes`) are in
            ``0 .. attribute_buckets - 1``; 0 when the observation has no such block.
    """

    blocks: tuple[tuple[str, tuple[int, ...]], ...]
    candidates: tuple[tuple[str, int, int], ...]
    session: tuple[str, ...] = SESSION_FEATURES
    version: int = LAYOUT_VERSION
    attribute_buckets: int = 0

    @classmethod
    def build(cls, n_candidates: int, history_size: int, fused_dim: int, query_dim: int,
              profile_dim: int, attribute_width: int = 0, attribute_buckets: int = 0) -> "FeatureLayout":
        """The layout of ``ShopRank-v0``'s observation for these sizes (see ``ShopRankEnv``'s docstring); with
        ``attribute_buckets > 0`` an ``attributes (K, attribute_width)`` block follows ``mask``."""
        k, f = n_candidates, fused_dim
        columns = [("fused", 0, f)] + [(name, f + i, f + i + 1) for i, name in enumerate(CANDIDATE_EXTRAS)]
        width = f + len(CANDIDATE_EXTRAS)
        blocks = (("query", (query_dim,)), ("profile", (profile_dim,)), ("session", (len(SESSION_FEATURES),)),
                  ("history", (history_size, f)), ("history_mask", (history_size,)),
                  ("candidates", (k, width)), ("mask", (k,)))
        if attribute_buckets > 0:
            blocks += (("attributes", (k, attribute_width)),)
        return cls(blocks=blocks, candidates=tuple(columns), attribute_buckets=max(attribute_buckets, 0))

    @classmethod
    def of_observation(cls, obs: Any) -> "FeatureLayout":
        """The layout of an observation (one, unbatched) or of a ``gymnasium.spaces.Dict`` observation space,
        from its blocks' shapes, for code that has no env (e.g. a features extractor built from the space).

        ``candidates (K, F + 4)`` is required; ``F`` is read from ``history (H, F)`` when present. An
        ``attributes`` block is kept only from a space (its upper bound gives the bucket count).
        """
        blocks = getattr(obs, "spaces", obs)  # a spaces.Dict's ``in`` asks whether a value is in the space

        def shape(key: str, default: tuple[int, ...]) -> tuple[int, ...]:
            if key not in blocks:
                return default
            value = blocks[key]
            return tuple(value.shape) if getattr(value, "shape", None) is not None else np.shape(value)

        k, width = shape("candidates", ())[-2:]
        h, f = shape("history", (0, width - len(CANDIDATE_EXTRAS)))[-2:]
        attributes = blocks["attributes"] if "attributes" in blocks else None
        buckets = int(np.max(attributes.high)) + 1 if hasattr(attributes, "high") else 0  # only a space knows it
        return cls.build(k, h, f, shape("query", (0,))[-1], shape("profile", (0,))[-1],
                         shape("attributes", (0, 0))[-1], buckets)

    # -- look-ups -------------------------------------------------------------------------------------
    @property
    def candidate_width(self) -> int:
        """Width of the ``candidates`` block's last axis (``F + 4``)."""
        return max(stop for _, _, stop in self.candidates)

    @property
    def fused_dim(self) -> int:
        """``F``, the width of the fused product vector."""
        return self.columns("fused").stop

    def shape(self, block: str) -> tuple[int, ...]:
        """Shape of one observation block (``"candidates"`` -> ``(K, F + 4)``)."""
        for key, shape in self.blocks:
            if key == block:
                return shape
        raise KeyError(f"no observation block {block!r}; blocks are {[key for key, _ in self.blocks]}")

    def columns(self, name: str) -> slice:
        """Column range of a named candidate feature on the ``candidates`` block's last axis."""
        for key, start, stop in self.candidates:
            if key == name:
                return slice(start, stop)
        raise KeyError(f"no candidate feature {name!r}; features are {[key for key, _, _ in self.candidates]}")

    def column(self, name: str) -> int:
        """Column index of a one-column candidate feature (``"retriever_rank"``, ``"price_z"``, ...)."""
        cols = self.columns(name)
        if cols.stop - cols.start != 1:
            raise KeyError(f"candidate feature {name!r} spans {cols.stop - cols.start} columns; use columns({name!r})")
        return cols.start

    @functools.cached_property
    def session_columns(self) -> tuple[int, ...]:
        """Columns of :data:`SESSION_FEATURES` in the ``session`` block, in that order."""
        return tuple(self.session_column(name) for name in SESSION_FEATURES)

    def session_column(self, name: str) -> int:
        """Column index of a named feature of the ``session`` block."""
        if name not in self.session:
            raise KeyError(f"no session feature {name!r}; features are {list(self.session)}")
        return self.session.index(name)

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-safe dict (lists, ints, strings)."""
        out = {"version": self.version, "blocks": [[key, list(shape)] for key, shape in self.blocks],
               "candidates": [[key, start, stop] for key, start, stop in self.candidates],
               "session": list(self.session)}
        if self.attribute_buckets:
            out["attribute_buckets"] = self.attribute_buckets
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureLayout":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(blocks=tuple((str(k), tuple(int(x) for x in shape)) for k, shape in data["blocks"]),
                       candidates=tuple((str(k), int(a), int(b)) for k, a, b in data["candidates"]),
                       session=tuple(str(s) for s in data["session"]), version=int(data["version"]),
                       attribute_buckets=int(data.get("attribute_buckets", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutMismatchError(f"not a FeatureLayout dict ({exc!r}): {data!r:.200}") from exc

    def check_matches(self, other: "FeatureLayout", what: str = "checkpoint") -> None:
        """Raise :class:`LayoutMismatchError` naming the first difference when ``other`` differs from this one.

        Args:
            other: The layout to compare with (e.g. the one a checkpoint was trained under).
            what: What ``other`` belongs to, for the message.
        """
        if other == self:
            return
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [f"{key}: {what} has {theirs[key]}, env has {mine[key]}" for key in mine if mine[key] != theirs[key]]
        raise LayoutMismatchError(f"the {what}'s observation layout differs from the env's ("
                                  + "; ".join(diffs) + "); it was trained on another observation and cannot be used here.")
