"""Checkpoints of a run with orbax-checkpoint, in ``RUN_DIR/checkpoints/<iteration>/``.

A checkpoint has four items:
  * ``params``: every seed's and learner's parameters ``[S, N, ...]``;
  * ``train``: optimizer states, PRNG keys (as key data), iteration counters ``[S]`` and the frozen
    co-player's parameters ``[S, ...]`` when there is one;
  * ``history``: the metrics so far, ``{name: float32 [S, I, N]}`` (orbax reserves the name
    ``metrics``);
  * ``meta``: JSON with the resolved config, the iteration and the run's bookkeeping.
Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash
mid-write leaves the previous checkpoint usable; only the newest ``keep`` are kept.

When a run saves them is ``config.CheckpointSchedule``, an option of the host loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcoop.records import RunFolderError, describe
from jaxcoop.state import TrainState

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("params", "train", "history", "meta")


class Checkpoint(NamedTuple):
    """A restored checkpoint: ``state`` (``TrainState`` of numpy arrays, seed axis first, or
    ``None`` when only ``params`` was asked for), ``params``, ``metrics`` ``{name: [S, I, N]}``,
    ``meta`` (dict) and the ``path`` it came from."""

    state: TrainState | None
    params: Any
    metrics: dict[str, np.ndarray] | None
    meta: dict
    path: Path


def _train_tree(state: TrainState) -> dict:
    tree = {  # "opt_state": the name ``learner_state`` had when the first checkpoints were written
        "opt_state": state.learner_state,
        "key_data": jax.random.key_data(state.key),
        "iteration": state.iteration,
    }
    if state.coplayer_params is not None:
        tree["coplayer_params"] = state.coplayer_params
    return tree


def directory(run_dir: Path) -> Path:
    return Path(run_dir).absolute() / CHECKPOINT_DIR


class Writer:
    """Saves checkpoints of one run (asynchronously; ``close`` waits for pending writes)."""

    def __init__(self, run_dir: Path, keep: int):
        self.path = directory(run_dir)
        try:
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
            self.manager = ocp.CheckpointManager(self.path, options=options, item_names=ITEMS)
        except Exception as e:
            raise RunFolderError(
                f"cannot create the checkpoint folder {self.path} ({describe(e)})"
            ) from e

    def _failed(self, e: Exception, iteration: int | None) -> RunFolderError:
        what = f"checkpoint {self.path / str(iteration)}" if iteration else "a checkpoint"
        kept = self.manager.all_steps()
        return RunFolderError(
            f"could not write {what} ({describe(e)}). Nothing earlier was lost: "
            f"checkpoints {kept or 'none'} in {self.path} and {self.path.parent / 'metrics.csv'} "
            "are intact; free space (or fix the folder) and continue with --resume "
            f"{self.path.parent}"
        )

    def save(
        self, iteration: int, state: TrainState, metrics: dict[str, np.ndarray], meta: dict
    ) -> None:
        """Start writing the checkpoint of ``iteration``: host ``state`` (seed axis first),
        ``metrics`` ``{name: [S, I, N]}`` and ``meta`` (JSON-serializable)."""
        state = jax.device_get(state)
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(jax.device_get(_train_tree(state))),
            history=ocp.args.StandardSave({k: np.asarray(v) for k, v in metrics.items()}),
            meta=ocp.args.JsonSave(meta),
        )
        try:
            self.manager.save(iteration, args=args)
        except Exception as e:
            raise self._failed(e, iteration) from e

    def close(self) -> None:
        """Wait for pending writes (raising if one failed) and release the manager."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._failed(e, None) from e
        finally:
            self.manager.close()


def _first_mismatch(expected, found) -> str | None:
    """The first leaf whose shape or dtype differs between two trees (or a structure change)."""
    paths_e, tree_e = jax.tree_util.tree_flatten_with_path(expected)
    paths_f, tree_f = jax.tree_util.tree_flatten_with_path(found)
    if tree_e != tree_f:
        return f"its structure differs ({len(paths_f)} arrays, expected {len(paths_e)})"
    for (path, e), (_, f) in zip(paths_e, paths_f, strict=True):
        if e.shape != f.shape or e.dtype != f.dtype:
            where = jax.tree_util.keystr(path)
            return f"{where} is {f.dtype}{list(f.shape)}, expected {e.dtype}{list(e.shape)}"
    return None


def _reader(path: Path) -> ocp.CheckpointManager:
    """A manager that only reads (``create=False``: it makes no folder and saves nothing)."""
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))


def steps(run_dir: Path) -> list[int]:
    """Iterations with a complete checkpoint, oldest first (``[]`` when there are none)."""
    path = directory(run_dir)
    if not path.is_dir():
        return []
    manager = _reader(path)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def latest_step(run_dir: Path) -> int:
    """The newest checkpoint's iteration; ``RunFolderError`` when the run has none."""
    found = steps(run_dir)
    if not found:
        raise RunFolderError(
            f"{directory(run_dir)} holds no complete checkpoint: the run stopped before its "
            "first checkpoint, so there is nothing to continue or load; start it again"
        )
    return found[-1]


def restore(run_dir: Path, step: int | None = None, target: TrainState | None = None) -> Checkpoint:
    """Read a checkpoint (default: the newest).

    With ``target`` (a seed-stacked ``TrainState`` whose leaves give shapes and dtypes, e.g. from
    ``jax.eval_shape``) everything is restored into that structure; without it only ``params``
    and ``meta`` are read. Raises ``RunFolderError`` naming the checkpoint when it is unreadable
    or does not fit ``target``.
    """
    step = latest_step(run_dir) if step is None else step
    path = directory(run_dir) / str(step)
    items = {"params": ocp.args.StandardRestore(), "meta": ocp.args.JsonRestore()}
    if target is not None:
        abstract = jax.eval_shape(lambda s: (s.params, _train_tree(s)), target)
        params, train = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
        items["params"] = ocp.args.StandardRestore(params)
        items["train"] = ocp.args.StandardRestore(train)
        items["history"] = ocp.args.StandardRestore()
    manager = _reader(directory(run_dir))
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:
        older = [s for s in steps(run_dir) if s < step]
        hint = (
            f"; older checkpoints {older} are untouched: move {path} aside to use the newest"
            if older
            else ""
        )
        what = "does not match this run's config" if target is not None else "cannot be read"
        raise RunFolderError(f"checkpoint {path} {what} ({describe(e)}){hint}") from e
    finally:
        manager.close()
    state = metrics = None
    if target is not None:
        mismatch = _first_mismatch((params, train), (restored.params, restored.train))
        if mismatch:
            raise RunFolderError(f"checkpoint {path} does not match this run's config: {mismatch}")
        train = restored.train
        state = TrainState(
            params=restored.params,
            learner_state=train["opt_state"],
            key=jax.random.wrap_key_data(train["key_data"]),
            iteration=train["iteration"],
            coplayer_params=train.get("coplayer_params"),
        )
        metrics = {k: np.asarray(v) for k, v in restored.history.items()}
    return Checkpoint(state, restored.params, metrics, dict(restored.meta), path)
