"""The results folder of a run: ``config.json``, ``metrics.csv``, ``training_curves.png``,
``summary.json``, ``evaluation.json``, ``within_episode.png`` (and ``checkpoints/``, written by
``jaxcoop.checkpoints``). Metrics are appended chunk by chunk, so a crash keeps what was done;
nothing already written is ever overwritten except ``metrics.csv`` on resume, which is replaced
atomically by the checkpoint's history (rows after the checkpoint are recomputed identically).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from jaxcoop.config import Config
from jaxcoop.state import PlayMetrics


class RunFolderError(Exception):
    """A results folder that cannot be used: missing, partial, corrupted, incompatible with the
    config, not writable, or full. The message names the path and what is wrong."""


def describe(error: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` of an exception, on one line and at most ``limit`` characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The columns of ``metrics.csv`` before the metrics (``Metrics.as_dict``'s names) follow.
INDEX_COLUMNS = ["iteration", "seed", "learner"]
CONFIG_FILE, METRICS_FILE, PLOT_FILE, SUMMARY_FILE = (
    "config.json",
    "metrics.csv",
    "training_curves.png",
    "summary.json",
)
EVALUATION_FILE, EVALUATION_PLOT_FILE = "evaluation.json", "within_episode.png"
#: Metrics reported as final values (``final_values``, ``summary.json``).
FINAL_FIELDS = PlayMetrics._fields


def prepare(run_dir: Path) -> Path:
    """Create ``run_dir`` for a new run; refuse one that already holds a run or is not writable."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).exists() or (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run ({CONFIG_FILE}/{METRICS_FILE}); "
            "choose another --out so that nothing is overwritten"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write the results folder {run_dir}: {e}") from e
    return run_dir


def write_config(
    run_dir: Path, config: Config, preset: str | None, warm_start: dict | None = None
) -> None:
    """``config.json``: the preset, the resolved config and, if any, where the learners' initial
    parameters and the frozen co-player came from (``warm_start``). Written next to the file
    and renamed over it, so a resumed run that rewrites it never leaves half a config."""
    payload = {"preset": preset, "config": config.to_dict()}
    if warm_start:
        payload["warm_start"] = warm_start
    _replace(Path(run_dir) / CONFIG_FILE, json.dumps(payload, indent=2) + "\n")


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: Fields that config.json held before checkpointing became a host option
#: (``config.CheckpointSchedule``); ignored when such a folder is read.
HOST_FIELDS_BEFORE = ("checkpoint_every", "keep_checkpoints")


