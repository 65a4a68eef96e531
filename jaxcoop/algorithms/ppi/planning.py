"""Planning inside PPI's model: Monte-Carlo ``q_values``, the improved policy
``π(a | x) ∝ p(a | x) · exp(β · Q̂(x, a))`` (``improved_policy``) and the ``Planner`` that acts
for a trained PPI learner."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcoop import environment, strategies
from jaxcoop.algorithms.ppi.model import Model, WorldModel, make_model, network_model
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES
from jaxcoop.networks import RoundInput
from jaxcoop.rollout import Policy, agent_policy


def consistent_pair(obs_logits: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two next observations ``1 + 2 * action + b`` consistent with the agent's own
    ``action`` ``[B]`` (co-player's move ``b`` = C, D): their states int32 ``[B, 2]`` and the
    next-observation logits ``[B, 5]`` restricted to them ``[B, 2]``."""
    states = (1 + 2 * action)[..., None] + jnp.arange(NUM_ACTIONS, dtype=jnp.int32)[None]
    return states, jnp.take_along_axis(obs_logits, states, axis=-1)


def q_values(
    model: Model,
    carry: Any,
    y: jax.Array,
    rounds_left: jax.Array,
    key: jax.Array,
    num_rollouts: int,
    depth: int,
    gamma: float = 1.0,
) -> jax.Array:
    """Monte-Carlo ``Q̂(x, a)`` ``[B, 2]`` of both actions from the model's state after the
    current round's token (``carry``, features ``y`` ``[B, ...]``).

    Each of ``num_rollouts`` rollouts per action plays ``depth`` rounds inside the model: the
    first round plays the action, later ones sample it from the prior; returns are discounted
    by ``gamma`` and count only the ``rounds_left`` rounds (int32 ``[B]`` or scalar) left in
    the episode. All ``2 * num_rollouts`` rollouts run as one ``vmap`` of one ``scan``.
    """
    batch = y.shape[0]
    rounds_left = jnp.broadcast_to(jnp.asarray(rounds_left, jnp.int32), (batch,))

    def rollout(first_action: jax.Array, key: jax.Array) -> jax.Array:
        def round_(state, h):
            carry, y, action, key = state
            key, k_move, k_action = jax.random.split(key, 3)
            states_Bx2, logits_Bx2 = consistent_pair(model.next_obs(y, action), action)
            rewards_Bx2 = jnp.stack([model.reward(y, o) for o in states_Bx2.T], axis=-1)
            move = jax.random.categorical(k_move, logits_Bx2).astype(jnp.int32)
            reward = jnp.take_along_axis(rewards_Bx2, move[:, None], axis=-1)[:, 0]
            # Q̂ counts the reward expected over the co-player's move (lower variance, same
            # mean); the next token reads the sampled move's reward, as in real play.
            expected = (jax.nn.softmax(logits_Bx2) * rewards_Bx2).sum(axis=-1)
            counted = (h < rounds_left).astype(reward.dtype) * gamma**h
            x = RoundInput(environment.one_hot_states(1 + 2 * action + move), action, reward)
            carry, y = model.advance(carry, x)
            next_action = jax.random.categorical(k_action, model.prior(y)).astype(jnp.int32)
            return (carry, y, next_action, key), counted * expected

        start = (carry, y, jnp.full((batch,), first_action, jnp.int32), key)
        _, rewards_HxB = jax.lax.scan(round_, start, jnp.arange(depth))
        return rewards_HxB.sum(axis=0)

    actions = jnp.repeat(jnp.arange(NUM_ACTIONS, dtype=jnp.int32), num_rollouts)
    keys = jax.random.split(key, NUM_ACTIONS * num_rollouts)
    returns_RxB = jax.vmap(rollout)(actions, keys)  # R = 2 * num_rollouts, action-major
    return returns_RxB.reshape(NUM_ACTIONS, num_rollouts, batch).mean(axis=1).T


