"""Warm-start a policy's candidate scores from logged sessions (offline pretraining before online RL).

A uniformly random logging policy runs in the env; every shown (candidate, slot) is one example with what
it earned there (``info["position_rewards"]``: its click, purchase and revenue under the env's
``RewardSpec``). The policy's own feature extractor is fitted to it with a position-based model:

* ``target="reward"`` (default): ``E[reward] = exp(score_i + b_slot)``, a Poisson (log-link) regression;
  the slot factor is multiplicative, so ranking by ``score`` ranks by expected reward at every slot,
  which is the myopic objective itself (purchases and revenue included, not only clicks).
* ``target="clicks"``: ``P(click) = sigmoid(score_i + b_slot)``, a logistic regression on clicks only.

Either way RL starts from a reranker that already reads taste, look and price off the features. Only
logged outcomes are used, never the simulator's hidden state. Logging sessions use the training seed
stream (``derive_seed(..., stream=1)``), so they never replay evaluation shoppers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.errors import ConfigError
from agents.aux_heads import aux_loss, poisson_loss
from agents.logging_policy import derive_seed, shown_candidates
from envs.slot_flags import OUTCOME_POSITION_KEYS, slot_flags, slot_rewards_row

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Offline pretraining settings.

    Attributes:
        sessions: Logged sessions collected with a uniformly random ranking (0 disables pretraining).
        target: ``"reward"`` (Poisson fit of each slot's reward) or ``"clicks"`` (logistic fit of clicks).
        epochs: Passes over the logged examples.
        batch_size: Queries per gradient step.
        learning_rate: Adam step size.
    """

    sessions: int = 0
    target: str = "reward"
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.target not in _LOSSES:
            raise ConfigError(f"PretrainConfig.target must be one of {sorted(_LOSSES)}, got {self.target!r}.")


