"""Running policies in the game: the training rollout of the mixed pool, and ``play``.

Training rollout layout. Each of the ``N`` learners owns ``B = K + 2S`` *seats* per update
(``K`` tabular episodes, ``S`` pairing slots):
  * seats ``[0, K)``: against a fresh tabular co-player;
  * seats ``[K, K+S)``: row player of slot ``s``, against learner ``succ[i, s]``;
  * seats ``[K+S, K+2S)``: column player of slot ``s``, against learner ``pred[i, s]``.
Every slot arranges the learners on a random ring (``succ``/``pred``), so each learner-vs-learner
episode yields data for both of its players and pairings are re-drawn every update. With one
learner the ring is a self-loop (self-play).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcoop import environment, strategies
from jaxcoop.environment import Game
from jaxcoop.networks import Agent, RoundInput


def sample_action(key: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample actions from logits ``[..., 2]``; returns int32 actions and their log-probs."""
    action = jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)
    return action, log_prob[..., 0]


class Transition(NamedTuple):
    """One learner's experience, time-major ``[T, B]`` (a leading learner axis in training).

    obs: float32 ``[T, B, 5]`` first-person observation before acting.
    action: int32 ``[T, B]``. reward: float32 ``[T, B]`` (raw game reward).
    log_prob: float32 ``[T, B]`` of ``action`` under the acting policy. value: float32 ``[T, B]``.
    coplayer_action, coplayer_reward: the co-player's side of the same rounds.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    value: jax.Array
    coplayer_action: jax.Array
    coplayer_reward: jax.Array


class Batch(NamedTuple):
    """A learner's data for one update.

    transition: ``Transition`` ``[T, B]``.
    opponent_id: float32 ``[B, 10]`` (zeros against learners).
    vs_learner: bool ``[B]``, true where the co-player is a learner.
    """

    transition: Transition
    opponent_id: jax.Array
    vs_learner: jax.Array


def round_inputs(t: Transition) -> RoundInput:
    """What the agent saw in each round of ``t``, rebuilt from the transitions (``[T, B]``)."""
    prev_action = jnp.concatenate([jnp.full_like(t.action[:1], -1), t.action[:-1]], axis=0)
    prev_reward = jnp.concatenate([jnp.zeros_like(t.reward[:1]), t.reward[:-1]], axis=0)
    return RoundInput(t.obs, prev_action, prev_reward)


def sample_pairing(key: jax.Array, num_slots: int, num_learners: int) -> tuple[jax.Array, ...]:
    """Random rings of learners, one per slot: int32 ``succ`` and ``pred``, each ``[N, S]``."""
    keys = jax.random.split(key, num_slots)
    ring_SxN = jax.vmap(lambda k: jax.random.permutation(k, num_learners))(keys)
    position_SxN = jnp.argsort(ring_SxN, axis=1)
    succ = jnp.take_along_axis(ring_SxN, (position_SxN + 1) % num_learners, axis=1)
    pred = jnp.take_along_axis(ring_SxN, (position_SxN - 1) % num_learners, axis=1)
    return succ.T.astype(jnp.int32), pred.T.astype(jnp.int32)


def collect(
    agent: Agent,
    params: Any,
    key: jax.Array,
    game: Game,
    coplayers_NxKx5: jax.Array,
    succ_NxS: jax.Array,
    pred_NxS: jax.Array,
) -> Batch:
    """Roll out one update's episodes for all learners at once.

    Args:
      agent: the agent module; params: its parameters stacked on a leading learner axis ``[N]``.
      key: PRNG key. game: the game.
      coplayers_NxKx5: tabular co-player of each learner's tabular episodes.
      succ_NxS, pred_NxS: learner rings from ``sample_pairing``.

    Returns:
      ``Batch`` with a leading learner axis: transitions ``[N, T, B]``, ``B = K + 2S``.
    """
    num_learners, num_tabular = coplayers_NxKx5.shape[:2]
    num_slots = succ_NxS.shape[1]
    seats = num_tabular + 2 * num_slots
    z_learner = jnp.zeros((num_learners, 2 * num_slots, strategies.OPPONENT_ID_SIZE))
    z_NxBxZ = jnp.concatenate([strategies.opponent_id(coplayers_NxKx5), z_learner], axis=1)
    vs_learner = jnp.arange(seats) >= num_tabular

    act = jax.vmap(lambda p, c, x: agent.apply(p, c, x, method=Agent.step))
    env_step = jax.vmap(jax.vmap(environment.step, (None, 0, 0)), (None, 0, 0))
    slot = jnp.arange(num_slots)[None, :]

    def partner(x_NxS, idx_NxS):  # x[idx[i, s], s, ...]
        return x_NxS[idx_NxS, slot]

    def split_seats(x):
        return (
            x[:, :num_tabular],
            x[:, num_tabular : num_tabular + num_slots],
            x[:, num_tabular + num_slots :],
        )

    def round_(carry, key):
        agent_carry, tab_env, pair_env, obs, tab_obs, prev_action, prev_reward = carry
        key_agent, key_tab = jax.random.split(key)
        agent_carry, logits, value = act(
            params, agent_carry, RoundInput(obs, prev_action, prev_reward)
        )
        action, log_prob = sample_action(key_agent, logits)
        tab_action, _ = sample_action(key_tab, strategies.logits(coplayers_NxKx5, tab_obs))

        a_tab, a_row, a_col = split_seats(action)
        a_row_partner = partner(a_col, succ_NxS)
        tab_env, tab_obs2, tab_rew2, _ = env_step(game, tab_env, jnp.stack([a_tab, tab_action], -1))
        pair_env, pair_obs2, pair_rew2, _ = env_step(
            game, pair_env, jnp.stack([a_row, a_row_partner], -1)
        )

        next_obs = jnp.concatenate(
            [tab_obs2[..., 0, :], pair_obs2[..., 0, :], partner(pair_obs2[..., 1, :], pred_NxS)],
            axis=1,
        )
        reward = jnp.concatenate(
            [tab_rew2[..., 0], pair_rew2[..., 0], partner(pair_rew2[..., 1], pred_NxS)], axis=1
        )
        co_action = jnp.concatenate([tab_action, a_row_partner, partner(a_row, pred_NxS)], axis=1)
        co_reward = jnp.concatenate(
            [tab_rew2[..., 1], pair_rew2[..., 1], partner(pair_rew2[..., 0], pred_NxS)], axis=1
        )
        out = Transition(obs, action, reward, log_prob, value, co_action, co_reward)
        carry = (agent_carry, tab_env, pair_env, next_obs, tab_obs2[..., 1, :], action, reward)
        return carry, out

    def reset_many(*shape):  # env states and observations [*shape, ...]
        reset = jax.vmap(lambda _: environment.reset(game))(jnp.zeros(math.prod(shape)))
        return jax.tree.map(lambda x: x.reshape(*shape, *x.shape[1:]), reset)

    tab_env, tab_obs_NxKx2x5 = reset_many(num_learners, num_tabular)
    pair_env, _ = reset_many(num_learners, num_slots)
    init = (
        jax.vmap(lambda p, z: agent.apply(p, z, method=Agent.initial_carry))(params, z_NxBxZ),
        tab_env,
        pair_env,
        environment.one_hot_states(jnp.zeros((num_learners, seats), jnp.int32)),
        tab_obs_NxKx2x5[..., 1, :],
        jnp.full((num_learners, seats), -1, jnp.int32),
        jnp.zeros((num_learners, seats), jnp.float32),
    )
    _, transitions_TxNxB = jax.lax.scan(round_, init, jax.random.split(key, game.horizon))
    transitions = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), transitions_TxNxB)
    return Batch(transitions, z_NxBxZ, jnp.broadcast_to(vs_learner, (num_learners, seats)))


# --- Playing any two policies. ------------------------------------------------------------------


class Policy(NamedTuple):
    """A policy for ``play``: pure functions over a carried state, for ``E`` episodes.

    initial_state(num_episodes) -> state.
    step(state, RoundInput [E]) -> (state, logits float32 [E, 2]).
    """

    initial_state: Callable[[int], Any]
    step: Callable[[Any, RoundInput], tuple[Any, jax.Array]]


def tabular_policy(theta: jax.Array) -> Policy:
    """A memory-1 strategy ``[5]`` (or one per episode, ``[E, 5]``) as a ``Policy``."""
    theta = jnp.asarray(theta, jnp.float32)
    return Policy(
        initial_state=lambda num_episodes: (),
        step=lambda state, x: (state, strategies.logits(theta, x.obs)),
    )


def agent_policy(agent: Agent, params: Any, opponent_id: jax.Array | None = None) -> Policy:
    """A trained agent (unstacked ``params``) as a ``Policy``; ``opponent_id`` ``[10]`` if used."""

    def initial_state(num_episodes):
        z = jnp.zeros(strategies.OPPONENT_ID_SIZE) if opponent_id is None else opponent_id
        z = jnp.broadcast_to(z, (num_episodes, strategies.OPPONENT_ID_SIZE))
        return agent.apply(params, z, method=Agent.initial_carry)

    def step(state, x):
        state, logits, _ = agent.apply(params, state, x, method=Agent.step)
        return state, logits

    return Policy(initial_state, step)


class Episodes(NamedTuple):
    """Played episodes: int32 ``actions`` and float32 ``rewards``, both ``[E, T, 2]``."""

    actions: jax.Array
    rewards: jax.Array


def play(
    policy_a: Policy | jax.Array,
    policy_b: Policy | jax.Array,
    key: jax.Array,
    num_episodes: int,
    game: Game | None = None,
) -> Episodes:
    """Play ``num_episodes`` episodes of ``policy_a`` (player 0) against ``policy_b`` (player 1).

    A policy is a ``Policy`` or a tabular strategy array ``[5]`` / ``[E, 5]``.
    ``game`` defaults to the paper's 100-round prisoner's dilemma.
    """
    game = environment.make_game() if game is None else game
    policies = [p if isinstance(p, Policy) else tabular_policy(p) for p in (policy_a, policy_b)]
    env_step = jax.vmap(environment.step, (None, 0, 0))

    def round_(carry, key):
        states, env_state, obs_Ex2x5, prev_action, prev_reward = carry
        keys = jax.random.split(key, 2)
        new_states, actions = [], []
        for i, policy in enumerate(policies):
            x = RoundInput(obs_Ex2x5[:, i], prev_action[:, i], prev_reward[:, i])
            state, logits = policy.step(states[i], x)
            new_states.append(state)
            actions.append(sample_action(keys[i], logits)[0])
        actions = jnp.stack(actions, axis=-1)
        env_state, obs_Ex2x5, rewards, _ = env_step(game, env_state, actions)
        return (tuple(new_states), env_state, obs_Ex2x5, actions, rewards), (actions, rewards)

    env_state, obs = jax.vmap(lambda _: environment.reset(game))(jnp.zeros(num_episodes))
    init = (
        tuple(p.initial_state(num_episodes) for p in policies),
        env_state,
        obs,
        jnp.full((num_episodes, 2), -1, jnp.int32),
        jnp.zeros((num_episodes, 2), jnp.float32),
    )
    _, (actions_TxEx2, rewards_TxEx2) = jax.lax.scan(
        round_, init, jax.random.split(key, game.horizon)
    )
    return Episodes(jnp.swapaxes(actions_TxEx2, 0, 1), jnp.swapaxes(rewards_TxEx2, 0, 1))
