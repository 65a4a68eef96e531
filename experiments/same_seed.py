"""Same seed, same numbers: fingerprints of the ``tiny`` runs of every algorithm and backbone.

python -m experiments.same_seed --out /tmp/before.json      # run all six, write the hashes
python -m experiments.same_seed --compare /tmp/before.json /tmp/after.json

A refactoring that must not change what a run computes runs this before and after and compares:
for every algorithm (a2c, ppo, ppi) and backbone (gru, transformer), the ``tiny`` preset with a
fixed seed goes through the normal run path (``runner.run``: results folder, checkpoints,
evaluation), and the JSON keeps the sha256 of its ``metrics.csv``, of each metrics column, of
``evaluation.json`` and of the final parameters. ``--compare`` prints one row per run and
fingerprint and exits 1 on any difference (``--ignore NAME`` leaves out fingerprints by name,
e.g. a metrics column that was changed on purpose: ``--ignore column:approx_kl``).

The JSON also keeps every metrics column's values, so that a change meant to alter only float
rounding (a reassociated matmul) can be shown to: ``--compare`` prints, for a column whose hash
differs, its largest difference relative to the column's scale, and ``--rtol R`` accepts
columns that agree within ``R`` (verdict ``close``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

ALGOS = ("a2c", "ppo", "ppi")
BACKBONES = ("gru", "transformer")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def params_hash(params) -> str:
    """sha256 over every leaf of a parameter tree (path, dtype, shape and bytes, in tree order)."""
    import jax
    import numpy as np

    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        x = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)} {x.dtype} {x.shape}".encode())
        digest.update(x.tobytes())
    return digest.hexdigest()


def _columns(metrics_csv: Path) -> dict[str, list[str]]:
    """Each column of a ``metrics.csv``, its values as written."""
    with metrics_csv.open() as f:
        header, *body = csv.reader(f)
    return {name: [row[i] for row in body] for i, name in enumerate(header)}


def column_hashes(metrics_csv: Path) -> dict[str, str]:
    """sha256 of each column of a ``metrics.csv`` (its values as written, one per line)."""
    return {name: _sha("\n".join(v).encode()) for name, v in _columns(metrics_csv).items()}


def column_values(metrics_csv: Path) -> dict[str, list[float]]:
    """Each column of a ``metrics.csv`` as floats."""
    return {name: [float(x) for x in v] for name, v in _columns(metrics_csv).items()}


def relative_difference(a: list[float], b: list[float]) -> float:
    """The largest ``|a - b|`` over a column, relative to the column's largest ``|a|`` (NaNs
    agree with NaNs; ``inf`` for columns of different lengths or NaN against a number)."""
    if len(a) != len(b):
        return math.inf
    scale = max((abs(x) for x in a if not math.isnan(x)), default=0.0) or 1.0
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if math.isnan(x) or math.isnan(y):
            if not (math.isnan(x) and math.isnan(y)):
                return math.inf
            continue
        worst = max(worst, abs(x - y) / scale)
    return worst


def fingerprint(run_dir: Path, params) -> dict[str, str]:
    """A finished run's fingerprints: ``metrics.csv``, ``column:<name>`` for each of its
    columns, ``evaluation.json`` and ``params``."""
    out = {"metrics.csv": _sha((run_dir / "metrics.csv").read_bytes())}
    out.update({f"column:{k}": v for k, v in column_hashes(run_dir / "metrics.csv").items()})
    out["evaluation.json"] = _sha((run_dir / "evaluation.json").read_bytes())
    out["params"] = params_hash(params)
    return out


def run_all(out_dir: Path, evaluation_episodes: int, only: list[str] | None = None) -> dict:
    """Every ``<algo>-<backbone>`` tiny run (or those in ``only``) into ``out_dir``; their
    fingerprints by name."""
    from jaxcoop import presets, runner

    results, values = {}, {}
    for algo in ALGOS:
        for backbone in BACKBONES:
            name = f"{algo}-{backbone}"
            if only and name not in only:
                continue
            cfg = presets.preset("tiny", backbone=backbone, algo=algo)
            run_dir = out_dir / name
            state, _ = runner.run(
                cfg,
                run_dir,
                preset="tiny",
                log=lambda line: None,
                evaluation_episodes=evaluation_episodes,
            )
            results[name] = fingerprint(run_dir, state.params)
            values[name] = column_values(run_dir / "metrics.csv")
            print(f"{name}: metrics.csv {results[name]['metrics.csv'][:12]}", flush=True)
    return {
        "runs": results,
        "values": values,
        "evaluation_episodes": evaluation_episodes,
        **_commit(),
    }


def _commit() -> dict:
    from jaxcoop import records

    return {"git_commit": records.provenance()["git_commit"]}


def compare(
    a: dict, b: dict, ignore: tuple[str, ...] = (), rtol: float | None = None
) -> tuple[list[tuple], bool]:
    """Rows ``(run, fingerprint, a[:12], b[:12], verdict)`` for every fingerprint of either
    file, and whether all that are compared agree (a fingerprint in one file only differs;
    names in ``ignore`` are listed as ``ignored``). A metrics column whose hash differs but
    whose values both files keep gets its relative difference (``relative_difference``) in
    the verdict, and counts as agreeing (``close``) when that is at most ``rtol``."""
    rows, same = [], True
    runs = sorted(set(a["runs"]) | set(b["runs"]))
    for run in runs:
        fa, fb = a["runs"].get(run, {}), b["runs"].get(run, {})
        for name in sorted(set(fa) | set(fb), key=lambda n: (n.startswith("column:"), n)):
            ha, hb = fa.get(name, "-"), fb.get(name, "-")
            if name in ignore:
                verdict = "ignored"
            elif ha == hb:
                verdict = "same"
            else:
                verdict = "DIFFERENT"
                column = name.removeprefix("column:")
                va = a.get("values", {}).get(run, {}).get(column)
                vb = b.get("values", {}).get(run, {}).get(column)
                if name.startswith("column:") and va is not None and vb is not None:
                    diff = relative_difference(va, vb)
                    close = rtol is not None and diff <= rtol
                    verdict = f"{'close' if close else 'DIFFERENT'} ({diff:.1e} relative)"
                same = same and verdict.startswith("close")
            rows.append((run, name, ha[:12], hb[:12], verdict))
    return rows, same


def table(rows: list[tuple]) -> str:
    head = ("run", "fingerprint", "A", "B", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the fingerprints of all six runs here")
    p.add_argument("--runs-dir", type=Path, help="where the runs go (default: a temporary folder)")
    p.add_argument("--only", action="append", help="run only this <algo>-<backbone> (repeat)")
    p.add_argument("--evaluation-episodes", type=int, default=64)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"))
    p.add_argument("--ignore", action="append", default=[], metavar="FINGERPRINT")
    p.add_argument(
        "--rtol", type=float, help="accept metrics columns that differ by at most this (relative)"
    )
    args = p.parse_args(argv)
    if args.compare:
        a, b = (json.loads(path.read_text()) for path in args.compare)
        rows, same = compare(a, b, tuple(args.ignore), args.rtol)
        print(f"A: {args.compare[0]} ({a.get('git_commit')})")
        print(f"B: {args.compare[1]} ({b.get('git_commit')})")
        print(table(rows))
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    if args.out is None:
        p.error("give --out FILE.json (or --compare A.json B.json)")
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        result = run_all(runs_dir, args.evaluation_episodes, args.only)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
