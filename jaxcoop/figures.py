"""Figures: a run's training curves and within-episode panels, runs side by side (paper Fig. 1),
the mechanism step by step (Fig. 2/4), within-episode snapshots over training (Fig. 3) and a
tournament's payoff matrix (``experiments.tournament``).

Every function draws from arrays already on the host (``records.read_metrics``,
``evaluation.evaluate_learners``) and writes one PNG; matplotlib runs on the Agg backend.
Curves over training are the mean over learners, then mean ± std over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Training metrics compared across runs (``compare_runs``): (metric, panel title).
RUN_PANELS = (
    ("coop_vs_learner", "cooperation, learner vs learner"),
    ("coop_vs_tabular", "cooperation, learner vs tabular"),
    ("reward_vs_learner", "reward, learner vs learner"),
    ("reward_vs_tabular", "reward, learner vs tabular"),
)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 1 (``[S, I]``) with a shrinking window at the start."""
    if window <= 1:
        return x
    cumsum = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    idx = np.arange(1, x.shape[1] + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[:, idx] - cumsum[:, lo]) / (idx - lo)


def _window(metrics: dict[str, np.ndarray]) -> int:
    return max(1, len(metrics["iteration"]) // 50)


def _band(ax, metrics, name, label=None, color=None, ls="-") -> bool:
    """Plot ``metrics[name]`` ``[S, I, N]`` (mean over learners, mean ± std over seeds, moving
    average); ``False`` (nothing drawn) when it is all NaN."""
    x_SxIxN = metrics[name]
    if np.all(np.isnan(x_SxIxN)):
        return False
    per_seed = smooth(x_SxIxN.mean(axis=2), _window(metrics))
    mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
    (line,) = ax.plot(metrics["iteration"], mean, label=label, color=color, ls=ls)
    ax.fill_between(metrics["iteration"], mean - std, mean + std, color=line.get_color(), alpha=0.2)
    return True


def _finish(ax, ylabel: str, xlabel: str = "update (PPI: phase)", title: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if ylabel.startswith("cooperation"):
        ax.set_ylim(-0.02, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _save(fig, path: Path, dpi: int = 100) -> Path:
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def training_curves(path: Path, metrics: dict[str, np.ndarray], title: str) -> Path:
    """Fig. 1-style curves of one run: reward and cooperation vs updates, learner vs learner, vs
    tabular and vs a frozen co-player (and the co-players' own reward)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    series = [
        ("vs_learner", "learner vs learner", "tab:blue"),
        ("vs_tabular", "learner vs tabular", "tab:red"),
        ("vs_frozen", "learner vs frozen co-player", "tab:green"),
    ]
    for ax, stem in zip(axes, ("reward", "coop"), strict=True):
        for suffix, label, color in series:
            _band(ax, metrics, f"{stem}_{suffix}", label, color)
        if stem == "reward":
            _band(ax, metrics, "tabular_reward", "tabular pool", "gray", ls="--")
        _band(ax, metrics, f"frozen_{stem}", "frozen", "tab:green", ls="--")
        _finish(ax, "reward per round" if stem == "reward" else "cooperation rate")
    seeds = metrics["reward_vs_learner"].shape[0]
    window = _window(metrics)
    fig.suptitle(f"{title} (mean ± std over {seeds} seed(s), moving average of {window})")
    return _save(fig, path)


def _within_episode_axes(axes, result: dict[str, dict[str, np.ndarray]], names=None) -> None:
    """Per-round cooperation (``axes[0]``) and reward (``axes[1]``) against each co-player of an
    ``evaluate_learners`` result (mean over learners, mean ± std over seeds)."""
    for name in names or result:
        r = result[name]
        for ax, side in zip(axes, ("coop", "reward"), strict=True):
            per_seed_SxT = r[side].mean(axis=1)
            mean, std = per_seed_SxT.mean(0), per_seed_SxT.std(0)
            rounds = np.arange(1, mean.shape[0] + 1)
            (line,) = ax.plot(rounds, mean, label=name)
            ax.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    _finish(axes[0], "cooperation rate", "round")
    _finish(axes[1], "reward per round", "round")


def within_episode(path: Path, result: dict[str, dict[str, np.ndarray]], title: str) -> Path:
    """Fig. 2-style panels: the trained learners' per-round cooperation and reward against each
    co-player (``evaluation.evaluate_learners``)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    _within_episode_axes(axes, result)
    fig.suptitle(f"{title}: trained learners within an episode")
    return _save(fig, path)


def compare_runs(path: Path, histories: dict[str, dict[str, np.ndarray]], title: str) -> Path:
    """Runs side by side (Fig. 1 with its ablations): cooperation and reward against learners
    and against tabular co-players over training, one line per run."""
    fig, axes = pyplot().subplots(2, 2, figsize=(11, 7), constrained_layout=True, sharex=True)
    for ax, (name, panel_title) in zip(axes.flat, RUN_PANELS, strict=True):
        for label, metrics in histories.items():
            _band(ax, metrics, name, label)
        _finish(ax, panel_title.split(",")[0], title=panel_title)
    fig.suptitle(f"{title} (mean over learners, mean ± std over seeds, moving average)")
    return _save(fig, path)


def mechanism(
    path: Path,
    step1: dict[str, np.ndarray],
    step1_played: dict[str, dict[str, np.ndarray]],
    step2: dict[str, np.ndarray],
    step3: dict[str, np.ndarray],
    title: str,
) -> Path:
    """Fig. 2/4: step 1 (training against the tabular pool, then the agent within an episode
    against named co-players), step 2 (a new agent against the frozen step-1 agent: both
    sides' reward and cooperation) and step 3 (two extortioners against each other)."""
    fig, axes = pyplot().subplots(2, 3, figsize=(15, 7.5), constrained_layout=True)
    ax = axes[0, 0]
    _band(ax, step1, "reward_vs_tabular", "reward vs tabular", "tab:red")
    _band(ax, step1, "coop_vs_tabular", "cooperation vs tabular", "tab:purple")
    _band(ax, step1, "tabular_reward", "tabular pool's reward", "gray", ls="--")
    _finish(ax, "reward / cooperation", title="step 1: against the tabular pool")
    _within_episode_axes(axes[0, 1:], step1_played)
    axes[0, 1].set_title("step 1 agent within an episode", fontsize=10)
    axes[0, 2].set_title("step 1 agent within an episode", fontsize=10)
    ax = axes[1, 0]
    _band(ax, step2, "reward_vs_frozen", "new agent", "tab:blue")
    _band(ax, step2, "frozen_reward", "fixed in-context learner", "tab:orange")
    _finish(ax, "reward per round", title="step 2: new agent vs frozen step-1 agent")
    ax = axes[1, 1]
    _band(ax, step2, "coop_vs_frozen", "new agent", "tab:blue")
    _band(ax, step2, "frozen_coop", "fixed in-context learner", "tab:orange")
    _finish(ax, "cooperation rate", title="step 2: cooperation of both sides")
    ax = axes[1, 2]
    _band(ax, step3, "coop_vs_learner", "cooperation", "tab:blue")
    _band(
        ax,
        step3,
        "reward_vs_learner",
        "reward (equal to cooperation when both play alike)",
        "tab:green",
        ls="--",
    )
    _finish(ax, "reward / cooperation", title="step 3: extortioner vs extortioner")
    fig.suptitle(f"{title} (mean ± std over seeds, moving average)")
    return _save(fig, path)


def snapshots(
    path: Path, played: dict[int, dict[str, dict[str, np.ndarray]]], coplayers, title: str
) -> Path:
    """Fig. 3: within-episode cooperation and reward at several points of training, one row per
    co-player (``played``: per iteration, an ``evaluate_learners`` result)."""
    rows = len(coplayers)
    fig, axes = pyplot().subplots(
        rows, 2, figsize=(11, 3.2 * rows), squeeze=False, constrained_layout=True
    )
    colors = pyplot().cm.viridis(np.linspace(0, 0.9, len(played)))
    for row, name in zip(axes, coplayers, strict=True):
        for color, (iteration, result) in zip(colors, sorted(played.items()), strict=True):
            for ax, side in zip(row, ("coop", "reward"), strict=True):
                per_seed_SxT = result[name][side].mean(axis=1)
                mean, std = per_seed_SxT.mean(0), per_seed_SxT.std(0)
                rounds = np.arange(1, mean.shape[0] + 1)
                ax.plot(rounds, mean, color=color, label=f"update {iteration}")
                ax.fill_between(rounds, mean - std, mean + std, color=color, alpha=0.1)
        _finish(row[0], "cooperation rate", "round", title=f"learner vs {name}")
        _finish(row[1], "reward per round", "round", title=f"learner vs {name}")
    fig.suptitle(f"{title}: within an episode over training (mean ± std over seeds)")
    return _save(fig, path)


def ladder(path: Path, rows: list[dict], histories: dict[int, dict], panel) -> Path:
    """A compute ladder (``experiments.ladder``): each seed's training reward against the pool
    over agent-steps, the in-context efficiency per rung (± standard error), and the top rung's
    cooperation within an episode against each co-player of ``panel`` (``curves`` per seed)."""
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for seed, (steps, reward) in sorted(histories.items()):
        axes[0].plot(steps, reward, label=f"seed {seed}", lw=1)
    rungs = sorted({r["rung"] for r in rows})
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed and r["efficiency"] is not None]
        axes[1].errorbar(
            [r["agent_steps"] for r in mine],
            [r["efficiency"] for r in mine],
            [r["efficiency_se"] for r in mine],
            marker="o",
            capsize=3,
            label=f"seed {seed}",
        )
    axes[0].set_xscale("log")
    axes[1].set_xscale("log")
    axes[1].axhline(0, color="gray", lw=0.8, ls="--")
    axes[1].axhline(1, color="gray", lw=0.8, ls=":")
    top = [r for r in rows if r["rung"] == rungs[-1]]
    for name in panel:
        per_seed = np.array([r["curves"][name]["coop"] for r in top])
        (line,) = axes[2].plot(np.arange(1, per_seed.shape[1] + 1), per_seed.mean(0), label=name)
        if len(per_seed) > 1:
            lo, hi = per_seed.min(0), per_seed.max(0)
            axes[2].fill_between(
                np.arange(1, len(lo) + 1), lo, hi, color=line.get_color(), alpha=0.15
            )
    _finish(axes[0], "reward per round vs the pool", "agent-steps (training)", "training")
    _finish(axes[1], "in-context efficiency", "agent-steps", "(r - r_AllD) / (r_oracle - r_AllD)")
    _finish(axes[2], "cooperation rate", "round", f"within an episode at {rungs[-1]:,} updates")
    return _save(fig, path)


def payoff_matrix(path: Path, names: list[str], matrix: np.ndarray, title: str) -> Path:
    """A heat map of a tournament's mean payoff per turn ``[P, P]`` of each row player against
    each column player (players in ranking order), every cell written in."""
    size = len(names)
    side = 2.5 + 0.36 * size
    fig, ax = pyplot().subplots(figsize=(side + 1.5, side), constrained_layout=True)
    image = ax.imshow(matrix, cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8, label="row player's mean payoff per turn")
    ax.set_xticks(range(size), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(size), names, fontsize=7)
    middle = (np.nanmax(matrix) + np.nanmin(matrix)) / 2
    for i in range(size):
        for j in range(size):
            color = "black" if matrix[i, j] > middle else "white"
            ax.text(
                j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=5.5, color=color
            )
    ax.set_xlabel("co-player")
    ax.set_title(title, fontsize=9)
    return _save_paletted(fig, path, dpi=90)


def _save_paletted(fig, path: Path, dpi: int) -> Path:
    """``_save`` as a 256-colour PNG (pillow, matplotlib's own dependency): a few times smaller
    for a figure full of text, such as a heat map with every cell written in."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi)
    pyplot().close(fig)
    Image.open(buffer).convert("RGB").quantize(256).save(path, "PNG", optimize=True)
    return Path(path)
