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
import optax
from flax import linen as nn

from jaxcoop import environment, strategies
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES, START
from jaxcoop.networks import Agent, RoundInput, shift_right
from jaxcoop.rollout import Policy, play
from jaxcoop.strategies import OPPONENT_ID_SIZE
from jaxcoop.train import AGENT_FIELDS


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


# --- The phase loop. ---------------------------------------------------------------------------


class PPIState(NamedTuple):
    """Everything PPI carries from phase to phase (leading ``[N]``: learners).

    params: the models trained in the last phase (at first: untrained ones).
    actions: int32 ``[N, M, T, 2]`` first-person episodes (own move, co-player's move) of the
      dataset; only the first ``count`` of the ``M`` slots hold data.
    rewards: float32 ``[N, M, T]`` own rewards. count: int32 scalar. key, iteration (phases
      done).
    """

    params: Any
    actions: jax.Array
    rewards: jax.Array
    count: jax.Array
    key: jax.Array
    iteration: jax.Array


class PhaseMetrics(NamedTuple):
    """Per-phase, per-learner scalars ``[N]``: the improved policy's reward and cooperation in
    the episodes collected this phase (vs the other learners, vs tabular co-players; NaN when
    there are none), the tabular co-players' reward, and the model's final losses."""

    reward_vs_learner: jax.Array
    coop_vs_learner: jax.Array
    reward_vs_tabular: jax.Array
    coop_vs_tabular: jax.Array
    tabular_reward: jax.Array
    model_loss: jax.Array
    action_nll: jax.Array
    obs_nll: jax.Array
    reward_nll: jax.Array


class PPI(NamedTuple):
    """Pure functions of a PPI run: ``init(key) -> PPIState`` (the pretraining data D0 in
    every learner's dataset) and ``phase(state) -> (state, PhaseMetrics)``."""

    init: Callable[[jax.Array], PPIState]
    phase: Callable[[PPIState], tuple[PPIState, PhaseMetrics]]
    model: WorldModel


def make_model(config) -> WorldModel:
    """The ``WorldModel`` of ``config``'s agent fields."""
    return WorldModel(**{name: getattr(config, name) for name in AGENT_FIELDS})


