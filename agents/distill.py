"""Distil a trained ranking policy (the teacher) into a small per-candidate scorer (the student).

The student (:mod:`agents.students`) learns to rank like the teacher on the states the teacher sees:

1. **States.** Sessions are played in the batched env (:class:`~envs.vector_env.ShopRankVectorEnv`) with the
   teacher's deterministic ranking; every observation where a slate is chosen is kept with the teacher's
   ``K`` scores as its label.
2. **Listwise loss** (a key of :data:`LOSSES`) between the student's scores ``s (B, K)`` and the teacher's
   ``t (B, K)`` over the valid candidates:

   * ``plackett_luce`` (default): the negative Plackett-Luce log-likelihood of the teacher's top-``N``
     order ``o`` under the student's scores, ``- sum_{n<N} [s_{o_n} - logsumexp_{m>=n} s_{o_m}]``
     (:func:`agents.distributions.slot_log_probs`): it asks exactly for the order of the shown slots
     and is blind to the scale of ``t``;
   * ``listnet``: cross-entropy between ``softmax(t / T)`` and ``softmax(s)`` (Cao et al. 2007).
3. **DAgger rounds** (Ross et al. 2011). Round 0 plays the teacher; each later round plays the student
   trained so far and labels the states it reaches with the teacher's scores, then the student is refitted
   on everything gathered. In a one-query env (``ShopRankStatic-v0``) the ranking does not change which
   states come next, so extra rounds only add fresh states; in a session env they add the states the
   student's own mistakes lead to.

The student is an ordinary PPO policy of the teacher's env (``AgentConfig.network`` names its network), saved
with :func:`agents.checkpoint.save_agent`: ``shoprank evaluate`` and ``shoprank compare --checkpoint`` score
it like any agent. Randomness comes from one ``np.random.Generator`` seeded by ``DistillConfig.seed`` (env
sessions, minibatch order) and the seed SB3 gives torch when the student is built: the same seed gives the
same student, bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.checkpoint import LoadedAgent, load_policy, read_checkpoint, save_agent
from agents.distributions import slot_log_probs
from agents.factory import algo_spec, build_agent
from agents.students import CONTEXT_KEYS
from encoders.errors import ConfigError, InputNotFoundError

STUDENT_KEYS = ("candidates", "mask", *CONTEXT_KEYS)
"""Observation blocks a student reads (the only ones kept from the teacher's rollouts)."""

REPORT_FILE = "distill.json"
"""What a distillation run writes next to the student's checkpoint files (config, losses, agreement)."""


# ----------------------------------------------------------------------------------------------------
# students and losses
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudentSpec:
    """A student by name: the network (a key of :data:`agents.factory.NETWORKS`) and its size.

    Attributes:
        network: ``AgentConfig.network`` of the student's checkpoint.
        hidden: Width of its hidden layers (unused by the linear student).
        layers: Hidden layers.
        description: One line for ``--help`` and reports.
    """

    network: str
    hidden: int
    layers: int
    description: str


STUDENTS: dict[str, StudentSpec] = {
    "linear": StudentSpec("student_linear", 64, 0, "s_i = w . candidate_i + b (no context: cannot personalise)"),
    "mlp": StudentSpec("student_mlp", 64, 2, "2-layer ReLU MLP (width 64) of [candidate_i, query, profile, session]"),
}
"""Students ``shoprank distill --student`` trains, by name."""


def student_spec(name: str) -> StudentSpec:
    """The :class:`StudentSpec` called ``name``.

    Raises:
        ConfigError: for a name not in :data:`STUDENTS`.
    """
    if name not in STUDENTS:
        raise ConfigError(f"unknown student {name!r}; choose one of {sorted(STUDENTS)}.")
    return STUDENTS[name]


def plackett_luce_loss(student: torch.Tensor, teacher: torch.Tensor, n_slots: int, temperature: float) -> torch.Tensor:
    """Mean negative Plackett-Luce log-likelihood of the teacher's top-``n_slots`` order under ``student``.

    Args:
        student: ``float (B, K)`` student scores (masked candidates at ``MASKED_SCORE``).
        teacher: ``float (B, K)`` teacher scores (masked candidates at ``MASKED_SCORE``).
        n_slots: ``N``, the shown slots whose order is matched.
        temperature: Unused (the loss depends on the teacher's order only).
    """
    order = torch.sort(teacher, dim=1, descending=True, stable=True).indices
    return -slot_log_probs(student, order, n_slots).sum(dim=1).mean()


def listnet_loss(student: torch.Tensor, teacher: torch.Tensor, n_slots: int, temperature: float) -> torch.Tensor:
    """Mean cross-entropy ``- sum_i softmax(t / T)_i log softmax(s)_i`` over the candidates (ListNet).

    Masked candidates (``MASKED_SCORE``) get probability 0 under both softmaxes.

    Args:
        student: ``float (B, K)`` student scores.
        teacher: ``float (B, K)`` teacher scores.
        n_slots: Unused (ListNet matches the whole distribution).
        temperature: ``T`` > 0 of the teacher's softmax.
    """
    target = torch.softmax(teacher / temperature, dim=1)
    return -(target * torch.log_softmax(student, dim=1)).sum(dim=1).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor]] = {
    "plackett_luce": plackett_luce_loss,
    "listnet": listnet_loss,
}
"""Listwise distillation losses by name: ``loss(student (B, K), teacher (B, K), n_slots, temperature)``."""


