"""Evaluating trained agents by play: cooperation and reward against named tabular co-players."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import strategies
from jaxcoop.environment import C, Game
from jaxcoop.networks import Agent
from jaxcoop.rollout import agent_policy, play

#: Co-players of the paper's within-episode panels (Fig. 2), plus the pool's average.
PANEL = ("tit_for_tat", "always_cooperate", "always_defect", "win_stay_lose_shift")


def learner_params(params: Any, *index: int) -> Any:
    """One learner's parameters from stacked ones (e.g. ``[S, N, ...]`` -> ``index=(s, n)``)."""
    return jax.tree.map(lambda x: x[index], params)


def versus_tabular(
    agent: Agent,
    params: Any,
    key: jax.Array,
    game: Game,
    num_episodes: int = 256,
    coplayers: tuple[str, ...] = PANEL,
) -> dict[str, dict[str, np.ndarray]]:
    """Play one agent (unstacked ``params``) against named strategies and the random pool.

    Returns, per co-player name (and ``"pool"``), per-round means over episodes ``[T]``:
    ``coop`` (agent's cooperation), ``reward`` (agent's reward), ``coplayer_reward``, and their
    standard errors ``coop_se`` / ``reward_se`` of the episode means.
    """
    policy = agent_policy(agent, params)
    opponents = {
        name: jnp.broadcast_to(strategies.NAMED[name](), (num_episodes, 5)) for name in coplayers
    }
    keys = jax.random.split(key, len(opponents) + 1)
    opponents["pool"] = strategies.sample_pool(keys[-1], (num_episodes,))
    play_against = jax.jit(lambda theta, k: play(policy, theta, k, num_episodes, game))
    out = {}
    for k, (name, theta) in zip(keys, opponents.items(), strict=False):
        episodes = play_against(theta, k)
        coop_ExT = np.asarray(episodes.actions[..., 0] == C, dtype=np.float64)
        reward_ExT = np.asarray(episodes.rewards[..., 0], dtype=np.float64)
        sqrt_e = np.sqrt(num_episodes)
        out[name] = {
            "coop": coop_ExT.mean(0),
            "reward": reward_ExT.mean(0),
            "coplayer_reward": np.asarray(episodes.rewards[..., 1]).mean(0),
            "coop_se": coop_ExT.mean(1).std() / sqrt_e,
            "reward_se": reward_ExT.mean(1).std() / sqrt_e,
        }
    return out


def summarize(result: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Episode-average cooperation and reward per co-player from ``versus_tabular``."""
    return {
        name: {"coop": float(jnp.mean(r["coop"])), "reward": float(jnp.mean(r["reward"]))}
        for name, r in result.items()
    }
