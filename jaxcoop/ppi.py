"""Predictive Policy Improvement (PPI): one sequence model as world model and policy prior, and
the policy improved by Monte-Carlo planning inside it.

The model reads the agent's tokens (``networks.Agent``'s embedding and backbone: one token per
round from the first-person observation, own previous action and previous reward). From the
backbone's output ``y_t`` after round ``t``'s token it predicts, in the order the paper's tokens
come within a round:

* the agent's own action ``a_t`` (``prior``: the policy prior, categorical over C / D);
* given ``a_t`` (``next_obs``): the next observation ``o_{t+1}`` (categorical over the 5 states;
  it is the joint action ``(a_t, b_t)`` seen first-person, so it carries the co-player's move);
* given ``o_{t+1}`` (``reward``): the reward ``r_t`` (Gaussian with unit variance: its negative
  log-likelihood is ``(r_t - r̂_t)² / 2`` up to a constant).

The improved policy is ``π(a | x) ∝ p(a | x) · exp(β · Q̂(x, a))``. ``Q̂`` is the mean over
``K`` rollouts of ``H`` rounds inside the model, started from the backbone's carried state (the
GRU's hidden state, the transformer's key/value cache), never from the history again: the first
round plays ``a``, later rounds sample the agent's action from the prior; the co-player's move is
sampled from the predicted next observation restricted to the two states consistent with the
agent's own action, and the next token reads the model's predicted reward (the Gaussian's mean)
given that observation, as in real play; ``Q̂`` counts the predicted reward expected over the
co-player's move (the same mean as the sampled move's, with less variance). Rewards
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
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES
from jaxcoop.networks import (
    AGENT_FIELDS,
    Agent,
    RoundInput,
    history_inputs,
    init_params,
    states_before,
)
from jaxcoop.rollout import Episodes, Policy, agent_policy, play, play_metrics
from jaxcoop.state import Metrics, Trainer, TrainState
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


# --- Planning inside the model. ----------------------------------------------------------------


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


# --- The phase loop. ---------------------------------------------------------------------------


class Dataset(NamedTuple):
    """Every learner's data, on the device with a fixed size ``M`` (``dataset_size``); only the
    first ``dataset_count`` episodes are filled. PPI keeps it in ``TrainState.opt_state`` (its
    model's optimizer starts afresh every phase, so there is no optimizer state to carry).

    actions: int8 ``[N, M, T, 2]`` first-person episodes (own move, co-player's move); the
      rewards are the game's payoffs of these moves, so they are not stored (2 bytes a round:
      3.2 GB for 10 seeds x 2 learners x 800,000 episodes x 100 rounds at paper scale).
    opponent_id: float32 ``[N, M, 10]``, each episode's opponent-ID vector (zeros against
      learners and frozen co-players), only with ``config.opponent_id`` (else ``None``).
    """

    actions: jax.Array
    opponent_id: jax.Array | None = None


def dataset_size(config) -> int:
    """Episodes per learner at the end of a run: D0 and ``num_iterations`` phases."""
    return config.ppi_pretrain_episodes + config.num_iterations * config.num_episodes


def resize_dataset(data: Dataset, size: int) -> Dataset:
    """``data`` with room for ``size`` episodes per learner (``[..., M, T, 2]`` -> ``[..., size,
    T, 2]``): zero slots added at the end, or empty ones cut off. A phase reads only the first
    ``dataset_count`` episodes, so a run resumed into a resized dataset (``--resume`` with
    another ``num_iterations``) computes the same numbers."""

    def fit(x, axis):
        x = x[(slice(None),) * (x.ndim + axis) + (slice(0, size),)]
        grow = [(0, 0)] * x.ndim
        grow[x.ndim + axis] = (0, size - x.shape[axis])
        return jnp.pad(x, grow)

    ids = None if data.opponent_id is None else fit(data.opponent_id, -2)
    return Dataset(fit(data.actions, -3), ids)


def dataset_count(config, iteration: jax.Array) -> jax.Array:
    """Episodes per learner after ``iteration`` phases."""
    return config.ppi_pretrain_episodes + iteration * config.num_episodes


def prior_start(config, count: jax.Array) -> jax.Array:
    """The first dataset slot whose own actions train the prior when ``count`` episodes are
    filled: 0 with ``ppi_prior_window`` 0 or before the first phase (D0 only), else the first
    of the last ``ppi_prior_window`` phases' episodes (never D0's)."""
    if not config.ppi_prior_window:
        return jnp.zeros((), jnp.int32)
    pretrain = config.ppi_pretrain_episodes
    recent = count - config.ppi_prior_window * config.num_episodes
    return jnp.where(count == pretrain, 0, jnp.maximum(recent, pretrain))


def make_model(config) -> WorldModel:
    """The ``WorldModel`` of ``config``'s agent fields."""
    return WorldModel(**{name: getattr(config, name) for name in AGENT_FIELDS})


