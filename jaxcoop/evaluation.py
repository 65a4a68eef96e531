"""Evaluating trained agents by play: within-episode cooperation and reward against named tabular
co-players and the random pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import strategies
from jaxcoop.environment import NUM_STATES, C, Game
from jaxcoop.networks import Agent
from jaxcoop.rollout import Episodes, agent_policy, play

#: Co-players of the paper's within-episode panels (Fig. 2); ``"pool"`` adds U(0, 1) draws.
PANEL = ("tit_for_tat", "always_cooperate", "always_defect", "win_stay_lose_shift", "pool")


def learner_params(params: Any, *index: int) -> Any:
    """One learner's parameters from stacked ones (e.g. ``[S, N, ...]`` -> ``index=(s, n)``)."""
    return jax.tree.map(lambda x: x[index], params)


def make_versus_tabular(
    agent: Agent, game: Game, num_episodes: int
) -> Callable[[Any, jax.Array, jax.Array], Episodes]:
    """A jitted ``f(params, thetas [E, 5], key) -> Episodes``: one agent (player 0, unstacked
    ``params``) against one tabular strategy per episode. Compiles once for any params."""

    def versus(params, thetas_Ex5, key):
        return play(agent_policy(agent, params), thetas_Ex5, key, num_episodes, game)

    return jax.jit(versus)


def panel_thetas(key: jax.Array, num_episodes: int, coplayers=PANEL) -> dict[str, jax.Array]:
    """Co-players ``[E, 5]`` per panel name (named strategies repeated; ``"pool"`` sampled)."""
    return {
        name: strategies.sample_pool(key, (num_episodes,))
        if name == "pool"
        else jnp.broadcast_to(strategies.NAMED[name](), (num_episodes, NUM_STATES))
        for name in coplayers
    }


def episode_curves(episodes: Episodes) -> dict[str, np.ndarray]:
    """Per-round means over episodes ``[T]`` of player 0's cooperation and both rewards, with
    the standard errors of the episode means (``*_se``, scalars)."""
    coop_ExT = np.asarray(episodes.actions[..., 0] == C, dtype=np.float64)
    reward_ExT = np.asarray(episodes.rewards[..., 0], dtype=np.float64)
    sqrt_e = np.sqrt(coop_ExT.shape[0])
    return {
        "coop": coop_ExT.mean(0),
        "reward": reward_ExT.mean(0),
        "coplayer_reward": np.asarray(episodes.rewards[..., 1], dtype=np.float64).mean(0),
        "coop_se": coop_ExT.mean(1).std() / sqrt_e,
        "reward_se": reward_ExT.mean(1).std() / sqrt_e,
    }


def evaluate_learners(
    agent: Agent,
    params: Any,
    game: Game,
    key: jax.Array,
    num_episodes: int = 256,
    coplayers=PANEL,
) -> dict[str, dict[str, np.ndarray]]:
    """Every learner of a run against the panel.

    Args:
      params: stacked ``[S, N, ...]`` (seeds, learners).

    Returns:
      per co-player name: ``coop``, ``reward``, ``coplayer_reward`` as ``[S, N, T]`` per-round
      means over ``num_episodes`` episodes.
    """
    versus = make_versus_tabular(agent, game, num_episodes)
    seeds, learners = jax.tree.leaves(params)[0].shape[:2]
    thetas = panel_thetas(jax.random.fold_in(key, 0), num_episodes, coplayers)
    out = {name: {"coop": [], "reward": [], "coplayer_reward": []} for name in coplayers}
    for s in range(seeds):
        for n in range(learners):
            p = learner_params(params, s, n)
            for i, (name, theta) in enumerate(thetas.items()):
                curves = episode_curves(versus(p, theta, jax.random.fold_in(key, 1 + i)))
                for field, values in out[name].items():
                    values.append(curves[field])
    return {
        name: {f: np.stack(v).reshape(seeds, learners, -1) for f, v in fields_.items()}
        for name, fields_ in out.items()
    }


def summarize(result: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    """Episode-average cooperation and reward per co-player and learner from
    ``evaluate_learners``: mean and std over seeds (lists over learners)."""
    summary = {}
    for name, r in result.items():
        summary[name] = {}
        for field in ("coop", "reward", "coplayer_reward"):
            per_seed_SxN = r[field].mean(axis=-1)
            summary[name][field] = {
                "mean": per_seed_SxN.mean(0).tolist(),
                "std": per_seed_SxN.std(0).tolist(),
            }
    return summary
