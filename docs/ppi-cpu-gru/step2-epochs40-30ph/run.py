"""Step 2 of the mechanism with PPI at the cpu scale for 30 phases instead of 12.

A new PPI learner against the frozen 40-epoch step-1 planner; the config is the mechanism's
step 2 but for ``num_iterations``. Run from the repository root after
``python -m experiments.mechanism --preset cpu --algo ppi --out runs/mechanism-e40``.
"""

from pathlib import Path

from jaxcoop import runner
from jaxcoop.config import scaled
from jaxcoop.trained import Source

config = scaled("step2-extort", "cpu", algo="ppi").replace(num_iterations=30)
runner.run_or_resume(
    config,
    Path("runs/step2-e40-30ph"),
    preset="mechanism:step2-extort",
    frozen_coplayer=Source(Path("runs/mechanism-e40/step1-tabular")),
)
