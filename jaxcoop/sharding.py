"""Spreading a run over devices and hosts: the device mesh, where each array lives, and the
constraint that splits every learner's episodes across devices.

The mesh has three axes:
  * ``"seed"``: independent seeds (``vmap(..., spmd_axis_name="seed")``), no communication;
  * ``"learner"``: the learners (their parameters, optimizer states, updates and rollouts);
    learner-vs-learner episodes exchange actions across it every round;
  * ``"episode"``: each learner's episodes (seats); XLA (GSPMD) inserts the collectives, e.g. the
    all-reduce of the gradients summed over episodes.
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

SEED, LEARNER, EPISODE = "seed", "learner", "episode"

#: ``shard(x, axis, learners=True)``: ``x`` with its ``axis`` split over the mesh's episode axis
#: and (``learners``) its axis 0 over the learner axis.
Sharder = Callable[..., jax.Array]


def no_sharding(x: jax.Array, axis: int, learners: bool = True) -> jax.Array:
    """The ``Sharder`` of a single device: ``x`` unchanged."""
    return x


def make_mesh(
    num_seeds: int, num_learners: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A ``("seed", "learner", "episode")`` mesh over ``devices`` (default: every device of every
    process).

    Seeds take as many devices as divide both ``num_seeds`` and the device count (they need no
    communication), then learners as many as divide ``num_learners`` and what is left; the
    remaining factor splits episodes.
    """
    devices = list(jax.devices() if devices is None else devices)
    seeds = math.gcd(num_seeds, len(devices))
    learners = math.gcd(num_learners, len(devices) // seeds)
    shape = (seeds, learners, len(devices) // (seeds * learners))
    return Mesh(np.array(devices, dtype=object).reshape(shape), (SEED, LEARNER, EPISODE))


def is_sharded(mesh: Mesh | None) -> bool:
    """Whether ``mesh`` splits learners or episodes (seeds alone need no constraint)."""
    return mesh is not None and mesh.shape[LEARNER] * mesh.shape[EPISODE] > 1


def episode_sharder(mesh: Mesh | None) -> Sharder:
    """The ``Sharder`` of ``mesh`` (the identity when it splits neither learners nor episodes, so
    single-device programs stay unchanged)."""
    if not is_sharded(mesh):
        return no_sharding

    def shard(x: jax.Array, axis: int, learners: bool = True) -> jax.Array:
        spec = [None] * x.ndim
        spec[axis] = EPISODE
        if learners:
            spec[0] = LEARNER
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))

    return shard


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Seed-stacked arrays ``[S, ...]``: split over ``"seed"``, replicated along the rest."""
    return NamedSharding(mesh, P(SEED))


def state_shardings(mesh: Mesh, state: Any) -> Any:
    """Shardings of a seed-stacked ``TrainState``: learner-stacked parameters and learner states
    ``[S, N, ...]`` over ``"seed"`` and ``"learner"``, everything else over ``"seed"``."""
    by_learner = NamedSharding(mesh, P(SEED, LEARNER))
    shardings = jax.tree.map(lambda _: seed_sharding(mesh), state)
    return shardings.replace(
        params=jax.tree.map(lambda _: by_learner, state.params),
        learner_state=jax.tree.map(lambda _: by_learner, state.learner_state),
    )


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


def put(tree: Any, shardings: Any) -> Any:
    """Host arrays (the same on every process) as global arrays laid out by ``shardings`` (one
    ``NamedSharding`` for every leaf, or a matching tree of them); PRNG key arrays keep their
    type."""

    def one(x, sharding):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = one(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    if isinstance(shardings, NamedSharding):
        return jax.tree.map(lambda x: one(x, shardings), tree)
    return jax.tree.map(one, tree, shardings)
