"""Step 2 of the mechanism with PPI at the cpu scale with 4x the data: 2,048 episodes a phase
and a D0 of 16,384 (the cpu scale: 512 and 4,096), 12 phases of 40 epochs.

Does extortion of the frozen in-context learner come in fewer phases when each phase has more
data (the paper's phases have 40x the cpu scale's)? The config is the mechanism's step 2 but for
the data. Run from the repository root after
``python -m experiments.mechanism --preset cpu --algo ppi --out runs/mechanism-e40``.
"""

from pathlib import Path

from jaxcoop import runner
from jaxcoop.config import scaled
from jaxcoop.trained import Source

config = scaled("step2-extort", "cpu", algo="ppi").replace(
    num_episodes=2048, ppi_pretrain_episodes=16384
)
runner.run_or_resume(
    config,
    Path("runs/step2-data4x"),
    preset="mechanism:step2-extort",
    frozen_coplayer=Source(Path("runs/mechanism-e40/step1-tabular")),
)
