"""A compute ladder: one run per seed, continued to growing budgets, measured at every rung.

python -m experiments.ladder --rungs 6000 24000 96000 --seeds 0 1 --out runs/step1-ladder \\
    --preset step1-tabular --hidden-dim 32 --horizon 100 --num-episodes 1024
python -m experiments.ladder --report runs/step1-ladder      # the table and figure only

Every seed is its own run (``<out>/seed<S>/``, made by ``python -m experiments.ipd`` with
``--num-seeds 1 --seed S``): it is trained to the first rung, then continued with ``--resume
--num-iterations R`` to each next one, so a rung's numbers are those of the same run at that
many updates. After each rung its records are kept in ``<out>/seed<S>/rung-<R>/``
(``summary.json``, ``evaluation.json``, the plots) with ``curves.json``: the learner within an
episode against the step-1 panel (tit-for-tat, always-cooperate, always-defect, the U(0, 1)
pool; ``EVALUATION_EPISODES`` episodes each, per-round cooperation and reward). Then
``<out>/ladder.json``, ``ladder.md`` and ``ladder.png`` (reward against the pool over
agent-steps, the in-context efficiency per rung, the within-episode curves at the top rung).

On a CPU the seeds run as parallel processes, one per core, each pinned to its core with
single-threaded XLA: for the small agents at 100 rounds, one core per seed trained 1.5x more
agent-steps per second in all than both cores on one program (docs/performance.md). The same
command continues an interrupted ladder: finished rungs are kept, a stopped run is resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxcoop import cli, environment, evaluation, figures, records, trained
from jaxcoop.train import make_player

#: The co-players of the within-episode curves (paper Fig. 2, step 1).
PANEL = ("tit_for_tat", "always_cooperate", "always_defect", "pool")
EVALUATION_EPISODES = 1024
#: Records of a run kept at each rung.
KEPT = ("summary.json", "evaluation.json", "training_curves.png", "within_episode.png")
#: XLA flags of one process per core.
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: Step 1's criteria (issue 20): tit-for-tat cooperation by round 40, always-cooperate defected,
#: always-defect probed early (rounds 1-10), then defected (the last half of the episode).
#: "By round 40" is read as the mean over rounds 36-45.
BY_ROUND = 40


def run_dir(out: Path, seed: int) -> Path:
    return out / f"seed{seed}"


def rung_dir(out: Path, seed: int, rung: int) -> Path:
    return run_dir(out, seed) / f"rung-{rung}"


def finished_iterations(folder: Path) -> int:
    """Iterations of the finished run in ``folder`` (0 if none or not finished)."""
    summary = folder / records.SUMMARY_FILE
    return json.loads(summary.read_text())["iterations"] if summary.exists() else 0


def command_for(out: Path, seed: int, rung: int, run_args: list[str]) -> list[str]:
    """The ``experiments.ipd`` command that takes seed ``seed`` to ``rung`` iterations."""
    folder = run_dir(out, seed)
    if (folder / records.CONFIG_FILE).exists():
        return ["--resume", str(folder), "--num-iterations", str(rung)]
    return [*run_args, "--seed", str(seed), "--num-seeds", "1"] + [
        "--num-iterations",
        str(rung),
        "--out",
        str(folder),
    ]


def within_episode(folder: Path, key: jax.Array) -> dict:
    """The newest checkpoint's learner 0 within an episode against ``PANEL``: per-round
    cooperation and reward ``[T]`` and the episode averages with standard errors."""
    loaded = trained.load(folder)
    game = environment.make_game(loaded.config.game, loaded.config.horizon)
    result = evaluation.evaluate_learners(
        make_player(loaded.config),
        loaded.params,
        game,
        key,
        EVALUATION_EPISODES,
        PANEL,
    )
    out = {}
    for name, r in result.items():
        out[name] = {
            "coop": r["coop"][0, 0].tolist(),
            "reward": r["reward"][0, 0].tolist(),
            "coop_mean": float(r["coop"][0, 0].mean()),
            "reward_mean": float(r["reward"][0, 0].mean()),
            "reward_se": float(r["reward_se"][0, 0]),
        }
        if "efficiency" in r:
            out[name]["efficiency"] = float(r["efficiency"][0, 0])
            out[name]["efficiency_se"] = float(r["efficiency_se"][0, 0])
    return out


def keep_rung(out: Path, seed: int, rung: int) -> None:
    """Copy the run's records at ``rung`` and add its within-episode ``curves.json``."""
    folder, dest = run_dir(out, seed), rung_dir(out, seed, rung)
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (folder / name).exists():
            shutil.copy2(folder / name, dest / name)
    curves = within_episode(folder, jax.random.key(seed))
    (dest / "curves.json").write_text(json.dumps(curves) + "\n")


