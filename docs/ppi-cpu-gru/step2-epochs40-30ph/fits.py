"""Memory-1 fits (``experiments.mechanism.step2_extortion``) of a PPI step-2 run's learners
against the frozen 40-epoch step-1 planner.

Run from the repository root after the step-2 command (../README.md, "Commands of the three
step runs"): ``python fits.py [RUN_DIR]``, RUN_DIR by default
the 30-phase run (its printed table is kept as ``extortion.csv``); ``runs/step2-data4x``
gives ``../step2-data4x/extortion.csv``.
"""

import sys
from pathlib import Path

import jax

from experiments import mechanism

run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/step2-e40-30ph")
reports = mechanism.step2_extortion(
    run_dir,
    Path("runs/mechanism-e40/step1-tabular"),
    jax.random.fold_in(jax.random.key(0), 2),
)
print(mechanism.extortion_table(reports))
