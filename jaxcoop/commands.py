"""What a command line asks of the library, as the library takes it: ``ExperimentCommand`` (a
parsed experiment command, ``experiment.run_all``'s input) and ``UsageError`` (a command line
that cannot work). ``cli`` builds both; ``experiment`` uses them without importing ``cli``."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from jaxcoop.config import DEFAULT_CHECKPOINTING, CheckpointSchedule


class UsageError(ValueError):
    """A command line that cannot work; the message says what and what is allowed."""


class ExperimentCommand(NamedTuple):
    """A parsed experiment command line: the ``scale`` (``presets.SCALES``) and why, the results
    folder, the backbone and algorithm (each brings its defaults at the scale), the other field
    overrides applied to every run, the devices, and when every run saves checkpoints (each
    run's ``chunk_iterations`` is checked against it before anything runs)."""

    scale: str
    why: str
    out: Path
    backbone: str | None
    algo: str
    changes: dict
    devices: list | None = None
    checkpointing: CheckpointSchedule = DEFAULT_CHECKPOINTING
