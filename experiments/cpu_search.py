"""The bounded search behind the ``cpu`` preset: which small-scale settings show the science?

Each grid point changes one or two fields of a base config and trains with the same budget of
agent-steps per seed. Every point gets its own results folder (curves, metrics) under ``--out``;
``search.csv`` collects the final numbers and the learners' cooperation in play (mean over
learners) against tit-for-tat, always-cooperate, always-defect and the U(0, 1) pool;
``search.png`` shows all curves side by side.
Points already finished (their ``summary.json`` exists) are skipped, so the search can resume.

    python -m experiments.cpu_search --out runs/cpu-search
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from jaxcoop import cli, figures, records, runner
from jaxcoop.config import Config
from jaxcoop.presets import preset

#: The base point: the cpu preset's sizes with the paper's U(0, 1) pool, p_tabular and entropy
#: coefficient, and a single seed.
BASE = dict(pool="uniform", p_tabular=0.5, ent_coef=0.01, num_seeds=1)
GRID: dict[str, dict] = {
    "base": {},
    "lr3e-4": dict(lr=3e-4),
    "lr3e-3": dict(lr=3e-3),
    "ent0.03": dict(ent_coef=0.03),
    "ent0.1": dict(ent_coef=0.1),
    "batch64": dict(num_episodes=64),
    "batch512": dict(num_episodes=512),
    "rscale1": dict(reward_scale=1.0),
    "no-advnorm": dict(normalize_advantages=False),
    "hidden64": dict(hidden_dim=64),
    "hidden128": dict(hidden_dim=128),
    "ptab0.25": dict(p_tabular=0.25),
    "ptab0.75": dict(p_tabular=0.75),
    "horizon50": dict(horizon=50),
    "horizon100": dict(horizon=100),
    "gamma0.9": dict(gamma=0.9),
    "ppo": dict(algo="ppo", ppo_epochs=4, ppo_minibatches=4, lr=3e-4),
    "ptab0.75-ent0.03": dict(p_tabular=0.75, ent_coef=0.03),
    "pool-uniform+named": dict(pool="uniform+named"),
    "pool-named": dict(pool="named"),
    "pool-named-ptab0.75-ent0.03": dict(pool="named", p_tabular=0.75, ent_coef=0.03),
    "pool-uniform+named-ptab0.75-ent0.03": dict(
        pool="uniform+named", p_tabular=0.75, ent_coef=0.03
    ),
}

#: The learners' own final metrics (``records.FINAL_FIELDS`` without the pool's reward).
SUMMARY_FIELDS = ("reward_vs_learner", "coop_vs_learner", "reward_vs_tabular", "coop_vs_tabular")


def point_config(overrides: dict, agent_steps: float) -> Config:
    """The grid point's config with ``num_iterations`` set by the agent-step budget per seed."""
    config = preset("cpu").replace(**{**BASE, **overrides})
    chunks = max(1, round(agent_steps / config.agent_steps_per_iteration / 100))
    return config.replace(num_iterations=100 * chunks, chunk_iterations=100)


def played_cooperation(run_dir: Path) -> dict[str, float]:
    """Cooperation in play (mean over learners) against the panel, from ``evaluation.json``;
    NaN where a point predates the evaluation (the file is missing or in an older format)."""
    path = run_dir / records.EVALUATION_FILE
    played = json.loads(path.read_text()) if path.exists() else {}
    out = {}
    for opponent in ("tit_for_tat", "always_cooperate", "always_defect", "pool"):
        coop = played.get(opponent, {}).get("coop")
        out[f"played_coop_vs_{opponent}"] = (
            round(float(np.mean(coop["mean"])), 3) if isinstance(coop, dict) else float("nan")
        )
    return out


def main(argv=None) -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/cpu-search"))
    p.add_argument("--agent-steps", type=float, default=2e7, help="budget per seed and point")
    p.add_argument("--only", default="", help="comma-separated grid point names")
    args = p.parse_args(argv)
    names = [n for n in GRID if not args.only or n in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        config = point_config(GRID[name], args.agent_steps)
        run_dir = args.out / name
        if (run_dir / records.SUMMARY_FILE).exists():
            print(f"{name}: done before, skipped")
        else:
            print(f"{name}: {GRID[name]} x {config.num_iterations} iterations", flush=True)
            lines: list[str] = []
            runner.run(config, run_dir, preset=f"cpu-search:{name}", log=lines.append)
            print(f"  {lines[-1]}", flush=True)
        summary = json.loads((run_dir / records.SUMMARY_FILE).read_text())
        row = {
            "name": name,
            "overrides": json.dumps(GRID[name]),
            "iterations": config.num_iterations,
            "wall_s": round(summary["train_seconds"] + summary["compile_seconds"], 1),
        }
        for field in SUMMARY_FIELDS:
            row[field] = round(float(np.nanmean(summary["final"][field]["mean"])), 3)
        row.update(played_cooperation(run_dir))
        rows.append(row)
    with (args.out / "search.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_grid(args.out, [r["name"] for r in rows])
    print((args.out / "search.csv").read_text())


def plot_grid(out: Path, names: list[str]) -> None:
    """All points' cooperation curves (vs learner, vs tabular) in one figure."""
    plt = figures.pyplot()
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False, constrained_layout=True
    )
    for ax, name in zip(axes.flat, names, strict=False):
        m = records.read_metrics(out / name)
        window = max(1, len(m["iteration"]) // 50)
        for key, color in (("coop_vs_learner", "tab:blue"), ("coop_vs_tabular", "tab:red")):
            if not np.all(np.isnan(m[key])):
                curve = figures.smooth(m[key].mean(axis=2), window).mean(axis=0)
                ax.plot(m["iteration"], curve, color=color, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.savefig(out / "search.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