def _logistic_loss(scores: torch.Tensor, slot_bias: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                   ) -> torch.Tensor:
    """Logistic loss of ``P(target) = sigmoid(score + b_slot)``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(scores + slot_bias, target, weight=weight)


def _squared_loss(scores: torch.Tensor, slot_bias: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                  ) -> torch.Tensor:
    """Squared error of ``E[target] = score * exp(b_slot)``, weighted mean: an identity link for signed targets
    whose slot factor still multiplies, so ranking by ``score`` ranks by expected target at every slot."""
    error = scores * torch.exp(slot_bias) - target
    return (error * error * weight).sum() / weight.sum().clamp(min=1.0)


_LOSSES = {"reward": poisson_loss, "net_reward": poisson_loss, "clicks": _logistic_loss,
           "trust_reward": _squared_loss}
PRETRAIN_TARGETS = tuple(sorted(_LOSSES))
"""What a warm start can fit: each slot's ``"reward"``, its ``"net_reward"`` (``ShopRank-v1``: the reward minus
the refund of a purchase returned later, known from the order history, ``info["returned_slots"]``) or its
``"clicks"``, or its ``"trust_reward"`` (``ShopRank-v1``: the net reward minus, where the purchase was
returned, what a return costs the rest of the relationship, estimated from the same logs by
:func:`agents.return_cost.estimate_return_cost`; signed, fitted by squared error)."""


LOG_OUTCOMES = (*PRETRAIN_TARGETS, "purchases")
"""Per-slot outcomes :func:`collect_logs` can return: the warm start's targets and each slot's purchase (0/1)."""


def collect_logs(env: gym.Env, n_sessions: int, seed: int, outcomes: Sequence[str] = ("clicks",), n_envs: int = 1,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Log ``n_sessions`` sessions of a uniformly random ranking in a Box-action ShopRank env.

    Args:
        env: ``ShopRank-v0``, ``ShopRankStatic-v0`` or ``ShopRank-v1`` (any wrapper).
        n_sessions: Sessions (``ShopRank-v1``: relationships) to log.
        seed: Training seed (logging uses its own seed streams).
        outcomes: Per-slot outcomes to return, from :data:`LOG_OUTCOMES`: ``"clicks"`` / ``"purchases"`` (1
            where clicked / bought), ``"reward"`` (``info["position_rewards"]``) or ``"net_reward"`` (the
            reward minus each refund, at the slate and slot of ``info["returned_slots"]``, floored at 0) or
            ``"trust_reward"`` (``net_reward`` minus the estimated later cost of a return where the slot's
            purchase was returned, :func:`agents.return_cost.estimate_return_cost`; the estimate is kept as
            ``env.unwrapped.last_return_cost`` and logged at INFO level).
        n_envs: Sessions logged at once. ``1``: ``env`` itself, session ``i`` reset with
            ``derive_seed(seed, i, stream=1)``. ``> 1``: the vector env registered for ``env``'s id, built
            with its config and world, ``n_envs`` sessions stepped in arrays from one generator seeded with
            ``derive_seed(seed, 0, stream=4)`` (the same shopper distribution, other draws; far fewer Python
            calls per logged query).
        progress: Progress bar over logged sessions.

    Returns:
        ``(observations {key: (M, ...)}, shown (M, N) candidate indices, {outcome: (M, N) float32})`` with one
        row per shown slate, sessions in the order they started, each session's slates in order.

    Raises:
        ConfigError: an unknown outcome, ``n_envs < 1``, or ``n_envs > 1`` for an env without a registered id.
    """
    unknown = [name for name in outcomes if name not in LOG_OUTCOMES]
    if unknown:
        raise ConfigError(f"target must be one of {sorted(LOG_OUTCOMES)}, got {unknown[0]!r}.")
    if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
        raise ConfigError(f"n_envs must be an int >= 1, got {n_envs!r}.")
    if "trust_reward" in outcomes and "visit" not in env.unwrapped.layout.session:
        raise ConfigError(f"target 'trust_reward' needs an env whose observation has a visit index (ShopRank-v1); "
                          f"this one's session features are {list(env.unwrapped.layout.session)}.")
    if n_envs > 1 and n_sessions > 1:
        return _collect_logs_batched(env, n_sessions, seed, outcomes, int(n_envs), progress)
    rng = np.random.default_rng(derive_seed(seed, 0, stream=2))
    obs_rows, shown_rows, session_rows = [], [], []
    rows: dict[str, list[np.ndarray]] = {name: [] for name in _logged_outcomes(outcomes)}
    refunds: list[tuple[int, int, float]] = []  # (row, slot, refund) in the order the returns happened
    k = env.action_space.shape[0]
    for i in tqdm(range(n_sessions), desc="logging sessions", disable=not progress):
        obs, _ = env.reset(seed=derive_seed(seed, i, stream=1))
        done = False
        while not done:
            action = rng.uniform(-1.0, 1.0, size=k).astype(np.float32)
            next_obs, _, terminated, truncated, info = env.step(action)
            n = len(info["shown_ids"])
            for name, out in rows.items():
                if name in OUTCOME_POSITION_KEYS:
                    out.append(slot_flags(info, name, n))
                else:
                    out.append(slot_rewards_row(info, n))
            obs_rows.append(obs)
            shown_rows.append(shown_candidates(action, obs["mask"], n))
            session_rows.append(i)
            if "net_reward" in rows:
                for ago, slot, refund in np.asarray(info.get("returned_slots", np.zeros((0, 3)))).reshape(-1, 3):
                    refunds.append((len(obs_rows) - 1 - int(ago), int(slot), float(refund)))
            obs, done = next_obs, terminated or truncated
    observations = {key: np.stack([o[key] for o in obs_rows]) for key in obs_rows[0]}
    logged = {name: np.stack(out) for name, out in rows.items()}
    _take_back_refunds(logged, refunds)
    return observations, np.stack(shown_rows), _finish_outcomes(env, outcomes, logged, observations,
                                                                np.asarray(session_rows))


def _logged_outcomes(outcomes: Sequence[str]) -> tuple[str, ...]:
    """What has to be logged to return ``outcomes`` (``"trust_reward"`` is computed from the net reward, the
    purchases, the clicks and the returned slots, which :func:`_take_back_refunds` fills in)."""
    extra = ("net_reward", "purchases", "clicks") if "trust_reward" in outcomes else ()
    return tuple(dict.fromkeys([name for name in outcomes if name != "trust_reward"] + list(extra)))


