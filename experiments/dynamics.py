"""Fig. 3: within-episode behaviour at several points of mixed-pool training.

python -m experiments.dynamics                        # paper scale on an accelerator, else cpu
python -m experiments.dynamics --preset tiny          # seconds, end to end
python -m experiments.dynamics --preset cpu --algo ppo --backbone transformer --out runs/dyn

One mixed-pool run (``<out>/mixed-pool``) that keeps a checkpoint every 1/20 of training; the
learners of a few of them (from early to final) are played against each other and against
tit-for-tat, always-cooperate, always-defect and the average tabular co-player. Writes
``<out>/dynamics.png`` (per-round cooperation and reward, one row per co-player, one line per
snapshot), ``<out>/results.json`` (the run's final values beside the paper's and every
snapshot's episode averages) and a table on stdout. Run the same command again to continue an
interrupted experiment.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from jaxcoop import checkpoints, cli, environment, evaluation, experiment, figures, trained
from jaxcoop.config import DEFAULT_CHECKPOINTING, CheckpointSchedule
from jaxcoop.experiment import Run
from jaxcoop.train import make_player

#: Updates below the paper's 200k: one cpu-scale run in about 10 minutes on 2 cores.
ITERATIONS = {"cpu": 20_000}
#: Checkpoints kept over training (every 1/CHECKPOINTS of it, the end included).
CHECKPOINTS = 20
#: Points of training shown, as fractions of it (the nearest kept checkpoint is used).
SNAPSHOT_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)
#: Co-players of the snapshots: tabular ones, then the other learner of the same seed.
COPLAYERS = ("tit_for_tat", "always_cooperate", "always_defect", "pool")
EVALUATION_EPISODES = 512


def run(command: cli.ExperimentCommand) -> Run:
    config = experiment.config_for(command, "mixed-pool", ITERATIONS)
    chunk = config.chunk_iterations
    every = max(chunk, config.num_iterations // CHECKPOINTS // chunk * chunk)
    schedule = CheckpointSchedule(every, keep=config.num_iterations // every + 1)
    return Run("mixed-pool", config, checkpointing=schedule)


def snapshot_steps(available: list[int], fractions=SNAPSHOT_FRACTIONS) -> list[int]:
    """The checkpoints (iterations, ascending, no repeats) nearest to ``fractions`` of the last
    one in ``available``."""
    last = available[-1]
    chosen = {min(available, key=lambda step: abs(step - f * last)) for f in fractions}
    return sorted(chosen)


def main(argv: list[str] | None = None) -> None:
    command = cli.parse_experiment(argv, __doc__.splitlines()[0], "dynamics")
    if command.checkpointing != DEFAULT_CHECKPOINTING:
        raise cli.UsageError(
            "--checkpoint-every and --keep-checkpoints are not used by experiments.dynamics: its "
            f"snapshots need a checkpoint every 1/{CHECKPOINTS} of training, all kept"
        )
    todo = run(command)
    summaries = experiment.run_all(command, [todo], "dynamics")
    run_dir = command.out / todo.name
    config = todo.config
    agent, game = make_player(config), environment.make_game(config.game, config.horizon)
    key = jax.random.key(config.seed)
    played = {}
    for step in snapshot_steps(checkpoints.steps(run_dir)):
        loaded = trained.load(run_dir, step)
        played[step] = evaluation.evaluate_learners(
            agent, loaded.params, game, key, EVALUATION_EPISODES, COPLAYERS
        )
    names = list(next(iter(played.values())))  # COPLAYERS, then "learner" with 2+ learners
    title = f"Fig. 3, {command.scale} scale: {config.algo}, {config.backbone}"
    figure = figures.snapshots(command.out / "dynamics.png", played, names, title)
    snapshots = {
        str(step): {
            name: {side: float(np.mean(r[side])) for side in ("coop", "reward")}
            for name, r in result.items()
        }
        for step, result in played.items()
    }
    results = experiment.results_rows(command.out, [todo], summaries, {"snapshots": snapshots})
    path = experiment.write_results(command.out, results)
    print(experiment.results_table(results))
    print("snapshots: cooperation / reward of the learners (mean over seeds and learners)")
    print(f"{'update':>8}" + "".join(f"{name:>24}" for name in names))
    for step, row in snapshots.items():
        cells = "".join(f"{row[n]['coop']:>15.2f} / {row[n]['reward']:>5.2f}" for n in names)
        print(f"{step:>8}{cells}")
    print(f"figure: {figure}; results: {path}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
