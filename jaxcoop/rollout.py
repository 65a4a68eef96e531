"""Running policies in the game: the training rollout of the mixed pool, and ``play``.

Training rollout layout. Each of the ``N`` learners owns ``B = K + F + 2S`` *seats* per update
(``K`` tabular episodes, ``F`` episodes against a frozen co-player, ``S`` pairing slots):
  * seats ``[0, K)``: against a fresh tabular co-player;
  * seats ``[K, K+F)``: against the frozen co-player (a trained agent that does not learn);
  * seats ``[K+F, K+F+S)``: row player of slot ``s``, against learner ``succ[i, s]``;
  * seats ``[K+F+S, B)``: column player of slot ``s``, against learner ``pred[i, s]``.
Every slot arranges the learners on a random ring (``succ``/``pred``), so each learner-vs-learner
episode yields data for both of its players and pairings are re-drawn every update. With one
learner the ring is a self-loop (self-play). The learner always sits in the row (player 0) against
tabular and frozen co-players.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcoop import environment, strategies
from jaxcoop.environment import Game
from jaxcoop.networks import Agent, RoundInput, history_inputs
from jaxcoop.sharding import Sharder, no_sharding


def sample_action(key: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample actions from logits ``[..., 2]``; returns int32 actions and their log-probs."""
    return sample_with_noise(jax.random.gumbel(key, logits.shape, logits.dtype), logits)


