"""Reference players against the paper's U(0, 1) pool: what in-context inference can earn there.

python -m experiments.reference --horizon 100 --episodes 10000 --out docs/reference/pool-t100.json

Always-defect, always-cooperate, tit-for-tat, the oracle (knows each co-player's five
probabilities), the Bayesian in-context learner (``jaxcoop.reference``), and two players that
must open with C (cooperate once then defect; the oracle forced to open with C) each play the
same pool co-players with the same key (common draws). Prints a table and writes JSON: per
player the reward and cooperation per round with standard errors over episodes, and the
in-context efficiency ``(r - r_alld) / (r_oracle - r_alld)`` with its delta-method standard error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax

from jaxcoop import cli, environment, evaluation, records, reference, strategies
from jaxcoop.evaluation import Player

PLAYERS = {
    "always_defect": evaluation.tabular(strategies.always_defect()),
    "always_cooperate": evaluation.tabular(strategies.always_cooperate()),
    "tit_for_tat": evaluation.tabular(strategies.tit_for_tat()),
    "oracle": Player(reference.ORACLE, None),
    "bayesian": Player(reference.BAYESIAN, None),
    # What opening with C costs (Fig. 1's learners must, to find each other): with no inference
    # after it, and with perfect inference after it.
    "cooperate_then_defect": evaluation.tabular(strategies.cooperate_then_defect()),
    "oracle_opening_c": Player(reference.ORACLE_OPENING_C, None),
}


def measure(horizon: int, episodes: int, seed: int = 0, game_name: str = "ipd") -> dict:
    """Every player of ``PLAYERS`` against ``episodes`` pool co-players over ``horizon`` rounds
    (common draws): the JSON record (without provenance)."""
    game = environment.make_game(game_name, horizon)
    key = jax.random.key(seed)
    pool = evaluation.panel(jax.random.fold_in(key, 0), episodes, ("pool",))["pool"]
    play_key = jax.random.fold_in(key, 1)
    refs = evaluation.references(pool, play_key, episodes, game)
    players = {}
    for name, player in PLAYERS.items():
        played = evaluation.match(player, pool, play_key, episodes, game)
        c = evaluation.curves(played)
        value, se = evaluation.efficiency(played, refs)
        players[name] = {
            "reward": float(c["reward_mean"]),
            "se": float(c["reward_se"]),
            "coop": float(c["coop_mean"]),
            "coop_se": float(c["coop_se"]),
            "efficiency": value,
            "efficiency_se": se,
        }
    exact = reference.oracle_value(pool.params, game)
    return {
        "horizon": horizon,
        "episodes": episodes,
        "seed": seed,
        "game": game_name,
        "pool": "U(0, 1), one co-player per episode, the same for every player",
        "oracle_exact_expected": float(exact.mean()),
        "players": players,
    }


def table(result: dict) -> str:
    """``measure``'s players as a text table (value ± standard error)."""
    lines = [
        f"{result['horizon']} rounds, {result['episodes']} episodes against the U(0, 1) pool",
        f"{'player':<22}{'reward':>18}{'cooperation':>18}{'efficiency':>18}",
    ]
    for name, r in result["players"].items():
        lines.append(
            f"{name:<22}{r['reward']:>10.4f} ± {r['se']:.4f}{r['coop']:>10.3f} ± "
            f"{r['coop_se']:.3f}{r['efficiency']:>10.3f} ± {r['efficiency_se']:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--horizon", type=int, default=100, help="rounds per episode (default 100)")
    p.add_argument("--episodes", type=int, default=10_000, help="episodes (default 10,000)")
    p.add_argument("--seed", type=int, default=0, help="key of the co-players and play")
    p.add_argument("--game", default="ipd", choices=sorted(environment.GAMES))
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    if args.horizon < 1:
        raise cli.UsageError(f"--horizon {args.horizon}; allowed: 1 or more")
    if args.episodes < 2:
        raise cli.UsageError(f"--episodes {args.episodes}; allowed: 2 or more (standard errors)")
    start = time.perf_counter()
    result = measure(args.horizon, args.episodes, args.seed, args.game)
    result["wall_seconds"] = time.perf_counter() - start
    result["device"] = jax.devices()[0].device_kind
    result.update(records.provenance())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(records.compact_json(result) + "\n")
    print(table(result))
    print(f"{result['wall_seconds']:.1f}s; written to {args.out}")


if __name__ == "__main__":
    sys.exit(cli.main_guard(main))
