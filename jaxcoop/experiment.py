"""The paper's experiments as sequences of runs in one folder (``experiments/ablations.py``,
``mechanism.py``, ``dynamics.py`` declare them; this module runs them and keeps the results).

An experiment folder holds one results folder per run (``<out>/<run name>/``, as made by
``python -m experiments.ipd``), the experiment's figure(s) and ``results.json`` (our numbers
beside the paper's). Every config is built and validated before anything runs; each run is kept
if it finished, resumed if it was interrupted, started otherwise (``runner.run_or_resume``), so
the same command continues an interrupted experiment.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxcoop import environment, evaluation, records, runner, trained
from jaxcoop.commands import ExperimentCommand, UsageError
from jaxcoop.config import CheckpointSchedule, Config
from jaxcoop.presets import scaled
from jaxcoop.train import make_player
from jaxcoop.trained import Source

RESULTS_FILE = "results.json"
CROSS_PLAY_FILE = "cross_play.csv"
#: ``cross_play.csv``'s columns (``evaluation.cross_play``'s rows; efficiency against a pool
#: only, empty otherwise).
CROSS_PLAY_COLUMNS = (
    "player",
    "coplayer",
    "episodes",
    *(f"{side}{se}" for side in (*evaluation.SIDES, "efficiency") for se in ("", "_se")),
)

#: What each run's results report (final values: ``records.tail_means``).
MEASURES = {
    "mixed-pool": ("coop_vs_learner", "reward_vs_learner", "coop_vs_tabular", "reward_vs_tabular"),
    "opponent-id": ("coop_vs_learner", "reward_vs_learner", "coop_vs_tabular", "reward_vs_tabular"),
    "no-tabular": ("coop_vs_learner", "reward_vs_learner"),
    "step1-tabular": ("reward_vs_tabular", "tabular_reward", "coop_vs_tabular"),
    "step2-extort": ("reward_vs_frozen", "frozen_reward", "coop_vs_frozen", "frozen_coop"),
    "step3-mutual": ("coop_vs_learner", "reward_vs_learner"),
}
#: The paper's values (read off its plots, ../shared/PAPER.md "Results to reproduce"), as
#: ``(low, high)`` ranges per run and measure, where the paper gives one. The ablations'
#: "defection" (reward 0–0.15, cooperation 0.05–0.15) is between learners: the paper gives no
#: value for the opponent-ID learners against tabular co-players.
PAPER = {
    "mixed-pool": {
        "coop_vs_learner": (0.9, 0.95),
        "reward_vs_learner": (0.9, 1.0),
        "coop_vs_tabular": (0.05, 0.1),
        "reward_vs_tabular": (1.0, 1.0),
    },
    "opponent-id": {"coop_vs_learner": (0.05, 0.15), "reward_vs_learner": (0.0, 0.15)},
    "no-tabular": {"coop_vs_learner": (0.05, 0.15), "reward_vs_learner": (0.0, 0.15)},
    "step1-tabular": {
        "reward_vs_tabular": (1.0, 1.0),
        "tabular_reward": (-0.4, -0.4),
        "coop_vs_tabular": (0.05, 0.07),
    },
    "step2-extort": {  # A2C (Fig. 4)
        "reward_vs_frozen": (1.25, 1.32),
        "frozen_reward": (0.0, 0.9),
        "coop_vs_frozen": (0.42, 0.48),
        "frozen_coop": (0.67, 0.87),
    },
    "step3-mutual": {"coop_vs_learner": (0.95, 0.95), "reward_vs_learner": (0.9, 1.0)},
}
#: Where the paper gives PPI its own values (Fig. 2 step 2; cooperation is not given for PPI).
PAPER_PPI = {"step2-extort": {"reward_vs_frozen": (0.88, 1.05), "frozen_reward": (0.2, 0.23)}}


def paper_ranges(name: str, algo: str) -> dict[str, tuple[float, float]]:
    """The paper's ``(low, high)`` per measure of run ``name`` for ``algo``."""
    if algo == "ppi" and name in PAPER_PPI:
        return PAPER_PPI[name]
    return PAPER.get(name, {})


class Run(NamedTuple):
    """One run of an experiment: its name (a paper preset's, ``PAPER``'s key; its folder under
    the experiment's), its config, the runs (by name) its learners start from and its frozen
    co-player comes from, and when it saves checkpoints (``None``: as the command says)."""

    name: str
    config: Config
    init_from: str | None = None
    frozen_coplayer: str | None = None
    checkpointing: CheckpointSchedule | None = None


def config_for(
    command: ExperimentCommand, preset: str, iterations: dict[str, int] | None = None
) -> Config:
    """Paper preset ``preset`` at the command's scale, backbone and algorithm, with
    ``iterations[scale]`` updates if given (an experiment's own length at that scale; not for
    PPI, whose iterations are phases), then the command's overrides.
    Raises ``UsageError`` naming the field that cannot work."""
    try:
        config = scaled(preset, command.scale, command.backbone, command.algo)
        if iterations and command.scale in iterations and command.algo != "ppi":
            config = config.replace(num_iterations=iterations[command.scale])
        return config.replace(**command.changes)
    except ValueError as e:
        raise UsageError(str(e)) from None


