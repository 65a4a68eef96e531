"""Speed, FLOP/s and memory of the fused training iteration, per backbone x algorithm x episodes.

    python -m benchmarks.sps --quick     # smoke run: tiny preset, 4 configurations, < 1 minute
    python -m benchmarks.sps             # full sweep: mixed-pool, 256 ... 65536 episodes
    python -m benchmarks.sps --backbones gru --algos ppo --episodes 1024 4096 --repeats 5

Each configuration is the preset (default mixed-pool: horizon 100, 2 learners) switched to one
backbone, algorithm, horizon and number of episodes per learner, with one seed, on each number of
devices in ``--devices`` (episodes split over them; ``--host-devices N`` splits a CPU). It is
compiled once (``runner.compile_seeds``; the time is reported apart), run for one warm-up chunk,
then timed over ``--repeats`` chunks of ``--chunk-iterations`` iterations. A configuration that
does not fit in device memory is recorded as skipped. Writes a JSON file and prints a table; the
columns and how FLOPs, the matmul peak and memory are measured: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Jaxpr

from jaxcoop import cli, records, runner
from jaxcoop.config import Config
from jaxcoop.networks import BACKBONES
from jaxcoop.presets import PRESETS, preset
from jaxcoop.train import make_trainer

#: Settings of the full sweep and of ``--quick``; explicit flags override either.
#: Chunks of 10 iterations: each call of a compiled chunk allocates its buffers afresh, a cost
#: training (500-iteration chunks) does not pay; with 2-iteration chunks it was up to 20 % of an
#: iteration on a CPU (benchmarks/README.md).
FULL = dict(preset="mixed-pool", episodes=(256, 1024, 4096, 16384, 65536), repeats=3, chunk=10)
QUICK = dict(preset="tiny", episodes=(64,), repeats=1, chunk=2)

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The keys of every configuration's record (``None`` where a skipped one has no value).
RECORD_FIELDS = (
    "backbone",
    "algo",
    "num_episodes",
    "horizon",
    "num_learners",
    "num_seeds",
    "num_devices",
    "chunk_iterations",
    "skipped",
    "compile_seconds",
    "repeat_seconds_per_iteration",
    "seconds_per_iteration",
    "iterations_per_second",
    "agent_steps_per_second",
    "env_rounds_per_second",
    "flops_per_iteration",
    "matmul_flops_per_iteration",
    "flops_per_second",
    "fraction_of_peak",
    "memory_bytes",
    "memory_source",
    "compiled_memory_bytes",
    "device_peak_bytes",
)

# --- FLOPs --------------------------------------------------------------------------------------

#: Elementwise floating-point arithmetic: one FLOP per output element.
_ELEMENTWISE = frozenset(
    "abs add add_any atan2 cbrt ceil cos div erf erf_inv exp exp2 expm1 floor integer_pow log "
    "log1p logistic max min mul neg pow rem round rsqrt sign sin sqrt square sub tan tanh".split()
)
#: Reductions: one FLOP per input element.
_REDUCTIONS = frozenset(
    "argmax argmin cumlogsumexp cummax cummin cumprod cumsum reduce_max reduce_min "
    "reduce_prod reduce_sum".split()
)


class Flops(NamedTuple):
    """Floating-point operations: ``matmul`` (``dot_general``: 2 per multiply-add) and ``other``
    (elementwise arithmetic: 1 per output element; reductions: 1 per input element)."""

    matmul: float
    other: float

    @property
    def total(self) -> float:
        return self.matmul + self.other


def _is_float(var) -> bool:
    return jnp.issubdtype(var.aval.dtype, jnp.floating)


def _sub_jaxprs(params: dict) -> list[Jaxpr]:
    found = []
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, ClosedJaxpr):
                found.append(item.jaxpr)
            elif isinstance(item, Jaxpr):
                found.append(item)
    return found


def jaxpr_flops(jaxpr: Jaxpr) -> Flops:
    """FLOPs of one evaluation of ``jaxpr`` (a ``scan`` body counts ``length`` times; of a
    ``cond``, the costliest branch). Raises ``ValueError`` on a ``while`` loop: its trip count
    is not known before it runs."""
    matmul = other = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general" and _is_float(eqn.outvars[0]):
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs_shape = eqn.invars[0].aval.shape
            depth = math.prod(lhs_shape[d] for d in contracting)
            matmul += 2 * math.prod(eqn.outvars[0].aval.shape) * depth
        elif name in _ELEMENTWISE and _is_float(eqn.outvars[0]):
            other += math.prod(eqn.outvars[0].aval.shape)
        elif name in _REDUCTIONS and _is_float(eqn.invars[0]):
            other += math.prod(eqn.invars[0].aval.shape)
        elif name == "while":
            raise ValueError("a while loop's trip count is unknown before it runs")
        else:
            inner = [jaxpr_flops(sub) for sub in _sub_jaxprs(eqn.params)]
            if not inner:
                continue
            if name == "cond":
                inner = [max(inner, key=lambda f: f.total)]
            times = eqn.params["length"] if name == "scan" else 1
            matmul += times * sum(f.matmul for f in inner)
            other += times * sum(f.other for f in inner)
    return Flops(matmul, other)


def iteration_flops(config: Config) -> Flops:
    """FLOPs of one training iteration of all ``config.num_seeds`` seeds (traced, not run)."""
    trainer = make_trainer(config)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), config.num_seeds))
    state = jax.eval_shape(jax.vmap(trainer.init), keys)
    return jaxpr_flops(jax.make_jaxpr(jax.vmap(trainer.iteration))(state).jaxpr)


def matmul_peak(n: int, repeats: int = 5, dtype=jnp.float32) -> float:
    """FLOP/s of a jitted ``[n, n] x [n, n]`` matmul of ``dtype`` (``2 n^3`` FLOPs), best of
    ``repeats`` after a warm-up, at the default precision (the one training uses)."""
    a_key, b_key = jax.random.split(jax.random.key(0))
    a_NxN = jax.random.normal(a_key, (n, n), dtype)
    b_NxN = jax.random.normal(b_key, (n, n), dtype)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a_NxN, b_NxN))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a_NxN, b_NxN))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# --- Memory -------------------------------------------------------------------------------------


def compiled_bytes(compiled) -> int:
    """Arguments + outputs + temporaries - donated (aliased) bytes of a compiled executable."""
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def device_stat(name: str) -> int | None:
    """A ``memory_stats()`` entry of the first device; ``None`` where there are none (CPU)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get(name)


