"""Step 3 of the PPI mechanism for 30 phases (cpu scale), from the step-2 learners of
`python -m experiments.mechanism --preset cpu --algo ppi --out runs/mechanism-cpu-ppi-gru`
with the model before commit d7e7b2a (check out e0146db, then run from the repository root:
python docs/ppi-before-token-order/mechanism/step3-mutual-30-phases/run.py)."""

from pathlib import Path

from jaxcoop import records, runner, trained

src = Path("runs/mechanism-cpu-ppi-gru")
config, _ = records.read_config(src / "step3-mutual")
config = config.replace(num_iterations=30)
runner.run(
    config,
    Path("runs/ppi-step3-30ph"),
    preset="mechanism:step3-mutual (30 phases)",
    init_from=[trained.Source(src / "step2-extort")],
)
