"""PPI's phase loop: every learner's ``Dataset``, the model's optimizer and ``make_trainer``
(fit the model on all data so far, then collect episodes with the improved policy)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcoop import environment, strategies
from jaxcoop.algorithms.ppi.model import (
    ModelLoss,
    init_model_params,
    make_model,
    model_loss,
    targets,
)
from jaxcoop.algorithms.ppi.planning import Planner, coplayer_policy, make_planner
from jaxcoop.networks import init_params
from jaxcoop.rollout import Episodes, pairing, play, play_metrics
from jaxcoop.state import Metrics, PlayMetrics, Trainer, TrainState
from jaxcoop.strategies import OPPONENT_ID_SIZE


class LearningMetrics(NamedTuple):
    """What a phase reports of the model's fit, per learner (``[N]``): ``loss`` is the final
    minibatch loss (the sum of the NLLs), ``action_nll`` its own-action NLL (the policy
    prior's), ``reward_nll`` its reward NLL (the next-observation NLL is the rest),
    ``grad_norm`` the last step's."""

    loss: jax.Array
    action_nll: jax.Array
    reward_nll: jax.Array
    grad_norm: jax.Array


class Dataset(NamedTuple):
    """Every learner's data, on the device with a fixed size ``M`` (``dataset_size``); only the
    first ``dataset_count`` episodes are filled. PPI keeps it in ``TrainState.learner_state`` (its
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


def make_optimizer(config) -> optax.GradientTransformation:
    """The model's optimizer: AdamW (``lr``, ``ppi_weight_decay``, beta1 0.9, beta2 0.98)
    after clipping the gradient norm at ``max_grad_norm``."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(config.lr, b1=0.9, b2=0.98, weight_decay=config.ppi_weight_decay),
    )


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

    ``Metrics``: the improved policy's play in the phase's episodes (the frozen co-player's
    fields are NaN without one) and the model's fit (``LearningMetrics``).
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
            succ, pred = (x[:, 0] for x in pairing(learners))  # the fixed ring
            successor = jax.tree.map(lambda x: x[succ], params)
            keys = jax.random.split(k_pair, learners)
            pairs = jax.vmap(versus_learner)(params, successor, keys)
            # Learner n is the row player of pair n and the column player of pair pred[n].
            as_column = jax.tree.map(lambda x: jnp.flip(x[pred], axis=-1), pairs)
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
        data, count = state.learner_state, dataset_count(config, state.iteration)
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

        def played(a_ExTx2, r_ExTx2) -> PlayMetrics:  # one learner's episodes; seats: episodes
            return play_metrics(
                a_ExTx2[..., 0], r_ExTx2[..., 0], a_ExTx2[..., 1], r_ExTx2[..., 1],
                num_tabular, num_frozen, 0,
            )  # fmt: skip

        learning = LearningMetrics(loss.total, loss.action, loss.reward, grad_norm)
        metrics = Metrics(jax.vmap(played)(actions, rewards), learning)
        state = state.replace(params=params, learner_state=data, key=key)
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
