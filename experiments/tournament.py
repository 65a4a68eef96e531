"""A round-robin Axelrod tournament of trained learners against the classic strategies.

python -m experiments.tournament RUN_DIR [RUN_DIR ...] [--field Cooperator,TitForTat,...]
    [--turns T] [--repetitions 10] [--seed 0] [--game paper|classic] [--no-bayesian] [--out DIR]

Every learner of every seed of each run (``jaxcoop.axelrod.to_axelrod``), the Bayesian in-context
learner planning for the tournament's turns (``jaxcoop.reference``; the oracle cannot play
there, it must be told its co-player's probabilities) and a field of Axelrod's strategies (by
class name; default ``jaxcoop.axelrod.FIELD``) play Axelrod's round robin (everyone against
everyone, themselves included). Turns default to the runs' trained horizon (all must have
trained at least that long); the game is the paper's (R, S, T, P) = (1, -1, 2, 0), or with
``--game classic`` Axelrod's (3, 0, 5, 1), outside the agents' training (they play the same
moves; only the scores change). Writes ``ranking.csv`` (Axelrod's summary: median score per
turn, cooperation rating, wins, state rates), ``ranking.md``, ``payoff_matrix.png`` and
``tournament.json`` (the setup, the ranking, the payoff matrix, provenance) to ``--out``
(default ``RUN_DIR/tournament``) and prints the ranking.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from jaxcoop import checkpoints, cli, figures, records
from jaxcoop.records import RunFolderError


def _check_runs(runs: list[Path]) -> dict[Path, object]:
    """Each run's ``Config``, or ``RunFolderError`` for a folder that cannot play."""
    configs = {}
    for run in runs:
        config, _ = records.read_config(run)
        if config.algo == "ppi":
            raise RunFolderError(f"{run} is a PPI run: only A2C / PPO agents play in Axelrod")
        if not checkpoints.steps(run):
            raise RunFolderError(f"{run} has no checkpoint yet")
        configs[run] = config
    return configs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", help="results folders (A2C / PPO)")
    p.add_argument("--field", help="comma-separated Axelrod class names (default: FIELD)")
    p.add_argument("--turns", type=int, help="turns per match (default: the trained horizon)")
    p.add_argument("--repetitions", type=int, default=10, help="matches per pair (default 10)")
    p.add_argument("--seed", type=int, default=0, help="the tournament's seed (default 0)")
    p.add_argument("--game", choices=("paper", "classic"), default="paper")
    p.add_argument("--no-bayesian", action="store_true", help="leave out the Bayesian learner")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/tournament)")
    args = p.parse_args(argv)

    # Everything that can be wrong, before anything is loaded or compiled.
    try:
        from jaxcoop import axelrod as jaxcoop_axelrod
    except ImportError as e:
        raise cli.UsageError(str(e)) from e
    configs = _check_runs(args.runs)
    horizon = min(config.horizon for config in configs.values())
    turns = horizon if args.turns is None else args.turns
    if turns > horizon:
        shortest = min(configs, key=lambda run: configs[run].horizon)
        raise cli.UsageError(
            f"--turns {turns} is longer than {shortest}'s {horizon}-round training episodes; "
            f"allowed: 1..{horizon}"
        )
    if turns < 1 or args.repetitions < 1:
        raise cli.UsageError(
            f"--turns {turns} --repetitions {args.repetitions}; allowed: 1 or more each"
        )
    names = jaxcoop_axelrod.FIELD if args.field is None else args.field.split(",")
    try:
        field = jaxcoop_axelrod.classic_players([n.strip() for n in names if n.strip()])
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    out = args.out or args.runs[0] / "tournament"

    start = time.perf_counter()
    labels = [run.name for run in args.runs]
    if len(set(labels)) < len(labels):
        labels = [str(run) for run in args.runs]
    players = [
        jaxcoop_axelrod.to_axelrod(run, n, s, name=f"jaxcoop {label} s{s}/L{n}")
        for run, label in zip(args.runs, labels, strict=True)
        for s in range(configs[run].num_seeds)
        for n in range(configs[run].num_learners)
    ]
    if not args.no_bayesian:
        players.append(jaxcoop_axelrod.bayesian_player(turns))
    players += field
    game = jaxcoop_axelrod.GAMES[args.game]()
    rstp = [float(game.RPST()[i]) for i in (0, 2, 3, 1)]  # Axelrod orders them R, P, S, T
    setup = (
        f"{len(players)} players, {turns} turns, {args.repetitions} repetitions, seed "
        f"{args.seed}, {args.game} game (R, S, T, P) = ({', '.join(f'{v:g}' for v in rstp)})"
    )
    pairings = len(players) * (len(players) + 1) // 2
    print(f"{setup}: {pairings} pairings x {args.repetitions} repetitions", flush=True)
    results = jaxcoop_axelrod.axl.Tournament(
        players, game=game, turns=turns, repetitions=args.repetitions, seed=args.seed
    ).play(progress_bar=sys.stderr.isatty())
    wall = time.perf_counter() - start

    rows = jaxcoop_axelrod.ranking(results)
    names, matrix = jaxcoop_axelrod.payoff_matrix(results)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "ranking.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = jaxcoop_axelrod.ranking_table(rows)
    (out / "ranking.md").write_text(f"{table}\n\n{setup}; {wall:.0f} s.\n")
    figures.payoff_matrix(
        out / "payoff_matrix.png", names, matrix, f"mean payoff per turn, row vs column\n{setup}"
    )
    record = {
        "runs": [str(run) for run in args.runs],
        "players": [str(player) for player in players],
        "turns": turns,
        "repetitions": args.repetitions,
        "seed": args.seed,
        "game": args.game,
        "rstp": rstp,
        "wall_seconds": wall,
        "axelrod": jaxcoop_axelrod.axl.__version__,
        "ranking": rows,
        "payoff_matrix": {"names": names, "matrix": matrix.round(4).tolist()},
        **records.provenance(),
    }
    (out / "tournament.json").write_text(records.compact_json(record) + "\n")
    print(table)
    print(f"{setup}; {wall:.1f} s. Written to {out}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