def _memory_limit() -> int:
    """Bytes the device can hold: its ``bytes_limit``, or the host's physical memory (CPU)."""
    limit = device_stat("bytes_limit")
    return limit or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# --- Measurement --------------------------------------------------------------------------------


def rates(config: Config, seconds_per_iteration: float) -> dict:
    """Iterations, agent-steps (one action of one learning agent) and env-rounds (one round of one
    episode) per second of ``config``, all seeds together."""
    # A learner-vs-learner episode fills two learner seats; a tabular one fills one.
    episodes = config.num_learners * (config.num_tabular_episodes + config.num_pair_slots)
    iterations = config.num_seeds / seconds_per_iteration  # seed-iterations per second
    return {
        "iterations_per_second": 1.0 / seconds_per_iteration,
        "agent_steps_per_second": iterations * config.agent_steps_per_iteration,
        "env_rounds_per_second": iterations * episodes * config.horizon,
    }


def config_record(config: Config, keys: Sequence[str] = RECORD_FIELDS, **values) -> dict:
    """A record with ``keys`` (``None`` unless set): ``config``'s sizes, then ``values``."""
    fields = dict.fromkeys(keys)
    fields.update(
        backbone=config.backbone,
        algo=config.algo,
        num_episodes=config.num_episodes,
        horizon=config.horizon,
        num_learners=config.num_learners,
        num_seeds=config.num_seeds,
        chunk_iterations=config.chunk_iterations,
    )
    fields.update(values)
    return fields


def memory_fields(planned: int, peak_before: int | None) -> dict:
    """The memory of a measured program (``planned``: its ``compiled_bytes``): the device's peak
    where this program raised it (``peak_before``: the peak before it was compiled), else the
    planned bytes."""
    # The device's peak is the process's high-water mark: it belongs to this program only when
    # this program raised it.
    peak_after = device_stat("peak_bytes_in_use")
    raised = peak_after is not None and (peak_before is None or peak_after > peak_before)
    return dict(
        memory_bytes=peak_after if raised else planned,
        memory_source="device peak_bytes_in_use" if raised else "compiled memory_analysis",
        compiled_memory_bytes=planned,
        device_peak_bytes=peak_after,
    )


