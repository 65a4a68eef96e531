"""Train independent learners in the iterated prisoner's dilemma (default: the paper's mixed pool).

python -m experiments.ipd                      # paper scale on an accelerator, else `cpu`
python -m experiments.ipd --preset tiny        # seconds, end to end
python -m experiments.ipd --preset cpu --lr 1e-3 --num-seeds 4 --out runs/mine
"""

from __future__ import annotations

import sys

from jaxcoop import cli, runner


def main(argv: list[str] | None = None) -> None:
    config, preset, out, why = cli.parse(argv, description=__doc__.splitlines()[0])
    print(f"preset {preset!r} ({why}); results in {out}")
    _, summary = runner.run(config, out, preset=preset)
    print(runner.summary_table(summary))
    print(
        f"wall time {summary['train_seconds']:.0f}s training + {summary['compile_seconds']:.0f}s "
        f"compile; {summary['agent_steps_per_second']:.3g} agent-steps/s; results in {out}"
    )


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
