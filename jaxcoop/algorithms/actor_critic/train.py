"""A2C and PPO: the actor-critic's fused training iteration (rollout -> advantages -> update,
for all learners), as a ``state.Trainer``.

Learners are stacked on a leading axis ``[N]`` and updated with ``vmap``: decentralized, each with
its own parameters and optimizer state, no parameter sharing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxcoop import environment, rollout, sharding, strategies
from jaxcoop.algorithms.actor_critic import losses
from jaxcoop.config import Config
from jaxcoop.networks import Agent, init_params, make_agent
from jaxcoop.sharding import Sharder, no_sharding
from jaxcoop.state import Metrics, PlayMetrics, Trainer, TrainState


class LearningMetrics(NamedTuple):
    """What an update reports, per learner (``[N]``; means over the batch): the total loss, its
    policy and value terms, the policy's entropy, PPO's ``approx_kl`` and ``clip_fraction``
    (how far its update moved from the acting policy; NaN with A2C, which has no such
    quantity) and the gradient norm before clipping."""

    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array


def make_optimizer(config: Config) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.lr, eps=config.adam_eps),
    )


def advantages_and_targets(config: Config, t: rollout.Transition) -> tuple[jax.Array, jax.Array]:
    """GAE advantages (normalized if configured) and value targets ``[T, B]`` of one learner's
    transitions, from the rollout's values (no gradient flows through them)."""
    advantages, targets = losses.gae(
        t.reward * config.reward_scale,
        jax.lax.stop_gradient(t.value),
        config.gamma,
        config.gae_lambda,
    )
    if config.normalize_advantages:
        advantages = losses.normalize(advantages)
    return advantages, targets


def algorithm_loss(
    config: Config,
    logits: jax.Array,
    values: jax.Array,
    t: rollout.Transition,
    advantages: jax.Array,
    targets: jax.Array,
) -> tuple[jax.Array, losses.LossInfo]:
    """``config.algo``'s loss of one learner's ``logits [T, B, 2]`` and ``values [T, B]`` on the
    actions (and, for PPO, the acting log-probabilities) of its transitions ``t``."""
    if config.algo == "a2c":
        return losses.a2c_loss(
            logits, values, t.action, advantages, targets, config.ent_coef, config.vf_coef
        )
    return losses.ppo_loss(
        logits,
        values,
        t.action,
        t.log_prob,
        advantages,
        targets,
        config.clip_eps,
        config.ent_coef,
        config.vf_coef,
    )


