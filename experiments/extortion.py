"""How much the learners of a step-2 run extort their frozen co-player (paper Fig. 4).

python -m experiments.extortion runs/step2 --against runs/step1   # a frozen step-1 agent
python -m experiments.extortion runs/step2-bayes --against bayes  # the Bayesian learner

Plays every learner (player 0) against the co-player it was trained against
(``experiments.mechanism.EVALUATION_EPISODES`` episodes), fits its empirical memory-1 strategy
to zero-determinant extortion (``jaxcoop.extortion``: the extortion factor chi and the fit's
residual) and writes ``<run>/extortion.json``, printing one line per learner.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

from experiments import mechanism
from jaxcoop import cli


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the step-2 run folder")
    p.add_argument("--against", required=True, help="the frozen co-player's run folder, or bayes")
    p.add_argument("--seed", type=int, default=0, help="the evaluation's key")
    args = p.parse_args(argv)
    reports = mechanism.step2_extortion(args.run, args.against, jax.random.key(args.seed))
    (args.run / "extortion.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(mechanism.extortion_table(reports))


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
