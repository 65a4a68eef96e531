"""Compare finished (or running) runs side by side: curves in one figure and a table.

python -m experiments.compare runs/a runs/b --labels GRU transformer --out compare.png

Reads each run's ``metrics.csv`` (whatever has been written so far, so a run still in progress
can be compared too; a kept record's ``metrics-every<N>.csv`` where there is none) and plots
reward and cooperation against learners and against tabular co-players (mean over learners,
mean ± std over seeds). The table gives the mean over the last 10% of each run's iterations;
it is printed and written beside the figure as CSV (``--out compare.png`` -> ``compare.csv``:
run, iterations, then each measure's mean and std over seeds).

A run started with ``--init-from`` another run of the same comparison (e.g. a late phase
continued with another learning rate) is drawn from its source's checkpoint on: its update 0
is placed at the source's update of that checkpoint.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from jaxcoop import cli, figures, records

#: ``compare.csv``'s columns: each of ``figures.RUN_PANELS``' measures as mean and std.
COLUMNS = ("run", "iterations") + tuple(
    f"{name}_{stat}" for name, _ in figures.RUN_PANELS for stat in ("mean", "std")
)


def start_offsets(runs: list[Path]) -> list[int]:
    """Per run, the update its curves start at: the source checkpoint's update for a run whose
    learners all started (``--init-from``) from one checkpoint of another run in ``runs``
    (the same folder, or one of the same name: records are often moved after a run), else 0."""
    folders = {run.resolve() for run in runs}
    names = {folder.name for folder in folders}
    offsets = []
    for run in runs:
        sources = records.read_config(run)[1].get("warm_start", {}).get("init_from", [])
        starts = {(Path(source["run"]).resolve(), source["iteration"]) for source in sources}
        source, step = next(iter(starts)) if len(starts) == 1 else (None, 0)
        found = source is not None and (source in folders or source.name in names)
        offsets.append(int(step) if found else 0)
    return offsets


def rows(histories: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Final values per run (``records.tail_means``; mean over learners, then mean and std over
    seeds), keyed by ``COLUMNS``."""
    out = []
    for label, h in histories.items():
        row = {"run": label, "iterations": len(h["iteration"])}
        for name, _ in figures.RUN_PANELS:
            per_seed = records.tail_means(h[name]).mean(axis=1)
            row[f"{name}_mean"], row[f"{name}_std"] = float(per_seed.mean()), float(per_seed.std())
        out.append(row)
    return out


def table(table_rows: list[dict]) -> str:
    """``rows`` as text: mean ± std over seeds per measure."""
    lines = [
        f"{'run':<28}{'iterations':>11}" + "".join(f"{name:>22}" for name, _ in figures.RUN_PANELS)
    ]
    for row in table_rows:
        cells = "".join(
            f"{row[name + '_mean']:>15.3f} ± {row[name + '_std']:.3f}"
            for name, _ in figures.RUN_PANELS
        )
        lines.append(f"{row['run'][:27]:<28}{row['iterations']:>11}{cells}")
    return "\n".join(lines)


def write_csv(path: Path, table_rows: list[dict]) -> Path:
    """``table_rows`` (``rows``) as CSV, values to 6 significant digits."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in table_rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return path


def main(argv: list[str] | None = None) -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="results folders")
    p.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    p.add_argument("--out", type=Path, default=Path("compare.png"), help="figure to write")
    p.add_argument(
        "--offsets",
        nargs="+",
        type=int,
        metavar="UPDATE",
        help="one update per run at which its curves start (default: a warm-started run's "
        "source update when its source is compared, else 0)",
    )
    args = p.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise cli.UsageError(f"{len(labels)} labels for {len(args.runs)} runs; give one per run")
    if args.offsets is not None and (len(args.offsets) != len(args.runs) or min(args.offsets) < 0):
        raise cli.UsageError(
            f"--offsets {' '.join(map(str, args.offsets))}: give one update >= 0 per run "
            f"({len(args.runs)} runs)"
        )
    names = [records.metrics_name(run) for run in args.runs]
    for run, name in zip(args.runs, names, strict=True):
        if name is None:
            raise records.RunFolderError(
                f"{run} has no {records.METRICS_FILE} nor one kept record's metrics-every<N>.csv "
                "(not a run folder?)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    histories = {}
    offsets = args.offsets if args.offsets is not None else start_offsets(args.runs)
    for label, run, name, offset in zip(labels, args.runs, names, offsets, strict=True):
        histories[label] = records.read_metrics(run, name)
        if offset:
            print(f"{label}: started from another run's update {offset:,}; drawn from there")
            histories[label]["iteration"] = histories[label]["iteration"] + offset
    final = rows(histories)
    print(table(final))
    print(f"figure: {figures.compare_runs(args.out, histories, 'runs compared')}")
    print(f"table: {write_csv(args.out.with_suffix('.csv'), final)}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