def measure(config: Config, repeats: int, peak_flops: float, num_devices: int = 1) -> dict:
    """Compile ``config`` for the first ``num_devices`` devices, run one warm-up chunk and
    ``repeats`` timed chunks: its record (``RECORD_FIELDS``; rates from the median chunk)."""
    peak_before = device_stat("peak_bytes_in_use")
    devices = jax.devices()[:num_devices]
    state, chunk, compile_seconds = runner.compile_seeds(config, devices)
    planned = compiled_bytes(chunk)
    if planned > _memory_limit():
        return config_record(
            config,
            num_devices=num_devices,
            skipped=f"needs {size(planned)}, more than the device's {size(_memory_limit())}",
            compile_seconds=compile_seconds,
            compiled_memory_bytes=planned,
        )
    state, metrics = chunk(state)  # warm-up; the chunk donates its state: always feed it back
    jax.block_until_ready(metrics)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready((state, metrics))
        seconds.append((time.perf_counter() - start) / config.chunk_iterations)
    per_iteration = statistics.median(seconds)
    flops = iteration_flops(config)
    return config_record(
        config,
        num_devices=num_devices,
        compile_seconds=compile_seconds,
        repeat_seconds_per_iteration=seconds,
        seconds_per_iteration=per_iteration,
        **rates(config, per_iteration),
        flops_per_iteration=flops.total,
        matmul_flops_per_iteration=flops.matmul,
        flops_per_second=flops.total / per_iteration,
        fraction_of_peak=flops.total / per_iteration / peak_flops,
        **memory_fields(planned, peak_before),
    )


def out_of_memory(error: jax.errors.JaxRuntimeError) -> str:
    """The reason to record for ``error`` if the device ran out of memory; re-raises any other."""
    if "RESOURCE_EXHAUSTED" not in str(error):
        raise error
    return f"out of memory: {str(error).splitlines()[0][:200]}"


def measure_or_skip(config: Config, repeats: int, peak_flops: float, num_devices: int = 1) -> dict:
    """``measure``, or a record skipped for running out of device memory."""
    try:
        return measure(config, repeats, peak_flops, num_devices)
    except jax.errors.JaxRuntimeError as e:
        return config_record(config, num_devices=num_devices, skipped=out_of_memory(e))


# --- Output -------------------------------------------------------------------------------------


def si(x: float | None, unit: str = "") -> str:
    """``x`` to 3 significant digits with an SI prefix (``"1.23GFLOP/s"``); ``"-"`` for None."""
    if x is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def size(n: int | None) -> str:
    """Bytes in MiB or GiB; ``"-"`` for None."""
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def progress_line(index: int, count: int, r: dict) -> str:
    """One line for a finished configuration."""
    head = (
        f"[{index}/{count}] {r['backbone']} {r['algo']} {r['num_episodes']} episodes x "
        f"{r['horizon']} rounds on {r['num_devices']} device(s):"
    )
    if r["skipped"]:
        return f"{head} skipped ({r['skipped']})"
    return (
        f"{head} compile {r['compile_seconds']:.1f}s, {r['iterations_per_second']:.3g} it/s, "
        f"{si(r['agent_steps_per_second'])} agent-steps/s, {si(r['flops_per_second'], 'FLOP/s')} "
        f"({100 * r['fraction_of_peak']:.2f}% of peak), {size(r['memory_bytes'])} "
        f"({r['memory_source'].split()[0]})"
    )


_COLUMNS = (
    ("backbone", 12, lambda r: r["backbone"]),
    ("algo", 5, lambda r: r["algo"]),
    ("episodes", 9, lambda r: str(r["num_episodes"])),
    ("T", 5, lambda r: str(r["horizon"])),
    ("dev", 4, lambda r: str(r["num_devices"])),
    ("compile s", 10, lambda r: f"{r['compile_seconds']:.1f}"),
    ("it/s", 8, lambda r: f"{r['iterations_per_second']:.3g}"),
    ("agent-steps/s", 14, lambda r: si(r["agent_steps_per_second"])),
    ("env-rounds/s", 13, lambda r: si(r["env_rounds_per_second"])),
    ("GFLOP/iter", 11, lambda r: f"{r['flops_per_iteration'] / 1e9:.3g}"),
    ("GFLOP/s", 9, lambda r: f"{r['flops_per_second'] / 1e9:.3g}"),
    ("% peak", 8, lambda r: f"{100 * r['fraction_of_peak']:.2f}"),
    ("memory", 16, lambda r: f"{size(r['memory_bytes'])} {r['memory_source'][0]}"),
)


