"""Where the GRU's training time goes: a scan of ``T`` GRU cells over ``L`` learners' ``B``
episodes (the CPU target's shape by default: 2 x 1,024 x 100 rounds, GRU 128, tokens 32),
forward alone and forward + backward, in four variants.

    python -m benchmarks.gru_backward
    python -m benchmarks.gru_backward --episodes 256 --repeats 9

* ``forward``: the scan, no gradient;
* ``custom``: forward + backward through ``networks.gru_cell`` (the hand-written backward);
* ``autodiff``: forward + backward, JAX differentiating the cell's equations;
* ``no_weight_grads``: ``custom`` with the weights held constant, so each round's backward does
  only the elementwise gate work and the two cotangent matmuls (recurrent, input);
* ``weight_grads_batched``: the weights' gradients of all rounds as one contraction over
  ``T x B`` (what deferring them out of the scan would cost), on stored arrays of the same shapes.

Prints one JSON object: median seconds per variant and the matmul GFLOP of each.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from benchmarks.sps import positive_int
from jaxcoop import cli
from jaxcoop.networks import _gru_forward, gru_cell


def _median_seconds(f: Callable, args: tuple, repeats: int) -> float:
    jax.block_until_ready(f(*args))  # compile and warm up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _scan(cell: Callable) -> Callable:
    """``(params [L, ...], xs [T, L, B, E]) -> hidden states [T, L, B, H]`` with ``cell``."""

    def sequence(params, xs_TxLxBxE):
        size = params[2].shape[1]

        def body(h_LxBxH, x_LxBxE):
            h_LxBxH = jax.vmap(cell)(params, h_LxBxH, x_LxBxE)
            return h_LxBxH, h_LxBxH

        h0 = jnp.zeros((*xs_TxLxBxE.shape[1:3], size), xs_TxLxBxE.dtype)
        return jax.lax.scan(body, h0, xs_TxLxBxE)[1]

    return sequence


def _autodiff_cell(params, h, x):
    return _gru_forward(params, h, x)[0]


def _constant_weights_cell(params, h, x):
    return gru_cell(jax.tree.map(jax.lax.stop_gradient, params), h, x)


def measure(
    learners: int = 2,
    episodes: int = 1024,
    rounds: int = 100,
    hidden: int = 128,
    embed: int = 32,
    repeats: int = 5,
) -> dict:
    """Median seconds of each variant (module docstring) and its matmul GFLOP."""
    keys = jax.random.split(jax.random.key(0), 4)
    gates = 3 * hidden
    params = (
        0.1 * jax.random.normal(keys[0], (learners, embed, gates)),
        jnp.zeros((learners, gates)),
        0.1 * jax.random.normal(keys[1], (learners, hidden, gates)),
        jnp.zeros((learners, hidden)),
    )
    xs = jax.random.normal(keys[2], (rounds, learners, episodes, embed))

    def loss(sequence):
        return lambda p, x: jnp.sum(sequence(p, x) ** 2)

    forward = jax.jit(lambda p, x: jnp.sum(_scan(gru_cell)(p, x)))
    custom = jax.jit(jax.grad(loss(_scan(gru_cell)), argnums=(0, 1)))
    autodiff = jax.jit(jax.grad(loss(_scan(_autodiff_cell)), argnums=(0, 1)))
    no_weight_grads = jax.jit(jax.grad(loss(_scan(_constant_weights_cell)), argnums=1))
    hs = jax.random.normal(keys[3], (rounds, learners, episodes, hidden))
    dgates = jnp.ones((rounds, learners, episodes, gates))
    batched = jax.jit(
        lambda h, x, g: (
            jnp.einsum("tlbh,tlbg->lhg", h, g),
            jnp.einsum("tlbe,tlbg->leg", x, g),
            g.sum((0, 2)),
        )
    )
    one_pass = 2 * rounds * learners * episodes * (embed + hidden) * gates  # FLOPs
    seconds = {
        "forward": _median_seconds(forward, (params, xs), repeats),
        "custom": _median_seconds(custom, (params, xs), repeats),
        "autodiff": _median_seconds(autodiff, (params, xs), repeats),
        "no_weight_grads": _median_seconds(no_weight_grads, (params, xs), repeats),
        "weight_grads_batched": _median_seconds(batched, (hs, xs, dgates), repeats),
    }
    gflop = {
        "forward": one_pass / 1e9,
        "custom": 3 * one_pass / 1e9,
        "autodiff": 3 * one_pass / 1e9,
        "no_weight_grads": 2 * one_pass / 1e9,
        "weight_grads_batched": one_pass / 1e9,
    }
    shape = dict(learners=learners, episodes=episodes, rounds=rounds, hidden=hidden, embed=embed)
    return {"device": jax.devices()[0].device_kind, **shape, "seconds": seconds, "gflop": gflop}


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (
        ("learners", 2),
        ("episodes", 1024),
        ("rounds", 100),
        ("hidden", 128),
        ("embed", 32),
        ("repeats", 5),
    ):
        p.add_argument(f"--{name}", type=positive_int, default=default, help=f"default {default}")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    print(json.dumps(measure(**vars(args)), indent=2))


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
