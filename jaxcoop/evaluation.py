"""The evaluation suite: trained agents and tabular strategies in play, with standard errors.

A ``Player`` is one side of a match: a trained agent (module and unstacked parameters) or tabular
strategies. ``match`` plays two players (compiled once per pair of modules, episode count and
horizon, for any parameters); ``curves`` turns the episodes into per-round (within-episode)
cooperation and reward of both sides, with episode averages and their standard errors.
``evaluate_learners`` plays every learner of a run against a panel of co-players and against the
other learners of its seed; ``cross_play`` plays every player against every co-player and
``cross_play_table`` prints the result. Against a pool of tabular co-players both also give the
**in-context efficiency** ``(r - r_alld) / (r_oracle - r_alld)``: always-defect and the oracle
(``reference``) play the same co-players with the same key (common draws), and
``reference.efficiency`` takes the ratio of the mean gains with a delta-method standard error.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import reference, strategies
from jaxcoop.environment import NUM_STATES, C, Game
from jaxcoop.networks import Agent
from jaxcoop.rollout import (
    Episodes,
    Policy,
    agent_policy,
    check_rounds,
    pairing,
    play,
    tabular_policy,
)

#: Co-players of the paper's within-episode panels (Fig. 2). A co-player name is a strategy of
#: ``strategies.NAMED`` or ``"axelrod:<Class>"`` (a memory-one strategy of the Axelrod library,
#: ``strategies.from_axelrod``), ``"pool"`` (fresh U(0, 1) draws: the paper's average tabular
#: co-player) or another tabular pool of ``strategies.POOLS`` (e.g. ``"named"``), or
#: ``BAYESIAN`` (the Bayesian in-context learner of ``reference``, for the game played).
PANEL = ("tit_for_tat", "always_cooperate", "always_defect", "win_stay_lose_shift", "pool")
#: The co-player name of the Bayesian in-context learner.
BAYESIAN = "bayesian"
#: The co-player name of "the other learners of the same seed" in ``evaluate_learners``.
LEARNER = "learner"
#: What ``curves`` measures, player 0's side first.
SIDES = ("coop", "reward", "coplayer_coop", "coplayer_reward")


class Player(NamedTuple):
    """One side of a match: a trained agent (``agent`` module, unstacked ``params``), a PPI
    learner (``agent`` a ``ppi.Planner``, ``params`` its model's: it plays the improved policy),
    tabular strategies (``agent=None``, ``params`` a strategy ``[5]`` or one per episode
    ``[E, 5]``) or a reference player (``agent`` ``reference.ORACLE`` or
    ``reference.BAYESIAN``, ``params=None``: built for the game played; the oracle knows its
    tabular co-player)."""

    agent: Any
    params: Any


def tabular(theta: jax.Array) -> Player:
    """A tabular strategy ``[5]`` (or one per episode, ``[E, 5]``) as a ``Player``."""
    return Player(None, jnp.asarray(theta, jnp.float32))


def learner_params(params: Any, *index: int) -> Any:
    """One learner's parameters from stacked ones (e.g. ``[S, N, ...]`` -> ``index=(s, n)``)."""
    return jax.tree.map(lambda x: x[index], params)


def _policy(player: Player, key: jax.Array, coplayer: Player, game: Game) -> Policy:
    agent, params = player
    if agent is None:
        return tabular_policy(params)
    if isinstance(agent, reference.Reference):
        return agent.policy(game, coplayer.params)
    # What an agent trained with opponent IDs reads, as in training: a tabular co-player's
    # identity vector, zeros against a trained one (agents trained without IDs ignore it).
    opponent_id = strategies.opponent_id(coplayer.params) if coplayer.agent is None else None
    if hasattr(agent, "policy"):  # a planner (``ppi.Planner``): its rollouts need a key
        return agent.policy(params, key, opponent_id)
    return agent_policy(agent, params, opponent_id)


@functools.lru_cache(maxsize=64)
def _compiled_match(agent_a: Any, agent_b: Any, num_episodes: int, horizon: int):
    def run(params_a, params_b, payoffs, key):
        game = Game(payoffs, horizon)
        # ``play`` takes round t's key from ``key`` (its ``split(key, horizon)[t]``); a
        # planner's key is another index of the same key, so no random numbers are shared.
        a, b = Player(agent_a, params_a), Player(agent_b, params_b)
        policies = (
            _policy(a, jax.random.fold_in(key, horizon), b, game),
            _policy(b, jax.random.fold_in(key, horizon + 1), a, game),
        )
        return play(*policies, key, num_episodes, game)

    return jax.jit(run)


def match(a: Player, b: Player, key: jax.Array, num_episodes: int, game: Game) -> Episodes:
    """``num_episodes`` episodes of ``a`` (player 0) against ``b`` (player 1), ``[E, T, 2]``.
    An agent trained with opponent IDs reads a tabular co-player's identity vector (zeros
    against a trained one), as in training. Raises ``ValueError`` for an oracle against a
    non-tabular co-player, a ``reference.BayesianAgent`` built for another horizon, or an
    agent that cannot play that many rounds (``rollout.check_rounds``: a transformer or a PPI
    planner beyond its trained horizon)."""
    for me, other in ((a, b), (b, a)):
        reference.check_horizon(me.agent, game.horizon)
        who = f"the {type(me.agent).__name__}"
        check_rounds(getattr(me.agent, "max_rounds", None), game.horizon, who)
        oracle = isinstance(me.agent, reference.Reference) and me.agent.knows_coplayer
        if oracle and other.agent is not None:
            raise ValueError("the oracle knows tabular co-players only; this one is not tabular")
    run = _compiled_match(a.agent, b.agent, num_episodes, game.horizon)
    return run(a.params, b.params, game.payoffs, key)


def curves(episodes: Episodes) -> dict[str, np.ndarray]:
    """What happened in ``episodes``, from player 0's side.

    Returns:
      for each of ``SIDES`` (player 0's cooperation and reward, then its co-player's): the
      per-round mean over episodes ``[T]``, ``<name>_mean`` (the average over rounds and
      episodes) and ``<name>_se`` (the standard error of that average over episodes).
    """
    actions = np.asarray(episodes.actions)
    rewards = np.asarray(episodes.rewards, dtype=np.float64)
    per_episode_round = {
        "coop": actions[..., 0] == C,
        "reward": rewards[..., 0],
        "coplayer_coop": actions[..., 1] == C,
        "coplayer_reward": rewards[..., 1],
    }
    out = {}
    for name, x_ExT in per_episode_round.items():
        x_ExT = x_ExT.astype(np.float64)
        per_episode = x_ExT.mean(axis=1)
        out[name] = x_ExT.mean(axis=0)
        out[f"{name}_mean"] = per_episode.mean()
        out[f"{name}_se"] = per_episode.std(ddof=1) / np.sqrt(len(per_episode))
    return out


def coplayer_thetas(name: str, key: jax.Array, num_episodes: int) -> jax.Array:
    """The tabular co-players ``[E, 5]`` of a tabular co-player name (see ``PANEL``)."""
    if strategies.is_named(name):
        return jnp.broadcast_to(strategies.named(name), (num_episodes, NUM_STATES))
    pool = "uniform" if name == "pool" else name
    if pool not in strategies.POOLS:
        allowed = sorted(
            {*strategies.NAMED, "pool", *strategies.POOLS, BAYESIAN, "axelrod:<Class>"}
        )
        raise ValueError(f"co-player {name!r} is unknown; allowed: {allowed}")
    return strategies.sample_coplayers(key, (num_episodes,), pool)


def is_pool(name: str) -> bool:
    """Whether co-player ``name`` is a random pool of tabular co-players (the names that get
    an in-context efficiency)."""
    return name == "pool" or (name in strategies.POOLS and name not in strategies.NAMED)


def panel(key: jax.Array, num_episodes: int, names=PANEL) -> dict[str, Player]:
    """The co-players of ``names`` as players (pools drawn once from ``key``)."""
    return {
        name: Player(reference.BAYESIAN, None)
        if name == BAYESIAN
        else tabular(coplayer_thetas(name, jax.random.fold_in(key, i), num_episodes))
        for i, name in enumerate(names)
    }


class References(NamedTuple):
    """Per-episode reward per round ``[E]`` of always-defect and of the oracle against a pool's
    co-players, played with a given key."""

    always_defect: np.ndarray
    oracle: np.ndarray


def _episode_rewards(episodes: Episodes) -> np.ndarray:
    return np.asarray(episodes.rewards[..., 0], np.float64).mean(axis=1)


def references(coplayer: Player, key: jax.Array, num_episodes: int, game: Game) -> References:
    """Always-defect and the oracle against tabular ``coplayer`` with ``key``: the common
    draws of ``efficiency`` for any player that meets ``coplayer`` with the same key."""
    alld = tabular(strategies.always_defect())
    return References(
        _episode_rewards(match(alld, coplayer, key, num_episodes, game)),
        _episode_rewards(match(Player(reference.ORACLE, None), coplayer, key, num_episodes, game)),
    )


def efficiency(episodes: Episodes, refs: References) -> reference.Efficiency:
    """The in-context efficiency of player 0 of ``episodes`` (played with the key and
    co-players of ``refs``; ``reference.efficiency``)."""
    return reference.efficiency(_episode_rewards(episodes), refs.always_defect, refs.oracle)


def trained_players(agent: Agent, params: Any) -> dict[str, Player]:
    """Every learner of stacked ``params`` ``[S, N, ...]`` as a player named ``s<S>/L<N>``."""
    seeds, learners = jax.tree.leaves(params)[0].shape[:2]
    return {
        f"s{s}/L{n}": Player(agent, learner_params(params, s, n))
        for s in range(seeds)
        for n in range(learners)
    }


def evaluate_learners(
    agent: Agent,
    params: Any,
    game: Game,
    key: jax.Array,
    num_episodes: int = 256,
    coplayers=PANEL,
) -> dict[str, dict[str, np.ndarray]]:
    """Every learner of a run against the ``coplayers`` and (with two or more learners) against
    the next learner of its seed (co-player ``LEARNER``: learner ``n`` meets ``succ[n]`` of
    ``rollout.pairing``'s fixed ring, ``(n + 1) % N``).
    Every learner meets the same co-players with the same random numbers (one key per
    co-player), so differences between learners and seeds are not differences in the draws.

    Args:
      params: stacked ``[S, N, ...]`` (seeds, learners).

    Returns:
      per co-player name and each of ``SIDES``: per-round means ``[S, N, T]`` over
      ``num_episodes`` episodes, and ``<side>_se`` ``[S, N]`` (standard errors of the averages);
      against a pool (``is_pool``) also ``efficiency`` and ``efficiency_se`` ``[S, N]`` (the
      in-context efficiency, ``efficiency``) and the references' rewards per round
      ``always_defect_reward`` and ``oracle_reward`` ``[S, N]`` (the same for every learner).
    """
    seeds, learners = jax.tree.leaves(params)[0].shape[:2]
    opposite = panel(jax.random.fold_in(key, 0), num_episodes, coplayers)
    names = list(coplayers) + ([LEARNER] if learners > 1 else [])
    refs = {
        name: references(opposite[name], jax.random.fold_in(key, 1 + i), num_episodes, game)
        for i, name in enumerate(names)
        if is_pool(name)
    }
    succ = np.asarray(pairing(learners)[0][:, 0])
    out = {name: {} for name in names}
    for s in range(seeds):
        for n in range(learners):
            me = Player(agent, learner_params(params, s, n))
            for i, name in enumerate(names):
                if name == LEARNER:
                    other = Player(agent, learner_params(params, s, int(succ[n])))
                else:
                    other = opposite[name]
                episodes = match(me, other, jax.random.fold_in(key, 1 + i), num_episodes, game)
                c = curves(episodes)
                for side in SIDES:
                    out[name].setdefault(side, []).append(c[side])
                    out[name].setdefault(f"{side}_se", []).append(c[f"{side}_se"])
                if name in refs:
                    for field, value in _efficiency_fields(episodes, refs[name]).items():
                        out[name].setdefault(field, []).append(value)
    return {
        name: {f: np.stack(v).reshape(seeds, learners, *np.shape(v[0])) for f, v in r.items()}
        for name, r in out.items()
    }


def _efficiency_fields(episodes: Episodes, refs: References) -> dict[str, float]:
    value, se = efficiency(episodes, refs)
    return {
        "efficiency": value,
        "efficiency_se": se,
        "always_defect_reward": refs.always_defect.mean(),
        "oracle_reward": refs.oracle.mean(),
    }


def summarize(result: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict]]:
    """Episode-average cooperation and reward of both sides per co-player and learner from
    ``evaluate_learners``: ``mean`` and ``std`` over seeds and the largest standard error of a
    single learner's average (``se``), as lists over learners; against a pool also the
    in-context ``efficiency`` (the same statistics) and the references' rewards
    (``always_defect_reward``, ``oracle_reward``: numbers)."""
    summary = {}
    for name, r in result.items():
        summary[name] = {}
        for side in [*SIDES, "efficiency"] if "efficiency" in r else SIDES:
            per_seed_SxN = r[side] if r[side].ndim == 2 else r[side].mean(axis=-1)
            summary[name][side] = {
                "mean": per_seed_SxN.mean(0).tolist(),
                "std": per_seed_SxN.std(0).tolist(),
                "se": r[f"{side}_se"].max(0).tolist(),
            }
        for field in ("always_defect_reward", "oracle_reward"):
            if field in r:
                summary[name][field] = float(r[field].mean())
    return summary


