"""The host side of a run: seeds vmapped, compiled chunks of iterations, progress, records.

The training program is compiled once (ahead of time); ``run_chunks`` runs it chunk by chunk
and hands each chunk's ``ChunkReport`` to a list of callbacks, which are all the host does
between chunks: ``MetricsRecorder`` (``metrics.csv``, the finite-loss check), ``SinkLogger``
(TensorBoard, W&B), ``CheckpointSaver`` and ``ProgressPrinter``. ``run`` and ``resume`` put
them together; other code can run a trainer with its own.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxcoop import checkpoints, evaluation, figures, loggers, records, sharding, trained
from jaxcoop.config import (
    DEFAULT_CHECKPOINTING,
    RESUMABLE_FIELDS,
    CheckpointSchedule,
    Config,
    differences,
)
from jaxcoop.environment import make_game
from jaxcoop.records import RunFolderError
from jaxcoop.state import Trainer, TrainState
from jaxcoop.train import algorithm, make_player, make_trainer, metric_names


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _nanmean(x: np.ndarray, axis=None) -> np.ndarray:
    if np.all(np.isnan(x)):
        return np.full(np.mean(x, axis=axis).shape, np.nan)
    return np.nanmean(x, axis=axis)


def check_finite(loss_SxIxN: np.ndarray, first_iteration: int, run_dir: Path) -> None:
    """Raise ``FloatingPointError`` naming the learner, seed and iteration of a non-finite loss
    ``[S, I, N]`` (a chunk's, starting at ``first_iteration``)."""
    loss_SxIxN = np.asarray(loss_SxIxN)
    bad = np.argwhere(~np.isfinite(loss_SxIxN))
    if bad.size:
        seed, it, learner = bad[np.argmin(bad[:, 1])]
        raise FloatingPointError(
            f"non-finite loss for learner {learner} (seed index {seed}) at iteration "
            f"{first_iteration + it}; the metrics of every iteration so far are in "
            f"{Path(run_dir) / records.METRICS_FILE}. Try a smaller --lr."
        )


def progress_line(
    config: Config, metrics: dict[str, np.ndarray], done: int, elapsed: float, first: int = 0
) -> str:
    """One line: iterations, speed, ETA, and each learner's reward / cooperation this chunk
    (``first``: the iteration this process started at, for the speed)."""
    rate = (done - first) / max(elapsed, 1e-9)
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
            return _nanmean(np.asarray(metrics[name])[..., n])

        text = f"L{n}"
        if not np.all(np.isnan(np.asarray(metrics["coop_vs_learner"]))):
            text += f" vsL r={m('reward_vs_learner'):+.2f} c={m('coop_vs_learner'):.2f}"
        if config.num_tabular_episodes:
            text += f" vsT r={m('reward_vs_tabular'):+.2f} c={m('coop_vs_tabular'):.2f}"
        if not np.all(np.isnan(np.asarray(metrics["coop_vs_frozen"]))):
            text += f" vsF r={m('reward_vs_frozen'):+.2f} c={m('coop_vs_frozen'):.2f}"
            text += f" (F r={m('frozen_reward'):+.2f} c={m('frozen_coop'):.2f})"
        per_learner.append(text)
    return " ".join(parts) + " | " + " | ".join(per_learner)


def summary_table(summary: dict) -> str:
    """The end-of-run summary as a small text table (mean ± std over seeds, per learner)."""
    final = summary["final"]
    rows = [
        ("vs learner", "reward_vs_learner", "coop_vs_learner"),
        ("vs tabular", "reward_vs_tabular", "coop_vs_tabular"),
        ("vs frozen", "reward_vs_frozen", "coop_vs_frozen"),
        ("frozen", "frozen_reward", "frozen_coop"),
    ]
    rows = [row for row in rows if row[1] in final]
    learners = len(final[rows[0][1]]["mean"])
    lines = [f"{'learner':<8}{'co-player':<12}{'reward':>16}{'cooperation':>16}"]
    for n in range(learners):
        for label, r, c in rows:
            rm, rs = final[r]["mean"][n], final[r]["std"][n]
            cm, cs = final[c]["mean"][n], final[c]["std"][n]
            lines.append(f"{n:<8}{label:<12}{rm:>+9.3f} ± {rs:.3f}{cm:>9.3f} ± {cs:.3f}")
    if "tabular_reward" in final:
        pool = final["tabular_reward"]["mean"]
        lines.append(f"tabular co-players' own reward per round: {np.mean(pool):+.3f}")
    if "evaluation" in summary:
        played = summary["evaluation"]
        lines.append("cooperation of each trained learner in play against (mean over seeds):")
        lines.append(f"{'learner':<8}" + "".join(f"{name[:18]:>20}" for name in played))
        for n in range(learners):
            cells = "".join(f"{played[name]['coop'][n]:>20.3f}" for name in played)
            lines.append(f"{n:<8}{cells}")
        for name, r in played.items():
            if "efficiency" in r:
                values = ", ".join(f"{e:+.3f}" for e in r["efficiency"])
                lines.append(
                    f"in-context efficiency against {name} (r - r_alld) / (r_oracle - r_alld), "
                    f"per learner: {values}"
                )
    return "\n".join(lines)


def init_seeds(
    config: Config, trainer: Trainer, warm: trained.WarmStart, mesh: Mesh | None = None
) -> TrainState:
    """The initial state of all seeds ``[S, ...]`` laid out on ``mesh`` (default: over every
    device, ``sharding.make_mesh``), with ``warm``'s parameters put in."""
    mesh = sharding.make_mesh(config.num_seeds, config.num_learners) if mesh is None else mesh

    def init():
        return jax.vmap(trainer.init)(
            jax.random.split(jax.random.key(config.seed), config.num_seeds)
        )

    shardings = sharding.state_shardings(mesh, jax.eval_shape(init))
    state = jax.jit(init, out_shardings=shardings)()
    if warm.params is not None:
        state = state.replace(params=sharding.put(warm.params, shardings.params))
    if warm.data is not None:  # PPI learners start from other learners' episodes
        data = algorithm(config.algo).warm_start(state.learner_state, warm.data)
        state = state.replace(learner_state=sharding.put(data, shardings.learner_state))
    if warm.coplayer_params is not None:
        coplayer = sharding.put(warm.coplayer_params, sharding.seed_sharding(mesh))
        state = state.replace(coplayer_params=coplayer)
    return state


def compile_chunk(trainer: Trainer, state: TrainState, mesh: Mesh) -> Callable:
    """``chunk(state) -> (state, metrics [S, I, N])`` for all seeds, compiled ahead of time for
    ``mesh`` (``sharding.state_shardings``, state buffers donated, metrics on every device)."""
    shardings = sharding.state_shardings(mesh, state)
    chunk = jax.vmap(trainer.chunk, spmd_axis_name=sharding.SEED)
    out = (shardings, sharding.replicated(mesh))
    return (
        jax.jit(chunk, in_shardings=(shardings,), out_shardings=out, donate_argnums=0)
        .lower(state)
        .compile()
    )


def make_mesh_trainer(
    config: Config,
    devices: Sequence[jax.Device] | None = None,
    coplayer: Any = None,
) -> tuple[Mesh, Trainer]:
    """The mesh over ``devices`` (default: all) and the trainer whose learners and episodes it
    splits; ``coplayer``: a frozen co-player (``trained.WarmStart.coplayer``) or ``None``."""
    mesh = sharding.make_mesh(config.num_seeds, config.num_learners, devices)
    return mesh, make_trainer(config, coplayer, mesh)


def compile_seeds(
    config: Config, devices: Sequence[jax.Device] | None = None
) -> tuple[TrainState, Callable, float]:
    """Initial state of all seeds ``[S, ...]``, the compiled chunk, and the seconds both took
    (on ``devices``, default all)."""
    start = time.perf_counter()
    mesh, trainer = make_mesh_trainer(config, devices)
    state = init_seeds(config, trainer, trained.WarmStart(), mesh)
    return state, compile_chunk(trainer, state, mesh), time.perf_counter() - start


def run(
    config: Config,
    run_dir: Path,
    preset: str | None = None,
    log: Callable[[str], None] = print,
    evaluation_episodes: int = 256,
    *,
    init_from: Sequence[trained.Source] = (),
    frozen_coplayer: trained.Source | None = None,
    tensorboard: bool = False,
    wandb_project: str | None = None,
    devices: Sequence[jax.Device] | None = None,
    checkpointing: CheckpointSchedule = DEFAULT_CHECKPOINTING,
) -> tuple[TrainState, dict]:
    """Train ``config.num_seeds`` seeds (vmapped) into a new results folder ``run_dir``, with
    checkpoints (``checkpointing``), then play every trained learner against the evaluation
    panel.

    ``init_from`` starts the learners from other runs' parameters, ``frozen_coplayer`` holds a
    trained agent fixed as their non-tabular co-player (``trained.resolve_warm_start``).
    ``devices`` (default: every device of every process) share the work (``sharding``); only
    process 0 writes the run's records.
    Everything that can be checked is checked before the folder is created or anything compiled.

    Returns:
      the final (seed-stacked) ``TrainState`` and the summary dict also written to
      ``summary.json``.
    """
    checkpointing.check(config.chunk_iterations)
    loggers.check_available(tensorboard, wandb_project)
    warm = trained.resolve_warm_start(config, init_from, frozen_coplayer)
    if sharding.is_primary():
        run_dir = records.prepare(run_dir)
        records.write_config(run_dir, config, preset, warm.record)
    start = time.perf_counter()
    mesh, trainer = make_mesh_trainer(config, devices, warm.coplayer)
    state = init_seeds(config, trainer, warm, mesh)
    history = _empty_history(config)
    session = _Session(config, run_dir, preset, trainer, mesh, warm.record, log, start)
    return session.train(
        state, history, {}, evaluation_episodes, tensorboard, wandb_project, checkpointing
    )


def resume(
    run_dir: Path,
    changes: dict | None = None,
    log: Callable[[str], None] = print,
    evaluation_episodes: int = 256,
    *,
    tensorboard: bool = False,
    wandb_project: str | None = None,
    devices: Sequence[jax.Device] | None = None,
    checkpointing: CheckpointSchedule = DEFAULT_CHECKPOINTING,
) -> tuple[TrainState, dict]:
    """Continue a run from its newest checkpoint; the result is identical to an uninterrupted run
    (on the same number of devices; on another, equal up to the order of floating-point sums).

    ``changes`` may only touch ``config.RESUMABLE_FIELDS`` (a larger ``num_iterations``; a PPI
    run's dataset is resized to hold its phases, which leaves the phases' numbers as they were);
    a change to any other field is refused, naming the field. ``checkpointing`` may differ from
    the first session's.
    ``metrics.csv`` is replaced by the checkpoint's history (rows written after the checkpoint
    are computed again, identically), and ``config.json`` takes the changes.
    """
    run_dir = Path(run_dir)
    log = log if sharding.is_primary() else lambda line: None
    loggers.check_available(tensorboard, wandb_project)
    saved, record = records.read_config(run_dir)
    try:
        config = saved.replace(**(changes or {}))
        checkpointing.check(config.chunk_iterations)
    except ValueError as e:
        raise RunFolderError(f"--resume {run_dir}: {e}") from None
    changed = differences(saved, config, ignore=RESUMABLE_FIELDS)
    if changed:
        raise RunFolderError(
            f"--resume {run_dir}: these fields change the training program and must stay as the "
            f"run was started: {'; '.join(changed)} (only "
            f"{', '.join(RESUMABLE_FIELDS)} may change)"
        )
    step = checkpoints.latest_step(run_dir)
    if step > config.num_iterations:
        raise RunFolderError(
            f"--resume {run_dir}: the newest checkpoint is at iteration {step}, beyond "
            f"num_iterations={config.num_iterations}"
        )
    start = time.perf_counter()
    coplayer = trained.frozen_coplayer(record)
    mesh, trainer = make_mesh_trainer(config, devices, coplayer)
    ckpt = trained.restore_state(run_dir, step, config, coplayer)
    state = ckpt.state
    # fitted to this config (PPI: room in its dataset for the phases of this num_iterations)
    state = state.replace(learner_state=algorithm(config.algo).resume(config, state.learner_state))
    history = _empty_history(config)
    if set(ckpt.metrics) != set(history):
        raise RunFolderError(
            f"{run_dir}'s checkpoint holds the metrics {sorted(ckpt.metrics)}, this version's "
            f"{config.algo} reports {list(history)}: it was written before metrics became "
            "per-algorithm (PPI's model losses); resume it with commit 11ceb97 or earlier"
        )
    for name in history:
        history[name][:, :step] = ckpt.metrics[name]
    if sharding.is_primary():
        records.rewrite_metrics(run_dir, {name: ckpt.metrics[name] for name in history})
        if config != saved:  # config.json says how far the run now goes
            records.write_config(run_dir, config, record.get("preset"), record.get("warm_start"))
    log(f"resuming {run_dir} from its checkpoint at iteration {step} of {config.num_iterations}")
    state = sharding.put(state, sharding.state_shardings(mesh, state))
    warm_record = record.get("warm_start", {})
    session = _Session(
        config, run_dir, record.get("preset"), trainer, mesh, warm_record, log, start
    )
    return session.train(
        state, history, ckpt.meta, evaluation_episodes, tensorboard, wandb_project, checkpointing
    )


def run_or_resume(
    config: Config,
    run_dir: Path,
    preset: str | None = None,
    log: Callable[[str], None] = print,
    *,
    init_from: Sequence[trained.Source] = (),
    frozen_coplayer: trained.Source | None = None,
    devices: Sequence[jax.Device] | None = None,
    checkpointing: CheckpointSchedule = DEFAULT_CHECKPOINTING,
) -> dict:
    """One run of a multi-run experiment, brought to its end whatever happened before: a run
    that finished (``summary.json`` with its evaluation) is kept, an interrupted one is resumed
    from its newest checkpoint (one stopped before its first checkpoint is moved aside to
    ``<run_dir>.interrupted-<time>`` and started again), otherwise a new one starts (``run``).
    A folder holding a run of another config is refused, naming the fields. Returns the run's
    summary."""
    run_dir = Path(run_dir)
    fresh = not (run_dir / records.CONFIG_FILE).exists()
    if not fresh:
        existing, _ = records.read_config(run_dir)
        changed = differences(existing, config)
        if changed:
            raise RunFolderError(
                f"{run_dir} holds a run of another config ({'; '.join(changed)}); choose "
                "another --out, or remove that folder"
            )
        if not checkpoints.steps(run_dir):  # stopped before its first checkpoint
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{stamp}"))
            log(f"{run_dir}: stopped before its first checkpoint; moved to {aside}, starting again")
            fresh = True
    if fresh:
        return run(
            config,
            run_dir,
            preset,
            log,
            init_from=init_from,
            frozen_coplayer=frozen_coplayer,
            devices=devices,
            checkpointing=checkpointing,
        )[1]
    summary_path = run_dir / records.SUMMARY_FILE
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if "evaluation" in summary:
            log(f"{run_dir}: finished before, kept")
            return summary
    return resume(run_dir, log=log, devices=devices, checkpointing=checkpointing)[1]


#: Set to ``0`` to keep a command from restarting itself with ``MALLOC_TUNABLES``.
HUGE_PAGES_ENV = "JAXCOOP_HUGE_PAGES"
#: glibc malloc tunables a command restarts with: transparent huge pages, and the thresholds
#: glibc's dynamic ones grow to at most (32 MiB mmap, 64 MiB trim), fixed from the start.
MALLOC_TUNABLES = {
    "glibc.malloc.hugetlb": 1,
    "glibc.malloc.mmap_threshold": 32 << 20,
    "glibc.malloc.trim_threshold": 64 << 20,
}
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_environment() -> dict[str, str] | None:
    """The environment in which glibc's ``malloc`` keeps a compiled program's memory fault-free
    from one run to the next (``GLIBC_TUNABLES`` with ``MALLOC_TUNABLES``), or ``None`` where
    that changes nothing: not glibc 2.35+, the kernel's THP mode not ``madvise``, any of the
    tunables already set, or ``JAXCOOP_HUGE_PAGES=0``.

    Why: on a CPU every run of a compiled program allocates its buffers afresh. glibc maps the
    large ones anew and unmaps them on free, so each iteration faulted its whole working set
    back in, 4 KB at a time (80k faults per GRU 128 iteration at 2 x 1,024 episodes, 640k at
    4,096); huge pages make that 512 times fewer faults. XLA's worker threads allocate in
    glibc's per-thread arenas, which glibc trims back to the kernel on free once their free top
    passes its trim threshold: 128 KiB at first, raised only to twice the largest mapped block
    freed so far (345k faults per transformer PPO iteration, 2 x 256 episodes, with huge pages
    alone); fixed thresholds keep that memory (docs/performance.md).
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if os.environ.get(HUGE_PAGES_ENV) == "0" or any(name in tunables for name in MALLOC_TUNABLES):
        return None
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
        return None
    try:
        if "[madvise]" not in _THP_MODE.read_text():
            return None
    except OSError:
        return None
    ours = [f"{name}={value}" for name, value in MALLOC_TUNABLES.items()]
    return {**os.environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, *ours]))}


def restart_with_huge_pages() -> None:
    """Re-execute this process (same interpreter, same command line, same PID) in
    ``huge_pages_environment()``; return where there is nothing to change. glibc reads its
    tunables only at startup, hence the restart; the commands do it through
    ``cli.main_guard`` before anything runs."""
    env = huge_pages_environment()
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def device_name(mesh: Mesh | None = None) -> str:
    """The devices training runs on, e.g. ``"cpu (cpu)"`` or ``"8 x TPU v4 (tpu, 2 processes)"``
    (``mesh``'s, default one device)."""
    devices = [jax.devices()[0]] if mesh is None else list(mesh.devices.flat)
    name = f"{devices[0].device_kind} ({jax.default_backend()}"
    processes = len({d.process_index for d in devices})
    name += f", {processes} processes)" if processes > 1 else ")"
    return name if len(devices) == 1 else f"{len(devices)} x {name}"


def _empty_history(config: Config) -> dict[str, np.ndarray]:
    """NaN-filled metrics ``{name: float32 [S, num_iterations, N]}``, filled chunk by chunk."""
    shape = (config.num_seeds, config.num_iterations, config.num_learners)
    return {name: np.full(shape, np.nan, np.float32) for name in metric_names(config)}


class ChunkReport(NamedTuple):
    """What the callbacks of ``run_chunks`` see after each chunk.

    begin, end: the chunk's iterations ``[begin, end)``. state: the (device) ``TrainState``
    after it. metrics: ``{name: float32 [S, end - begin, N]}`` on the host. elapsed: seconds
    of training in this process so far.
    """

    begin: int
    end: int
    state: TrainState
    metrics: dict[str, np.ndarray]
    elapsed: float


def run_chunks(
    chunk: Callable, state: TrainState, config: Config, first: int, callbacks: Sequence[Any]
) -> tuple[TrainState, float]:
    """Run the compiled ``chunk`` from iteration ``first`` to ``config.num_iterations``,
    calling every callback (``callback(report: ChunkReport)``) in order after each chunk; then
    (also when a chunk or a callback raises) each one's ``close()``, if it has one. Returns the
    final state and the seconds it took."""
    start = time.perf_counter()
    try:
        for begin in range(first, config.num_iterations, config.chunk_iterations):
            state, metrics = chunk(state)
            metrics = jax.device_get(metrics).as_dict()
            end = begin + config.chunk_iterations
            report = ChunkReport(begin, end, state, metrics, time.perf_counter() - start)
            for callback in callbacks:
                callback(report)
    finally:
        for callback in callbacks:
            if hasattr(callback, "close"):
                callback.close()
    return state, time.perf_counter() - start


class MetricsRecorder:
    """Appends each chunk's metrics to ``metrics.csv`` (if ``write``) and to ``history``
    (``_empty_history``'s arrays, filled in place), then refuses a non-finite loss
    (``check_finite``: the metrics up to it are written first)."""

    def __init__(self, run_dir: Path, history: dict[str, np.ndarray], write: bool = True):
        self.run_dir, self.history, self.write = Path(run_dir), history, write

    def __call__(self, r: ChunkReport) -> None:
        if self.write:
            records.append_metrics(self.run_dir, r.metrics, r.begin)
        for name, value in r.metrics.items():
            self.history[name][:, r.begin : r.end] = value
        check_finite(r.metrics["loss"], r.begin, self.run_dir)


class SinkLogger:
    """Logs each chunk's per-learner means to ``loggers`` sinks (TensorBoard, W&B) and closes
    them at the end."""

    def __init__(self, sinks: Sequence[Any]):
        self.sinks = list(sinks)

    def __call__(self, r: ChunkReport) -> None:
        for sink in self.sinks:
            sink.log(r.end, loggers.chunk_scalars(r.metrics))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class CheckpointSaver:
    """Saves the state, the metrics so far (``history``) and ``meta(elapsed)`` when
    ``schedule`` says (``CheckpointSchedule``; always after the last chunk) with
    ``checkpoints.Writer``."""

    def __init__(
        self,
        run_dir: Path,
        schedule: CheckpointSchedule,
        config: Config,
        history: dict[str, np.ndarray],
        meta: Callable[[float], dict],
        mesh: Mesh | None = None,
    ):
        self.writer = checkpoints.Writer(run_dir, schedule.keep)
        self.schedule, self.config, self.history, self.meta = schedule, config, history, meta
        self.mesh, self.saved_at = mesh, 0.0

    def __call__(self, r: ChunkReport) -> None:
        since = r.elapsed - self.saved_at
        if self.schedule.due(r.end, self.config.num_iterations, since):
            self.saved_at = r.elapsed
            self.writer.save(
                r.end,
                sharding.to_host(r.state, self.mesh),
                {k: v[:, : r.end] for k, v in self.history.items()},
                {"iteration": r.end, **self.meta(r.elapsed)},
            )

    def close(self) -> None:
        self.writer.close()


class ProgressPrinter:
    """Prints ``progress_line`` after each chunk (``first``: the iteration this process
    started at, for the speed)."""

    def __init__(self, config: Config, log: Callable[[str], None], first: int = 0):
        self.config, self.log, self.first = config, log, first

    def __call__(self, r: ChunkReport) -> None:
        self.log(progress_line(self.config, r.metrics, r.end, r.elapsed, self.first))


class _Session:
    """The host loop of one process working on a run (a new run or a resumed one)."""

    def __init__(self, config, run_dir, preset, trainer, mesh, warm_record, log, start):
        self.config, self.run_dir, self.preset = config, Path(run_dir), preset
        self.trainer, self.mesh, self.warm_record, self.start = trainer, mesh, warm_record, start
        self.primary = sharding.is_primary()
        self.log = log if self.primary else lambda line: None

    def train(
        self, state, history, meta, evaluation_episodes, tensorboard, wandb_project, schedule
    ):
        config, run_dir, log = self.config, self.run_dir, self.log
        first = int(sharding.to_host(state.iteration, self.mesh).reshape(-1)[0])
        chunk = compile_chunk(self.trainer, state, self.mesh)
        compile_seconds = time.perf_counter() - self.start
        log(
            f"compiled in {compile_seconds:.1f}s on {device_name(self.mesh)}; "
            f"{config.agent_steps_per_iteration * config.num_seeds:,} "
            f"agent-steps per iteration ({config.num_seeds} seed(s) x {config.num_learners} "
            f"learners x {config.num_episodes} episodes x {config.horizon} rounds)"
        )
        sinks = loggers.open_sinks(
            run_dir,
            tensorboard=tensorboard and self.primary,
            wandb_project=wandb_project if self.primary else None,
            run_name=run_dir.name,
            config=config.to_dict(),
            wandb_id=meta.get("wandb_id"),
        )
        wandb_id = next((s.run_id for s in sinks if hasattr(s, "run_id")), meta.get("wandb_id"))
        previous_seconds = meta.get("train_seconds", 0.0)
        sessions = meta.get("sessions", 0) + 1

        def checkpoint_meta(elapsed: float) -> dict:
            return {
                "config": config.to_dict(),
                "train_seconds": previous_seconds + elapsed,
                "sessions": sessions,
                "wandb_id": wandb_id,
            }

        callbacks = [
            MetricsRecorder(run_dir, history, write=self.primary),
            SinkLogger(sinks),
            CheckpointSaver(
                run_dir,
                schedule,
                config,
                history,
                checkpoint_meta,
                self.mesh,
            ),
            ProgressPrinter(config, log, first),
        ]
        try:
            state, seconds = run_chunks(chunk, state, config, first, callbacks)
        except KeyboardInterrupt:
            log(
                f"interrupted; continue with: python -m experiments.ipd --resume {run_dir} "
                f"(newest checkpoint kept: {checkpoints.directory(run_dir)})"
            )
            raise
        train_seconds = previous_seconds + seconds
        return state, self.finish(
            state, compile_seconds, train_seconds, sessions, evaluation_episodes
        )

    def finish(self, state, compile_seconds, train_seconds, sessions, episodes):
        """Plots, ``summary.json`` and the evaluation by play (final values from
        ``metrics.csv``, as every reader of the folder sees them). Every process plays (they run
        the same programs); process 0 writes, and returns the summary (the others ``{}``)."""
        config, run_dir = self.config, self.run_dir
        title = f"{self.preset or 'custom'}: {config.algo}, {config.backbone}"
        summary = {}
        if self.primary:
            summary = self.summarize(compile_seconds, train_seconds, sessions, title)
            records.write_summary(run_dir, summary)  # kept even if the evaluation below fails
        played = evaluation.evaluate_learners(
            make_player(config),
            sharding.to_host(state.params, self.mesh),
            make_game(config.game, config.horizon),
            jax.random.fold_in(jax.random.key(config.seed), 1),
            num_episodes=episodes,
        )
        if self.primary:
            played_summary = evaluation.summarize(played)
            records.write_evaluation(run_dir, played_summary)
            summary["evaluation"] = {  # means over seeds per learner; evaluation.json has more
                name: {f: r[f]["mean"] for f in ("coop", "reward", "efficiency") if f in r}
                for name, r in played_summary.items()
            }
            records.write_summary(run_dir, summary)
            figures.within_episode(run_dir / records.EVALUATION_PLOT_FILE, played, title)
        sharding.barrier("jaxcoop-run-finished")
        return summary

    def summarize(self, compile_seconds, train_seconds, sessions, title) -> dict:
        """The training curves' plot and the summary of the finished run."""
        config = self.config
        history = records.read_metrics(self.run_dir)
        figures.training_curves(self.run_dir / records.PLOT_FILE, history, title)
        agent_steps = config.num_iterations * config.agent_steps_per_iteration * config.num_seeds
        summary = {
            "preset": self.preset,
            "algo": config.algo,
            "backbone": config.backbone,
            "iterations": config.num_iterations,
            "seeds": config.num_seeds,
            "learners": config.num_learners,
            "final": records.final_values(history),
            "final_window": f"last {records.FINAL_FRACTION:.0%} of iterations, mean then "
            "mean/std over seeds",
            "wall_seconds": time.perf_counter() - self.start,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "sessions": sessions,
            "iterations_per_second": config.num_iterations / train_seconds,
            "agent_steps_per_second": agent_steps / train_seconds,
            "device": device_name(self.mesh),
            **records.provenance(),
        }
        if self.warm_record:
            summary["warm_start"] = {
                kind: [r["run"] for r in rs] if isinstance(rs, list) else rs["run"]
                for kind, rs in self.warm_record.items()
            }
        return summary
