"""Compare finished (or running) runs side by side: curves in one figure and a table.

python -m experiments.compare runs/a runs/b --labels GRU transformer --out compare.png

Reads each run's ``metrics.csv`` (whatever has been written so far, so a run still in progress
can be compared too) and plots reward and cooperation against learners and against tabular
co-players (mean over learners, mean ± std over seeds). The table gives the mean over the last
10% of each run's iterations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jaxcoop import cli, records

PANELS = (
    ("coop_vs_learner", "cooperation, learner vs learner"),
    ("coop_vs_tabular", "cooperation, learner vs tabular"),
    ("reward_vs_learner", "reward, learner vs learner"),
    ("reward_vs_tabular", "reward, learner vs tabular"),
)


def table(histories: dict[str, dict[str, np.ndarray]]) -> str:
    """Final values (last 10% of iterations; mean over learners, mean ± std over seeds)."""
    lines = [f"{'run':<28}{'iterations':>11}" + "".join(f"{name:>22}" for name, _ in PANELS)]
    for label, h in histories.items():
        cells = ""
        for name, _ in PANELS:
            x_SxIxN = h[name]
            tail = max(1, round(x_SxIxN.shape[1] * 0.1))
            per_seed = x_SxIxN[:, -tail:].mean(axis=(1, 2))
            cells += f"{per_seed.mean():>15.3f} ± {per_seed.std():.3f}"
        lines.append(f"{label[:27]:<28}{len(h['iteration']):>11}{cells}")
    return "\n".join(lines)


def plot(histories: dict[str, dict[str, np.ndarray]], out: Path) -> Path:
    plt = records.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True, sharex=True)
    for ax, (name, title) in zip(axes.flat, PANELS, strict=True):
        for label, h in histories.items():
            if np.all(np.isnan(h[name])):
                continue
            window = max(1, len(h["iteration"]) // 50)
            per_seed = records.smooth(h[name].mean(axis=2), window)
            mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
            (line,) = ax.plot(h["iteration"], mean, label=label)
            ax.fill_between(
                h["iteration"], mean - std, mean + std, color=line.get_color(), alpha=0.2
            )
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if name.startswith("coop"):
            ax.set_ylim(-0.02, 1.02)
    for ax in axes[1]:
        ax.set_xlabel("update")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("mean over learners, mean ± std over seeds (moving average)")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="results folders")
    p.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    p.add_argument("--out", type=Path, default=Path("compare.png"), help="figure to write")
    args = p.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise cli.UsageError(f"{len(labels)} labels for {len(args.runs)} runs; give one per run")
    histories = {}
    for label, run in zip(labels, args.runs, strict=True):
        if not (run / records.METRICS_FILE).is_file():
            raise records.RunFolderError(f"{run} has no {records.METRICS_FILE} (not a run folder?)")
        histories[label] = records.read_metrics(run)
    print(table(histories))
    print(f"figure: {plot(histories, args.out)}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
