"""Observable ceiling: how much of the privileged myopic oracle's reward any observation-only ranker can reach.

The ``oracle`` baseline ranks by each candidate's expected immediate reward for the shopper's *hidden*
state. An agent sees only a noisy profile of that state (``ShopperConfig.profile_noise``, the documented
knob), so part of the oracle's reward is out of every agent's reach. This study measures that part on the
default static env (one query per episode), for several noise levels, with three myopic rankers that all
know the simulator's equations and the true product traits (so they bound any agent from above):

* ``oracle``: the true hidden state;
* ``profile_oracle``: the plug-in estimate (``DefaultShopper.observable_state``: posterior means);
* ``posterior_oracle``: the Bayes-optimal myopic ranker: each candidate's value averaged over ``--draws``
  draws from the posterior of the hidden traits given the profile (``DefaultShopper.posterior_samples``).

``retriever`` is listed for scale. Every ranker meets the same shoppers and queries (common random
numbers); shares of ``oracle`` are per-seed ratios with Student-t 95% CIs.

    .venv/bin/python -m benchmarks.ceiling --noise 0,0.25,0.5,1 --seeds 5 --sessions 1000

Writes ``benchmarks/results/ceiling.{json,md}``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

import envs
from agents.baselines import Baseline, OracleBaseline, ProfileOracleBaseline, RetrieverBaseline
from benchmarks.machine import machine_info
from benchmarks.study_io import check_counts, command_footer, parse_numbers, study_command, study_parser, write_study
from envs import WorldConfig
from experiments.evaluate import evaluate_agents, reward_shares, summarize
from simulators.shopper import DefaultShopper, ShopperConfig

RESULTS = Path(__file__).resolve().parent / "results"


def top_slot_values(shopper: DefaultShopper, state, query, candidates: np.ndarray, reward, prices: np.ndarray,
                    slate_size: int) -> np.ndarray:
    """``float (K,)`` expected reward of each candidate shown alone in the top slot (``-inf`` for padding).

    The same quantity as ``SessionCore.candidate_values`` for a shopper *without boredom* (a product shown
    alone has no near-duplicate above it), computed for all ``K`` candidates in one call.

    Args:
        shopper: A ``DefaultShopper`` with ``boredom=0``.
        state: The shopper state to value the candidates for.
        query: The current query (its intent is used).
        candidates: ``int64 (K,)`` catalog rows, ``-1`` = padding.
        reward: The env's ``RewardSpec``.
        prices: ``float (n_products,)`` catalog prices.
        slate_size: ``N`` (the click model's slate length).
    """
    click, p_buy = top_slot_probabilities(shopper, state, query, candidates, slate_size)
    price = prices[np.where(candidates >= 0, candidates, 0)]
    value = click * (reward.click + p_buy * (reward.purchase + reward.revenue * price))
    return np.where(candidates >= 0, value, -np.inf)


def unbored_shopper(env, who: str) -> DefaultShopper:
    """A twin of ``env``'s default shopper with boredom off (for :func:`top_slot_values`: a product shown alone
    has no near-duplicate above it). ``TypeError`` naming ``who`` when the env's simulator is another one."""
    core = env.core
    if not isinstance(core.sim, DefaultShopper):
        raise TypeError(f"{who} needs the DefaultShopper, got {type(core.sim).__name__}.")
    return DefaultShopper(core.sim.items, replace(core.sim.config, boredom=0.0), click_model=core.sim.click_model,
                          n_slots=core.config.slate_size)


