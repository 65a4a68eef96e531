"""The host side of a run: seeds vmapped, compiled chunks of iterations, progress, records.

The training program is compiled once (ahead of time); between chunks the host only moves the
chunk's metrics off the device, checks them, appends them to ``metrics.csv`` and prints progress.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxcoop import evaluation, records
from jaxcoop.config import Config
from jaxcoop.environment import make_game
from jaxcoop.train import Metrics, TrainState, make_agent, make_trainer


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _nanmean(x: np.ndarray, axis=None) -> np.ndarray:
    if np.all(np.isnan(x)):
        return np.full(np.mean(x, axis=axis).shape, np.nan)
    return np.nanmean(x, axis=axis)


def check_finite(metrics: Metrics, first_iteration: int, run_dir: Path) -> None:
    """Raise ``FloatingPointError`` naming the learner, seed and iteration of a non-finite loss."""
    loss_SxIxN = np.asarray(metrics.loss)
    bad = np.argwhere(~np.isfinite(loss_SxIxN))
    if bad.size:
        seed, it, learner = bad[np.argmin(bad[:, 1])]
        raise FloatingPointError(
            f"non-finite loss for learner {learner} (seed index {seed}) at iteration "
            f"{first_iteration + it}; the metrics of every iteration so far are in "
            f"{Path(run_dir) / records.METRICS_FILE}. Try a smaller --lr."
        )


def progress_line(config: Config, metrics: Metrics, done: int, elapsed: float) -> str:
    """One line: iterations, speed, ETA, and each learner's reward / cooperation this chunk."""
    rate = done / max(elapsed, 1e-9)
    eta = (config.num_iterations - done) / max(rate, 1e-9)
    parts = [
        f"[{done}/{config.num_iterations} {100 * done / config.num_iterations:3.0f}%]",
        f"{rate:.2f} it/s",
        f"{rate * config.agent_steps_per_iteration * config.num_seeds:.3g} agent-steps/s",
        f"ETA {_fmt_duration(eta)}",
    ]
    per_learner = []
    for n in range(config.num_learners):

        def m(name, n=n):
            return _nanmean(np.asarray(getattr(metrics, name))[..., n])

        text = f"L{n}"
        if config.num_learner_episodes:
            text += f" vsL r={m('reward_vs_learner'):+.2f} c={m('coop_vs_learner'):.2f}"
        if config.num_tabular_episodes:
            text += f" vsT r={m('reward_vs_tabular'):+.2f} c={m('coop_vs_tabular'):.2f}"
        per_learner.append(text)
    return " ".join(parts) + " | " + " | ".join(per_learner)


def summary_table(summary: dict) -> str:
    """The end-of-run summary as a small text table (mean ± std over seeds, per learner)."""
    final = summary["final"]
    rows = [
        ("vs learner", "reward_vs_learner", "coop_vs_learner"),
        ("vs tabular", "reward_vs_tabular", "coop_vs_tabular"),
    ]
    lines = [f"{'learner':<8}{'co-player':<12}{'reward':>16}{'cooperation':>16}"]
    for n in range(len(final["reward_vs_learner"]["mean"])):
        for label, r, c in rows:
            rm, rs = final[r]["mean"][n], final[r]["std"][n]
            if math.isnan(rm):
                continue
            cm, cs = final[c]["mean"][n], final[c]["std"][n]
            lines.append(f"{n:<8}{label:<12}{rm:>+9.3f} ± {rs:.3f}{cm:>9.3f} ± {cs:.3f}")
    pool = final["tabular_reward"]["mean"]
    if pool and not math.isnan(pool[0]):
        lines.append(f"tabular co-players' own reward per round: {np.mean(pool):+.3f}")
    if "evaluation" in summary:
        played = summary["evaluation"]
        lines.append("cooperation of each trained learner in play against (mean over seeds):")
        lines.append(f"{'learner':<8}" + "".join(f"{name[:18]:>20}" for name in played))
        for n in range(len(final["reward_vs_learner"]["mean"])):
            cells = "".join(f"{played[name]['coop']['mean'][n]:>20.3f}" for name in played)
            lines.append(f"{n:<8}{cells}")
    return "\n".join(lines)


def compile_seeds(config: Config) -> tuple[TrainState, Callable, float]:
    """Initial state of all seeds ``[S, ...]``, the ahead-of-time compiled chunk
    ``chunk(state) -> (state, metrics [S, I, N])`` (state buffers donated), and the seconds
    both took."""
    trainer = make_trainer(config)
    keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
    start = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init))(keys)
    chunk = jax.jit(jax.vmap(trainer.chunk), donate_argnums=0).lower(state).compile()
    return state, chunk, time.perf_counter() - start


def run(
    config: Config,
    run_dir: Path,
    preset: str | None = None,
    log: Callable[[str], None] = print,
    evaluation_episodes: int = 256,
) -> tuple[TrainState, dict]:
    """Train ``config.num_seeds`` seeds (vmapped), write the results folder, then play every
    trained learner against the evaluation panel (``evaluation.PANEL``).

    Returns:
      the final (seed-stacked) ``TrainState`` and the summary dict also written to
      ``summary.json``.
    """
    run_dir = records.prepare(run_dir)
    records.write_config(run_dir, config, preset)
    state, chunk, compile_seconds = compile_seeds(config)
    log(
        f"compiled in {compile_seconds:.1f}s on {jax.devices()[0].device_kind} "
        f"({jax.default_backend()}); {config.agent_steps_per_iteration * config.num_seeds:,} "
        f"agent-steps per iteration ({config.num_seeds} seed(s) x {config.num_learners} learners "
        f"x {config.num_episodes} episodes x {config.horizon} rounds)"
    )

    train_start = time.perf_counter()
    num_chunks = config.num_iterations // config.chunk_iterations
    for c in range(num_chunks):
        state, metrics = chunk(state)
        metrics = jax.device_get(metrics)
        first = c * config.chunk_iterations
        records.append_metrics(run_dir, metrics, first)
        check_finite(metrics, first, run_dir)
        elapsed = time.perf_counter() - train_start
        log(progress_line(config, metrics, first + config.chunk_iterations, elapsed))
    train_seconds = time.perf_counter() - train_start

    history = records.read_metrics(run_dir)
    title = f"{preset or 'custom'}: {config.algo}, {config.backbone}"
    records.plot(run_dir, history, title)
    summary = {
        "preset": preset,
        "final": records.final_values(history),
        "final_window": "last 10% of iterations, mean then mean/std over seeds",
        "iterations": config.num_iterations,
        "seeds": config.num_seeds,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "iterations_per_second": config.num_iterations / train_seconds,
        "agent_steps_per_second": config.num_iterations
        * config.agent_steps_per_iteration
        * config.num_seeds
        / train_seconds,
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "host": platform.node(),
        "jax_version": jax.__version__,
    }
    records.write_summary(run_dir, summary)  # kept even if the evaluation below fails

    played = evaluation.evaluate_learners(
        make_agent(config),
        state.params,
        make_game(config.game, config.horizon),
        jax.random.fold_in(jax.random.key(config.seed), 1),
        num_episodes=evaluation_episodes,
    )
    summary["evaluation"] = evaluation.summarize(played)
    records.write_evaluation(run_dir, summary["evaluation"])
    records.write_summary(run_dir, summary)
    records.plot_within_episode(run_dir, played, title)
    return state, summary