@dataclass(frozen=True)
class DistillConfig:
    """How a student is distilled.

    Attributes:
        student: A key of :data:`STUDENTS`.
        states: Teacher-labelled states gathered per round.
        rounds: Rounds of gathering (round 0 plays the teacher, later ones the student; >= 1).
        epochs: Passes over all states gathered so far, after each round.
        batch_size: States per gradient step.
        learning_rate: Adam step size.
        loss: A key of :data:`LOSSES`.
        temperature: ListNet's teacher temperature.
        n_envs: Sessions played at once while gathering.
        held_out: Teacher states kept aside to measure agreement (not trained on).
        seed: Seeds everything (sessions, minibatch order, the student's initial weights).
    """

    student: str = "mlp"
    states: int = 10_000
    rounds: int = 2
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 3e-3
    loss: str = "plackett_luce"
    temperature: float = 1.0
    n_envs: int = 256
    held_out: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        student_spec(self.student)
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown distillation loss {self.loss!r}; choose one of {sorted(LOSSES)}.")
        for name in ("states", "rounds", "epochs", "batch_size", "n_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DistillConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.held_out < 0:
            raise ConfigError(f"DistillConfig.held_out must be >= 0, got {self.held_out}.")
        if not self.learning_rate > 0 or not self.temperature > 0:
            raise ConfigError(f"DistillConfig.learning_rate and temperature must be > 0, got {self.learning_rate} "
                              f"and {self.temperature}.")


# ----------------------------------------------------------------------------------------------------
# scores, states, agreement
# ----------------------------------------------------------------------------------------------------
def policy_scores(policy, observation: Mapping[str, np.ndarray]) -> np.ndarray:
    """``float32 (B, K)``: a PPO policy's candidate scores (its deterministic ranking) for a batched observation.

    Args:
        policy: An SB3 ``ActorCriticPolicy`` whose latent is the ``K`` scores (:mod:`agents.policies`).
        observation: Batched observation blocks ``(B, ...)``.
    """
    with torch.no_grad():
        obs, _ = policy.obs_to_tensor(dict(observation))
        features = policy.extract_features(obs, policy.pi_features_extractor)
        return policy.action_net(policy.mlp_extractor.forward_actor(features)).numpy()


def gather_states(teacher, actor, env_config, n_states: int, n_envs: int, seed: int,
                  progress: bool = False, env_id: str = "ShopRank-v0") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Play sessions with ``actor``'s deterministic ranking and label each decision state with the teacher.

    Args:
        teacher: The teacher's policy (labels).
        actor: The policy whose ranking is shown (the teacher itself, or the student in DAgger rounds).
        env_config: The teacher's env config.
        n_states: States to return.
        n_envs: Sessions played at once.
        seed: Seeds the sessions.
        progress: Show a progress bar.
        env_id: The teacher's env id (its ``vector_entry_point`` plays the sessions).

    Returns:
        ``(observations, teacher_scores)``: the blocks of :data:`STUDENT_KEYS` ``(M, ...)`` and ``float32 (M, K)``,
        ``M = n_states``.
    """
    from gymnasium.vector import AutoresetMode

    from envs.vector_env import vector_env_of

    env = vector_env_of(env_id, min(n_envs, n_states), env_config, autoreset_mode=AutoresetMode.SAME_STEP)
    obs, _ = env.reset(seed=seed)
    kept: dict[str, list[np.ndarray]] = {key: [] for key in STUDENT_KEYS}
    labels: list[np.ndarray] = []
    done = 0
    with tqdm(total=n_states, disable=not progress, desc="gather states", unit="state") as bar:
        while done < n_states:
            scores = policy_scores(teacher, obs)
            action = scores if actor is teacher else policy_scores(actor, obs)
            for key in STUDENT_KEYS:
                kept[key].append(obs[key].copy())
            labels.append(scores)
            bar.update(min(len(scores), n_states - done))
            done += len(scores)
            obs = env.step(action)[0]
    env.close()
    return ({key: np.concatenate(parts)[:n_states] for key, parts in kept.items()},
            np.concatenate(labels)[:n_states])


def ranking_agreement(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray, n_slots: int) -> dict[str, float]:
    """How alike two rankings of the same candidates are.

    Args:
        student: ``float (M, K)`` scores.
        teacher: ``float (M, K)`` scores.
        mask: ``float (M, K)``, 1 for real candidates.
        n_slots: ``N``, the shown slots.

    Returns:
        ``top1`` (same first product), ``top_n_overlap`` (share of the teacher's shown products the student
        shows too), ``exact_top_n`` (the same ``N`` products in the same order), and ``chance_top1``
        (``mean 1 / valid candidates``: a random ranking's ``top1``).
    """
    valid = mask > 0.5
    s = np.where(valid, student, -np.inf)
    t = np.where(valid, teacher, -np.inf)
    s_order = np.argsort(-s, axis=1, kind="stable")[:, :n_slots]
    t_order = np.argsort(-t, axis=1, kind="stable")[:, :n_slots]
    overlap = np.array([len(np.intersect1d(a, b)) for a, b in zip(s_order, t_order)])
    shown = np.minimum(valid.sum(1), n_slots)
    return {"top1": float((s_order[:, 0] == t_order[:, 0]).mean()),
            "top_n_overlap": float((overlap / np.maximum(shown, 1)).mean()),
            "exact_top_n": float((s_order == t_order).all(axis=1).mean()),
            "chance_top1": float((1.0 / np.maximum(valid.sum(1), 1)).mean())}


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------
def fit_student(extractor: torch.nn.Module, observations: Mapping[str, np.ndarray], teacher_scores: np.ndarray,
                config: DistillConfig, n_slots: int, rng: np.random.Generator,
                optimizer: torch.optim.Optimizer | None = None, progress: bool = False) -> list[float]:
    """Fit a student network's scores to the teacher's ranking with the listwise loss ``config.loss``.

    Args:
        extractor: The student's features extractor (``forward(obs) -> (B, K + ...)``, scores first).
        observations: Blocks of :data:`STUDENT_KEYS`, ``(M, ...)``.
        teacher_scores: ``float (M, K)``.
        config: Epochs, batch size, learning rate, loss.
        n_slots: ``N``.
        rng: Draws the minibatch order.
        optimizer: Adam over ``extractor``'s parameters to continue with (a new one when ``None``).
        progress: Show a progress bar over epochs.

    Returns:
        The mean loss of each epoch.
    """
    loss_fn = LOSSES[config.loss]
    optimizer = optimizer or torch.optim.Adam(extractor.parameters(), lr=config.learning_rate)
    data = {key: torch.as_tensor(observations[key]) for key in STUDENT_KEYS}
    target = torch.as_tensor(teacher_scores)
    k = target.shape[1]
    m = len(target)
    extractor.train()
    losses = []
    for _ in tqdm(range(config.epochs), disable=not progress, desc="fit student", unit="epoch"):
        order = rng.permutation(m)
        total = 0.0
        for start in range(0, m, config.batch_size):
            idx = torch.as_tensor(order[start:start + config.batch_size])
            scores = extractor({key: value[idx] for key, value in data.items()})[:, :k]
            loss = loss_fn(scores, target[idx], n_slots, config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / m)
    extractor.eval()
    return losses


@dataclass
class DistillResult:
    """What :func:`distill` produced.

    Attributes:
        model: The student as an SB3 PPO model (its ``policy`` is what was saved).
        losses: Mean loss per epoch, all rounds in order.
        agreement: :func:`ranking_agreement` of student vs teacher on held-out teacher states (empty when
            ``held_out`` is 0).
        path: The checkpoint folder written (``None`` when not saved).
    """

    model: Any
    losses: list[float]
    agreement: dict[str, float]
    path: Path | None = None


def load_teacher(path: Path) -> tuple[LoadedAgent, Any]:
    """The teacher's policy and checked metadata from checkpoint folder ``path``.

    Raises:
        InputNotFoundError: ``path`` does not exist (or lacks a checkpoint file).
        CheckpointError: a malformed checkpoint.
        ConfigError: a teacher that acts per slot (only per-query ``ppo`` policies can be distilled).
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"teacher checkpoint {path} does not exist.")
    meta = read_checkpoint(path)
    if algo_spec(meta.algo).sequential:
        raise ConfigError(f"teacher {path} is a {meta.algo!r} checkpoint, which picks one product per slot; "
                          "distill needs a per-query ranking policy ('ppo').")
    return load_policy(path, meta), meta


def distill(teacher_path: Path, config: DistillConfig = DistillConfig(), out: Path | None = None,
            progress: bool = False) -> DistillResult:
    """Train the student ``config.student`` to rank like the teacher checkpoint, and save it to ``out``.

    Args:
        teacher_path: A ``ppo`` checkpoint folder (:func:`agents.checkpoint.save_agent`).
        config: What to train and how.
        out: Checkpoint folder for the student (``agent.json``, ``policy.pt``, and :data:`REPORT_FILE`);
            nothing is written when ``None``.
        progress: Show progress bars.

    Returns:
        A :class:`DistillResult`.
    """
    teacher, meta = load_teacher(teacher_path)
    spec = student_spec(config.student)
    env_config = meta.env_config
    n_slots = int(env_config.slate_size)
    agent_config = replace(meta.agent_config, network=spec.network, hidden=spec.hidden, layers=spec.layers,
                           heads=1, pretrain_sessions=0)
    model = build_agent("ppo", env_config, agent_config, seed=config.seed, n_envs=1, env_id=meta.env_id, online=False)
    student = model.policy
    extractor = student.pi_features_extractor
    optimizer = torch.optim.Adam(extractor.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    observations: dict[str, list[np.ndarray]] = {key: [] for key in STUDENT_KEYS}
    labels: list[np.ndarray] = []
    losses: list[float] = []
    for round_ in range(config.rounds):
        actor = teacher.policy if round_ == 0 else student
        student.set_training_mode(False)
        obs, scores = gather_states(teacher.policy, actor, env_config, config.states, config.n_envs,
                                    int(rng.integers(2**31)), progress, meta.env_id)
        for key in STUDENT_KEYS:
            observations[key].append(obs[key])
        labels.append(scores)
        losses += fit_student(extractor, {key: np.concatenate(v) for key, v in observations.items()},
                              np.concatenate(labels), config, n_slots, rng, optimizer, progress)
    student.set_training_mode(False)
    agreement: dict[str, float] = {}
    if config.held_out > 0:
        obs, scores = gather_states(teacher.policy, teacher.policy, env_config, config.held_out, config.n_envs,
                                    int(rng.integers(2**31)), env_id=meta.env_id)
        with torch.no_grad():
            student_scores = extractor({key: torch.as_tensor(v) for key, v in obs.items()})[:, :scores.shape[1]]
        agreement = ranking_agreement(student_scores.numpy(), scores, obs["mask"], n_slots)
    result = DistillResult(model, losses, agreement)
    if out is not None:
        out = Path(out)
        save_agent(model, "ppo", env_config, agent_config, out, catalog_fingerprint=meta.catalog_fingerprint,
                   env_id=meta.env_id)
        (out / REPORT_FILE).write_text(json.dumps(
            {"teacher": str(teacher_path), "config": asdict(config), "student": asdict(spec), "losses": losses,
             "agreement": agreement}, indent=2))
        result.path = out
    model.env.close()
    return result


__all__ = ["DistillConfig", "DistillResult", "LOSSES", "STUDENTS", "StudentSpec", "distill", "fit_student",
           "gather_states", "listnet_loss", "load_teacher", "plackett_luce_loss", "policy_scores",
           "ranking_agreement", "student_spec"]