def read_config(run_dir: Path) -> tuple[Config, dict]:
    """The ``Config`` of an existing run folder and the whole ``config.json`` record.

    Raises ``RunFolderError`` naming the path when the folder or its config is missing or
    unreadable."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder (expected a jaxcoop results folder)")
    if not path.is_file():
        raise RunFolderError(f"{run_dir} is not a jaxcoop results folder: it has no {CONFIG_FILE}")
    try:
        record = json.loads(path.read_text())
        fields = {k: v for k, v in record["config"].items() if k not in HOST_FIELDS_BEFORE}
        known = {f.name for f in dataclasses.fields(Config)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"fields {unknown} are unknown to this version of jaxcoop")
        return Config(**fields), record
    except (ValueError, KeyError, TypeError) as e:
        raise RunFolderError(f"{path} is corrupted or not a jaxcoop config: {e}") from e


def metrics_rows(
    metrics: dict[str, np.ndarray], iterations: Sequence[int], digits: int = 6
) -> list[list]:
    """CSV rows (one per iteration, seed and learner) from numpy metrics ``{name: [S, I, N]}``,
    in the dict's order, numbered by ``iterations`` ``[I]``, values to ``digits`` significant
    digits."""
    stacked_SxIxNxM = np.stack([np.asarray(x) for x in metrics.values()], axis=-1)
    seeds, _, learners, _ = stacked_SxIxNxM.shape
    rows = []
    for i, iteration in enumerate(iterations):
        for s in range(seeds):
            for n in range(learners):
                values = [f"{v:.{digits}g}" for v in stacked_SxIxNxM[s, i, n]]
                rows.append([int(iteration), s, n, *values])
    return rows


def _iterations(metrics: dict[str, np.ndarray], first_iteration: int) -> range:
    """Iteration numbers of contiguous metrics ``{name: [S, I, N]}`` from ``first_iteration``."""
    return range(first_iteration, first_iteration + next(iter(metrics.values())).shape[1])


def append_metrics(run_dir: Path, metrics: dict[str, np.ndarray], first_iteration: int) -> None:
    """Append one chunk of metrics ``{name: [S, I, N]}`` to ``metrics.csv`` (header, from the
    names, on first write)."""
    path = Path(run_dir) / METRICS_FILE
    new = not path.exists()
    try:
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow([*INDEX_COLUMNS, *metrics])
            writer.writerows(metrics_rows(metrics, _iterations(metrics, first_iteration)))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunFolderError(
            f"could not append to {path} ({describe(e)}); the rows written before and "
            f"the checkpoints in {Path(run_dir) / 'checkpoints'} are intact: free space (or fix "
            f"the folder) and continue with --resume {run_dir}"
        ) from e


def rewrite_metrics(run_dir: Path, history: dict[str, np.ndarray]) -> None:
    """Replace ``metrics.csv`` by ``history`` ``{name: [S, I, N]}`` (a checkpoint's, in column
    order), atomically: the new file is written next to it and renamed over it."""
    path = Path(run_dir) / METRICS_FILE
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*INDEX_COLUMNS, *history])
    writer.writerows(metrics_rows(history, _iterations(history, 0)))
    try:
        _replace(path, buffer.getvalue())
    except OSError as e:
        raise RunFolderError(
            f"could not rewrite {path} from the checkpoint ({describe(e)}); "
            "the existing file is untouched"
        ) from e


def read_metrics(run_dir: Path, name: str = METRICS_FILE) -> dict[str, np.ndarray]:
    """``metrics.csv`` (or another file of its columns in ``run_dir``, e.g. a kept record's
    ``THINNED_METRICS_FILE``) back as arrays ``[S, I, N]`` keyed by metric name, in column
    order (plus ``iteration`` ``[I]``)."""
    with (Path(run_dir) / name).open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    names = [name for name in reader.fieldnames or () if name not in INDEX_COLUMNS]
    seeds = 1 + max(int(r["seed"]) for r in rows)
    learners = 1 + max(int(r["learner"]) for r in rows)
    iterations = len(rows) // (seeds * learners)
    out = {}
    for name in names:
        flat = np.array([float(r[name]) for r in rows], dtype=np.float64)
        out[name] = flat.reshape(iterations, seeds, learners).transpose(1, 0, 2)
    out["iteration"] = np.array([int(r["iteration"]) for r in rows[:: seeds * learners]])
    return out


#: A kept record's training metrics: every ``THINNED_EVERY``-th update of ``metrics.csv``.
THINNED_EVERY = 100
_THINNED_PREFIX = "metrics-every"


def thinned_metrics_name(every: int) -> str:
    """The file name of a kept record's metrics at every ``every``-th update."""
    return f"{_THINNED_PREFIX}{every}.csv"


THINNED_METRICS_FILE = thinned_metrics_name(THINNED_EVERY)


def metrics_name(run_dir: Path) -> str | None:
    """The training metrics file of ``run_dir``: ``metrics.csv`` or, in a kept record
    (``experiments.record``), its finest ``metrics-every<N>.csv``; None if it has neither."""
    if (Path(run_dir) / METRICS_FILE).is_file():
        return METRICS_FILE
    every = {
        int(n): path.name
        for path in Path(run_dir).glob(f"{_THINNED_PREFIX}*.csv")
        if (n := path.stem.removeprefix(_THINNED_PREFIX)).isdigit()
    }
    return every[min(every)] if every else None


