"""The results folder of a run: ``config.json``, ``metrics.csv``, ``training_curves.png``,
``summary.json``. Metrics are appended chunk by chunk, so a crash keeps what was done; nothing
already written is ever overwritten.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from jaxcoop.config import Config
from jaxcoop.train import Metrics

METRIC_NAMES = list(Metrics._fields)
CSV_COLUMNS = ["iteration", "seed", "learner", *METRIC_NAMES]
CONFIG_FILE, METRICS_FILE, PLOT_FILE, SUMMARY_FILE = (
    "config.json",
    "metrics.csv",
    "training_curves.png",
    "summary.json",
)
EVALUATION_FILE, EVALUATION_PLOT_FILE = "evaluation.json", "within_episode.png"
#: Metrics reported as final values (``final_values``, ``summary.json``).
FINAL_FIELDS = (
    "reward_vs_learner",
    "coop_vs_learner",
    "reward_vs_tabular",
    "coop_vs_tabular",
    "tabular_reward",
)


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


def write_config(run_dir: Path, config: Config, preset: str | None) -> None:
    payload = {"preset": preset, "config": config.to_dict()}
    (Path(run_dir) / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def metrics_rows(metrics: Metrics, first_iteration: int) -> list[list]:
    """CSV rows (long format) from numpy metrics ``[S, I, N]``."""
    stacked_SxIxNxM = np.stack([np.asarray(x) for x in metrics], axis=-1)
    seeds, iterations, learners, _ = stacked_SxIxNxM.shape
    rows = []
    for i in range(iterations):
        for s in range(seeds):
            for n in range(learners):
                values = [f"{v:.6g}" for v in stacked_SxIxNxM[s, i, n]]
                rows.append([first_iteration + i, s, n, *values])
    return rows


def append_metrics(run_dir: Path, metrics: Metrics, first_iteration: int) -> None:
    """Append one chunk of metrics ``[S, I, N]`` to ``metrics.csv`` (header on first write)."""
    path = Path(run_dir) / METRICS_FILE
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_COLUMNS)
        writer.writerows(metrics_rows(metrics, first_iteration))
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> dict[str, np.ndarray]:
    """``metrics.csv`` back as arrays ``[S, I, N]`` keyed by metric name (plus ``iteration``)."""
    with (Path(run_dir) / METRICS_FILE).open() as f:
        rows = list(csv.DictReader(f))
    seeds = 1 + max(int(r["seed"]) for r in rows)
    learners = 1 + max(int(r["learner"]) for r in rows)
    iterations = len(rows) // (seeds * learners)
    out = {}
    for name in METRIC_NAMES:
        flat = np.array([float(r[name]) for r in rows], dtype=np.float64)
        out[name] = flat.reshape(iterations, seeds, learners).transpose(1, 0, 2)
    out["iteration"] = np.array([int(r["iteration"]) for r in rows[:: seeds * learners]])
    return out


def final_values(metrics: dict[str, np.ndarray], fraction: float = 0.1) -> dict:
    """Mean over the last ``fraction`` of iterations, then mean and std over seeds, per learner."""
    out = {}
    for name in FINAL_FIELDS:
        x_SxIxN = metrics[name]
        tail = max(1, int(round(x_SxIxN.shape[1] * fraction)))
        per_seed_SxN = x_SxIxN[:, -tail:].mean(axis=1)
        out[name] = {
            "mean": per_seed_SxN.mean(axis=0).tolist(),
            "std": per_seed_SxN.std(axis=0).tolist(),
        }
    return out


def write_summary(run_dir: Path, summary: dict) -> None:
    (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=float) + "\n")


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 1 (``[S, I]``) with a shrinking window at the start."""
    if window <= 1:
        return x
    cumsum = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    idx = np.arange(1, x.shape[1] + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[:, idx] - cumsum[:, lo]) / (idx - lo)


def plot(run_dir: Path, metrics: dict[str, np.ndarray], title: str) -> Path:
    """Fig. 1-style curves: reward and cooperation vs updates, learner vs learner and vs tabular,
    mean over learners, then mean +- std over seeds."""
    plt = pyplot()
    iterations = metrics["iteration"]
    window = max(1, len(iterations) // 50)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    panels = [("reward", "reward per round"), ("coop", "cooperation rate")]
    series = [
        ("vs_learner", "learner vs learner", "tab:blue"),
        ("vs_tabular", "learner vs tabular", "tab:red"),
    ]
    for ax, (stem, ylabel) in zip(axes, panels, strict=True):
        for suffix, label, color in series:
            x_SxIxN = metrics[f"{stem}_{suffix}"]
            if np.all(np.isnan(x_SxIxN)):
                continue
            per_seed = smooth(x_SxIxN.mean(axis=2), window)
            mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
            ax.plot(iterations, mean, color=color, label=label)
            ax.fill_between(iterations, mean - std, mean + std, color=color, alpha=0.2)
        if stem == "reward" and not np.all(np.isnan(metrics["tabular_reward"])):
            pool = smooth(metrics["tabular_reward"].mean(axis=2), window)
            ax.plot(iterations, pool.mean(axis=0), color="gray", ls="--", label="tabular pool")
        ax.set_xlabel("update")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-0.02, 1.02)
    axes[0].legend(loc="best", fontsize=8)
    seeds = metrics["reward_vs_learner"].shape[0]
    fig.suptitle(f"{title} (mean ± std over {seeds} seed(s), moving average of {window})")
    path = Path(run_dir) / PLOT_FILE
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_evaluation(run_dir: Path, evaluation: dict) -> None:
    (Path(run_dir) / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")


def plot_within_episode(run_dir: Path, result: dict[str, dict[str, np.ndarray]], title: str):
    """Fig. 2-style panels: per-round cooperation and reward of the trained learners against
    each co-player (mean over learners, mean +- std over seeds)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, r in result.items():
        for ax, field in zip(axes, ("coop", "reward"), strict=True):
            per_seed_SxT = r[field].mean(axis=1)
            mean, std = per_seed_SxT.mean(0), per_seed_SxT.std(0)
            rounds = np.arange(1, mean.shape[0] + 1)
            (line,) = ax.plot(rounds, mean, label=name)
            ax.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel("cooperation rate")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("reward per round")
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title}: trained learners within an episode")
    path = Path(run_dir) / EVALUATION_PLOT_FILE
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