def _finish_outcomes(env: gym.Env, outcomes: Sequence[str], logged: dict[str, np.ndarray],
                     observations: dict[str, np.ndarray], session: np.ndarray) -> dict[str, np.ndarray]:
    """Add ``"trust_reward"`` when asked (see :data:`PRETRAIN_TARGETS`) and return exactly ``outcomes``."""
    if "trust_reward" in outcomes:
        from agents.return_cost import estimate_return_cost

        returned = logged["returned"]
        visit = observations["session"][:, env.unwrapped.layout.session_column("visit")]
        cost = estimate_return_cost(session, visit, logged["net_reward"].sum(axis=1), returned,
                                    logged["purchases"], logged["clicks"])
        logged["trust_reward"] = (logged["net_reward"] - np.float32(cost.cost) * returned).astype(np.float32)
        env.unwrapped.last_return_cost = cost  # what the warm start used, for reports and tests
        _LOG.info("trust_reward: a return costs %.3f later reward (regression coefficient %.3f +- %.3f, %d visits)",
                  cost.cost, cost.coefficient, cost.stderr, cost.visits)
    return {name: logged[name] for name in outcomes}


def _take_back_refunds(logged: dict[str, np.ndarray], refunds: list[tuple[int, int, float]]) -> None:
    """Subtract each ``(row, slot, refund)`` from ``logged["net_reward"]`` in place, in order, floored at 0, and
    mark the slot in ``logged["returned"]`` (``float32 (M, N)``, added here; when ``"net_reward"`` was logged)."""
    if "net_reward" not in logged:
        return
    net = logged["net_reward"]
    returned = logged["returned"] = np.zeros_like(net)
    for row, slot, refund in refunds:
        net[row, slot] = max(float(net[row, slot]) - refund, 0.0)
        returned[row, slot] = 1.0


_VECTOR_OUTCOME_KEYS = {"clicks": "clicked", "purchases": "purchased"}
"""Outcome -> the vector env's ``bool (B, N)`` info key."""


def _collect_logs_batched(env: gym.Env, n_sessions: int, seed: int, outcomes: Sequence[str], n_envs: int,
                          progress: bool) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """:func:`collect_logs` with ``n_envs > 1``: ``n_envs`` sessions of ``env``'s vector env at once.

    Sessions are numbered in the order they start; rows of sessions numbered ``>= n_sessions`` (started while
    the last ones finish) are dropped, so every logged session is whole and no session length is favoured.
    """
    from gymnasium.vector import AutoresetMode

    from envs.vector_env import vector_env_of

    if env.spec is None:
        raise ConfigError("collect_logs(n_envs > 1) builds the vector env registered for the env's id: make the env "
                          "with gymnasium.make (or pass n_envs=1).")
    base = env.unwrapped
    b = min(n_envs, n_sessions)
    vec = vector_env_of(env.spec.id, b, base.config, world=base.world, autoreset_mode=AutoresetMode.SAME_STEP)
    rng = np.random.default_rng(derive_seed(seed, 0, stream=2))
    obs, _ = vec.reset(seed=derive_seed(seed, 0, stream=4))
    k, n = vec.single_action_space.shape[0], vec.config.slate_size
    session = np.arange(b)  # number of the session each row runs
    started, finished = b, 0
    obs_rows, shown_rows, session_rows = [], [], []
    rows: dict[str, list[np.ndarray]] = {name: [] for name in _logged_outcomes(outcomes)}
    current: list[list[int]] = [[] for _ in range(b)]  # logged row numbers of the session each vector row runs
    net = "net_reward" in rows
    refunds: list[tuple[int, int, float]] = []  # (row, slot, refund) in the order the returns happened
    total = 0
    with tqdm(total=n_sessions, desc="logging sessions", disable=not progress) as bar:
        while finished < n_sessions:
            action = rng.uniform(-1.0, 1.0, size=(b, k)).astype(np.float32)
            next_obs, _, terminated, truncated, info = vec.step(action)
            keep = np.flatnonzero(session < n_sessions)
            for name, out in rows.items():
                source = info[_VECTOR_OUTCOME_KEYS[name]] if name in _VECTOR_OUTCOME_KEYS else info["position_rewards"]
                out.append(np.asarray(source[keep], dtype=np.float32))
            obs_rows.append({key: value[keep] for key, value in obs.items()})
            shown_rows.append(shown_candidates(action[keep], obs["mask"][keep], n))
            session_rows.append(session[keep])
            for j, row in enumerate(keep):
                current[row].append(total + j)
            if net:
                returned = np.asarray(info["returned_slots"])  # (B, W, 3), rows of -1 = none
                for row in keep:
                    for ago, slot, refund in returned[row][returned[row, :, 0] >= 0]:
                        refunds.append((current[row][-1 - int(ago)], int(slot), float(refund)))
            total += len(keep)
            done = np.flatnonzero(terminated | truncated)
            ended = int(np.count_nonzero(session[done] < n_sessions))
            finished += ended
            bar.update(ended)
            for row in done:
                current[row] = []
            session[done] = started + np.arange(len(done))
            started += len(done)
            obs = next_obs
    logged = {name: np.concatenate(out) for name, out in rows.items()}
    _take_back_refunds(logged, refunds)
    sessions = np.concatenate(session_rows)
    order = np.argsort(sessions, kind="stable")
    observations = {key: np.concatenate([o[key] for o in obs_rows])[order] for key in obs_rows[0]}
    return observations, np.concatenate(shown_rows)[order], _finish_outcomes(
        env, outcomes, {name: out[order] for name, out in logged.items()}, observations, sessions[order])