def _row(cells: Sequence[str]) -> str:
    """Cells under ``_COLUMNS``: names left-aligned, numbers right-aligned."""
    widths = [width for _, width, _ in _COLUMNS]
    return "".join(
        f"{cell:<{w}}" if i < 2 else f"{cell:>{w}}"
        for i, (cell, w) in enumerate(zip(cells, widths, strict=False))
    )


def table(result: dict) -> str:
    """The records of ``result`` as a text table, under a line naming the device and peak."""
    lines = [
        f"{result['device']}, preset {result['preset']}: float32 matmul peak "
        f"{si(result['matmul_peak_flops'], 'FLOP/s')} (n={result['matmul_size']}); "
        "memory d = device peak_bytes_in_use, c = compiled memory_analysis"
        + (f"; XLA_FLAGS={result['xla_flags']}" if result["xla_flags"] else ""),
        _row([name for name, _, _ in _COLUMNS]),
    ]
    for r in result["records"]:
        if r["skipped"]:
            lines.append(
                _row([fmt(r) for _, _, fmt in _COLUMNS[:5]]) + f"  skipped: {r['skipped']}"
            )
        else:
            lines.append(_row([fmt(r) for _, _, fmt in _COLUMNS]))
    return "\n".join(lines)


# --- Command line -------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


#: The learners whose iteration is one gradient update of the fused program (PPI is not: its
#: iteration is a phase of model training and planning, sized by other fields).
SWEEP_ALGOS = ("a2c", "ppo")


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), help=f"default {FULL['preset']}")
    p.add_argument(
        "--backbones", nargs="+", choices=sorted(BACKBONES), default=sorted(BACKBONES), help="all"
    )
    p.add_argument(
        "--algos",
        nargs="+",
        choices=SWEEP_ALGOS,
        default=list(SWEEP_ALGOS),
        help="all (PPI's iteration is a whole phase: its speed is in each run's summary.json)",
    )
    p.add_argument(
        "--episodes",
        nargs="+",
        type=positive_int,
        help="episodes per learner; default " + " ".join(map(str, FULL["episodes"])),
    )
    p.add_argument(
        "--horizon", nargs="+", type=positive_int, help="rounds per episode (default: the preset's)"
    )
    p.add_argument(
        "--devices",
        nargs="+",
        type=positive_int,
        help="numbers of devices to run each configuration on (default: all); episodes are split "
        "over them",
    )
    p.add_argument(
        "--host-devices",
        type=positive_int,
        metavar="N",
        help="split the CPU into N devices (XLA_FLAGS=--xla_force_host_platform_device_count=N) "
        "to measure sharding on one host",
    )
    p.add_argument("--repeats", type=positive_int, help=f"timed chunks; default {FULL['repeats']}")
    p.add_argument(
        "--chunk-iterations",
        type=positive_int,
        help=f"iterations per chunk; default {FULL['chunk']}",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: preset {QUICK['preset']}, {QUICK['episodes'][0]} episodes, "
        f"{QUICK['repeats']} repeat, chunks of {QUICK['chunk']}",
    )
    p.add_argument(
        "--out", type=Path, help="JSON file (default benchmarks/results/sps-DEVICE-DATE.json)"
    )
    return p


def sweep_configs(
    preset_name: str,
    backbones: Sequence[str],
    algos: Sequence[str],
    episodes: Sequence[int],
    chunk_iterations: int,
    horizons: Sequence[int] | None = None,
) -> list[Config]:
    """Every backbone x algo x horizon x episodes configuration of the preset, with one seed."""
    configs = []
    for backbone in backbones:
        base = preset(preset_name, backbone)
        for algo in algos:
            for horizon in horizons or [base.horizon]:
                for n in episodes:
                    changes = dict(
                        algo=algo,
                        num_episodes=n,
                        horizon=horizon,
                        num_seeds=1,
                        chunk_iterations=chunk_iterations,
                        num_iterations=chunk_iterations,
                    )
                    try:
                        configs.append(base.replace(**changes))
                    except ValueError as e:
                        raise cli.UsageError(
                            f"{backbone} {algo} {n} episodes x {horizon} rounds: {e}"
                        ) from None
    return configs


def print_now(line: str) -> None:
    """``print`` and flush: progress shows at once, also through a pipe."""
    print(line, flush=True)


