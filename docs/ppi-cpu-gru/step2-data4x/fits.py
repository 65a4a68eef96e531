"""Memory-1 fits (``experiments.mechanism.step2_extortion``) of the step-2 learners with 4x
the data.

Run from the repository root after ``run.py``; the output is ``extortion.txt``.
"""

from pathlib import Path

import jax

from experiments import mechanism

reports = mechanism.step2_extortion(
    Path("runs/step2-data4x"),
    Path("runs/mechanism-e40/step1-tabular"),
    jax.random.fold_in(jax.random.key(0), 2),
)
print(mechanism.extortion_table(reports))
