"""Spreading a run over devices and hosts: the device mesh, where each array lives, and the
constraint that splits every learner's episodes across devices.

The mesh has two axes:
  * ``"seed"``: independent seeds (``vmap(..., spmd_axis_name="seed")``), no communication;
  * ``"episode"``: each learner's episodes (seats) inside one seed; XLA (GSPMD) inserts the
    collectives, e.g. the all-reduce of the gradients summed over episodes.
Parameters and optimizer states are replicated along ``"episode"``. Random numbers are
partitionable (``jax_threefry_partitionable``), so a run's numbers do not depend on how many
devices it uses (up to the order of floating-point sums).

Across hosts, call ``jax.distributed.initialize`` first (``initialize_distributed``); the mesh
then spans every process's devices and the same program runs on all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEED, EPISODE = "seed", "episode"

#: ``shard(x, axis)``: ``x`` with its ``axis`` split over the episode axis of the mesh.
Sharder = Callable[[jax.Array, int], jax.Array]


def no_sharding(x: jax.Array, axis: int) -> jax.Array:
    """The ``Sharder`` of a single device: ``x`` unchanged."""
    return x


def make_mesh(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``("seed", "episode")`` mesh over ``devices`` (default: every device of every process).

    Seeds take as many devices as divide both ``num_seeds`` and the device count (they need no
    communication); the remaining factor splits episodes.
    """
    devices = list(jax.devices() if devices is None else devices)
    seeds = math.gcd(num_seeds, len(devices))
    grid = np.array(devices, dtype=object).reshape(seeds, len(devices) // seeds)
    return Mesh(grid, (SEED, EPISODE))


def episode_sharder(mesh: Mesh) -> Sharder:
    """The ``Sharder`` that splits an episode axis over ``mesh``'s ``"episode"`` axis (the
    identity when that axis has one device, so single-device programs stay unchanged)."""
    if mesh.shape[EPISODE] == 1:
        return no_sharding

    def shard(x: jax.Array, axis: int) -> jax.Array:
        spec = [None] * x.ndim
        spec[axis] = EPISODE
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))

    return shard


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Seed-stacked arrays ``[S, ...]``: split over ``"seed"``, replicated along ``"episode"``."""
    return NamedSharding(mesh, P(SEED))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (what every host can read back)."""
    return NamedSharding(mesh, P())


def to_host(tree: Any, mesh: Mesh | None = None) -> Any:
    """``tree`` as numpy arrays on this host, gathering shards held by other processes first."""
    if mesh is not None and jax.process_count() > 1:
        tree = jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)
    return jax.device_get(tree)


def is_primary() -> bool:
    """Whether this process writes the run's records (process 0; always true on one host)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches this point (nothing to wait for on one host)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``): on a Cloud TPU slice, Slurm or
    Open MPI every argument is detected; elsewhere give all three (or set
    ``JAX_COORDINATOR_ADDRESS`` and pass the other two)."""
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Host arrays (the same on every process) as global arrays laid out by ``sharding``; PRNG
    key arrays keep their type."""

    def one(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                one(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)
