"""Command-line handling shared by the experiments: preset + field overrides -> ``Config``.

Every ``Config`` field is a flag (``--lr 1e-3``, ``--num-seeds 4``, ``--opponent-id true``);
``--resume``, ``--init-from``, ``--frozen-coplayer``, ``--tensorboard`` and ``--wandb`` say where a
run comes from and where it logs; ``--checkpoint-every`` and ``--keep-checkpoints`` when it saves
(``CheckpointSchedule``); ``--devices`` and ``--distributed`` say where it runs. Errors
(unknown flag, bad value, unknown preset, unusable run folder) stop with one message before any
compilation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax

from jaxcoop import runner, sharding
from jaxcoop.commands import ExperimentCommand, UsageError
from jaxcoop.config import (
    DEFAULT_CHECKPOINTING,
    RESUMABLE_FIELDS,
    CheckpointSchedule,
    Config,
    field_names,
)
from jaxcoop.loggers import LoggerUnavailable
from jaxcoop.presets import PAPER_PRESETS, PRESETS, SCALES, preset, scaled
from jaxcoop.records import RunFolderError
from jaxcoop.trained import Source

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _flag(name: str) -> str:
    """The command-line flag of a config field: ``num_seeds`` -> ``--num-seeds``."""
    return "--" + name.replace("_", "-")


def _parse_value(name: str, kind: str, text: str):
    try:
        if kind == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError:
        allowed = "true or false" if kind == "bool" else f"a value of type {kind}"
        raise UsageError(f"{_flag(name)} {text!r} is invalid; allowed: {allowed}") from None


def default_scale() -> tuple[str, str]:
    """``('paper', why)`` on an accelerator, ``('cpu', why)`` otherwise."""
    backend = jax.default_backend()
    if backend in ("gpu", "tpu", "cuda", "rocm"):
        return "paper", f"an accelerator ({backend}) is present: paper scale"
    return "cpu", "no accelerator found (JAX backend 'cpu'): scaled down for a CPU"


def default_preset() -> tuple[str, str]:
    """``('mixed-pool', why)`` on an accelerator, ``('cpu', why)`` otherwise."""
    scale, why = default_scale()
    return ("mixed-pool" if scale == "paper" else "cpu"), why


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one ``UsageError`` line (through ``main_guard``,
    exit status 2) instead of the usage text; ``--help`` still prints everything."""

    def error(self, message):
        raise UsageError(message)


def parser(description: str) -> argparse.ArgumentParser:
    p = ArgumentParser(
        description=description,
        epilog="Every Config field is also a flag: " + " ".join(map(_flag, field_names())),
    )
    p.add_argument(
        "--preset",
        help=f"one of {sorted(PRESETS)}; default: mixed-pool on an accelerator, cpu otherwise",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        help="a paper preset (--preset mixed-pool, step1-tabular, ...) at this scale, as the "
        "experiment commands run it (e.g. --preset step2-extort --scale cpu: the mechanism's "
        "step 2 at the cpu scale); default: the preset as it is",
    )
    p.add_argument("--out", type=Path, help="results folder (default: a new folder under runs/)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a stopped run from its newest checkpoint (of the config fields only "
        + ", ".join(map(_flag, RESUMABLE_FIELDS))
        + " may be given with it)",
    )
    p.add_argument(
        "--init-from",
        action="append",
        default=[],
        metavar="RUN_DIR[:LEARNER]",
        help="start the learners from a run's newest checkpoint (once for all learners or once "
        "per learner; without :LEARNER learner n starts from the source's learner n)",
    )
    p.add_argument(
        "--frozen-coplayer",
        metavar="RUN_DIR[:LEARNER]",
        help="play the learners' non-tabular episodes against this trained agent, held fixed "
        "(or 'bayes': the Bayesian in-context learner of jaxcoop.reference, planning for the "
        "run's horizon)",
    )
    p.add_argument(
        "--evaluation-episodes",
        type=int,
        default=256,
        metavar="N",
        help="episodes against each co-player of the evaluation panel at the end (default 256; "
        "the in-context efficiency's standard error shrinks as 1/sqrt(N))",
    )
    add_checkpoint_flags(p)
    p.add_argument("--tensorboard", action="store_true", help="also log to RUN_DIR/tensorboard")
    p.add_argument("--wandb", metavar="PROJECT", help="also log to this Weights & Biases project")
    hosts = p.add_argument_group(
        "devices and hosts",
        "a run uses every device it sees (seeds, then learners, then each learner's episodes split "
        "over them; the numbers do not depend on the device count up to float32 rounding)",
    )
    hosts.add_argument(
        "--devices", type=int, metavar="N", help="use only the first N devices (default: all)"
    )
    hosts.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host run with jax.distributed.initialize() (detected on Cloud TPU, "
        "Slurm and Open MPI; elsewhere also give the three flags below)",
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    return p


def add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    """``--checkpoint-every`` and ``--keep-checkpoints`` (``CheckpointSchedule``)."""
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="save a checkpoint every N iterations, a multiple of --chunk-iterations (0: after "
        "every chunk); default: after the first chunk that ends 5 minutes of training or more "
        "after the previous one; the last chunk is always saved. Also with --resume",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=DEFAULT_CHECKPOINTING.keep,
        metavar="K",
        help="keep the newest K checkpoints (default %(default)s). Also with --resume",
    )


