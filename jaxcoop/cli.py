"""Command-line handling shared by the experiments: preset + field overrides -> ``Config``.

Every ``Config`` field is a flag (``--lr 1e-3``, ``--num-seeds 4``, ``--opponent-id true``).
Errors (unknown flag, bad value, unknown preset) stop with one message before any compilation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax

from jaxcoop.config import PRESETS, Config, field_names, preset

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


class UsageError(ValueError):
    """A command line that cannot work; the message says what and what is allowed."""


def _parse_value(name: str, kind: str, text: str):
    try:
        if kind == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        return {"int": int, "float": float, "str": str}[kind](text)
    except ValueError:
        allowed = "true or false" if kind == "bool" else f"a value of type {kind}"
        raise UsageError(
            f"--{name.replace('_', '-')} {text!r} is invalid; allowed: {allowed}"
        ) from None


def default_preset() -> tuple[str, str]:
    """``('mixed-pool', why)`` on an accelerator, ``('cpu', why)`` otherwise."""
    backend = jax.default_backend()
    if backend in ("gpu", "tpu", "cuda", "rocm"):
        return "mixed-pool", f"an accelerator ({backend}) is present: paper scale"
    return "cpu", "no accelerator found (JAX backend 'cpu'): the scaled-down cpu preset"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        epilog="Every Config field is also a flag: "
        + " ".join(f"--{n.replace('_', '-')}" for n in field_names()),
    )
    p.add_argument(
        "--preset",
        help=f"one of {sorted(PRESETS)}; default: mixed-pool on an accelerator, cpu otherwise",
    )
    p.add_argument("--out", type=Path, help="results folder (default: a new folder under runs/)")
    return p


def parse(argv: list[str] | None, description: str) -> tuple[Config, str, Path, str]:
    """Parse a command line into ``(config, preset_name, out_dir, why_this_preset)``."""
    p = parser(description)
    args, rest = p.parse_known_args(argv)
    kinds = {f.name: f.type for f in dataclasses.fields(Config)}
    changes, i = {}, 0
    while i < len(rest):
        flag = rest[i]
        if flag.startswith("--") and "=" in flag:
            flag, value = flag.split("=", 1)
            rest[i : i + 1] = [flag, value]
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name not in kinds:
            raise UsageError(
                f"unknown option {flag!r}; allowed: --preset, --out, "
                + ", ".join(f"--{n.replace('_', '-')}" for n in kinds)
            )
        if i + 1 >= len(rest):
            raise UsageError(f"{flag} needs a value")
        changes[name] = _parse_value(name, kinds[name], rest[i + 1])
        i += 2
    if args.preset is None:
        name, why = default_preset()
    else:
        name, why = args.preset, "chosen with --preset"
    try:
        config = preset(name).replace(**changes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = args.out or Path("runs") / f"{name}-{config.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config, name, out, why


def main_guard(fn, argv=None) -> int:
    """Run ``fn(argv)``; print a bad command line (exit status 2), an unusable results folder or
    a non-finite loss (exit status 1) as one line on stderr instead of a traceback."""
    try:
        fn(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileExistsError, PermissionError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
