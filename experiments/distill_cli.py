"""``shoprank distill``: distil a trained ranking policy into a small per-candidate scorer.

Example::

    shoprank distill --teacher runs/ppo/checkpoint --student mlp --out runs/ppo/student_mlp
    shoprank evaluate --checkpoint runs/ppo/student_mlp --out runs/ppo/student_mlp_eval

The student (``linear`` or ``mlp``, :data:`agents.distill.STUDENTS`) is trained to rank like the teacher
(a ``ppo`` checkpoint) with a listwise loss on the teacher's scores, on states from the teacher's own
sessions and, in DAgger rounds, from the student's (:mod:`agents.distill`). ``--out`` becomes an ordinary
ShopRank checkpoint (``agent.json``, ``policy.pt``) plus ``distill.json`` (config, loss per epoch, agreement
with the teacher on held-out states): ``shoprank evaluate --checkpoint OUT`` and
``shoprank compare --checkpoint NAME=OUT`` score it. ``shoprank bench distill`` measures reward share and
latency against the teacher.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from experiments.evaluate_cli import check_out


def make_parser() -> argparse.ArgumentParser:
    from agents.distill import LOSSES, STUDENTS, DistillConfig

    d = DistillConfig()
    p = argparse.ArgumentParser(prog="shoprank distill", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint folder (agent.json + policy.pt)")
    p.add_argument("--student", required=True,
                   help="; ".join(f"{name}: {spec.description}" for name, spec in STUDENTS.items()))
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder for the student")
    p.add_argument("--states", type=int, default=d.states, help="teacher-labelled states gathered per round")
    p.add_argument("--rounds", type=int, default=d.rounds,
                   help="rounds of gathering: the first plays the teacher, later ones the student (DAgger)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the states after each round")
    p.add_argument("--loss", default=d.loss, help=f"listwise loss: {sorted(LOSSES)}")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


@command_errors("distill")
def main(argv: Sequence[str] | None = None) -> int:
    """Distil; returns an exit code (0 ok, 2 bad input)."""
    from agents.checkpoint import META_FILE
    from agents.distill import DistillConfig, distill, student_spec

    args = make_parser().parse_args(argv)
    student_spec(args.student)
    config = DistillConfig(student=args.student, states=args.states, rounds=args.rounds, epochs=args.epochs,
                           loss=args.loss, learning_rate=args.learning_rate, seed=args.seed)
    if not args.teacher.exists():
        raise InputNotFoundError(f"teacher checkpoint {args.teacher} does not exist.")
    check_out(args.out)
    if (args.out / META_FILE).exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} already holds a checkpoint; pass --overwrite to replace it.")
    result = distill(args.teacher, config, args.out, progress=not args.no_progress)
    print(json.dumps({"student": args.student, "out": str(args.out), "final_loss": result.losses[-1],
                      "agreement_with_teacher": result.agreement}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
