"""Optional logging of training metrics to TensorBoard and Weights & Biases.

Both backends are off by default and their packages are optional extras (``jaxcoop[tensorboard]``,
``jaxcoop[wandb]``): nothing here imports them at module import time, only when a sink is opened.
A sink takes one dict of scalars per step (``chunk_scalars`` of a chunk's metrics); NaN values are
never written.
"""

from __future__ import annotations

import math
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np

TENSORBOARD_DIR = "tensorboard"

_TENSORBOARD_HINT = (
    "--tensorboard needs the tensorboardX package: "
    "pip install 'jaxcoop[tensorboard]' (or pip install tensorboardX)"
)
_WANDB_HINT = "--wandb needs the wandb package: pip install 'jaxcoop[wandb]'"


class LoggerUnavailable(RuntimeError):
    """A requested logging backend's package is not installed."""


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return find_spec(module) is not None
    except ValueError:  # Already in sys.modules with no __spec__ (e.g. injected): importable.
        return sys.modules.get(module) is not None
    except ImportError:
        return False


def check_available(tensorboard: bool, wandb_project: str | None) -> None:
    """Raise ``LoggerUnavailable`` (naming the flag and the install command) if a requested
    backend's package is missing. Cheap: call it before any compilation."""
    if tensorboard and not _installed("tensorboardX"):
        raise LoggerUnavailable(_TENSORBOARD_HINT)
    if wandb_project is not None and not _installed("wandb"):
        raise LoggerUnavailable(_WANDB_HINT)


def _without_nan(scalars: dict[str, float]) -> dict[str, float]:
    """``scalars`` as Python floats, without the NaN ones."""
    out = {name: float(value) for name, value in scalars.items()}
    return {name: value for name, value in out.items() if not math.isnan(value)}


class TensorBoardSink:
    """Scalars to a TensorBoard event file in ``log_dir`` (through ``tensorboardX``)."""

    def __init__(self, log_dir: Path):
        from tensorboardX import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write every non-NaN scalar at ``step`` and flush."""
        for name, value in _without_nan(scalars).items():
            self.writer.add_scalar(name, value, int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """Scalars to a Weights & Biases run; ``resume_id`` continues an earlier run (``run_id``)."""

    def __init__(
        self,
        project: str,
        run_name: str,
        config: dict,
        run_dir: Path,
        resume_id: str | None = None,
    ):
        import wandb

        self.run = wandb.init(
            project=project,
            name=run_name,
            config=config,
            dir=str(run_dir),
            id=resume_id,
            resume="allow" if resume_id else None,
        )
        self.run_id: str = self.run.id

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Log every non-NaN scalar at ``step`` (nothing when all are NaN)."""
        values = _without_nan(scalars)
        if values:
            self.run.log(values, step=int(step))

    def close(self) -> None:
        self.run.finish()


def open_sinks(
    run_dir: Path,
    *,
    tensorboard: bool,
    wandb_project: str | None,
    run_name: str,
    config: dict,
    wandb_id: str | None = None,
) -> list:
    """The requested sinks (TensorBoard into ``run_dir / "tensorboard"``, W&B into ``run_dir``);
    ``[]`` when none is requested. Raises ``LoggerUnavailable`` if a package is missing."""
    check_available(tensorboard, wandb_project)
    run_dir = Path(run_dir)
    sinks: list = []
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir / TENSORBOARD_DIR))
    if wandb_project is not None:
        sinks.append(WandbSink(wandb_project, run_name, config, run_dir, resume_id=wandb_id))
    return sinks


def chunk_scalars(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """One chunk's metrics, each ``[S, I, N]`` (seeds, iterations, learners), as
    ``{"learner{n}/{name}": mean over seeds and iterations ignoring NaN}``; all-NaN entries are left
    out."""
    scalars: dict[str, float] = {}
    for name, value in metrics.items():
        value = np.asarray(value, dtype=np.float64)
        if value.ndim != 3:
            raise ValueError(f"metric {name!r} has shape {value.shape}, expected [S, I, N]")
        present = ~np.isnan(value)
        count = present.sum(axis=(0, 1))  # [N]
        total = np.where(present, value, 0.0).sum(axis=(0, 1))  # [N]
        for n in range(value.shape[2]):
            if count[n] > 0:
                scalars[f"learner{n}/{name}"] = float(total[n] / count[n])
    return scalars
