"""A ready accelerator check: the speed sweep, timed slices of paper-scale training and the
projected wall time of the paper's runs, in one JSON (benchmarks/DEVICE.md).

    python -m benchmarks.device --out $OUT/device.json     # on one GPU: <= 8 minutes
    python -m benchmarks.device --quick --out /tmp/d.json  # CPU smoke run: about a minute

In order, within ``--budget-seconds`` (counted from the start; what does not fit is recorded as
skipped): the float32 and bfloat16 matmul peaks; ``benchmarks.sps``'s sweep (GRU 128 and the
transformer x A2C and PPO x 1,024 ... 16,384 episodes at the mixed-pool preset) until
``SWEEP_SHARE`` of the budget is spent; then, for each of ``SLICES``, the real training program
(``runner.compile_seeds``' chunk, one seed) timed chunk by chunk until ``slice_updates`` updates
(2,000) or its share of the budget; last, the projected wall time of each of ``PAPER_RUNS`` against
``GOAL_SECONDS``. The JSON file is rewritten after every measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

from benchmarks import sps
from jaxcoop import cli, records, runner
from jaxcoop.config import Config
from jaxcoop.presets import PRESETS, preset, scaled

#: Settings of the accelerator run and of ``--quick`` (sps's, with the sweep's backbones, algos
#: and episodes and the slices' sizes): ``quick`` marks the smoke run, ``scale`` is the slices'
#: (``presets.scaled``);
#: ``slice_chunk`` iterations per compiled chunk of a slice, ``slice_updates`` the most updates a
#: slice times, ``budget`` seconds.
FULL = {
    **sps.FULL,
    "backbones": ("gru", "transformer"),
    "algos": sps.SWEEP_ALGOS,
    "episodes": (1024, 4096, 16384),
    "quick": False,
    "scale": "paper",
    "slice_chunk": 50,
    "slice_updates": 2000,
    "budget": 420.0,
}
QUICK = {
    **FULL,
    **sps.QUICK,
    "algos": ("a2c",),  # four compilations in all, as many as sps --quick (which has PPO's)
    "quick": True,
    "scale": "tiny",
    "slice_chunk": 2,
    "slice_updates": 6,
    "budget": 120.0,
}

#: The fraction of the budget after which no further sweep configuration is started; each slice
#: then gets its share in ``SLICES`` of the time left when it starts.
SWEEP_SHARE = 0.55
#: The slices of paper-scale training timed after the sweep, each with its share of the time left.
SLICES = {"mixed-pool": 0.65, "step1-tabular": 1.0}
#: The paper's runs (Table 2; their lengths are the presets' ``num_iterations``: 200k, 50k, 100k
#: and 10k updates), each with the slice whose rate projects it: its own slice's time per update,
#: else the mixed-pool slice's agent-steps per second.
PAPER_RUNS = {
    "mixed-pool": "mixed-pool",
    "step1-tabular": "step1-tabular",
    "step2-extort": "mixed-pool",
    "step3-mutual": "mixed-pool",
}
#: The wall time a paper run should fit in, one seed (seconds).
GOAL_SECONDS = 3600.0

#: The keys of every slice's record (``None`` where a skipped one has no value).
SLICE_FIELDS = (
    "preset",
    "backbone",
    "algo",
    "num_learners",
    "num_episodes",
    "horizon",
    "num_seeds",
    "chunk_iterations",
    "skipped",
    "compile_seconds",
    "warmup_seconds",
    "timed_updates",
    "chunk_seconds",
    "seconds_per_update",
    "iterations_per_second",
    "agent_steps_per_second",
    "env_rounds_per_second",
    "flops_per_iteration",
    "fraction_of_peak",
    "memory_bytes",
    "memory_source",
    "compiled_memory_bytes",
    "device_peak_bytes",
)


def slice_config(name: str, scale: str, chunk_iterations: int) -> Config:
    """Preset ``name`` at ``scale`` (the paper's own preset at ``"paper"``), one seed, compiled
    as chunks of ``chunk_iterations`` updates."""
    config = preset(name) if scale == "paper" else scaled(name, scale)
    return config.replace(
        num_seeds=1,
        chunk_iterations=chunk_iterations,
        num_iterations=chunk_iterations,
    )


def _slice_record(name: str, config: Config, **values) -> dict:
    return sps.config_record(config, SLICE_FIELDS, preset=name, **values)


def measure_slice(
    name: str, config: Config, max_updates: int, deadline: float, peak_flops: float
) -> dict:
    """Steady-state speed of ``config``'s real training program: compiled (not timed), one
    warm-up chunk, then chunks timed one by one (``jax.block_until_ready`` on the state and
    metrics) until ``max_updates`` updates, or until the next chunk would end after ``deadline``
    (``time.perf_counter()`` seconds; at least one chunk is timed). Its record: ``SLICE_FIELDS``,
    rates from all timed updates over all timed seconds."""
    peak_before = sps.device_stat("peak_bytes_in_use")
    state, chunk, compile_seconds = runner.compile_seeds(config, jax.devices()[:1])
    start = time.perf_counter()
    state, metrics = chunk(state)  # the chunk donates its state: always feed it back
    jax.block_until_ready((state, metrics))
    last = warmup = time.perf_counter() - start
    seconds = []
    while not seconds or (
        len(seconds) * config.chunk_iterations < max_updates
        and time.perf_counter() + last <= deadline
    ):
        start = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready((state, metrics))
        last = time.perf_counter() - start
        seconds.append(last)
    updates = len(seconds) * config.chunk_iterations
    per_update = sum(seconds) / updates
    flops = sps.iteration_flops(config).total
    return _slice_record(
        name,
        config,
        compile_seconds=compile_seconds,
        warmup_seconds=warmup,
        timed_updates=updates,
        chunk_seconds=seconds,
        seconds_per_update=per_update,
        **sps.rates(config, per_update),
        flops_per_iteration=flops,
        fraction_of_peak=flops / per_update / peak_flops,
        **sps.memory_fields(sps.compiled_bytes(chunk), peak_before),
    )


def measure_slice_or_skip(
    name: str, config: Config, max_updates: int, deadline: float, peak_flops: float
) -> dict:
    """``measure_slice``, or a record skipped because ``deadline`` has passed or the device ran
    out of memory."""
    if time.perf_counter() > deadline:
        return _slice_record(name, config, skipped=sps.OVER_BUDGET)
    try:
        return measure_slice(name, config, max_updates, deadline, peak_flops)
    except jax.errors.JaxRuntimeError as e:
        return _slice_record(name, config, skipped=sps.out_of_memory(e))


def projections(slices: dict[str, dict], scale: str) -> list[dict]:
    """The wall time of each of ``PAPER_RUNS`` (one seed, its Table 2 number of updates, its
    preset's sizes at ``scale``): updates x seconds per update, where seconds per update is the
    run's own slice's, else its agent-steps per update over the mixed-pool slice's agent-steps per
    second. ``None`` where the slice it needs was skipped."""
    rows = []
    for name, basis in PAPER_RUNS.items():
        config = slice_config(name, scale, 1)
        measured = slices.get(basis) or {}
        if measured.get("seconds_per_update") is None:
            per_update, how = None, f"{basis} slice not measured"
        elif basis == name:
            per_update, how = measured["seconds_per_update"], f"{basis} slice: seconds per update"
        else:
            per_update = config.agent_steps_per_iteration / measured["agent_steps_per_second"]
            how = f"{basis} slice: agent-steps per second"
        updates = PRESETS[name]().num_iterations
        seconds = None if per_update is None else updates * per_update
        rows.append(
            dict(
                run=name,
                updates=updates,
                num_learners=config.num_learners,
                num_episodes=config.num_episodes,
                horizon=config.horizon,
                agent_steps_per_update=config.agent_steps_per_iteration,
                basis=how,
                seconds_per_update=per_update,
                projected_seconds=seconds,
                goal_seconds=GOAL_SECONDS,
                within_goal=None if seconds is None else seconds <= GOAL_SECONDS,
            )
        )
    return rows


def skipped(result: dict) -> list[str]:
    """What was not measured, one line each (``"sweep gru ppo 16384 episodes: why"``)."""
    lines = [
        f"sweep {r['backbone']} {r['algo']} {r['num_episodes']} episodes: {r['skipped']}"
        for r in (result.get("sweep") or {}).get("records", [])
        if r["skipped"]
    ]
    lines += [
        f"slice {r['preset']}: {r['skipped']}" for r in result["slices"].values() if r["skipped"]
    ]
    return lines


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.3g} h"


def table(result: dict) -> str:
    """The sweep's table, the slices' speeds and the projections, as text."""
    lines = [sps.table(result["sweep"])] if result["sweep"] else []
    lines.append(
        f"{'slice':<15}{'N x B x T':>16}{'updates':>9}{'updates/s':>11}{'agent-steps/s':>15}"
        f"{'% peak':>8}{'memory':>12}"
    )
    for r in result["slices"].values():
        sizes = f"{r['num_learners']} x {r['num_episodes']} x {r['horizon']}"
        if r["skipped"]:
            lines.append(f"{r['preset']:<15}{sizes:>16}  skipped: {r['skipped']}")
            continue
        lines.append(
            f"{r['preset']:<15}{sizes:>16}{r['timed_updates']:>9}"
            f"{r['iterations_per_second']:>11.3g}{sps.si(r['agent_steps_per_second']):>15}"
            f"{100 * r['fraction_of_peak']:>8.2f}{sps.size(r['memory_bytes']):>12}"
        )
    lines.append(
        f"{'paper run (1 seed)':<20}{'updates':>9}{'s/update':>10}{'projected':>11}  goal 1 h"
    )
    for p in result["projections"]:
        per_update = "-" if p["seconds_per_update"] is None else f"{p['seconds_per_update']:.3g}"
        verdict = {True: "within", False: "over", None: "-"}[p["within_goal"]]
        lines.append(
            f"{p['run']:<20}{p['updates']:>9}{per_update:>10}{_hours(p['projected_seconds']):>11}"
            f"  {verdict} ({p['basis']})"
        )
    return "\n".join(lines)


def run(
    settings: dict,
    budget: float,
    out: Path,
    matmul_size: int,
    log: Callable[[str], None] = sps.print_now,
) -> dict:
    """The whole check within ``budget`` seconds; ``out`` is rewritten after every measurement."""
    start = time.perf_counter()
    end = start + budget
    result = {
        "device": runner.device_name(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": settings["quick"],
        "xla_flags": "",
        "budget_seconds": budget,
        "elapsed_seconds": None,
        "complete": False,
        "matmul_size": matmul_size,
        "matmul_peak_flops": None,
        "matmul_peak_bf16_flops": sps.matmul_peak(matmul_size, dtype=jnp.bfloat16),
        "sweep": None,
        "slices": {},
        "projections": [],
        "skipped": [],
        "goal_seconds": GOAL_SECONDS,
        **records.provenance(),
    }

    def save(sweep: dict | None = None) -> None:
        if sweep is not None:
            result["sweep"] = sweep
            result["xla_flags"] = sweep["xla_flags"]
            result["matmul_peak_flops"] = sweep["matmul_peak_flops"]
        result["projections"] = projections(result["slices"], settings["scale"])
        result["skipped"] = skipped(result)
        result["elapsed_seconds"] = time.perf_counter() - start
        sps.write_json(out, result)

    save()
    bf16 = sps.si(result["matmul_peak_bf16_flops"], "FLOP/s")
    log(f"bfloat16 matmul peak on {result['device']}: {bf16} (n={matmul_size})")
    configs = sps.sweep_configs(
        settings["preset"],
        settings["backbones"],
        settings["algos"],
        settings["episodes"],
        settings["chunk"],
    )
    sps.run(
        configs,
        settings["repeats"],
        matmul_size,
        None,
        settings["preset"],
        log,
        deadline=start + SWEEP_SHARE * budget,
        save=save,
    )
    for name, share in SLICES.items():
        now = time.perf_counter()
        config = slice_config(name, settings["scale"], settings["slice_chunk"])
        result["slices"][name] = r = measure_slice_or_skip(
            name,
            config,
            settings["slice_updates"],
            now + share * (end - now),
            result["matmul_peak_flops"],
        )
        save()
        log(
            f"slice {name}: skipped ({r['skipped']})"
            if r["skipped"]
            else f"slice {name}: {r['timed_updates']} updates, {r['iterations_per_second']:.3g} "
            f"updates/s, {sps.si(r['agent_steps_per_second'])} agent-steps/s"
        )
    result["complete"] = True
    save()
    return result


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a CPU smoke run: presets at scale {QUICK['scale']}, {QUICK['episodes'][0]} "
        "episodes, unoptimized compilation (speeds not representative)",
    )
    p.add_argument(
        "--budget-seconds",
        type=positive_seconds,
        help=f"seconds for the whole check, from its start; default {FULL['budget']:g} "
        f"({QUICK['budget']:g} with --quick)",
    )
    p.add_argument(
        "--out", type=Path, help="JSON file (default benchmarks/results/device-DEVICE-DATE.json)"
    )
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        sps.quick_compilation()
    out = sps.out_path(args.out, "device")
    settings = QUICK if args.quick else FULL
    budget = settings["budget"] if args.budget_seconds is None else args.budget_seconds
    result = run(settings, budget, out, sps.matmul_size(args.quick))
    print(table(result))
    for line in result["skipped"]:
        print(f"skipped: {line}")
    print(f"wrote {out} ({result['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