def seed_worker(out: Path, seed: int, rungs: list[int], run_args: list[str], core: int | None):
    """Take one seed up the ladder (in this process; its training runs in a child process)."""
    env = dict(os.environ)
    prefix = []
    if core is not None:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {SINGLE_THREAD}".strip()
        prefix = ["taskset", "-c", str(core)]
    log = out / f"seed{seed}.log"
    for rung in rungs:
        if (rung_dir(out, seed, rung) / "curves.json").exists():
            continue
        if finished_iterations(run_dir(out, seed)) != rung:
            argv = [*prefix, sys.executable, "-m", "experiments.ipd"]
            argv += command_for(out, seed, rung, run_args)
            with log.open("a") as f:
                f.write(f"$ {' '.join(argv)}\n")
                f.flush()
                status = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
            if status.returncode:
                raise SystemExit(f"seed {seed}: the run to rung {rung} failed; see {log}")
        keep_rung(out, seed, rung)
        print(f"seed {seed}: rung {rung} done", flush=True)


def row(out: Path, seed: int, rung: int) -> dict:
    """One seed at one rung: budget, training reward against the pool, the step-1 measures."""
    dest = rung_dir(out, seed, rung)
    summary = json.loads((dest / "summary.json").read_text())
    curves = json.loads((dest / "curves.json").read_text())
    config, _ = records.read_config(run_dir(out, seed))
    steps = config.agent_steps_per_iteration * rung
    tft, allc, alld, pool = (curves[n] for n in PANEL)
    half = len(alld["coop"]) // 2
    return {
        "seed": seed,
        "rung": rung,
        "agent_steps": steps,
        "train_reward_vs_pool": summary["final"]["reward_vs_tabular"]["mean"][0],
        "reward_vs_pool": pool["reward_mean"],
        "reward_vs_pool_se": pool["reward_se"],
        "efficiency": pool.get("efficiency"),
        "efficiency_se": pool.get("efficiency_se"),
        "tft_coop_at_round_40": (
            float(np.mean(tft["coop"][BY_ROUND - 5 : BY_ROUND + 5]))
            if len(tft["coop"]) >= BY_ROUND + 5
            else None  # episodes too short to tell
        ),
        "tft_coop": tft["coop_mean"],
        "allc_defect": 1.0 - allc["coop_mean"],
        "alld_probe_rounds_1_10": float(np.mean(alld["coop"][:10])),
        "alld_coop_last_half": float(np.mean(alld["coop"][half:])),
        "curves": {name: {"coop": curves[name]["coop"]} for name in PANEL},
    }


