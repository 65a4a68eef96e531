"""Train independent learners in the iterated prisoner's dilemma (default: the paper's mixed pool).

python -m experiments.ipd                      # paper scale on an accelerator, else `cpu`
python -m experiments.ipd --preset tiny        # seconds, end to end
python -m experiments.ipd --preset cpu --lr 1e-3 --num-seeds 4 --out runs/mine
python -m experiments.ipd --resume runs/mine   # continue a stopped run from its newest checkpoint
python -m experiments.ipd --preset step1-tabular --out runs/step1
python -m experiments.ipd --preset no-tabular --num-learners 1 --frozen-coplayer runs/step1
python -m experiments.ipd --distributed        # on every host of a TPU slice (docs/usage.md)
"""

from __future__ import annotations

import sys

from jaxcoop import cli, runner, sharding


def main(argv: list[str] | None = None) -> None:
    command = cli.parse(argv, description=__doc__.splitlines()[0])
    logging = dict(
        tensorboard=command.tensorboard,
        wandb_project=command.wandb,
        devices=command.devices,
        evaluation_episodes=command.evaluation_episodes,
        checkpointing=command.checkpointing,
    )
    say = print if sharding.is_primary() else lambda *_: None
    if command.resume is not None:
        say(f"resuming {command.resume}")
        _, summary = runner.resume(command.resume, command.changes, **logging)
        out = command.resume
    else:
        out = command.out
        say(f"preset {command.preset!r} ({command.why}); results in {out}")
        _, summary = runner.run(
            command.config,
            out,
            preset=command.preset,
            init_from=command.init_from,
            frozen_coplayer=command.frozen_coplayer,
            **logging,
        )
    if not summary:  # not process 0 of a multi-host run: process 0 reports
        return
    print(runner.summary_table(summary))
    print(
        f"wall time {summary['wall_seconds']:.0f}s ({summary['compile_seconds']:.0f}s compile); "
        f"{summary['agent_steps_per_second']:.3g} agent-steps/s; results in {out}"
    )


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