def make_optimizer(config) -> optax.GradientTransformation:
    """The model's optimizer: AdamW (``lr``, ``ppi_weight_decay``, beta1 0.9, beta2 0.98)
    after clipping the gradient norm at ``max_grad_norm``."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(config.lr, b1=0.9, b2=0.98, weight_decay=config.ppi_weight_decay),
    )


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


def init_model_params(model: WorldModel, key: jax.Array) -> Any:
    """Parameters of one ``WorldModel``."""
    t = targets(jnp.zeros((1, 1, 2), jnp.int32), jnp.zeros((1, 1)))
    return model.init(key, t.inputs, t.action, t.next_obs, jnp.zeros((1, OPPONENT_ID_SIZE)))


def coplayer_policy(coplayer: Any, params: Any, key: jax.Array) -> Policy:
    """A frozen co-player as a ``Policy``: a ``Planner`` (a PPI agent: it plans with ``key``)
    or an ``Agent`` (A2C / PPO) with its unstacked ``params``."""
    if isinstance(coplayer, Planner):
        return coplayer.policy(params, key)
    return agent_policy(coplayer, params)


def make_trainer(config, coplayer: Any = None) -> Trainer:
    """PPI for ``config`` (``algo="ppi"``) as a ``state.Trainer``; an iteration is a phase.

    Each phase re-initializes every learner's model, trains it for ``ppi_epochs`` passes over
    its data so far (``make_optimizer``; ``ppi_batch_size`` episodes per step, drawn uniformly
    from the data; with ``ppi_prior_window`` W > 0 the own-action term counts only the last W
    phases' episodes, D0 before the first phase: ``prior_start``), collects ``num_episodes``
    episodes per learner with the improved policy (a ``p_tabular`` share against fresh tabular
    co-players of ``pool``, the rest against the next learner on the ring ``n -> (n + 1) % N``,
    each such episode giving data to both players, or against the frozen ``coplayer``; each
    kind in ``ppi_collect_chunks`` sequential pieces, to bound the planner's memory) and
    appends them. ``init`` fills every learner's dataset
    with D0: ``ppi_pretrain_episodes`` episodes of two U(0, 1) tabular agents (a warm start
    replaces them: ``with_initial_data``). The dataset has a fixed size, so a phase is one
    jit-compiled program. A run's mesh lays out its seeds and learners only (``runner``); PPI
    does not split episodes over devices.

    ``coplayer``: a frozen co-player, a ``Planner`` (a trained PPI agent, planning) or an
    ``Agent`` (A2C / PPO), its parameters in ``TrainState.coplayer_params`` (``init`` fills them
    with a random initialization to be replaced). With ``config.opponent_id`` the model reads
    the tabular co-player's identity vector and the dataset keeps it (``Dataset.opponent_id``).

    ``Metrics``: the improved policy's play in the phase's episodes; ``loss`` is the model's
    final minibatch loss (sum of the NLLs), ``policy_loss`` its own-action NLL, ``value_loss``
    its reward NLL (the next-observation NLL is the rest), ``grad_norm`` the last step's;
    ``entropy``, ``approx_kl`` and ``clip_fraction`` are NaN, and so are the frozen
    co-player's fields without one.
    """
    model, planner = make_model(config), make_planner(config)
    game = environment.make_game(config.game, config.horizon)
    learners = config.num_learners
    pretrain, size = config.ppi_pretrain_episodes, dataset_size(config)
    num_tabular = config.num_tabular_episodes
    num_frozen = 0 if coplayer is None else config.num_learner_episodes
    # Episodes per ring pair, each seen from both sides.
    num_pairs = 0 if coplayer is not None else config.num_pair_slots
    with_id = config.opponent_id
    optimizer = make_optimizer(config)

    def d0(key):
        k_a, k_b, k_play = jax.random.split(key, 3)
        thetas_a = strategies.sample_coplayers(k_a, (pretrain,), "uniform")
        thetas_b = strategies.sample_coplayers(k_b, (pretrain,), "uniform")
        actions = play(thetas_a, thetas_b, k_play, pretrain, game).actions.astype(jnp.int8)
        return actions, strategies.opponent_id(thetas_b)

    def init(key: jax.Array) -> TrainState:
        k_data, k_model, key = jax.random.split(key, 3)
        k_coplayer = jax.random.fold_in(k_model, learners)
        actions, ids = jax.vmap(d0)(jax.random.split(k_data, learners))
        grow = ((0, 0), (0, size - pretrain))
        data = Dataset(
            jnp.pad(actions, (*grow, (0, 0), (0, 0))),
            jnp.pad(ids, (*grow, (0, 0))) if with_id else None,
        )
        params = jax.vmap(lambda k: init_model_params(model, k))(
            jax.random.split(k_model, learners)
        )
        coplayer_params = None
        if isinstance(coplayer, Planner):
            coplayer_params = init_model_params(coplayer.model, k_coplayer)
        elif coplayer is not None:
            coplayer_params = init_params(coplayer, k_coplayer)
        return TrainState(params, data, key, jnp.zeros((), jnp.int32), coplayer_params)

    def fit(key, actions_MxTx2, ids_MxZ, count):
        k_init, k_steps = jax.random.split(key)
        params = init_model_params(model, k_init)
        steps = config.ppi_epochs * ((count + config.ppi_batch_size - 1) // config.ppi_batch_size)

        def loss_fn(params, idx):
            actions_TxBx2 = jnp.swapaxes(actions_MxTx2[idx], 0, 1).astype(jnp.int32)
            rewards_TxB = game.payoffs[actions_TxBx2[..., 0], actions_TxBx2[..., 1], 0]
            t = targets(actions_TxBx2, rewards_TxB)
            ids = None if ids_MxZ is None else ids_MxZ[idx]
            recent = (idx >= prior_start(config, count)).astype(jnp.float32)
            loss = model_loss(model, params, t, opponent_id_BxZ=ids, action_weight_B=recent)
            return loss.total, loss

        def body(i, carry):
            params, opt_state, _, _ = carry
            idx = jax.random.randint(
                jax.random.fold_in(k_steps, i), (config.ppi_batch_size,), 0, count
            )
            (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, idx)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, optax.tree.norm(grads)

        zero = ModelLoss(*(jnp.zeros(()) for _ in ModelLoss._fields))
        start = (params, optimizer.init(params), zero, jnp.zeros(()))
        params, _, loss, grad_norm = jax.lax.fori_loop(0, steps, body, start)
        return params, loss, grad_norm

    chunks = config.ppi_collect_chunks

    def in_chunks(play_piece, key, num, xs=None) -> Episodes:
        """``play_piece(key, xs, n)``'s ``num`` episodes (``xs``: per-episode inputs ``[num,
        ...]``) as ``chunks`` sequential pieces of ``n = num // chunks`` (one ``lax.map``; piece
        ``i`` plays with ``fold_in(key, i)``), so only one piece's planner state is live."""
        if chunks == 1 or num == 0:
            return play_piece(key, xs, num)
        n = num // chunks
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(chunks))
        pieces = jax.tree.map(lambda x: x.reshape(chunks, n, *x.shape[1:]), xs)
        out = jax.lax.map(lambda a: play_piece(a[0], a[1], n), (keys, pieces))
        return jax.tree.map(lambda x: x.reshape(num, *x.shape[2:]), out)

    def collect(params, coplayer_params, key):
        k_tab, k_pool, k_frozen, k_pair = jax.random.split(key, 4)
        thetas = strategies.sample_coplayers(k_pool, (learners, num_tabular), config.pool)

        def versus_tabular(p, theta_Kx5, k):
            def piece(k, theta_nx5, n):
                k_plan, k_play = jax.random.split(k)
                ids = strategies.opponent_id(theta_nx5) if with_id else None
                return play(planner.policy(p, k_plan, ids), theta_nx5, k_play, n, game)

            return in_chunks(piece, k, num_tabular, theta_Kx5)

        def versus_frozen(p, k):
            def piece(k, _, n):
                k_plan, k_coplayer, k_play = jax.random.split(k, 3)
                other = coplayer_policy(coplayer, coplayer_params, k_coplayer)
                return play(planner.policy(p, k_plan), other, k_play, n, game)

            return in_chunks(piece, k, num_frozen)

        def versus_learner(p_row, p_col, k):
            def piece(k, _, n):
                k_row, k_col, k_play = jax.random.split(k, 3)
                row, col = planner.policy(p_row, k_row), planner.policy(p_col, k_col)
                return play(row, col, k_play, n, game)

            return in_chunks(piece, k, num_pairs)

        parts = [jax.vmap(versus_tabular)(params, thetas, jax.random.split(k_tab, learners))]
        if coplayer is not None:
            parts.append(jax.vmap(versus_frozen)(params, jax.random.split(k_frozen, learners)))
        else:
            successor = jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), params)
            keys = jax.random.split(k_pair, learners)
            pairs = jax.vmap(versus_learner)(params, successor, keys)
            # Learner n is the row player of pair n and the column player of pair n - 1.
            as_column = jax.tree.map(lambda x: jnp.flip(jnp.roll(x, 1, axis=0), axis=-1), pairs)
            parts += [pairs, as_column]
        actions = jnp.concatenate([e.actions for e in parts], axis=1)
        rewards = jnp.concatenate([e.rewards for e in parts], axis=1)
        ids = None
        if with_id:
            others = jnp.zeros((learners, config.num_learner_episodes, OPPONENT_ID_SIZE))
            ids = jnp.concatenate([strategies.opponent_id(thetas), others], axis=1)
        return actions, rewards, ids  # [N, E, T, 2], [N, E, 10]: tabular episodes first

    def iteration(state: TrainState) -> tuple[TrainState, Metrics]:
        key, k_fit, k_collect = jax.random.split(state.key, 3)
        data, count = state.opt_state, dataset_count(config, state.iteration)
        params, loss, grad_norm = jax.vmap(fit, (0, 0, 0, None))(
            jax.random.split(k_fit, learners), data.actions, data.opponent_id, count
        )
        actions, rewards, ids = collect(params, state.coplayer_params, k_collect)
        new_actions = actions.astype(jnp.int8)
        data = Dataset(
            jax.lax.dynamic_update_slice(data.actions, new_actions, (0, count, 0, 0)),
            None
            if ids is None
            else jax.lax.dynamic_update_slice(data.opponent_id, ids, (0, count, 0)),
        )

        def played(a_ExTx2, r_ExTx2):  # one learner's episodes; seats: the episode axis
            return play_metrics(
                a_ExTx2[..., 0], r_ExTx2[..., 0], a_ExTx2[..., 1], r_ExTx2[..., 1],
                num_tabular, num_frozen, 0,
            )  # fmt: skip

        nan = jnp.full(learners, jnp.nan)
        metrics = Metrics(
            **jax.vmap(played)(actions, rewards),
            loss=loss.total,
            policy_loss=loss.action,
            value_loss=loss.reward,
            entropy=nan,
            approx_kl=nan,
            clip_fraction=nan,
            grad_norm=grad_norm,
        )
        state = state.replace(params=params, opt_state=data, key=key)
        return state.replace(iteration=state.iteration + 1), metrics

    def chunk(state: TrainState) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(lambda s, _: iteration(s), state, None, length=config.chunk_iterations)

    return Trainer(init, iteration, chunk)


def with_initial_data(data: Dataset, actions: jax.Array) -> Dataset:
    """``data`` (``[..., M, T, 2]``) with its first ``P`` episodes (D0) replaced by ``actions``
    ``[..., P, T, 2]``: a warm start from another PPI learner's episodes (their opponent-ID
    vectors become zeros)."""
    pretrain = actions.shape[-3]
    new = data.actions.at[..., :pretrain, :, :].set(jnp.asarray(actions, jnp.int8))
    ids = data.opponent_id
    if ids is not None:
        ids = ids.at[..., :pretrain, :].set(0.0)
    return Dataset(new, ids)