def sample_with_noise(gumbel: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``sample_action`` with its Gumbel noise ``[..., 2]`` drawn beforehand: the same actions
    as ``jax.random.categorical`` for ``gumbel = jax.random.gumbel(key, logits.shape)``."""
    action = jnp.argmax(gumbel + logits, axis=-1).astype(jnp.int32)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)
    return action, log_prob[..., 0]


def gumbel_per_round(keys_T: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Gumbel noise ``[T, *shape]`` for every round's key at once: the per-round draws of
    ``sample_action`` (bit for bit), made in one vectorized call before a rollout's scan, whose
    body then holds no random-number loop (on CPU each draw is a loop of its own)."""
    return jax.vmap(lambda k: jax.random.gumbel(k, shape))(keys_T)


class Transition(NamedTuple):
    """One learner's experience, time-major ``[T, B]`` (a leading learner axis in training).

    obs: float32 ``[T, B, 5]`` first-person observation before acting.
    action: int32 ``[T, B]``. reward: float32 ``[T, B]`` (raw game reward).
    log_prob: float32 ``[T, B]`` of ``action`` under the acting policy. value: float32 ``[T, B]``.
    logits: float32 ``[T, B, 2]``, the acting policy's (``log_prob`` and ``value`` are
    differentiable in the parameters through them when the rollout is differentiated).
    coplayer_action, coplayer_reward: the co-player's side of the same rounds.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    value: jax.Array
    logits: jax.Array
    coplayer_action: jax.Array
    coplayer_reward: jax.Array


class Batch(NamedTuple):
    """A learner's data for one update.

    transition: ``Transition`` ``[T, B]``.
    opponent_id: float32 ``[B, 10]`` (zeros against learners and frozen co-players).
    """

    transition: Transition
    opponent_id: jax.Array


class FrozenCoplayer(NamedTuple):
    """A trained agent held fixed as a co-player: its module, its (unstacked) parameters, and
    how many episodes each learner plays against it per update."""

    agent: Agent
    params: Any
    num_episodes: int


def play_metrics(
    action: jax.Array,
    reward: jax.Array,
    coplayer_action: jax.Array,
    coplayer_reward: jax.Array,
    num_tabular: int,
    num_frozen: int,
    seat_axis: int,
) -> dict[str, jax.Array]:
    """The play metrics (``state.Metrics``'s first nine fields) of one learner's rounds: means
    over every round of each kind of co-player's seats along ``seat_axis`` (tabular, then
    frozen, then learner-pair seats, as in this module's header); NaN for a kind without
    seats. Both sides' actions and rewards share one shape."""
    seats = action.shape[seat_axis]
    kinds = {
        "tabular": (0, num_tabular),
        "frozen": (num_tabular, num_tabular + num_frozen),
        "learner": (num_tabular + num_frozen, seats),
    }

    def mean(x: jax.Array, kind: str) -> jax.Array:
        start, stop = kinds[kind]
        if start == stop:
            return jnp.full((), jnp.nan)
        return jnp.mean(jax.lax.slice_in_dim(x, start, stop, axis=seat_axis))

    coop = (action == environment.C).astype(jnp.float32)
    coplayer_coop = (coplayer_action == environment.C).astype(jnp.float32)
    return dict(
        reward_vs_learner=mean(reward, "learner"),
        coop_vs_learner=mean(coop, "learner"),
        reward_vs_tabular=mean(reward, "tabular"),
        coop_vs_tabular=mean(coop, "tabular"),
        tabular_reward=mean(coplayer_reward, "tabular"),
        reward_vs_frozen=mean(reward, "frozen"),
        coop_vs_frozen=mean(coop, "frozen"),
        frozen_reward=mean(coplayer_reward, "frozen"),
        frozen_coop=mean(coplayer_coop, "frozen"),
    )


def round_inputs(t: Transition) -> RoundInput:
    """What the agent saw in each round of ``t``, rebuilt from the transitions (``[T, B]``)."""
    return history_inputs(t.obs, t.action, t.reward)


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
    frozen: FrozenCoplayer | None = None,
    shard: Sharder = no_sharding,
) -> Batch:
    """Roll out one update's episodes for all learners at once.

    Args:
      agent: the agent module; params: its parameters stacked on a leading learner axis ``[N]``.
      key: PRNG key. game: the game.
      coplayers_NxKx5: tabular co-player of each learner's tabular episodes.
      succ_NxS, pred_NxS: learner rings from ``sample_pairing`` (``S`` may be 0).
      frozen: an optional frozen co-player; each learner plays ``frozen.num_episodes`` against it.
      shard: splits the episode (seat) axis over devices (``sharding.episode_sharder``).

    Returns:
      ``Batch`` with a leading learner axis: transitions ``[N, T, B]``, ``B = K + F + 2S``.
    """
    num_learners, num_tabular = coplayers_NxKx5.shape[:2]
    coplayers_NxKx5 = shard(coplayers_NxKx5, 1)
    num_frozen = 0 if frozen is None else frozen.num_episodes
    num_slots = succ_NxS.shape[1]
    sizes = (num_tabular, num_frozen, num_slots, num_slots)  # tabular, frozen, row, column seats
    seats = sum(sizes)
    z_others = jnp.zeros((num_learners, seats - num_tabular, strategies.OPPONENT_ID_SIZE))
    z_NxBxZ = shard(jnp.concatenate([strategies.opponent_id(coplayers_NxKx5), z_others], axis=1), 1)

    act = jax.vmap(lambda p, c, x: agent.apply(p, c, x, method=Agent.step))
    env_step = jax.vmap(jax.vmap(environment.step, (None, 0, 0)), (None, 0, 0))
    slot = jnp.arange(num_slots)[None, :]
    bounds = [sum(sizes[:i]) for i in range(1, len(sizes))]

    def partner(x_NxS, idx_NxS):  # x[idx[i, s], s, ...]
        return x_NxS[idx_NxS, slot]

    def frozen_act(carry, x):
        """The frozen co-player in every learner's frozen seats ``[N, F]`` as one batch of
        ``N * F`` episodes (its parameters are shared; its carry is kept flat)."""
        x = jax.tree.map(lambda v: v.reshape(num_learners * num_frozen, *v.shape[2:]), x)
        carry, logits, _ = frozen.agent.apply(frozen.params, carry, x, method=Agent.step)
        return carry, logits.reshape(num_learners, num_frozen, -1)

    def round_(carry, noise):
        agent_carry, envs, obs, co_view, prev_action, prev_reward = carry
        gumbel_agent, gumbel_tab, key_frozen = noise
        x = RoundInput(*(shard(v, 1) for v in (obs, prev_action, prev_reward)))
        agent_carry, logits, value = act(params, agent_carry, x)
        action, log_prob = sample_with_noise(gumbel_agent, shard(logits, 1))
        a_tab, a_frz, a_row, a_col = jnp.split(action, bounds, axis=1)

        # The co-players' moves: tabular strategies, the frozen agent, the partner learners.
        tab_obs, (frozen_carry, frz_obs, frz_prev_action, frz_prev_reward) = co_view
        tab_logits = strategies.logits(coplayers_NxKx5, tab_obs)
        tab_action, _ = sample_with_noise(gumbel_tab, tab_logits)
        if frozen is not None:
            frozen_carry, frz_logits = frozen_act(
                frozen_carry, RoundInput(frz_obs, frz_prev_action, frz_prev_reward)
            )
            frz_action, _ = sample_action(key_frozen, frz_logits)
        else:
            frz_action = a_frz  # no frozen seats: an empty [N, 0] array
        a_row_partner = partner(a_col, succ_NxS)

        # Rows (the learner is player 0): tabular, frozen, learner-pair episodes.
        joint = jnp.stack(
            [
                jnp.concatenate([a_tab, a_frz, a_row], axis=1),
                jnp.concatenate([tab_action, frz_action, a_row_partner], axis=1),
            ],
            axis=-1,
        )
        envs, obs2_Nx2x5, rew2_Nx2, _ = env_step(game, envs, joint)
        pairs = slice(num_tabular + num_frozen, None)

        def own_and_column(x):  # row seats' player-0 values, then column seats' player-1 values
            return jnp.concatenate([x[:, :, 0], partner(x[:, pairs, 1], pred_NxS)], axis=1)

        def other_and_column(x):  # the co-player's side of the same seats
            return jnp.concatenate([x[:, :, 1], partner(x[:, pairs, 0], pred_NxS)], axis=1)

        next_obs = own_and_column(obs2_Nx2x5)
        reward = own_and_column(rew2_Nx2)
        co_action = jnp.concatenate(
            [tab_action, frz_action, a_row_partner, partner(a_row, pred_NxS)], axis=1
        )
        co_reward = other_and_column(rew2_Nx2)
        out = Transition(obs, action, reward, log_prob, value, logits, co_action, co_reward)
        frz = slice(num_tabular, num_tabular + num_frozen)
        co_view = (
            obs2_Nx2x5[:, :num_tabular, 1],
            (frozen_carry, obs2_Nx2x5[:, frz, 1], frz_action, rew2_Nx2[:, frz, 1]),
        )
        return (agent_carry, envs, next_obs, co_view, action, reward), out

    env_count = num_tabular + num_frozen + num_slots  # one environment per row seat
    envs = jax.vmap(lambda _: environment.reset(game)[0])(jnp.zeros(num_learners * env_count))
    envs = jax.tree.map(lambda x: x.reshape(num_learners, env_count, *x.shape[1:]), envs)
    start_obs = environment.one_hot_states(jnp.zeros((num_learners, seats), jnp.int32))
    frozen_carry = None
    if frozen is not None:
        z_frozen = jnp.zeros((num_learners * num_frozen, strategies.OPPONENT_ID_SIZE))
        frozen_carry = frozen.agent.apply(frozen.params, z_frozen, method=Agent.initial_carry)
    co_view = (
        start_obs[:, :num_tabular],
        (
            frozen_carry,
            start_obs[:, num_tabular : num_tabular + num_frozen],
            jnp.full((num_learners, num_frozen), -1, jnp.int32),
            jnp.zeros((num_learners, num_frozen), jnp.float32),
        ),
    )
    init = (
        jax.vmap(lambda p, z: agent.apply(p, z, method=Agent.initial_carry))(params, z_NxBxZ),
        envs,
        start_obs,
        co_view,
        jnp.full((num_learners, seats), -1, jnp.int32),
        jnp.zeros((num_learners, seats), jnp.float32),
    )
    # Every round's random numbers, drawn before the scan (the same numbers as drawing them in
    # the round from its key; with partitionable threefry, the default, split(k, 3)[:2] ==
    # split(k, 2)): the learners' and the tabular co-players' Gumbel noise, the frozen's key.
    keys_Tx3 = jax.vmap(lambda k: jax.random.split(k, 3))(jax.random.split(key, game.horizon))
    noise = (
        shard(gumbel_per_round(keys_Tx3[:, 0], (num_learners, seats, 2)), 2),
        shard(gumbel_per_round(keys_Tx3[:, 1], (num_learners, num_tabular, 2)), 2),
        keys_Tx3[:, 2],
    )
    _, transitions_TxNxB = jax.lax.scan(round_, init, noise)
    transitions = jax.tree.map(lambda x: shard(jnp.moveaxis(x, 0, 1), 2), transitions_TxNxB)
    return Batch(transitions, z_NxBxZ)


# --- Playing any two policies. ------------------------------------------------------------------


class Policy(NamedTuple):
    """A policy for ``play``: pure functions over a carried state, for ``E`` episodes.

    initial_state(num_episodes) -> state.
    step(state, RoundInput [E]) -> (state, logits float32 [E, 2]).
    game: the game it was trained for, ``play``'s default (``None``: not known).
    max_rounds: the longest episode it can play (a transformer's positions, a planner's
      horizon); ``None``: any length.
    """

    initial_state: Callable[[int], Any]
    step: Callable[[Any, RoundInput], tuple[Any, jax.Array]]
    game: Game | None = None
    max_rounds: int | None = None


def check_rounds(max_rounds: int | None, rounds: int, who: str = "the policy") -> None:
    """Raise ``ValueError`` naming both numbers if ``rounds`` exceeds ``max_rounds``."""
    if max_rounds is not None and rounds > max_rounds:
        raise ValueError(
            f"{who} can play at most {max_rounds} rounds (it was trained on {max_rounds}-round "
            f"episodes) and was asked to play a {rounds}-round game; play it with "
            f"game=jaxcoop.make_game(..., horizon={max_rounds}) or fewer rounds"
        )


def tabular_policy(theta: jax.Array) -> Policy:
    """A memory-1 strategy ``[5]`` (or one per episode, ``[E, 5]``) as a ``Policy``."""
    theta = jnp.asarray(theta, jnp.float32)
    return Policy(
        initial_state=lambda num_episodes: (),
        step=lambda state, x: (state, strategies.logits(theta, x.obs)),
    )


def agent_policy(
    agent: Agent, params: Any, opponent_id: jax.Array | None = None, game: Game | None = None
) -> Policy:
    """A trained agent (unstacked ``params``) as a ``Policy``; ``opponent_id`` ``[10]`` if used;
    ``game``: the game it was trained for, if known (``play``'s default). A transformer plays
    at most its ``horizon`` rounds; a GRU any number (beyond its training horizon it
    extrapolates: ``play`` allows it when given a longer ``game``)."""

    def initial_state(num_episodes):
        z = jnp.zeros(strategies.OPPONENT_ID_SIZE) if opponent_id is None else opponent_id
        z = jnp.broadcast_to(z, (num_episodes, strategies.OPPONENT_ID_SIZE))
        return agent.apply(params, z, method=Agent.initial_carry)

    def step(state, x):
        state, logits, _ = agent.apply(params, state, x, method=Agent.step)
        return state, logits

    return Policy(initial_state, step, game, agent.max_rounds)


def trained_game(policies) -> Game:
    """The game ``policies`` were trained for (``Policy.game``; the first that knows it), else
    the paper's 100-round prisoner's dilemma; ``ValueError`` if they disagree on the length."""
    games = [g for g in (getattr(p, "game", None) for p in policies) if g is not None]
    if len({g.horizon for g in games}) > 1:
        lengths = " and ".join(f"{g.horizon}-round" for g in games)
        raise ValueError(
            f"the policies were trained on {lengths} episodes; say which game to play "
            "with game=jaxcoop.make_game(...)"
        )
    return games[0] if games else environment.make_game()


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

    A policy is anything with ``initial_state`` and ``step`` as in ``Policy`` (a ``Policy``, a
    loaded ``TrainedAgent``) or a tabular strategy array ``[5]`` / ``[E, 5]``.
    ``game`` defaults to the game a policy was trained for (``Policy.game``; a loaded
    ``TrainedAgent`` knows it), else the paper's 100-round prisoner's dilemma.

    Raises ``ValueError``, before anything is traced, when a policy cannot play ``game``'s
    length (``Policy.max_rounds``: a transformer beyond its trained horizon) or, without
    ``game``, when the two policies were trained for games of different lengths.
    """

    def as_policy(p):
        return p if hasattr(p, "initial_state") and hasattr(p, "step") else tabular_policy(p)

    policies = [as_policy(p) for p in (policy_a, policy_b)]
    game = trained_game(policies) if game is None else game
    for who, policy in zip(("policy_a", "policy_b"), policies, strict=True):
        check_rounds(getattr(policy, "max_rounds", None), game.horizon, who)
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
