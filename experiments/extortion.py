"""How much the learners of a step-2 run extort their frozen co-player (paper Fig. 4).

python -m experiments.extortion runs/step2 --against runs/step1   # a frozen step-1 agent
python -m experiments.extortion runs/step2-bayes --against bayes  # the Bayesian learner
python -m experiments.extortion runs/mech/step2-extort --against runs/mech/step1-tabular \
    --mechanism-key          # the draws experiments.mechanism's own fits use

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


def evaluation_key(args: argparse.Namespace) -> jax.Array:
    """The key of the evaluation games: ``key(seed)``, or with ``--mechanism-key`` the one
    ``experiments.mechanism`` uses for its step-2 fits."""
    key = jax.random.key(args.seed)
    return jax.random.fold_in(key, mechanism.STEP2_FITS) if args.mechanism_key else key


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the step-2 run folder")
    p.add_argument("--against", required=True, help="the frozen co-player's run folder, or bayes")
    p.add_argument("--seed", type=int, default=0, help="the evaluation's key")
    p.add_argument(
        "--mechanism-key",
        action="store_true",
        help="play with the key experiments.mechanism gives its step-2 fits, "
        "fold_in(key(SEED), 2), so a run continued or re-done by hand is fitted on the same draws",
    )
    args = p.parse_args(argv)
    reports = mechanism.step2_extortion(args.run, args.against, evaluation_key(args))
    (args.run / "extortion.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(mechanism.extortion_table(reports))


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
