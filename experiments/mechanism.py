"""Fig. 2/4: the mechanism, step by step (in-context best response -> extortion -> cooperation).

python -m experiments.mechanism                       # paper scale on an accelerator, else cpu
python -m experiments.mechanism --preset tiny         # seconds, end to end
python -m experiments.mechanism --preset cpu --algo ppo --backbone transformer --out runs/mech

Three runs chained through checkpoints in ``<out>``:

1. ``step1-tabular``: one learner against the tabular pool only (in-context best response);
2. ``step2-extort``: two new learners against the frozen step-1 agent only (extortion);
3. ``step3-mutual``: two learners started from the step-2 extortioners, against each other.

Then ``<out>/mechanism.png`` (the paper-style panels: step 1's training and its agent within an
episode against tit-for-tat / always-cooperate / always-defect / the average tabular co-player,
step 2's rewards and cooperation of both sides, step 3's cooperation), ``<out>/results.json``
(final values beside the paper's, the step-1 agent's within-episode numbers and the extortion
fit of every step-2 agent), ``<out>/cross_play.csv`` (seed 0's agents of all three steps against
the named co-players, the U(0, 1) pool and each other) and a table on stdout. Run the same
command again to continue an interrupted experiment.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from jaxcoop import (
    cli,
    environment,
    evaluation,
    experiment,
    extortion,
    figures,
    records,
    reference,
    trained,
)
from jaxcoop.evaluation import Player
from jaxcoop.experiment import Run
from jaxcoop.train import make_player

#: Updates per step below the paper's (50k, 100k, 10k): the three cpu-scale runs fit in about
#: 20 minutes on 2 cores.
ITERATIONS = {
    "step1-tabular": {"cpu": 6_000},
    "step2-extort": {"cpu": 6_000},
    "step3-mutual": {"cpu": 4_000},
}
#: Step 1's within-episode panel (paper Fig. 2): named co-players and the average tabular one.
STEP1_PANEL = ("tit_for_tat", "always_cooperate", "always_defect", "pool")
#: Episodes played per pair in the evaluations (the printed standard errors come from these).
EVALUATION_EPISODES = 1024
#: ``fold_in(key(seed), STEP2_FITS)``: the key of the step-2 fits (``python -m
#: experiments.extortion --mechanism-key`` plays with it too).
STEP2_FITS = 2


def runs(command: cli.ExperimentCommand) -> list[Run]:
    def config(name):
        return experiment.config_for(command, name, ITERATIONS[name])

    return [
        Run("step1-tabular", config("step1-tabular")),
        Run("step2-extort", config("step2-extort"), frozen_coplayer="step1-tabular"),
        Run("step3-mutual", config("step3-mutual"), init_from="step2-extort"),
    ]


def step1_within_episode(run_dir: Path, key: jax.Array) -> dict[str, dict[str, np.ndarray]]:
    """The step-1 agent(s) within an episode against ``STEP1_PANEL`` (``evaluate_learners``)."""
    loaded = trained.load(run_dir)
    game = environment.make_game(loaded.config.game, loaded.config.horizon)
    return evaluation.evaluate_learners(
        make_player(loaded.config), loaded.params, game, key, EVALUATION_EPISODES, STEP1_PANEL
    )


def step2_extortion(step2_dir: Path, step1_dir: Path | str, key: jax.Array) -> list[dict]:
    """Every step-2 learner (player 0) against the frozen step-1 agent of its seed (or, with
    ``step1_dir="bayes"``, the Bayesian in-context learner): the
    ``extortion.extortion_report`` of its play (empirical memory-1 strategy, fitted extortion
    factor chi and residual, both rewards), one dict per seed and learner."""
    new = trained.load(step2_dir)
    game = environment.make_game(new.config.game, new.config.horizon)
    new_agent = make_player(new.config)
    if step1_dir == trained.BAYES:
        frozen_agent, frozen_params, source_seeds = reference.BAYESIAN, None, 0
    else:
        frozen = trained.load(step1_dir)
        frozen_agent, frozen_params = make_player(frozen.config), frozen.params
        source_seeds = jax.tree.leaves(frozen.params)[0].shape[0]
    reports = []
    for s in range(new.config.num_seeds):
        frozen_seed = s if source_seeds == new.config.num_seeds else 0
        other = Player(
            frozen_agent,
            None
            if frozen_params is None
            else evaluation.learner_params(frozen_params, frozen_seed, 0),
        )
        for n in range(new.config.num_learners):
            me = Player(new_agent, evaluation.learner_params(new.params, s, n))
            pair_key = jax.random.fold_in(jax.random.fold_in(key, s), n)
            episodes = evaluation.match(me, other, pair_key, EVALUATION_EPISODES, game)
            report = extortion.extortion_report(episodes, 0, np.asarray(game.payoffs))
            reports.append({"seed": s, "learner": n, **report})
    return reports


def extortion_table(reports: list[dict]) -> str:
    """One line per step-2 agent: its reward and the frozen agent's, the fitted chi and fit."""
    lines = [
        f"{'seed':>4}{'learner':>8}{'reward':>9}{'frozen':>9}{'ratio':>8}{'chi':>8}"
        f"{'residual':>10}{'ZD resid.':>10}  P(C | CC, CD, DC, DD)"
    ]
    for r in reports:

        def num(x, width, digits=3):
            return f"{'—':>{width}}" if x is None else f"{x:>{width}.{digits}f}"

        probabilities = ", ".join("—" if p is None else f"{p:.2f}" for p in r["p_cooperate"][1:])
        lines.append(
            f"{r['seed']:>4}{r['learner']:>8}{r['reward']:>9.3f}{r['coplayer_reward']:>9.3f}"
            f"{num(r['reward_ratio'], 8, 2)}{num(r['chi'], 8, 2)}{r['residual']:>10.3f}"
            f"{r['zd_residual']:>10.3f}  ({probabilities})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    command = cli.parse_experiment(argv, __doc__.splitlines()[0], "mechanism")
    todo = runs(command)
    summaries = experiment.run_all(command, todo, "mechanism")
    out = command.out
    key = jax.random.key(todo[0].config.seed)
    played = step1_within_episode(out / "step1-tabular", jax.random.fold_in(key, 1))
    reports = step2_extortion(
        out / "step2-extort", out / "step1-tabular", jax.random.fold_in(key, STEP2_FITS)
    )
    c = todo[0].config
    title = f"Fig. 2/4, {command.scale} scale: {c.algo}, {c.backbone}"
    figure = figures.mechanism(
        out / "mechanism.png",
        records.read_metrics(out / "step1-tabular"),
        played,
        records.read_metrics(out / "step2-extort"),
        records.read_metrics(out / "step3-mutual"),
        title,
    )
    table, rows = experiment.cross_play_runs(
        out, [r.name for r in todo], jax.random.fold_in(key, 3), EVALUATION_EPISODES
    )
    results = experiment.results_rows(
        out,
        todo,
        summaries,
        {
            "cross_play": rows,
            "step1_within_episode": {
                name: {side: r[side].mean(axis=(0, 1)).tolist() for side in evaluation.SIDES}
                for name, r in played.items()
            },
            "step2_extortion": reports,
        },
    )
    path = experiment.write_results(out, results)
    print(experiment.results_table(results))
    print("step 2 agents against the frozen step-1 agent (extortion fit, chi > 1 extorts):")
    print(extortion_table(reports))
    print(f"figure: {figure}; results: {path}; cross-play table: {table}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