def histories(out: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each seed's training reward against the pool (moving average) over agent-steps, from
    its ``metrics.csv`` or, in a kept record (``experiments.record``), its thinned metrics."""
    result = {}
    for folder in sorted(out.glob("seed*/")):
        name = records.metrics_name(folder)
        if name is None:
            continue
        config, _ = records.read_config(folder)
        metrics = records.read_metrics(folder, name)
        reward = metrics["reward_vs_tabular"].mean(axis=2)  # [S, I] (one seed)
        window = max(1, reward.shape[1] // 100)
        steps = (metrics["iteration"] + 1) * config.agent_steps_per_iteration
        result[int(folder.name.removeprefix("seed"))] = (steps, figures.smooth(reward, window)[0])
    return result


COLUMNS = (
    ("rung", "{:d}"),
    ("seed", "{:d}"),
    ("agent_steps", "{:.2e}"),
    ("reward_vs_pool", "{:.4f}"),
    ("efficiency", "{:+.2f}"),
    ("tft_coop_at_round_40", "{:.2f}"),
    ("allc_defect", "{:.2f}"),
    ("alld_probe_rounds_1_10", "{:.2f}"),
    ("alld_coop_last_half", "{:.2f}"),
)


def report(out: Path) -> list[dict]:
    """``ladder.json``, ``ladder.md`` and ``ladder.png`` from every finished rung in ``out``."""
    rows = []
    for folder in sorted(out.glob("seed*/rung-*/curves.json")):
        seed = int(folder.parent.parent.name.removeprefix("seed"))
        rung = int(folder.parent.name.removeprefix("rung-"))
        rows.append(row(out, seed, rung))
    rows.sort(key=lambda r: (r["rung"], r["seed"]))
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = ["—" if r[c] is None else f.format(r[c]) for c, f in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    plain = [{k: v for k, v in r.items() if k != "curves"} for r in rows]
    (out / "ladder.json").write_text(records.compact_json({"rows": plain}) + "\n")
    (out / "ladder.md").write_text(table + "\n")
    if rows:
        figures.ladder(out / "ladder.png", rows, histories(out), PANEL)
    print(table)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rungs", type=int, nargs="+", help="iterations at each rung, increasing")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    p.add_argument("--out", type=Path, help="the ladder's folder")
    p.add_argument("--parallel", type=int, help="seeds at once (default: one per CPU core)")
    p.add_argument("--report", type=Path, metavar="OUT", help="only tabulate and plot OUT")
    args, run_args = p.parse_known_args(argv)
    if args.report is not None:
        report(args.report)
        return
    if not args.rungs or args.out is None:
        raise cli.UsageError("--rungs and --out are needed (or --report OUT)")
    if sorted(set(args.rungs)) != args.rungs:
        raise cli.UsageError(f"--rungs {args.rungs}; allowed: increasing iteration counts")
    for rung in args.rungs:  # every rung's config is valid before anything runs
        cli.parse([*run_args, "--num-iterations", str(rung), "--num-seeds", "1"], "ladder")
    args.out.mkdir(parents=True, exist_ok=True)
    on_cpu = jax.default_backend() == "cpu"
    cores = os.cpu_count() or 1
    parallel = args.parallel or (min(len(args.seeds), cores) if on_cpu else 1)
    pin = on_cpu and parallel > 1 and shutil.which("taskset") is not None
    start = time.time()
    pending = list(args.seeds)
    workers: dict[int, subprocess.Popen] = {}
    while pending or workers:  # each seed's ladder in a child process of its own
        while pending and len(workers) < parallel:
            seed = pending.pop(0)
            core = len(workers) % cores if pin else None
            workers[seed] = subprocess.Popen(
                [sys.executable, "-m", "experiments.ladder", "--_worker", str(seed), str(core)]
                + ["--out", str(args.out), "--rungs", *map(str, args.rungs), "--", *run_args]
            )
        for seed, proc in list(workers.items()):
            if proc.poll() is not None:
                del workers[seed]
                if proc.returncode:
                    raise SystemExit(f"seed {seed} failed (exit {proc.returncode})")
        time.sleep(1)
    print(f"ladder done in {(time.time() - start) / 60:.1f} min")
    report(args.out)


def worker_main(argv: list[str]) -> None:
    """``--_worker SEED CORE --out OUT --rungs R... -- RUN_ARGS``: one seed (internal)."""
    seed, core = int(argv[1]), None if argv[2] == "None" else int(argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path)
    p.add_argument("--rungs", type=int, nargs="+")
    split = argv.index("--")
    args = p.parse_args(argv[3:split])
    seed_worker(args.out, seed, args.rungs, argv[split + 1 :], core)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        worker_main(sys.argv[1:])
    else:
        sys.exit(cli.main_guard(main))
