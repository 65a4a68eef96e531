"""Shared fixtures: one rollout of the ``tiny`` preset, compiled once per session, and a writer
of results folders with chosen parameters (no training).

Implicit rank promotion is an error in the whole suite (``jax_numpy_rank_promotion="raise"``).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

# The suite compiles many small programs and runs each briefly: XLA's CPU backend optimizations
# cost more compile time (2-4x) than they save in run time. Set before JAX creates its backend.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# Many tests build the same small programs anew (new closures, so jit's own cache misses) and
# many run fresh Python processes: a persistent compilation cache for this session, inherited by
# the subprocesses through the environment, compiles each program once (a tiny run's train step:
# about 9 CPU-s to compile, 2 to trace and fetch). Removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="jaxcoop-test-xla-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import jaxcoop  # noqa: E402
from jaxcoop import checkpoints, networks, records, rollout, strategies, train  # noqa: E402
from jaxcoop.state import TrainState  # noqa: E402


@pytest.fixture(scope="session")
def tiny_rollout():
    """One update's ``Batch`` for the tiny preset with 3 learners (rings where succ != pred).

    Every tabular co-player is tit-for-tat, so its moves are predictable from the learner's.
    """
    config = jaxcoop.preset("tiny").replace(num_learners=3)
    n, k, s = config.num_learners, config.num_tabular_episodes, config.num_pair_slots
    agent = networks.make_agent(config)
    game = jaxcoop.make_game(config.game, config.horizon)
    params_key, pair_key, rollout_key = jax.random.split(jax.random.key(7), 3)
    params = jax.vmap(lambda key: networks.init_params(agent, key))(jax.random.split(params_key, n))
    coplayers = jax.numpy.broadcast_to(strategies.tit_for_tat(), (n, k, 5))
    succ, pred = rollout.pairing(n, s, pair_key)
    collect = jax.jit(lambda p, key, c, su, pr: rollout.collect(agent, p, key, game, c, su, pr))
    batch = collect(params, rollout_key, coplayers, succ, pred)
    return SimpleNamespace(
        config=config,
        agent=agent,
        game=game,
        params=params,
        coplayers=coplayers,
        succ=succ,
        pred=pred,
        batch=batch,
    )


def _write_run(out: Path, config: jaxcoop.Config, edit_params=None) -> Path:
    """A results folder ``out`` with one checkpoint (iteration 2) of freshly initialized
    parameters of ``config``'s agents, first changed in place by ``edit_params(params)`` (numpy
    ``[S, N, ...]``). It holds what ``load_agent`` and ``--frozen-coplayer`` read (no optimizer
    state: it cannot be resumed)."""
    agent = networks.make_agent(config)
    keys = jax.random.split(jax.random.key(config.seed), (config.num_seeds, config.num_learners))
    init = jax.jit(jax.vmap(jax.vmap(lambda key: networks.init_params(agent, key))))
    params = jax.device_get(init(keys))
    if edit_params is not None:
        edit_params(params)
    state = TrainState(params, {}, jax.random.key(0), np.full((config.num_seeds,), 2, np.int32))
    out = records.prepare(out)
    records.write_config(out, config, None)
    writer = checkpoints.Writer(out, 1)
    shape = (config.num_seeds, 2, config.num_learners)
    history = {k: np.zeros(shape, np.float32) for k in train.metric_names(config)}
    writer.save(2, state, history, {"iteration": 2})
    writer.close()
    return out


@pytest.fixture(scope="session")
def write_run():
    """``write_run(out, config, edit_params=None) -> out``: a results folder whose one
    checkpoint holds ``config``'s initial parameters, edited in place (no training)."""
    return _write_run
