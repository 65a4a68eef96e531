"""Keep a run's record for git: what the docs cite, small, without checkpoints.

python -m experiments.record RUN_DIR DEST [--every 100] [--digits 4]

Copies the run's JSON files (``config.json`` as it is; ``summary.json``, ``evaluation.json`` and
any other top-level ``*.json`` — ``curves.json``, ``extortion.json``, ... — with every float to
``JSON_DIGITS`` significant digits, a third smaller than Python's 17), re-saves its top-level
figures as 256-colour palette PNGs (a third of the size or less, the same plot to the eye), and
writes ``metrics-every100.csv``: every ``--every``-th update of ``metrics.csv`` and the last one,
in ``metrics.csv``'s columns, values to ``--digits`` significant digits (the step-1 ladder's
96,000-update run: 11.2 MB of metrics kept as 0.1 MB). ``records.read_metrics(DEST,
records.THINNED_METRICS_FILE)`` reads it back; ``experiments.ladder --report`` reads it where a
seed folder has no ``metrics.csv``. DEST must be new or empty: nothing is overwritten.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from PIL import Image

from jaxcoop import cli, records

#: Significant digits of the floats in a record's JSON files (standard errors are >= 1e-4).
JSON_DIGITS = 6


def rounded(value, digits: int = JSON_DIGITS):
    """``value`` (parsed JSON) with every float to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return value


def rounded_json(source: Path, dest: Path) -> Path:
    """``source`` re-saved at ``dest`` with ``rounded`` floats (``config.json`` copied as is)."""
    if source.name == records.CONFIG_FILE:
        return Path(shutil.copy2(source, dest))
    dest.write_text(
        json.dumps(rounded(json.loads(source.read_text())), indent=2, ensure_ascii=False) + "\n"
    )
    return dest


def palette_png(source: Path, dest: Path) -> Path:
    """``source`` re-saved at ``dest`` with at most 256 colours (median cut, no dithering)."""
    image = Image.open(source).convert("RGB")
    quantized = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    quantized.save(dest, optimize=True)
    return dest


def keep(run: Path, dest: Path, every: int = records.THINNED_EVERY, digits: int = 4) -> list[Path]:
    """Write ``run``'s record into ``dest`` (new or empty); the files written."""
    if not (run / records.METRICS_FILE).is_file() or not (run / records.CONFIG_FILE).is_file():
        raise records.RunFolderError(
            f"{run} is not a results folder: it needs {records.CONFIG_FILE} and "
            f"{records.METRICS_FILE}"
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder; nothing was written")
    if dest.resolve().is_relative_to(run.resolve()):
        raise cli.UsageError(f"DEST {dest} is inside the run {run}; keep the record elsewhere")
    metrics = records.read_metrics(run)  # read before anything is written
    dest.mkdir(parents=True, exist_ok=True)
    written = [rounded_json(path, dest / path.name) for path in sorted(run.glob("*.json"))]
    written += [palette_png(path, dest / path.name) for path in sorted(run.glob("*.png"))]
    thinned = records.thin_metrics(metrics, every)
    thinned_path = dest / records.thinned_metrics_name(every)
    written.append(records.write_metrics(thinned_path, thinned, digits))
    return written


def main(argv: list[str] | None = None) -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="results folder")
    p.add_argument("dest", type=Path, help="the record's folder (new or empty)")
    p.add_argument("--every", type=int, default=records.THINNED_EVERY, help="every N-th update")
    p.add_argument("--digits", type=int, default=4, help="significant digits of the metrics")
    args = p.parse_args(argv)
    if args.every < 1 or not 1 <= args.digits <= 9:
        raise cli.UsageError(
            f"--every {args.every} --digits {args.digits}; allowed: --every >= 1, --digits 1 to 9"
        )
    written = keep(args.run, args.dest, args.every, args.digits)
    size = sum(path.stat().st_size for path in written)
    print(f"kept {len(written)} files, {size / 1e6:.2f} MB, in {args.dest}:")
    for path in written:
        print(f"  {path.name}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