def thin_metrics(metrics: dict[str, np.ndarray], every: int) -> dict[str, np.ndarray]:
    """``read_metrics``' arrays at every ``every``-th update (iterations ``every - 1``,
    ``2 every - 1``, ...) and the last one."""
    iteration = metrics["iteration"]
    keep = ((iteration + 1) % every == 0) | (np.arange(len(iteration)) == len(iteration) - 1)
    return {name: x[keep] if name == "iteration" else x[:, keep] for name, x in metrics.items()}


def write_metrics(path: Path, metrics: dict[str, np.ndarray], digits: int = 6) -> Path:
    """``metrics`` (``read_metrics``' arrays, possibly thinned) as a CSV of ``metrics.csv``'s
    columns at ``path``."""
    values = {name: x for name, x in metrics.items() if name != "iteration"}
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*INDEX_COLUMNS, *values])
        writer.writerows(metrics_rows(values, metrics["iteration"], digits))
    return Path(path)


#: A run's final values are means over this last fraction of its iterations.
FINAL_FRACTION = 0.1


def tail_means(x_SxIxN: np.ndarray, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """The mean of a metric ``[S, I, N]`` over the last ``fraction`` of its iterations (at least
    one), per seed and learner ``[S, N]``."""
    tail = max(1, int(round(x_SxIxN.shape[1] * fraction)))
    return x_SxIxN[:, -tail:].mean(axis=1)


def final_values(metrics: dict[str, np.ndarray], fraction: float = FINAL_FRACTION) -> dict:
    """``tail_means``, then mean and std over seeds, per learner (fields that are NaN
    throughout, e.g. ``*_frozen`` without a frozen co-player, left out)."""
    out = {}
    for name in FINAL_FIELDS:
        x_SxIxN = metrics[name]
        if np.all(np.isnan(x_SxIxN)):
            continue
        per_seed_SxN = tail_means(x_SxIxN, fraction)
        out[name] = {
            "mean": per_seed_SxN.mean(axis=0).tolist(),
            "std": per_seed_SxN.std(axis=0).tolist(),
        }
    return out


def compact_json(value, indent: int = 0) -> str:
    """JSON with a dict or list on one line when it holds only numbers, strings or lists of
    them (so ``summary.json`` fits on a screen)."""

    def flat(v) -> bool:
        inner = v.values() if isinstance(v, dict) else v
        return all(
            not isinstance(x, (dict, list)) or (isinstance(x, list) and flat(x)) for x in inner
        )

    if isinstance(value, (dict, list)) and value and not flat(value):
        pad = " " * (indent + 2)
        if isinstance(value, dict):
            items = [
                f"{pad}{json.dumps(k)}: {compact_json(v, indent + 2)}" for k, v in value.items()
            ]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        items = [pad + compact_json(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value, separators=(", ", ": "), default=float)


def write_summary(run_dir: Path, summary: dict) -> None:
    """``summary.json`` (``compact_json``: one screen)."""
    (Path(run_dir) / SUMMARY_FILE).write_text(compact_json(summary) + "\n")


def provenance() -> dict:
    """Where a result came from: Python, jax / jaxlib / flax / optax / orbax versions, host, the
    git commit of jaxcoop's source (``+dirty`` with uncommitted changes; ``None`` outside a
    git checkout), and this process's ``GLIBC_TUNABLES`` (huge pages or not:
    ``runner.restart_with_huge_pages``)."""
    versions = {"python": platform.python_version()}
    for package in ("jaxcoop", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    source = Path(__file__).resolve().parent.parent
    commit = None
    try:

        def git(*args):
            return subprocess.run(
                ["git", "-C", str(source), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()

        commit = git("rev-parse", "HEAD")
        if git("status", "--porcelain", "--untracked-files=no"):
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "versions": versions,
        "git_commit": commit,
        "host": platform.node(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_evaluation(run_dir: Path, evaluation: dict) -> None:
    (Path(run_dir) / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
