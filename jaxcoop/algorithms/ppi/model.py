"""PPI's sequence model: ``WorldModel`` (the agent's tokens and backbone with heads for the
action prior, the next observation and the reward), ``Model`` (what planning needs of it, as
pure functions) and the model's loss on first-person episodes (``targets``, ``model_loss``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcoop import environment
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES
from jaxcoop.networks import AGENT_FIELDS, Agent, RoundInput, history_inputs, states_before
from jaxcoop.strategies import OPPONENT_ID_SIZE


class WorldModel(Agent):
    """The PPI sequence model: ``Agent``'s tokens and backbone, the policy head as the action
    prior, a head for the next observation given the agent's own action and one for the reward
    given the next observation (each with one hidden layer; no value head). Same fields as
    ``Agent``."""

    def setup(self):
        super().setup()
        self.obs_hidden = nn.Dense(self.embed_dim, name="next_obs_hidden")
        self.obs_head = nn.Dense(NUM_STATES, name="next_obs")
        self.reward_hidden = nn.Dense(self.embed_dim, name="next_reward_hidden")
        self.reward_head = nn.Dense(1, name="next_reward")

    def advance(self, carry: Any, x: RoundInput) -> tuple[Any, jax.Array]:
        """One round's token for ``B`` episodes: the new carry and features ``y`` ``[B, H]``."""
        carry, y = self.core.step(carry, self._token(x))
        return carry, nn.swish(y)

    def prior(self, y: jax.Array) -> jax.Array:
        """Action logits ``[..., 2]`` (the policy prior) from features ``[..., H]``."""
        return self.policy_head(y)

    def next_obs(self, y: jax.Array, action: jax.Array) -> jax.Array:
        """Next-observation logits ``[..., 5]`` from features ``[..., H]`` after ``action``, by
        one hidden layer (``embed_dim``, swish), like ``reward``: through one linear layer the
        own action's two weights per state would take hundreds of Adam steps to rule out the
        three states inconsistent with it (next-observation NLL 1.08 against 0.66 after 300
        steps on the cpu scale's D0)."""
        z = jnp.concatenate([y, jax.nn.one_hot(action, NUM_ACTIONS, dtype=y.dtype)], axis=-1)
        return self.obs_head(nn.swish(self.obs_hidden(z)))

    def reward(self, y: jax.Array, next_obs: jax.Array) -> jax.Array:
        """Predicted reward ``[...]`` from features ``[..., H]`` and the next observation, by one
        hidden layer (``embed_dim``, swish): through a single linear layer the observation
        would move the prediction only by its five weights, each by at most about ``lr`` per
        Adam step, and the payoffs (-1 to 2) would stay underfit for hundreds of steps."""
        z = jnp.concatenate([y, environment.one_hot_states(next_obs).astype(y.dtype)], axis=-1)
        return self.reward_head(nn.swish(self.reward_hidden(z)))[..., 0]

    def __call__(
        self, x: RoundInput, action_TxB: jax.Array, next_obs_TxB: jax.Array, z_BxZ: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Whole episodes ``[T, B]``: action logits ``[T, B, 2]``, next-observation logits
        ``[T, B, 5]`` given the actions taken and predicted rewards ``[T, B]`` given the next
        observations."""
        y = nn.swish(self.features(x, z_BxZ))
        return self.prior(y), self.next_obs(y, action_TxB), self.reward(y, next_obs_TxB)


class Model(NamedTuple):
    """What planning needs of a model, as pure functions (``network_model`` for a
    ``WorldModel``; tests plug in exact tabular ones).

    initial_carry(num_episodes) -> carry.
    advance(carry, RoundInput [B]) -> (carry, y [B, ...]).
    prior(y) -> action logits [B, 2].
    next_obs(y, action [B]) -> next-observation logits [B, 5].
    reward(y, next_obs [B]) -> predicted reward [B].
    """

    initial_carry: Callable[[int], Any]
    advance: Callable[[Any, RoundInput], tuple[Any, jax.Array]]
    prior: Callable[[jax.Array], jax.Array]
    next_obs: Callable[[jax.Array, jax.Array], jax.Array]
    reward: Callable[[jax.Array, jax.Array], jax.Array]


def _opponent_ids(opponent_id: jax.Array | None, num_episodes: int) -> jax.Array:
    """Opponent-ID vectors ``[E, 10]``: ``opponent_id`` (``[10]`` or ``[E, 10]``) or zeros."""
    shape = (num_episodes, OPPONENT_ID_SIZE)
    if opponent_id is None:
        return jnp.zeros(shape, jnp.float32)
    return jnp.broadcast_to(jnp.asarray(opponent_id, jnp.float32), shape)


def network_model(model: WorldModel, params: Any, opponent_id: jax.Array | None = None) -> Model:
    """A ``WorldModel`` with (unstacked) ``params`` as a ``Model``; ``opponent_id`` ``[10]`` or
    ``[E, 10]`` (``strategies.opponent_id``) when the model was trained with it, else zeros."""

    def initial_carry(num_episodes):
        z = _opponent_ids(opponent_id, num_episodes)
        return model.apply(params, z, method=WorldModel.initial_carry)

    return Model(
        initial_carry,
        lambda carry, x: model.apply(params, carry, x, method=WorldModel.advance),
        lambda y: model.apply(params, y, method=WorldModel.prior),
        lambda y, a: model.apply(params, y, a, method=WorldModel.next_obs),
        lambda y, o: model.apply(params, y, o, method=WorldModel.reward),
    )


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
    inputs = history_inputs(states_before(next_obs), own, rewards_TxB)
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
    model: WorldModel,
    params: Any,
    t: Targets,
    weight_B: jax.Array | None = None,
    opponent_id_BxZ: jax.Array | None = None,
    action_weight_B: jax.Array | None = None,
) -> ModelLoss:
    """The sum of the three negative log-likelihoods (own action, next observation, reward with
    unit variance: ``(r - r̂)² / 2``), averaged over rounds and the episodes' ``weight_B``
    (default: all 1; 0 leaves an episode out, e.g. unused dataset slots). ``opponent_id_BxZ``:
    the episodes' opponent-ID vectors (default zeros). ``action_weight_B``: the own-action
    term's episode weights instead (default ``weight_B``), e.g. only recent episodes for the
    prior."""
    batch = t.action.shape[1]
    z = _opponent_ids(opponent_id_BxZ, batch)
    logits, obs_logits, reward = model.apply(params, t.inputs, t.action, t.next_obs, z)
    weight_B = jnp.ones((batch,), jnp.float32) if weight_B is None else weight_B
    action_weight_B = weight_B if action_weight_B is None else action_weight_B

    def mean(x_TxB, w_B):
        w_TxB = jnp.broadcast_to(w_B[None], x_TxB.shape)
        return (x_TxB * w_TxB).sum() / jnp.maximum(w_TxB.sum(), 1.0)

    parts = (
        mean(_nll(logits, t.action), action_weight_B),
        mean(_nll(obs_logits, t.next_obs), weight_B),
        mean(0.5 * (t.reward - reward) ** 2, weight_B),
    )
    return ModelLoss(sum(parts), *parts)


def make_model(config) -> WorldModel:
    """The ``WorldModel`` of ``config``'s agent fields."""
    return WorldModel(**{name: getattr(config, name) for name in AGENT_FIELDS})


def init_model_params(model: WorldModel, key: jax.Array) -> Any:
    """Parameters of one ``WorldModel``."""
    t = targets(jnp.zeros((1, 1, 2), jnp.int32), jnp.zeros((1, 1)))
    return model.init(key, t.inputs, t.action, t.next_obs, jnp.zeros((1, OPPONENT_ID_SIZE)))