def _checkpointing(args, config: Config | None) -> CheckpointSchedule:
    """The flags' ``CheckpointSchedule``, checked against ``config`` when there is one."""
    try:
        schedule = CheckpointSchedule(args.checkpoint_every, args.keep_checkpoints)
        if config is not None:
            schedule.check(config.chunk_iterations)
    except ValueError as e:
        raise UsageError(str(e).replace("checkpoint_every=", "--checkpoint-every ")) from None
    return schedule


def _join_hosts(args) -> None:
    """``jax.distributed.initialize`` as the flags say (before anything touches a device)."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if not args.distributed and all(x is None for x in explicit):
        return
    if any(x is None for x in explicit) and any(x is not None for x in explicit):
        raise UsageError(
            "--coordinator, --num-processes and --process-id go together (or give only "
            "--distributed where the cluster is detected)"
        )
    if args.num_processes is not None and not 0 <= args.process_id < args.num_processes < 2**16:
        raise UsageError(
            f"--process-id {args.process_id} with --num-processes {args.num_processes}; "
            "allowed: 0 <= process id < number of processes"
        )
    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def _devices(count: int | None) -> list | None:
    """The first ``count`` devices (``None``: all), checked against what this run can see."""
    if count is None:
        return None
    available = jax.device_count()
    if not 1 <= count <= available:
        raise UsageError(f"--devices {count}; allowed: 1 to {available} (the devices JAX sees)")
    return jax.devices()[:count]


class Command(NamedTuple):
    """A parsed command line. ``config`` is ``None`` with ``resume`` (the run folder has it);
    ``changes`` are the field flags given."""

    config: Config | None
    preset: str | None
    out: Path | None
    why: str
    changes: dict
    resume: Path | None = None
    init_from: tuple[Source, ...] = ()
    frozen_coplayer: Source | None = None
    tensorboard: bool = False
    wandb: str | None = None
    devices: list | None = None
    evaluation_episodes: int = 256
    checkpointing: CheckpointSchedule = DEFAULT_CHECKPOINTING


def field_changes(rest: list[str]) -> dict:
    """Config field flags (``--lr 1e-3`` or ``--lr=1e-3``) as ``{field: value}``."""
    kinds = {f.name: f.type for f in dataclasses.fields(Config)}
    rest, changes, i = list(rest), {}, 0
    while i < len(rest):
        flag = rest[i]
        if flag.startswith("--") and "=" in flag:
            flag, value = flag.split("=", 1)
            rest[i : i + 1] = [flag, value]
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name not in kinds:
            raise UsageError(
                f"unknown option {flag!r}; allowed: --preset, --out, "
                + ", ".join(map(_flag, kinds))
            )
        if i + 1 >= len(rest):
            raise UsageError(f"{flag} needs a value")
        changes[name] = _parse_value(name, kinds[name], rest[i + 1])
        i += 2
    return changes


def parse(argv: list[str] | None, description: str) -> Command:
    """Parse a command line (see ``Command``); with ``--distributed`` (or ``--coordinator`` ...)
    this process joins the multi-host run first."""
    p = parser(description)
    args, rest = p.parse_known_args(argv)
    _join_hosts(args)
    changes = field_changes(rest)
    if args.evaluation_episodes < 1:
        raise UsageError(
            f"--evaluation-episodes {args.evaluation_episodes}; allowed: an integer >= 1"
        )
    logging = dict(
        tensorboard=args.tensorboard,
        wandb=args.wandb,
        devices=_devices(args.devices),
        evaluation_episodes=args.evaluation_episodes,
    )
    if args.resume is not None:
        for flag, given in [
            ("--preset", args.preset),
            ("--scale", args.scale),
            ("--out", args.out),
            ("--init-from", args.init_from),
            ("--frozen-coplayer", args.frozen_coplayer),
        ]:
            if given:
                raise UsageError(f"{flag} cannot be used with --resume: the run folder has it")
        fixed = sorted(set(changes) - set(RESUMABLE_FIELDS))
        if fixed:
            raise UsageError(
                "--resume continues the run as it was started; "
                + ", ".join(map(_flag, fixed))
                + " would change its training program (allowed with --resume: "
                + ", ".join(map(_flag, RESUMABLE_FIELDS))
                + ")"
            )
        logging["checkpointing"] = _checkpointing(args, None)
        return Command(None, None, args.resume, "resumed", changes, args.resume, **logging)
    if args.preset is None:
        name, why = default_preset()
    else:
        name, why = args.preset, "chosen with --preset"
    if args.scale is not None and name not in PAPER_PRESETS:
        raise UsageError(
            f"--scale {args.scale} scales a paper preset ({', '.join(PAPER_PRESETS)}); "
            f"--preset {name} is a scale of its own"
        )
    backbone, algo = changes.get("backbone"), changes.get("algo")
    try:
        if args.scale is None:
            config = preset(name, backbone, algo).replace(**changes)
        else:
            config = scaled(name, args.scale, backbone, algo).replace(**changes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    stem = name if args.scale is None else f"{name}-{args.scale}"
    if args.scale is not None:
        name = f"{name} ({args.scale} scale)"
    out = args.out or Path("runs") / f"{stem}-{config.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Command(
        config,
        name,
        out,
        why,
        changes,
        init_from=tuple(Source.parse(text) for text in args.init_from),
        frozen_coplayer=None
        if args.frozen_coplayer is None
        else Source.parse(args.frozen_coplayer),
        checkpointing=_checkpointing(args, config),
        **logging,
    )


def parse_experiment(argv: list[str] | None, description: str, name: str) -> ExperimentCommand:
    """Parse an experiment's command line: ``--preset`` (the scale, ``presets.SCALES``; default
    paper on an accelerator, cpu otherwise), ``--out``, ``--devices`` and any config field flag
    (``--algo ppo``, ``--backbone transformer``, ``--num-seeds 5``), applied to every run."""
    p = ArgumentParser(
        description=description,
        epilog="Every Config field is also a flag, applied to every run: "
        + " ".join(map(_flag, field_names())),
    )
    p.add_argument(
        "--preset",
        choices=SCALES,
        help="the scale: paper (Table 2, 10 seeds; for accelerators), cpu (2 CPU cores, about "
        "20 minutes), cpu-long (the paper's pool at 100 rounds on a CPU: hours per run), tiny "
        "(seconds); default: paper on an accelerator, cpu otherwise",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"experiment folder (default: runs/{name}-<preset>-<algo>-<backbone>); run the same "
        "command again to continue an interrupted experiment (finished runs are kept)",
    )
    p.add_argument("--devices", type=int, metavar="N", help="use only the first N devices")
    add_checkpoint_flags(p)
    args, rest = p.parse_known_args(argv)
    changes = field_changes(rest)
    scale, why = default_scale() if args.preset is None else (args.preset, "chosen with --preset")
    backbone = changes.pop("backbone", None)
    algo = changes.pop("algo", "a2c")
    out = args.out or Path("runs") / f"{name}-{scale}-{algo}-{backbone or 'gru'}"
    return ExperimentCommand(
        scale,
        why,
        out,
        backbone,
        algo,
        changes,
        _devices(args.devices),
        _checkpointing(args, None),
    )


def main_guard(fn, argv=None) -> int:
    """Run ``fn(argv)``; print a bad command line (exit status 2), an unusable results folder,
    a missing logging package or a non-finite loss (exit status 1) as one line on stderr instead
    of a traceback. Ctrl-C exits with status 130 after pending checkpoint writes finish. Run as
    a command (``fn`` in ``__main__``, ``argv`` from the command line), the process first
    restarts itself with huge pages where that helps (``runner.restart_with_huge_pages``)."""
    if argv is None and getattr(fn, "__module__", None) == "__main__":
        runner.restart_with_huge_pages()
    try:
        fn(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (
        FileExistsError,
        PermissionError,
        FloatingPointError,
        RunFolderError,
        LoggerUnavailable,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