def run_all(command: ExperimentCommand, runs: Sequence[Run], title: str) -> dict[str, dict]:
    """Run ``runs`` in order in ``command.out`` (each kept, resumed or started); returns their
    summaries by name. Progress goes to stdout, one line per chunk of each run."""
    schedules = [r.checkpointing or command.checkpointing for r in runs]
    for r, schedule in zip(runs, schedules, strict=True):
        try:
            schedule.check(r.config.chunk_iterations)
        except ValueError as e:
            raise UsageError(f"run {r.name}: {e}") from None
    out = Path(command.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{title}: {len(runs)} runs at the {command.scale} scale ({command.why}); in {out}")
    summaries, start = {}, time.perf_counter()
    for i, (r, schedule) in enumerate(zip(runs, schedules, strict=True), 1):
        c = r.config
        print(
            f"--- run {i}/{len(runs)} {r.name}: {c.algo}, {c.backbone} {c.hidden_dim}, "
            f"{c.num_seeds} seeds x {c.num_iterations} updates x {c.num_episodes} episodes x "
            f"{c.horizon} rounds",
            flush=True,
        )
        summaries[r.name] = runner.run_or_resume(
            c,
            out / r.name,
            preset=f"{title}:{r.name}",
            log=lambda line: print(f"  {line}", flush=True),
            init_from=() if r.init_from is None else (Source(out / r.init_from),),
            frozen_coplayer=None if r.frozen_coplayer is None else Source(out / r.frozen_coplayer),
            devices=command.devices,
            checkpointing=schedule,
        )
    print(f"all runs done in {time.perf_counter() - start:.0f}s (this session)")
    return summaries


def final(run_dir: Path, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Final values of ``names`` from a run's ``metrics.csv`` (``records.tail_means``; mean over
    learners and seeds, and the std over seeds of the mean over learners)."""
    metrics = records.read_metrics(run_dir)
    out = {}
    for name in names:
        per_seed = np.nanmean(records.tail_means(metrics[name]), axis=1)
        out[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std())}
    return out


def results_rows(
    out: Path, runs: Sequence[Run], summaries: dict[str, dict], extra: dict | None = None
) -> dict:
    """``results.json``'s content: per run, our final values beside the paper's ranges
    (``PAPER``), the run's scale, wall time and device; ``extra`` is merged in."""
    results = {}
    for r in runs:
        s = summaries[r.name]
        paper = paper_ranges(r.name, r.config.algo)
        measures = list(MEASURES.get(r.name, ("coop_vs_learner",)))
        results[r.name] = {
            "ours": final(Path(out) / r.name, measures),
            "paper": {k: list(v) for k, v in paper.items()},
            "seeds": r.config.num_seeds,
            "updates": r.config.num_iterations,
            "episodes_per_update": r.config.num_episodes,
            "horizon": r.config.horizon,
            "algo": r.config.algo,
            "backbone": r.config.backbone,
            "wall_seconds": s.get("wall_seconds"),
            "train_seconds": s.get("train_seconds"),
            "device": s.get("device"),
            "git_commit": s.get("git_commit"),
            "in_play": s.get("evaluation"),
        }
    return {**results, **(extra or {})}


def write_results(out: Path, results: dict) -> Path:
    path = Path(out) / RESULTS_FILE
    path.write_text(records.compact_json(results) + "\n")
    return path


def results_table(results: dict) -> str:
    """Our final values beside the paper's, one line per run and measure, and each run's
    in-context efficiency against the pool in play (``evaluation``), where it was measured."""
    lines = [f"{'run':<16}{'measure':<22}{'ours (mean ± std over seeds)':>30}{'paper':>16}"]
    for name, r in results.items():
        if not isinstance(r, dict) or "ours" not in r:
            continue
        for measure, v in r["ours"].items():
            low, high = r["paper"].get(measure, (None, None))
            paper = "" if low is None else (f"≈ {low:g}" if low == high else f"≈ {low:g}–{high:g}")
            lines.append(f"{name:<16}{measure:<22}{v['mean']:>22.3f} ± {v['std']:.3f}{paper:>16}")
        pool = (r.get("in_play") or {}).get("pool", {})
        if "efficiency" in pool:  # in play against the U(0, 1) pool, mean over learners
            value = float(np.mean(pool["efficiency"]))
            lines.append(f"{name:<16}{'efficiency_vs_pool':<22}{value:>22.3f}   (in play)")
    return "\n".join(lines)


def cross_play_runs(
    out: Path, names: Sequence[str], key: jax.Array, num_episodes: int
) -> tuple[Path, list[dict]]:
    """Every final learner of seed 0 of the runs ``names`` (as ``<run>/L<n>``) against the
    evaluation panel (``evaluation.PANEL``) and against every one of those learners, with
    standard errors. Writes the rows to ``<out>/cross_play.csv`` (``CROSS_PLAY_COLUMNS``) and
    prints them as a table; returns the file's path and the rows (``evaluation.cross_play``)."""
    players, game = {}, None
    for name in names:
        loaded = trained.load(Path(out) / name)
        agent = make_player(loaded.config)
        game = environment.make_game(loaded.config.game, loaded.config.horizon)
        for n in range(loaded.config.num_learners):
            params = evaluation.learner_params(loaded.params, 0, n)
            players[f"{name}/L{n}"] = evaluation.Player(agent, params)
    coplayers = {**evaluation.panel(jax.random.fold_in(key, 0), num_episodes), **players}
    rows = evaluation.cross_play(players, coplayers, jax.random.fold_in(key, 1), num_episodes, game)
    path = Path(out) / CROSS_PLAY_FILE
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CROSS_PLAY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"seed 0's final learners against the panel and each other ({num_episodes} episodes per")
    print(f"pair; value ± standard error):\n{evaluation.cross_play_table(rows)}")
    return path, rows
