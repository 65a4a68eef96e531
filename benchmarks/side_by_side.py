"""Two versions of jaxcoop timed side by side: interleaved runs of ``benchmarks.iteration_speed``.

    python -m benchmarks.side_by_side f0e7c52 \\
        --config "--preset mixed-pool --scale cpu-long --hidden-dim 32"
    python -m benchmarks.side_by_side f0e7c52 --rounds 5 \\
        --config "--preset mixed-pool --scale cpu-long --hidden-dim 32" \\
        --config "--preset mixed-pool --scale cpu-long --hidden-dim 64 --num-episodes 2048"

``BASE`` (and ``--new``, default: this working tree) are git revisions; each is checked out into
a temporary worktree. Every round runs every configuration once with each version, in a fresh
process, alternating which version goes first, so that drift in the machine's speed (a shared
VM's neighbours, its clock) falls on both alike. Prints, per configuration, the median and the
best seconds per iteration of each version and the speed-up, and writes them, with every single
timing, to one JSON file. Time on an otherwise idle machine. This process does not restart
with huge pages (it does not go through ``cli.main_guard``), so each version's runs start in the
caller's environment, as a user's would; the record's ``glibc_tunables`` is that environment's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from jaxcoop import records

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    """Run git in this checkout; its stdout, stripped (``CalledProcessError`` on failure)."""
    cmd = ["git", "-C", str(ROOT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def resolve(revision: str) -> str:
    """The full commit of ``revision``; ``ValueError`` naming it if git does not know it."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except subprocess.CalledProcessError:
        raise ValueError(f"git does not know the revision {revision!r} in {ROOT}") from None


@contextlib.contextmanager
def checkout(revision: str | None) -> Iterator[Path]:
    """A directory holding ``revision``'s source (a temporary worktree, removed afterwards), or
    this checkout itself for ``None``."""
    if revision is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="jaxcoop-") as tmp:
        path = Path(tmp) / "src"
        git("worktree", "add", "--detach", "--quiet", str(path), revision)
        try:
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))


def time_once(source: Path, flags: list[str]) -> dict:
    """One ``benchmarks.iteration_speed`` run of the code in ``source`` (a fresh process)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    cmd = [sys.executable, "-m", "benchmarks.iteration_speed", *flags]
    out = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} in {source} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout[out.stdout.index("{") :])


def summarize(base_seconds: list[float], new_seconds: list[float]) -> dict:
    """Medians, bests and the speed-ups (base / new) of two lists of seconds per iteration."""
    base_median, new_median = statistics.median(base_seconds), statistics.median(new_seconds)
    return {
        "base_median_s": base_median,
        "new_median_s": new_median,
        "base_best_s": min(base_seconds),
        "new_best_s": min(new_seconds),
        "speedup_median": base_median / new_median,
        "speedup_best": min(base_seconds) / min(new_seconds),
    }


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision to compare against (e.g. a commit)")
    parser.add_argument("--new", help="git revision to time against it (default: this tree)")
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        help="benchmarks.iteration_speed flags of one configuration, quoted (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each version (default 3)")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    commits = {"base": resolve(args.base), "new": resolve(args.new) if args.new else None}
    configs = [shlex.split(c) for c in args.config]
    date = datetime.now(timezone.utc)
    out = args.out or ROOT / "benchmarks" / "results" / f"side-by-side-{date:%Y-%m-%d-%H%M}.json"
    times: dict[str, dict[str, list[float]]] = {c: {"base": [], "new": []} for c in args.config}
    rates: dict[str, dict] = {}
    with checkout(commits["base"]) as base, checkout(commits["new"]) as new:
        sources = {"base": base, "new": new}
        for round_ in range(args.rounds):
            order = ("base", "new") if round_ % 2 == 0 else ("new", "base")
            for text, flags in zip(args.config, configs, strict=True):
                for version in order:
                    result = time_once(sources[version], flags)
                    times[text][version].append(result["seconds_per_iteration"])
                    rates.setdefault(text, {})[version] = result
                    print(
                        f"round {round_ + 1}/{args.rounds} {version:4s} "
                        f"{result['seconds_per_iteration']:.4f} s/it  {text}",
                        flush=True,
                    )
    summary = {text: summarize(t["base"], t["new"]) for text, t in times.items()}
    print(f"\nmedian (best) seconds per iteration of {args.rounds} runs each:")
    for text, s in summary.items():
        print(
            f"  {text}\n    base {s['base_median_s']:.4f} ({s['base_best_s']:.4f})  "
            f"new {s['new_median_s']:.4f} ({s['new_best_s']:.4f})  "
            f"speed-up {s['speedup_median']:.2f}x (best {s['speedup_best']:.2f}x)"
        )
    provenance = records.provenance()
    record = {
        "date": date.isoformat(timespec="seconds"),
        "device": next(iter(rates.values()))["new"]["device"],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpus": os.cpu_count(),
        "cpus_used": len(os.sched_getaffinity(0)),
        "base_commit": commits["base"],
        "new_commit": commits["new"] or provenance["git_commit"],
        "rounds": args.rounds,
        "provenance": provenance,
        "configs": {
            text: {"seconds_per_iteration": times[text], **summary[text]} for text in args.config
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