def make_ppi(config) -> PPI:
    """PPI for ``config`` (``algo="ppi"``): each phase re-initializes every learner's model,
    trains it for ``ppi_epochs`` passes over its data so far (AdamW: ``lr``, ``ppi_weight_decay``,
    beta1 0.9, beta2 0.98, clipped at ``max_grad_norm``; minibatches of ``ppi_batch_size``
    episodes drawn uniformly from the data), collects ``num_episodes`` episodes per learner with
    the improved policy (a ``p_tabular`` share against fresh tabular co-players of ``pool``, the
    rest against the next learner on the ring ``n -> (n + 1) % N``, each such episode giving data
    to both players) and appends them. The dataset has a fixed size (D0 plus
    ``num_iterations`` phases' episodes), so a phase is one jit-compiled program (phases past
    ``num_iterations`` would overwrite the last slots)."""
    model = make_model(config)
    game = environment.make_game(config.game, config.horizon)
    learners, horizon = config.num_learners, config.horizon
    pretrain, per_phase = config.ppi_pretrain_episodes, config.num_episodes
    size = pretrain + config.num_iterations * per_phase
    num_tabular = config.num_tabular_episodes
    half = config.num_learner_episodes // 2  # episodes per ring pair, each seen from both sides
    optimizer = make_optimizer(config)

    def init_model(key):
        t = targets(jnp.zeros((horizon, 1, 2), jnp.int32), jnp.zeros((horizon, 1)))
        return model.init(key, t.inputs, t.action, jnp.zeros((1, OPPONENT_ID_SIZE)))

    def planner(params, key):
        return improved_policy(
            network_model(model, params),
            key,
            horizon,
            num_rollouts=config.ppi_rollouts,
            depth=config.ppi_depth,
            beta=config.ppi_beta,
            gamma=config.gamma,
        )

    def d0(key):
        k_a, k_b, k_play = jax.random.split(key, 3)
        thetas_a = strategies.sample_coplayers(k_a, (pretrain,), "uniform")
        thetas_b = strategies.sample_coplayers(k_b, (pretrain,), "uniform")
        episodes = play(thetas_a, thetas_b, k_play, pretrain, game)
        return episodes.actions, episodes.rewards[..., 0]

    def init(key: jax.Array) -> PPIState:
        k_data, k_model, key = jax.random.split(key, 3)
        actions, rewards = jax.vmap(d0)(jax.random.split(k_data, learners))
        pad = size - pretrain
        actions = jnp.pad(actions, ((0, 0), (0, pad), (0, 0), (0, 0)))
        rewards = jnp.pad(rewards, ((0, 0), (0, pad), (0, 0)))
        params = jax.vmap(init_model)(jax.random.split(k_model, learners))
        count = jnp.asarray(pretrain, jnp.int32)
        return PPIState(params, actions, rewards, count, key, jnp.zeros((), jnp.int32))

    def fit(key, actions_MxTx2, rewards_MxT, count):
        k_init, k_steps = jax.random.split(key)
        params = init_model(k_init)
        batches_per_epoch = (count + config.ppi_batch_size - 1) // config.ppi_batch_size
        steps = config.ppi_epochs * batches_per_epoch

        def loss_fn(params, idx):
            t = targets(
                jnp.swapaxes(actions_MxTx2[idx], 0, 1), jnp.swapaxes(rewards_MxT[idx], 0, 1)
            )
            loss = model_loss(model, params, t)
            return loss.total, loss

        def body(i, carry):
            params, opt_state, _ = carry
            idx = jax.random.randint(
                jax.random.fold_in(k_steps, i), (config.ppi_batch_size,), 0, count
            )
            (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, idx)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        zero = ModelLoss(*(jnp.zeros(()) for _ in ModelLoss._fields))
        params, _, loss = jax.lax.fori_loop(0, steps, body, (params, optimizer.init(params), zero))
        return params, loss

    def collect(params, key):
        k_tab, k_pool, k_pair = jax.random.split(key, 3)
        thetas = strategies.sample_coplayers(k_pool, (learners, num_tabular), config.pool)

        def versus_tabular(p, theta_Kx5, k):
            k_plan, k_play = jax.random.split(k)
            return play(planner(p, k_plan), theta_Kx5, k_play, num_tabular, game)

        def versus_learner(p_row, p_col, k):
            k_row, k_col, k_play = jax.random.split(k, 3)
            return play(planner(p_row, k_row), planner(p_col, k_col), k_play, half, game)

        tab = jax.vmap(versus_tabular)(params, thetas, jax.random.split(k_tab, learners))
        successor = jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), params)
        pairs = jax.vmap(versus_learner)(params, successor, jax.random.split(k_pair, learners))
        # Learner n is the row player of pair n and the column player of pair n - 1.
        as_column = jax.tree.map(lambda x: jnp.flip(jnp.roll(x, 1, axis=0), axis=-1), pairs)
        learner_actions = jnp.concatenate([pairs.actions, as_column.actions], axis=1)
        learner_rewards = jnp.concatenate([pairs.rewards, as_column.rewards], axis=1)
        actions = jnp.concatenate([tab.actions, learner_actions], axis=1)  # [N, E, T, 2]
        rewards = jnp.concatenate([tab.rewards, learner_rewards], axis=1)
        return actions, rewards

    def phase(state: PPIState) -> tuple[PPIState, PhaseMetrics]:
        key, k_fit, k_collect = jax.random.split(state.key, 3)
        fit_keys = jax.random.split(k_fit, learners)
        params, loss = jax.vmap(fit, (0, 0, 0, None))(
            fit_keys, state.actions, state.rewards, state.count
        )
        actions, rewards = collect(params, k_collect)
        write = (0, state.count, 0, 0)
        data_actions = jax.lax.dynamic_update_slice(state.actions, actions, write)
        data_rewards = jax.lax.dynamic_update_slice(state.rewards, rewards[..., 0], write[:3])
        coop = (actions[..., 0] == environment.C).astype(jnp.float32)

        def mean(x, part):
            return x[:, part].mean(axis=(1, 2)) if x[:, part].size else jnp.full(learners, jnp.nan)

        tab, lrn = slice(None, num_tabular), slice(num_tabular, None)
        metrics = PhaseMetrics(
            reward_vs_learner=mean(rewards[..., 0], lrn),
            coop_vs_learner=mean(coop, lrn),
            reward_vs_tabular=mean(rewards[..., 0], tab),
            coop_vs_tabular=mean(coop, tab),
            tabular_reward=mean(rewards[..., 1], tab),
            model_loss=loss.total,
            action_nll=loss.action,
            obs_nll=loss.obs,
            reward_nll=loss.reward,
        )
        new = PPIState(
            params,
            data_actions,
            data_rewards,
            state.count + per_phase,
            key,
            state.iteration + 1,
        )
        return new, metrics

    return PPI(init, phase, model)


def make_optimizer(config) -> optax.GradientTransformation:
    """The model's optimizer: AdamW (``lr``, ``ppi_weight_decay``, beta1 0.9, beta2 0.98)
    after clipping the gradient norm at ``max_grad_norm``."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(config.lr, b1=0.9, b2=0.98, weight_decay=config.ppi_weight_decay),
    )
