"""Step 3 of the mechanism with PPI at the cpu scale, started from the 30-phase step-2 learners.

Run from the repository root after ``docs/ppi-cpu-gru/step2-epochs40-30ph/run.py``.
"""

from pathlib import Path

from jaxcoop import runner
from jaxcoop.config import scaled
from jaxcoop.trained import Source

config = scaled("step3-mutual", "cpu", algo="ppi")
runner.run_or_resume(
    config,
    Path("runs/step3-from-step2-30ph"),
    preset="mechanism:step3-mutual",
    init_from=(Source(Path("runs/step2-e40-30ph")),),
)
