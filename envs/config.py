"""Typed configuration of the ShopRank environments."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from encoders.errors import ConfigError
from envs.attributes import MAX_BUCKETS
from envs.reward import RewardSpec
from envs.world import WorldConfig
from simulators.longterm import LongTermConfig
from simulators.shopper import ShopperConfig
from simulators.validation import check_field_types


MAX_CANDIDATES = 1000
"""Largest ``K`` (``n_candidates``): an observation holds ``K`` candidate rows, and the slate ``N <= K``."""
MAX_QUERIES = 100_000
"""Largest query budget per session (``max_queries``)."""
MAX_HISTORY = 1000
"""Largest clicked-product history in the observation (``history_size``)."""


@dataclass(frozen=True)
class EnvConfig:
    """Shape and rules of an environment.

    Attributes:
        n_candidates: ``K``, candidates the retriever returns per query (the agent ranks them).
        slate_size: ``N``, products shown to the shopper (``N <= K``).
        max_queries: Query budget per session; reaching it truncates the episode (1 = static variant).
        history_size: ``H``, recently clicked products shown to the agent.
        reward: Reward weights.
        shopper: Parameters of the default shopper (ignored when a custom simulator is given).
        world: What catalog, encoders and fusion to build the world from.
        personalize_query: Weight of the shopper's recently clicked products in the query vector the
            retriever searches with (0 = off: the query text alone). With it on, retrieval adapts to the
            shopper over a session (see ``ShopWorld.personalized_search``).
        simulator: ``""`` for the default shopper, or ``"package.module:factory"`` where
            ``factory(items: ItemTable, n_slots: int) -> UserSimulator``.
        longterm: The long-term dynamics over visits (photo gloss, returns, trust); used by ``ShopRank-v1``
            only (see :mod:`simulators.longterm`).
        attribute_buckets: Sparse attribute features: 0 = off; ``n >= 3`` adds the observation block
            ``attributes (K, A)`` of each candidate's catalog attributes as hashed ids in ``0 .. n - 1`` (0 = none,
            1 = the shared bucket of unknown values; see :mod:`envs.attributes`), embedded by the candidate
            network with ``torch.nn.EmbeddingBag``.
    """

    n_candidates: int = 20
    slate_size: int = 10
    max_queries: int = 10
    history_size: int = 5
    reward: RewardSpec = field(default_factory=RewardSpec)
    shopper: ShopperConfig = field(default_factory=ShopperConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    personalize_query: float = 0.0
    simulator: str = ""
    longterm: LongTermConfig = field(default_factory=LongTermConfig)
    attribute_buckets: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.n_candidates < 1:
            raise ConfigError(f"n_candidates must be >= 1, got {self.n_candidates}.")
        if self.n_candidates > MAX_CANDIDATES:
            raise ConfigError(f"n_candidates must be <= {MAX_CANDIDATES} (every step observes and scores all K "
                              f"candidates), got {self.n_candidates}.")
        if not 1 <= self.slate_size <= self.n_candidates:
            raise ConfigError(
                f"slate_size must be between 1 and n_candidates={self.n_candidates}, got {self.slate_size}.")
        if self.max_queries < 1:
            raise ConfigError(f"max_queries must be >= 1, got {self.max_queries}.")
        if self.max_queries > MAX_QUERIES:
            raise ConfigError(f"max_queries must be <= {MAX_QUERIES}, got {self.max_queries}.")
        if not 0.0 <= self.personalize_query < 1.0:
            raise ConfigError(f"personalize_query must be in [0, 1), got {self.personalize_query}.")
        if self.history_size < 1:
            raise ConfigError(f"history_size must be >= 1, got {self.history_size}.")
        if self.history_size > MAX_HISTORY:
            raise ConfigError(f"history_size must be <= {MAX_HISTORY}, got {self.history_size}.")
        if self.attribute_buckets != 0 and not 3 <= self.attribute_buckets <= MAX_BUCKETS:
            raise ConfigError(f"attribute_buckets must be 0 (off) or between 3 and {MAX_BUCKETS}, "
                              f"got {self.attribute_buckets}.")


def resolve_env_config(config: "EnvConfig | dict | None") -> EnvConfig:
    """The one validation of an env's ``config`` argument, shared by the single, sequential and vector envs:
    ``None`` (the defaults), an :class:`EnvConfig`, or a nested dict of its fields (:func:`config_from_dict`).

    Raises:
        ConfigError: for any other type, an unknown field, or a value its config class refuses.
    """
    if config is None:
        return EnvConfig()
    if isinstance(config, dict):
        return config_from_dict(config)
    if not isinstance(config, EnvConfig):
        raise ConfigError(f"config must be an EnvConfig or a dict of its fields, got {type(config).__name__}.")
    return config


def config_to_dict(config: EnvConfig) -> dict:
    """Plain nested dict of an :class:`EnvConfig` (JSON/YAML-safe)."""
    return asdict(config)


def config_from_dict(data: dict) -> EnvConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ``ValueError`` naming them."""
    nested = {"reward": RewardSpec, "shopper": ShopperConfig, "world": WorldConfig, "longterm": LongTermConfig}
    known = {f.name for f in fields(EnvConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown EnvConfig field(s) {unknown}; known: {sorted(known)}")
    kwargs = dict(data)
    for key, cls in nested.items():
        if key in kwargs and isinstance(kwargs[key], dict):
            sub_known = {f.name for f in fields(cls)}
            bad = sorted(set(kwargs[key]) - sub_known)
            if bad:
                raise ConfigError(f"unknown {cls.__name__} field(s) {bad}; known: {sorted(sub_known)}")
            kwargs[key] = cls(**kwargs[key])
    return EnvConfig(**kwargs)