def apply_gradients(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """One optimizer step of one learner: ``(params, opt_state, grad_norm)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def differentiates_rollout(config: Config) -> bool:
    """Whether A2C takes its gradient through the rollout itself (the GRU: its per-round
    residuals are small) instead of a second forward pass over the collected episodes (the
    transformer: differentiating its cached rollout would keep every round's cache)."""
    return config.algo == "a2c" and config.backbone == "gru"


def make_update(
    config: Config,
    agent: Agent,
    optimizer: optax.GradientTransformation,
    shard: Sharder = no_sharding,
):
    """``update(params, opt_state, batch, key) -> (params, opt_state, info, grad_norm)`` for one
    learner (unstacked), by A2C or PPO as ``config.algo`` says (``shard`` keeps PPO's
    minibatches split over devices like the whole batch)."""

    def loss_fn(params, batch: rollout.Batch, advantages, targets):
        t = batch.transition
        logits, values = agent.apply(params, rollout.round_inputs(t), batch.opponent_id)
        return algorithm_loss(config, logits, values, t, advantages, targets)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def sgd_step(params, opt_state, batch, advantages, targets):
        grads, info = grad_fn(params, batch, advantages, targets)
        params, opt_state, norm = apply_gradients(optimizer, params, opt_state, grads)
        return params, opt_state, info, norm

    def update(params, opt_state, batch: rollout.Batch, key):
        t = batch.transition
        advantages, targets = advantages_and_targets(config, t)
        if config.algo == "a2c":
            return sgd_step(params, opt_state, batch, advantages, targets)

        # PPO: epochs x minibatches over whole episodes (axis 1 of [T, B] arrays).
        num_episodes = t.action.shape[1]
        size = num_episodes // config.ppo_minibatches

        def take(episodes):
            def pick(x, axis):
                return jnp.take(x, episodes, axis=axis)

            mb = rollout.Batch(
                jax.tree.map(lambda x: shard(pick(x, 1), 1, learners=False), t),
                shard(pick(batch.opponent_id, 0), 0, learners=False),
            )
            return (
                mb,
                shard(pick(advantages, 1), 1, learners=False),
                shard(pick(targets, 1), 1, learners=False),
            )

        def minibatch(carry, episodes):
            params, opt_state = carry
            params, opt_state, info, norm = sgd_step(params, opt_state, *take(episodes))
            return (params, opt_state), (info, norm)

        def epoch(carry, key):
            order = jax.random.permutation(key, num_episodes)
            return jax.lax.scan(minibatch, carry, order.reshape(config.ppo_minibatches, size))

        (params, opt_state), (info, norm) = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(key, config.ppo_epochs)
        )
        return params, opt_state, jax.tree.map(jnp.mean, info), jnp.mean(norm)

    return update


def make_trainer(config: Config, coplayer: Any = None, mesh: Mesh | None = None) -> Trainer:
    """The pure functions of a run described by ``config`` (see ``Trainer``).

    ``mesh`` (``sharding.make_mesh``) splits learners and their episodes over devices; it changes
    where the work runs, not the numbers (up to the order of floating-point sums).

    With a frozen ``coplayer`` module, each learner plays its ``config.num_learner_episodes``
    against that agent instead of against the other learners; its parameters live in
    ``TrainState.coplayer_params`` (``init`` fills them with a random initialization: replace
    them with trained ones, e.g. ``state.replace(coplayer_params=...)``).
    """
    game = environment.make_game(config.game, config.horizon)
    agent = make_agent(config)
    optimizer = make_optimizer(config)
    shard = sharding.episode_sharder(mesh)
    learner_axis = sharding.LEARNER if sharding.is_sharded(mesh) else None
    update = jax.vmap(make_update(config, agent, optimizer, shard), spmd_axis_name=learner_axis)
    step = jax.vmap(lambda p, o, g: apply_gradients(optimizer, p, o, g))

    def a2c_on_rollout(t: rollout.Transition) -> tuple[jax.Array, losses.LossInfo]:
        """One learner's A2C loss on its rollout's own (differentiable) logits and values."""
        advantages, targets = advantages_and_targets(config, t)
        return algorithm_loss(config, t.logits, t.value, t, advantages, targets)

    n = config.num_learners
    num_frozen = 0 if coplayer is None else config.num_learner_episodes
    num_slots = config.num_pair_slots if coplayer is None else 0

    def init(key: jax.Array) -> TrainState:
        key, init_key = jax.random.split(key)
        params = jax.vmap(lambda k: init_params(agent, k))(jax.random.split(init_key, n))
        coplayer_params = None
        if coplayer is not None:
            coplayer_params = init_params(coplayer, jax.random.fold_in(init_key, n))
        return TrainState(
            params,
            jax.vmap(optimizer.init)(params),
            key,
            jnp.zeros((), jnp.int32),
            coplayer_params,
        )

    def iteration(state: TrainState) -> tuple[TrainState, Metrics]:
        key, pool_key, pair_key, rollout_key, update_key = jax.random.split(state.key, 5)
        # COLLECT: every learner's episodes against fresh tabular co-players and other learners
        # (A2C on the GRU differentiates this rollout itself: ``differentiates_rollout``).
        coplayers = strategies.sample_coplayers(
            pool_key, (n, config.num_tabular_episodes), config.pool
        )
        succ, pred = rollout.pairing(n, num_slots, pair_key)
        frozen = None
        if coplayer is not None:
            frozen = rollout.FrozenCoplayer(coplayer, state.coplayer_params, num_frozen)

        def collect(params) -> rollout.Batch:
            return rollout.collect(
                agent, params, rollout_key, game, coplayers, succ, pred, frozen, shard
            )

        # UPDATE: each learner on its own data, in parallel.
        if differentiates_rollout(config):
            # Sampled actions carry no gradient, so learner i's loss depends on params[i] only
            # through its own logits and values: the gradient of the sum is every learner's own.
            def total_loss(params):
                batch = collect(params)
                loss, info = jax.vmap(a2c_on_rollout)(batch.transition)
                return jnp.sum(loss), (batch, info)

            grads, (batch, info) = jax.grad(total_loss, has_aux=True)(state.params)
            params, opt_state, grad_norm = step(state.params, state.learner_state, grads)
        else:
            batch = collect(state.params)
            params, opt_state, info, grad_norm = update(
                state.params, state.learner_state, batch, jax.random.split(update_key, n)
            )

        def played(t: rollout.Transition) -> PlayMetrics:  # one learner's [T, B]; seats: axis 1
            return rollout.play_metrics(
                t.action, t.reward, t.coplayer_action, t.coplayer_reward,
                config.num_tabular_episodes, num_frozen, 1,
            )  # fmt: skip

        learning = LearningMetrics(
            loss=info.total,
            policy_loss=info.policy,
            value_loss=info.value,
            entropy=info.entropy,
            approx_kl=info.approx_kl,
            clip_fraction=info.clip_fraction,
            grad_norm=grad_norm,
        )
        metrics = Metrics(jax.vmap(played)(batch.transition), learning)
        return state.replace(
            params=params, learner_state=opt_state, key=key, iteration=state.iteration + 1
        ), metrics

    def chunk(state: TrainState) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(lambda s, _: iteration(s), state, None, length=config.chunk_iterations)

    return Trainer(init, iteration, chunk)