def top_slot_probabilities(shopper: DefaultShopper, state, query, candidates: np.ndarray, slate_size: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``(P(click), P(buy | click))``, each ``float (K,)``, of every candidate shown alone in the top slot."""
    attract, p_buy, _ = shopper.item_probabilities(state, query.intent, candidates)
    alone = np.zeros((len(candidates), slate_size))
    alone[:, 0] = attract
    return shopper.click_model.click_probs(alone)[:, 0], p_buy


class PosteriorOracle(OracleBaseline):
    """Bayes-optimal myopic ranker from the observation: candidate values averaged over posterior draws.

    Args:
        env: The env being evaluated (its simulator must be a :class:`DefaultShopper`).
        draws: Posterior draws per query.
        seed: Seed of the draws' generator.
    """

    name = "posterior_oracle"

    def __init__(self, env, draws: int, seed: int) -> None:
        super().__init__(env)
        self.unbored = unbored_shopper(self.env, "PosteriorOracle")
        self.draws, self.rng = draws, np.random.default_rng(seed)

    def scores(self, obs) -> np.ndarray:
        core = self.env.core
        prices = core.world.items.prices
        total = np.zeros(len(core.candidates))
        for state in core.sim.posterior_samples(core.state, self.draws, self.rng):
            total += top_slot_values(self.unbored, state, core.query, core.candidates, core.config.reward,
                                     prices, core.config.slate_size)
        return total / self.draws


def agents(draws: int) -> dict[str, Callable[..., Baseline]]:
    """The compared rankers: name -> ``factory(env, seed)``."""
    return {
        "retriever": lambda env, seed: RetrieverBaseline(),
        "profile_oracle": lambda env, seed: ProfileOracleBaseline(env),
        "posterior_oracle": lambda env, seed: PosteriorOracle(env, draws, seed),
        "oracle": lambda env, seed: OracleBaseline(env),
    }


def study(noises: Sequence[float], seeds: Sequence[int], n_sessions: int, draws: int,
          world: WorldConfig = WorldConfig()) -> pd.DataFrame:
    """One row per noise level × ranker: mean reward with CI and share of ``oracle`` with CI.

    Args:
        noises: ``profile_noise`` values (the rest of the shopper is the default).
        seeds: Evaluation seeds (>= 2 for a CI).
        n_sessions: Sessions per seed.
        draws: Posterior draws per query for ``posterior_oracle``.
        world: Catalog and encoders (default: the built-in world).
    """
    rows = []
    for noise in noises:
        config = envs.static_config(shopper=ShopperConfig(profile_noise=noise), world=world)
        df = evaluate_agents(agents(draws), "ShopRankStatic-v0", config=config, seeds=seeds,
                             n_sessions=n_sessions, progress=False)
        summary = summarize(df)
        reward = summary[summary.metric == "reward"].set_index("agent")
        shares = reward_shares(df, references=("oracle",)).set_index("agent")
        for agent in agents(draws):
            rows.append({"profile_noise": noise, "agent": agent, "reward": reward.loc[agent, "mean"],
                         "reward_low": reward.loc[agent, "ci95_low"], "reward_high": reward.loc[agent, "ci95_high"],
                         "share_of_oracle": shares.loc[agent, "share"],
                         "share_low": shares.loc[agent, "ci95_low"], "share_high": shares.loc[agent, "ci95_high"]})
        print(f"profile_noise={noise}: " + ", ".join(
            f"{a} {shares.loc[a, 'share']:.1%}" for a in agents(draws)), flush=True)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, meta: dict) -> str:
    """The study as a Markdown table (one row per noise level)."""
    names = list(dict.fromkeys(table.agent))
    lines = ["# Observable ceiling of the default static env", "",
             f"Machine: {meta['machine']['cpu_model']}. {meta['seeds']} seeds × {meta['sessions']} sessions per "
             f"noise level, common random numbers; posterior draws per query: {meta['draws']}. "
             "Share of `oracle` reward (per-seed ratios, Student-t 95% CI).", "",
             "| profile_noise | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for noise, group in table.groupby("profile_noise", sort=True):
        g = group.set_index("agent")
        cells = [f"{g.loc[a, 'share_of_oracle']:.1%} [{g.loc[a, 'share_low']:.1%}, {g.loc[a, 'share_high']:.1%}]"
                 for a in names]
        default = " (default)" if noise == ShopperConfig().profile_noise else ""
        lines.append(f"| {noise:g}{default} | " + " | ".join(cells) + " |")
    lines += command_footer(meta)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = study_parser("shoprank bench ceiling", __doc__.split("\n\n")[0], RESULTS, sessions=1000)
    p.add_argument("--noise", default="0,0.25,0.5,1", help="comma-separated profile_noise values")
    p.add_argument("--draws", type=int, default=128, help="posterior draws per query")
    args = p.parse_args(argv)
    noises = parse_numbers(p, args.noise, "--noise", minimum=0, inclusive=True)
    check_counts(p, args, "draws")
    table = study(noises, list(range(args.seeds)), args.sessions, args.draws)
    meta = {"machine": machine_info(), "seeds": args.seeds, "sessions": args.sessions, "draws": args.draws,
            "command": study_command("python -m benchmarks.ceiling", argv)}
    write_study(args.out, "ceiling", meta, table, to_markdown(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
