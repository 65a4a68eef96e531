"""Steady-state speed of the fused training iteration for a preset (plus any field overrides).

    python -m benchmarks.iteration_speed --preset cpu --num-seeds 1
    python -m benchmarks.iteration_speed --preset mixed-pool --chunk-iterations 10

Compiles one chunk (time reported separately), runs it ``--repeats`` times, and prints
iterations/s, agent-steps/s (one action of one learning agent) and env-rounds/s (one round of
one episode). The sweep over backbones, algorithms and sizes, with FLOPs and memory, is
``benchmarks.sps``.
"""

from __future__ import annotations

import json
import sys
import time

import jax

from benchmarks import sps
from jaxcoop import cli, runner


def measure(config, repeats: int = 3) -> dict:
    """Compile seconds and steady-state rates of ``config`` (seeds vmapped)."""
    state, chunk, compile_seconds = runner.compile_seeds(config)
    state, metrics = chunk(state)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(repeats):
        state, metrics = chunk(state)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / (repeats * config.chunk_iterations)
    return {
        "device": runner.device_name(),
        "compile_seconds": round(compile_seconds, 2),
        "seconds_per_iteration": seconds,
        **sps.rates(config, seconds),
    }


def main(argv=None) -> None:
    config, name, *_ = cli.parse(argv, description=__doc__.splitlines()[0])
    result = measure(config)
    print(json.dumps({"preset": name, **result}, indent=2))


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