def cross_play(
    players: dict[str, Player],
    coplayers: dict[str, Player],
    key: jax.Array,
    num_episodes: int,
    game: Game,
) -> list[dict]:
    """Every player (as player 0) against every co-player: one row per pair with the average
    cooperation and reward of both sides (``SIDES``) and their standard errors (``*_se``), and
    against a pool (``is_pool``) the in-context efficiency (``efficiency``, ``efficiency_se``)."""
    rows = []
    for i, (name, player) in enumerate(players.items()):
        for j, (coname, coplayer) in enumerate(coplayers.items()):
            pair_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
            episodes = match(player, coplayer, pair_key, num_episodes, game)
            c = curves(episodes)
            row = {"player": name, "coplayer": coname, "episodes": num_episodes}
            for side in SIDES:
                row[side], row[f"{side}_se"] = float(c[f"{side}_mean"]), float(c[f"{side}_se"])
            if is_pool(coname):
                refs = references(coplayer, pair_key, num_episodes, game)
                row["efficiency"], row["efficiency_se"] = efficiency(episodes, refs)
            rows.append(row)
    return rows


def cross_play_table(rows: list[dict]) -> str:
    """``cross_play``'s rows as a text table (value ± standard error)."""
    width = max([len(r["player"]) for r in rows] + [len(r["coplayer"]) for r in rows] + [8]) + 2
    columns = [*SIDES, "efficiency"] if any("efficiency" in r for r in rows) else SIDES
    head = f"{'player':<{width}}{'co-player':<{width}}"
    head += "".join(f"{side.replace('_', ' '):>20}" for side in columns)
    lines = [head]
    for r in rows:
        cells = "".join(
            f"{r[side]:>11.3f} ± {r[f'{side}_se']:.3f}" if side in r else f"{'':>20}"
            for side in columns
        )
        lines.append(f"{r['player']:<{width}}{r['coplayer']:<{width}}{cells}".rstrip())
    return "\n".join(lines)