def write_json(path: Path, result: dict) -> None:
    """Write ``result`` to ``path`` as indented JSON (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


#: ``skipped`` of a configuration not started because the sweep's time budget was spent.
OVER_BUDGET = "time budget spent"


def run(
    configs: Sequence[Config],
    repeats: int,
    matmul_size: int,
    out: Path | None,
    preset_name: str,
    log: Callable[[str], None] = print_now,
    device_counts: Sequence[int] = (1,),
    deadline: float | None = None,
    save: Callable[[dict], None] | None = None,
) -> dict:
    """Measure the matmul peak, then every configuration, the peak again after each one (every
    fraction of peak is against the best peak measured); the result is rewritten to ``out`` (or
    handed to ``save``) after each configuration (a sweep cut short keeps what it measured). A
    configuration not started by ``deadline`` (``time.perf_counter()`` seconds) is skipped."""
    save = save or functools.partial(write_json, out)
    peak = matmul_peak(matmul_size)
    log(f"float32 matmul peak on {runner.device_name()}: {si(peak, 'FLOP/s')} (n={matmul_size})")
    result = {
        "device": runner.device_name(),
        "jax_version": jax.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "preset": preset_name,
        "matmul_size": matmul_size,
        "matmul_peak_flops": peak,
        "matmul_peak_measurements": [peak],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "flops_method": "jaxpr count of one vmapped iteration: dot_general 2*M*N*K, elementwise "
        "float arithmetic 1 per output element, reductions 1 per input element; scan bodies "
        "times their length",
        "records": [],
        **records.provenance(),
    }
    runs = [(config, n) for config in configs for n in device_counts]
    for i, (config, n) in enumerate(runs, 1):
        if deadline is not None and time.perf_counter() > deadline:
            result["records"].append(config_record(config, num_devices=n, skipped=OVER_BUDGET))
        else:
            result["records"].append(measure_or_skip(config, repeats, peak, n))
            # The peak is measured again after each configuration and the best one is the peak:
            # on a shared or frequency-scaling host one measurement can be low by 10-20 %.
            result["matmul_peak_measurements"].append(matmul_peak(matmul_size))
            peak = result["matmul_peak_flops"] = max(result["matmul_peak_measurements"])
            for record in result["records"]:
                if record["flops_per_second"] is not None:
                    record["fraction_of_peak"] = record["flops_per_second"] / peak
        save(result)
        log(progress_line(i, len(runs), result["records"][-1]))
    return result


def quick_compilation() -> None:
    """``--quick``: compile without XLA's backend optimizations, as the test suite does. A smoke
    run then compiles in about half the time, and the speeds it reports are not representative.
    Takes effect only before JAX starts its backend (its first computation)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def force_host_devices(count: int) -> None:
    """``--host-devices``: split the host CPU into ``count`` JAX devices (before JAX starts)."""
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def slug(text: str) -> str:
    """``text`` for a file name: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def out_path(out: Path | None, prefix: str) -> Path:
    """``--out``, default ``RESULTS_DIR/PREFIX-DEVICE-DATE.json``; a folder is refused."""
    if out is not None and out.is_dir():
        raise cli.UsageError(f"--out {out} is a folder; give the JSON file's name")
    kind = slug(jax.devices()[0].device_kind)
    return out or RESULTS_DIR / f"{prefix}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def matmul_size(quick: bool) -> int:
    """``n`` of the peak's ``[n, n]`` matmul: 8192 on an accelerator, 2048 on a CPU, 1024 in a
    smoke run."""
    return 1024 if quick else 2048 if jax.default_backend() == "cpu" else 8192


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        quick_compilation()
    if args.host_devices:
        force_host_devices(args.host_devices)
    settings = QUICK if args.quick else FULL
    preset_name = args.preset or settings["preset"]
    chunk = args.chunk_iterations or settings["chunk"]
    configs = sweep_configs(
        preset_name,
        args.backbones,
        args.algos,
        args.episodes or settings["episodes"],
        chunk,
        args.horizon,
    )
    out = out_path(args.out, "sps")
    device_counts = args.devices or [jax.device_count()]
    if max(device_counts) > jax.device_count():
        raise cli.UsageError(
            f"--devices {max(device_counts)}: JAX sees {jax.device_count()} device(s) "
            "(--host-devices N splits a CPU into N)"
        )
    repeats = args.repeats or settings["repeats"]
    result = run(
        configs, repeats, matmul_size(args.quick), out, preset_name, device_counts=device_counts
    )
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
