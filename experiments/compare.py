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

from jaxcoop import cli, figures, records


def table(histories: dict[str, dict[str, np.ndarray]]) -> str:
    """Final values (``records.tail_means``; mean over learners, mean ± std over seeds)."""
    lines = [
        f"{'run':<28}{'iterations':>11}" + "".join(f"{name:>22}" for name, _ in figures.RUN_PANELS)
    ]
    for label, h in histories.items():
        cells = ""
        for name, _ in figures.RUN_PANELS:
            per_seed = records.tail_means(h[name]).mean(axis=1)
            cells += f"{per_seed.mean():>15.3f} ± {per_seed.std():.3f}"
        lines.append(f"{label[:27]:<28}{len(h['iteration']):>11}{cells}")
    return "\n".join(lines)


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
    print(f"figure: {figures.compare_runs(args.out, histories, 'runs compared')}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
