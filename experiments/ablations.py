"""Fig. 1: the mixed pool and its two ablations (opponent ID given; no tabular co-players).

python -m experiments.ablations                       # paper scale on an accelerator, else cpu
python -m experiments.ablations --preset tiny         # seconds, end to end
python -m experiments.ablations --preset cpu --algo ppo --backbone transformer --out runs/abl

Three runs of several seeds each (``<out>/mixed-pool``, ``opponent-id``, ``no-tabular``), then
``<out>/ablations.png`` (learner-vs-learner and learner-vs-tabular reward and cooperation over
training, mean ± std over seeds), ``<out>/results.json`` (final values beside the paper's) and
``<out>/cross_play.csv`` (seed 0's final learners of all three runs against the named
co-players, the U(0, 1) pool and each other, both sides' reward and cooperation ± standard
error).
Run the same command again to continue an interrupted experiment.
"""

from __future__ import annotations

import sys

import jax

from jaxcoop import cli, experiment, figures, records
from jaxcoop.experiment import Run

RUNS = {
    "mixed-pool": "mixed pool",
    "opponent-id": "opponent ID given",
    "no-tabular": "no tabular co-players",
}
#: Updates per run below the paper's 200k: three cpu-scale runs in about 20 minutes on 2 cores.
ITERATIONS = {"cpu": 12_000}
#: Episodes per pair in the cross-play of the final learners (standard errors come from these).
EVALUATION_EPISODES = 512


def runs(command: cli.ExperimentCommand) -> list[Run]:
    """The three runs."""
    return [Run(name, experiment.config_for(command, name, ITERATIONS)) for name in RUNS]


def main(argv: list[str] | None = None) -> None:
    command = cli.parse_experiment(argv, __doc__.splitlines()[0], "ablations")
    todo = runs(command)
    summaries = experiment.run_all(command, todo, "ablations")
    histories = {RUNS[r.name]: records.read_metrics(command.out / r.name) for r in todo}
    names = [r.name for r in todo]
    c = todo[0].config
    title = f"Fig. 1, {command.scale} scale: {c.algo}, {c.backbone}"
    figure = figures.compare_runs(command.out / "ablations.png", histories, title)
    key = jax.random.key(c.seed)
    table, rows = experiment.cross_play_runs(command.out, names, key, EVALUATION_EPISODES)
    results = experiment.results_rows(command.out, todo, summaries, {"cross_play": rows})
    path = experiment.write_results(command.out, results)
    print(experiment.results_table(results))
    print(f"figure: {figure}; results: {path}; cross-play table: {table}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