def collect_click_logs(env: gym.Env, n_sessions: int, seed: int, target: str = "clicks", n_envs: int = 1
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """:func:`collect_logs` with one outcome: ``(observations, shown (M, N), outcome (M, N))``; ``target`` is
    ``"clicks"``, ``"reward"`` or ``"net_reward"`` (see there)."""
    if target not in _LOSSES:
        raise ConfigError(f"target must be one of {sorted(_LOSSES)}, got {target!r}.")
    observations, shown, outcomes = collect_logs(env, n_sessions, seed, (target,), n_envs=n_envs)
    return observations, shown, outcomes[target]


def pretrain_scores(extractor: torch.nn.Module, n_candidates: int, observations: dict[str, np.ndarray],
                    shown: np.ndarray, clicks: np.ndarray, config: PretrainConfig, seed: int,
                    progress: bool = False, aux_labels: tuple[np.ndarray, np.ndarray, float] | None = None
                    ) -> list[float]:
    """Fit ``extractor``'s first ``K`` outputs (candidate scores) to logged outcomes (``config.target``).

    Args:
        extractor: A :class:`~agents.extractor.CandidateSetExtractor` (trained in place).
        n_candidates: ``K``.
        observations: ``{key: (M, ...)}`` logged observations.
        shown: ``int64 (M, N)`` candidate index shown in each slot.
        clicks: ``float32 (M, N)`` each slot's logged outcome: 1 where clicked (``target="clicks"``) or
            its reward (``target="reward"``, non-negative).
        config: Optimiser settings.
        seed: Seeds the minibatch order.
        progress: Progress bar over epochs.
        aux_labels: ``(clicks (M, N), purchases (M, N), weight)``: also fit the extractor's auxiliary heads
            (``aux_heads=True``) to each slot's click and purchase, adding ``weight`` times
            :func:`agents.aux_heads.aux_loss` to the loss.

    Returns:
        Mean training loss per epoch (with ``aux_labels``: the score loss plus the weighted auxiliary loss).
    """
    if aux_labels is not None and getattr(extractor, "aux_head", None) is None:
        raise ConfigError("aux_labels need an extractor with auxiliary heads (CandidateSetExtractor(aux_heads=True)).")
    obs_t = {key: torch.as_tensor(value, dtype=torch.float32) for key, value in observations.items()}
    aux_t = [torch.as_tensor(labels, dtype=torch.float32) for labels in aux_labels[:2]] if aux_labels else None
    shown_t = torch.as_tensor(shown, dtype=torch.int64).clamp(min=0)
    clicks_t = torch.as_tensor(clicks)
    valid_t = torch.as_tensor(shown >= 0)
    slot_bias = torch.zeros(shown.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam(list(extractor.parameters()) + [slot_bias], lr=config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    m = len(shown)
    loss_fn = _LOSSES[config.target]
    if loss_fn is poisson_loss and bool((clicks_t < 0).any()):
        raise ConfigError("target='reward' needs non-negative slot rewards (a Poisson fit); use target='clicks' "
                         "with a RewardSpec that has negative weights.")
    for _ in tqdm(range(config.epochs), desc=f"pretraining on logged {config.target}", disable=not progress):
        order = torch.randperm(m, generator=generator)
        total = 0.0
        for start in range(0, m, config.batch_size):
            idx = order[start:start + config.batch_size]
            scores = extractor({key: value[idx] for key, value in obs_t.items()})[:, :n_candidates]
            loss = loss_fn(torch.gather(scores, 1, shown_t[idx]), slot_bias, clicks_t[idx], valid_t[idx].float())
            if aux_t is not None:
                n_slots = shown_t.shape[1]
                loss = loss + aux_labels[2] * aux_loss(extractor.last_aux, extractor.aux_slot_bias[:, :n_slots],
                                                       shown_t[idx], valid_t[idx], aux_t[0][idx], aux_t[1][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / m)
    return losses


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``float32 (M, N)``: ``G[m, n] = sum_{j >= n} gamma ** (j - n) * rewards[m, j]`` within each slate."""
    out = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(len(rewards), dtype=np.float64)
    for n in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, n] + gamma * running
        out[:, n] = running
    return out


def slot_observations(observations: dict[str, torch.Tensor], shown: torch.Tensor, rows: torch.Tensor,
                      slots: torch.Tensor) -> dict[str, torch.Tensor]:
    """``ShopRankSeq-v0`` observations just before slot ``slots[b]`` of logged slate ``rows[b]`` is filled.

    Args:
        observations: ``{key: (M, ...)}`` logged ``ShopRank-v0`` observations (one per slate).
        shown: ``int64 (M, N)`` candidate index shown in each slot (``-1`` = empty).
        rows, slots: ``int64 (B,)`` which slate and which slot.

    Returns:
        ``{key: (B, ...)}`` with ``placed (B, K)`` (the candidates shown above the slot) and ``slot (B, N)``.
    """
    batch = {key: value[rows] for key, value in observations.items()}
    shown_b = shown[rows]
    n_slots = shown.shape[1]
    above = (torch.arange(n_slots)[None, :] < slots[:, None]) & (shown_b >= 0)
    placed = torch.zeros_like(batch["mask"])
    placed.scatter_add_(1, shown_b.clamp(min=0), above.float())
    batch["placed"] = placed.clamp(max=1.0)
    batch["slot"] = torch.nn.functional.one_hot(slots, n_slots).float()
    return batch


def pretrain_q_values(q_net: torch.nn.Module, observations: dict[str, np.ndarray], shown: np.ndarray,
                      rewards: np.ndarray, gamma: float, config: PretrainConfig, seed: int,
                      progress: bool = False) -> list[float]:
    """Fit a per-slot Q-network to logged slates (fitted Q evaluation of the logging policy, one slate deep).

    Every logged (slate, slot) is one ``ShopRankSeq-v0`` transition: the state before the slot (the
    candidates shown above it are ``placed``), the candidate shown there as the action, and as target its
    reward-to-go within the slate, ``sum_{j >= n} gamma ** (j - n) * r_j`` (``r_j``: the slot rewards,
    ``info["position_rewards"]``). With per-slot credit and ``gamma = 0`` this is each product's expected
    reward at that slot, the quantity the DQN keeps learning online. Huber loss, as SB3's DQN uses.

    Args:
        q_net: ``obs -> (B, K)`` Q-values (SB3 ``QNetwork``; trained in place).
        observations: ``{key: (M, ...)}`` logged ``ShopRank-v0`` observations.
        shown: ``int64 (M, N)`` candidate index shown in each slot.
        rewards: ``float32 (M, N)`` each slot's reward.
        gamma: Per-slot discount of the Q-function being fitted.
        config: Optimiser settings (``batch_size`` counts slates; each contributes its ``N`` slots).
        seed: Seeds the minibatch order.
        progress: Progress bar over epochs.

    Returns:
        Mean training loss per epoch.
    """
    obs_t = {key: torch.as_tensor(value, dtype=torch.float32) for key, value in observations.items()}
    shown_t = torch.as_tensor(shown, dtype=torch.int64)
    targets = torch.as_tensor(reward_to_go(np.asarray(rewards, dtype=np.float64), gamma))
    pairs = torch.nonzero(shown_t >= 0)  # (rows, slots) of every shown product
    optimizer = torch.optim.Adam(q_net.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    batch = config.batch_size * shown.shape[1]
    losses = []
    for _ in tqdm(range(config.epochs), desc="pretraining Q-values on logged slates", disable=not progress):
        order = pairs[torch.randperm(len(pairs), generator=generator)]
        total = 0.0
        for start in range(0, len(order), batch):
            rows, slots = order[start:start + batch].T
            q = q_net(slot_observations(obs_t, shown_t, rows, slots))
            chosen = q.gather(1, shown_t[rows, slots][:, None])[:, 0]
            loss = torch.nn.functional.smooth_l1_loss(chosen, targets[rows, slots])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        losses.append(total / max(len(pairs), 1))
    return losses


def seed_replay_buffer(buffer, observations: dict[str, np.ndarray], shown: np.ndarray, rewards: np.ndarray,
                       chunk: int = 4096) -> int:
    """Add every logged (slate, slot) to an SB3 ``DictReplayBuffer`` as a ``ShopRankSeq-v0`` transition.

    Online DQN then keeps learning from the logged data as well as its own (offline-to-online with one
    buffer): fine-tuning on its own few thousand transitions alone over-fits them and loses what the warm
    start learnt. The transition for slot ``n`` goes from the state before it to the state before slot
    ``n + 1``, with reward ``rewards[m, n]``; a slate's last slot is stored as terminal, which is exact for
    one-query episodes and for ``gamma = 0`` (per-slot credit), and ignores later queries otherwise.

    Args:
        buffer: SB3 ``DictReplayBuffer`` with one env and room for the transitions (else ``ValueError``).
        observations, shown, rewards: As returned by :func:`collect_click_logs` with ``target="reward"``.
        chunk: Transitions built per batch.

    Returns:
        The number of transitions added.
    """
    if buffer.n_envs != 1:
        raise ConfigError(f"seed_replay_buffer needs a single-env replay buffer, got n_envs={buffer.n_envs}.")
    obs_t = {key: torch.as_tensor(value, dtype=torch.float32) for key, value in observations.items()}
    shown_t = torch.as_tensor(shown, dtype=torch.int64)
    pairs = torch.nonzero(shown_t >= 0)
    if buffer.pos + len(pairs) > buffer.buffer_size:
        raise ConfigError(f"the replay buffer holds {buffer.buffer_size} transitions; {len(pairs)} logged ones do not "
                         f"fit after the {buffer.pos} it has (raise AgentConfig.buffer_size).")
    n_slots = shown.shape[1]
    for start in range(0, len(pairs), chunk):
        rows, slots = pairs[start:start + chunk].T
        nxt = (slots + 1).clamp(max=n_slots - 1)
        last = (slots + 1 >= n_slots) | (shown_t[rows, nxt] < 0)
        now = slot_observations(obs_t, shown_t, rows, slots)
        after = slot_observations(obs_t, shown_t, rows, torch.where(last, slots, nxt))
        at = slice(buffer.pos, buffer.pos + len(rows))
        for key in buffer.observations:
            buffer.observations[key][at, 0] = now[key].numpy()
            buffer.next_observations[key][at, 0] = after[key].numpy()
        buffer.actions[at, 0] = shown_t[rows, slots].numpy()[:, None]
        buffer.rewards[at, 0] = np.asarray(rewards)[rows.numpy(), slots.numpy()]
        buffer.dones[at, 0] = last.numpy()
        buffer.timeouts[at, 0] = 0.0
        buffer.pos += len(rows)
    if buffer.pos == buffer.buffer_size:
        buffer.full, buffer.pos = True, 0
    return len(pairs)