def against_tabular(model: Model, theta: jax.Array, payoffs: jax.Array) -> Model:
    """``model``'s own prior played against a real tabular co-player ``theta`` (``[5]`` or
    ``[B, 5]``, its own view): its moves come from ``theta`` given the last joint action and
    the rewards from the game (``payoffs`` ``[2, 2, 2]``), so ``q_values`` of this model is
    the value of each action, followed by the prior, against that co-player: what ``Q̂``
    estimates there, to measure a trained model's planning error. Features: the model's, with
    the last state's one-hot ``[B, 5]`` appended."""
    theta = jnp.asarray(theta, jnp.float32)
    mirror = jnp.array([0, 1, 3, 2, 4])  # a first-person state seen by the co-player
    own_payoff = jnp.asarray(payoffs, jnp.float32)[..., 0].reshape(-1)  # CC, CD, DC, DD

    def advance(carry, x: RoundInput):
        carry, y = model.advance(carry, x)
        return carry, jnp.concatenate([y, x.obs.astype(y.dtype)], axis=-1)

    def next_obs(y, action):
        log_p_Bx2 = strategies.logits(theta, y[..., -NUM_STATES:][..., mirror])
        first = (1 + 2 * action)[..., None]
        states = jnp.arange(NUM_STATES)[None]
        log_p = jnp.where(states == first, log_p_Bx2[..., :1], -1e9)
        return jnp.where(states == first + 1, log_p_Bx2[..., 1:], log_p)

    return Model(
        model.initial_carry,
        advance,
        lambda y: model.prior(y[..., :-NUM_STATES]),
        next_obs,
        lambda y, obs: own_payoff[obs - 1],
    )


def improved_logits(prior_logits: jax.Array, q_Bx2: jax.Array, beta: float) -> jax.Array:
    """Logits of ``π(a | x) ∝ p(a | x) · exp(β · Q̂(x, a))`` (normalized log-probabilities)."""
    return jax.nn.log_softmax(jax.nn.log_softmax(prior_logits) + beta * q_Bx2)


class PlannerState(NamedTuple):
    """The improved policy's carried state: the model's carry, the round, the PRNG key."""

    carry: Any
    round: jax.Array
    key: jax.Array


def improved_policy(
    model: Model,
    key: jax.Array,
    horizon: int,
    *,
    num_rollouts: int,
    depth: int,
    beta: float,
    gamma: float = 1.0,
) -> Policy:
    """The improved policy as a ``rollout.Policy`` for ``play``: each round it reads the token,
    plans with ``q_values`` and returns ``improved_logits``. The rollouts' randomness comes
    from ``key`` (split every round), so the same key gives the same play. It plans for
    ``horizon`` rounds and plays at most that many (``Policy.max_rounds``)."""

    def initial_state(num_episodes: int) -> PlannerState:
        return PlannerState(model.initial_carry(num_episodes), jnp.zeros((), jnp.int32), key)

    def step(state: PlannerState, x: RoundInput) -> tuple[PlannerState, jax.Array]:
        carry, y = model.advance(state.carry, x)
        key, k_plan = jax.random.split(state.key)
        q = q_values(model, carry, y, horizon - state.round, k_plan, num_rollouts, depth, gamma)
        logits = improved_logits(model.prior(y), q, beta)
        return PlannerState(carry, state.round + 1, key), logits

    return Policy(initial_state, step, max_rounds=horizon)


class Planner(NamedTuple):
    """How a PPI learner acts: its model and the planning settings (``improved_policy``).
    Hashable, so ``evaluation.match`` compiles once per pair of players' kinds."""

    model: WorldModel
    horizon: int
    num_rollouts: int
    depth: int
    beta: float
    gamma: float

    @property
    def max_rounds(self) -> int:
        """It plans for ``horizon`` rounds and plays at most that many."""
        return self.horizon

    def policy(self, params: Any, key: jax.Array, opponent_id: jax.Array | None = None) -> Policy:
        """The improved policy of the model with ``params``, planning with ``key``; the
        co-players' ``opponent_id`` ``[10]`` / ``[E, 10]`` if the model was trained with it."""
        return improved_policy(
            network_model(self.model, params, opponent_id),
            key,
            self.horizon,
            num_rollouts=self.num_rollouts,
            depth=self.depth,
            beta=self.beta,
            gamma=self.gamma,
        )


def make_planner(config) -> Planner:
    return Planner(
        make_model(config),
        config.horizon,
        config.ppi_rollouts,
        config.ppi_depth,
        config.ppi_beta,
        config.gamma,
    )


def coplayer_policy(coplayer: Any, params: Any, key: jax.Array) -> Policy:
    """A frozen co-player as a ``Policy``: a ``Planner`` (a PPI agent: it plans with ``key``)
    or an ``Agent`` (A2C / PPO) with its unstacked ``params``."""
    if isinstance(coplayer, Planner):
        return coplayer.policy(params, key)
    return agent_policy(coplayer, params)
