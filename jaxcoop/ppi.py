"""Predictive Policy Improvement (PPI): one sequence model as world model and policy prior, and
the policy improved by Monte-Carlo planning inside it.

The model reads the agent's tokens (``networks.Agent``'s embedding and backbone: one token per
round from the first-person observation, own previous action and previous reward). From the
backbone's output ``y_t`` after round ``t``'s token it predicts, in the order the paper's tokens
come within a round:

* the agent's own action ``a_t`` (``prior``: the policy prior, categorical over C / D);
* given ``a_t`` (``outcome``): the next observation ``o_{t+1}`` (categorical over the 5 states;
  it is the joint action ``(a_t, b_t)`` seen first-person, so it carries the co-player's move)
  and the reward ``r_t`` (Gaussian with unit variance: its negative log-likelihood is
  ``(r_t - r̂_t)² / 2`` up to a constant).

The improved policy is ``π(a | x) ∝ p(a | x) · exp(β · Q̂(x, a))``. ``Q̂`` is the mean over
``K`` rollouts of ``H`` rounds inside the model, started from the backbone's carried state (the
GRU's hidden state, the transformer's key/value cache), never from the history again: the first
round plays ``a``, later rounds sample the agent's action from the prior; the co-player's move is
sampled from the predicted next observation restricted to the two states consistent with the
agent's own action, and the reward is the model's predicted mean (the Gaussian's mode). Rewards
after the episode's last round are not counted. All rollouts for all episodes of a batch are one
``vmap``ped ``scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcoop import environment
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES, START
from jaxcoop.networks import Agent, RoundInput, shift_right
from jaxcoop.rollout import Policy
from jaxcoop.strategies import OPPONENT_ID_SIZE


class WorldModel(Agent):
    """The PPI sequence model: ``Agent``'s tokens and backbone, the policy head as the action
    prior, and heads for the next observation and reward given the agent's own action (no value
    head). Same fields as ``Agent``."""

    def setup(self):
        super().setup()
        self.obs_head = nn.Dense(NUM_STATES, name="next_obs")
        self.reward_head = nn.Dense(1, name="next_reward")

    def advance(self, carry: Any, x: RoundInput) -> tuple[Any, jax.Array]:
        """One round's token for ``B`` episodes: the new carry and features ``y`` ``[B, H]``."""
        carry, y = self.core.step(carry, self._token(x))
        return carry, nn.swish(y)

    def prior(self, y: jax.Array) -> jax.Array:
        """Action logits ``[..., 2]`` (the policy prior) from features ``[..., H]``."""
        return self.policy_head(y)

    def outcome(self, y: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Next-observation logits ``[..., 5]`` and predicted reward ``[...]`` after ``action``."""
        z = jnp.concatenate([y, jax.nn.one_hot(action, NUM_ACTIONS, dtype=y.dtype)], axis=-1)
        return self.obs_head(z), self.reward_head(z)[..., 0]

    def __call__(
        self, x: RoundInput, action_TxB: jax.Array, z_BxZ: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Whole episodes ``[T, B]``: action logits ``[T, B, 2]``, next-observation logits
        ``[T, B, 5]`` and predicted rewards ``[T, B]`` (given the actions taken)."""
        y = nn.swish(self.features(x, z_BxZ))
        return (self.prior(y), *self.outcome(y, action_TxB))


class Model(NamedTuple):
    """What planning needs of a model, as pure functions (``network_model`` for a
    ``WorldModel``; tests plug in exact tabular ones).

    initial_carry(num_episodes) -> carry.
    advance(carry, RoundInput [B]) -> (carry, y [B, ...]).
    prior(y) -> action logits [B, 2].
    outcome(y, action [B]) -> (next-observation logits [B, 5], predicted reward [B]).
    """

    initial_carry: Callable[[int], Any]
    advance: Callable[[Any, RoundInput], tuple[Any, jax.Array]]
    prior: Callable[[jax.Array], jax.Array]
    outcome: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def network_model(model: WorldModel, params: Any) -> Model:
    """A ``WorldModel`` with (unstacked) ``params`` as a ``Model`` (no opponent ID: zeros)."""

    def initial_carry(num_episodes):
        z = jnp.zeros((num_episodes, OPPONENT_ID_SIZE), jnp.float32)
        return model.apply(params, z, method=WorldModel.initial_carry)

    return Model(
        initial_carry,
        lambda carry, x: model.apply(params, carry, x, method=WorldModel.advance),
        lambda y: model.apply(params, y, method=WorldModel.prior),
        lambda y, a: model.apply(params, y, a, method=WorldModel.outcome),
    )


# --- The model's loss. -------------------------------------------------------------------------


class Targets(NamedTuple):
    """First-person episodes ``[T, B]`` as the model sees and predicts them.

    inputs: the ``RoundInput`` of every round. action: int32 own action ``a_t``.
    next_obs: int32 state ``o_{t+1}`` (1..4) after round ``t``. reward: float32 own ``r_t``.
    """

    inputs: RoundInput
    action: jax.Array
    next_obs: jax.Array
    reward: jax.Array


def targets(actions_TxBx2: jax.Array, rewards_TxB: jax.Array) -> Targets:
    """``Targets`` from first-person episodes: actions ``[T, B, 2]`` (own, co-player's) and
    own rewards ``[T, B]``."""
    own = actions_TxBx2[..., 0]
    next_obs = environment.first_person_states(actions_TxBx2)[..., 0]
    inputs = RoundInput(
        obs=environment.one_hot_states(shift_right(next_obs, START)),
        prev_action=shift_right(own, -1),
        prev_reward=shift_right(rewards_TxB, 0.0),
    )
    return Targets(inputs, own, next_obs, rewards_TxB)


class ModelLoss(NamedTuple):
    """Mean negative log-likelihoods per round (``total`` is their sum)."""

    total: jax.Array
    action: jax.Array
    obs: jax.Array
    reward: jax.Array


def _nll(logits: jax.Array, label: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_p, label[..., None], axis=-1)[..., 0]


def model_loss(
    model: WorldModel, params: Any, t: Targets, weight_B: jax.Array | None = None
) -> ModelLoss:
    """The sum of the three negative log-likelihoods (own action, next observation, reward with
    unit variance: ``(r - r̂)² / 2``), averaged over rounds and the episodes' ``weight_B``
    (default: all 1; 0 leaves an episode out, e.g. unused dataset slots)."""
    batch = t.action.shape[1]
    z = jnp.zeros((batch, OPPONENT_ID_SIZE), jnp.float32)
    logits, obs_logits, reward = model.apply(params, t.inputs, t.action, z)
    weight_B = jnp.ones((batch,), jnp.float32) if weight_B is None else weight_B
    weight_TxB = jnp.broadcast_to(weight_B[None], t.action.shape)
    denominator = jnp.maximum(weight_TxB.sum(), 1.0)

    def mean(x_TxB):
        return (x_TxB * weight_TxB).sum() / denominator

    parts = (
        mean(_nll(logits, t.action)),
        mean(_nll(obs_logits, t.next_obs)),
        mean(0.5 * (t.reward - reward) ** 2),
    )
    return ModelLoss(sum(parts), *parts)


# --- Planning inside the model. ----------------------------------------------------------------


def _coplayer_move(key: jax.Array, obs_logits: jax.Array, action: jax.Array) -> jax.Array:
    """The co-player's move, sampled from the next-observation logits ``[B, 5]`` restricted to
    the two states ``1 + 2 * action + b`` consistent with the agent's own ``action``."""
    first = 1 + 2 * action
    pair = jnp.stack(
        [
            jnp.take_along_axis(obs_logits, first[..., None], axis=-1)[..., 0],
            jnp.take_along_axis(obs_logits, (first + 1)[..., None], axis=-1)[..., 0],
        ],
        axis=-1,
    )
    return jax.random.categorical(key, pair, axis=-1).astype(jnp.int32)


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
            obs_logits, reward = model.outcome(y, action)
            move = _coplayer_move(k_move, obs_logits, action)
            counted = (h < rounds_left).astype(reward.dtype) * gamma**h
            x = RoundInput(environment.one_hot_states(1 + 2 * action + move), action, reward)
            carry, y = model.advance(carry, x)
            next_action = jax.random.categorical(k_action, model.prior(y)).astype(jnp.int32)
            return (carry, y, next_action, key), counted * reward

        start = (carry, y, jnp.full((batch,), first_action, jnp.int32), key)
        _, rewards_HxB = jax.lax.scan(round_, start, jnp.arange(depth))
        return rewards_HxB.sum(axis=0)

    actions = jnp.repeat(jnp.arange(NUM_ACTIONS, dtype=jnp.int32), num_rollouts)
    keys = jax.random.split(key, NUM_ACTIONS * num_rollouts)
    returns_RxB = jax.vmap(rollout)(actions, keys)  # R = 2 * num_rollouts, action-major
    return returns_RxB.reshape(NUM_ACTIONS, num_rollouts, batch).mean(axis=1).T


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
    from ``key`` (split every round), so the same key gives the same play."""

    def initial_state(num_episodes: int) -> PlannerState:
        return PlannerState(model.initial_carry(num_episodes), jnp.zeros((), jnp.int32), key)

    def step(state: PlannerState, x: RoundInput) -> tuple[PlannerState, jax.Array]:
        carry, y = model.advance(state.carry, x)
        key, k_plan = jax.random.split(state.key)
        q = q_values(model, carry, y, horizon - state.round, k_plan, num_rollouts, depth, gamma)
        logits = improved_logits(model.prior(y), q, beta)
        return PlannerState(carry, state.round + 1, key), logits

    return Policy(initial_state, step)
