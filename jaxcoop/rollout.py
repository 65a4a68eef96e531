"""Running policies in the game: one seat-based rollout for training and for ``play``.

Every player of a rollout is a ``Policy`` acting in a block of *seats* (one seat per episode it
plays in); a ``Seating`` says which two seats meet in each environment (the row seat is player 0).
``rollout`` scans the rounds: each policy acts in all its seats at once, the environments step,
and every seat sees its own side of its environment. ``play`` is its two-player case; training's
``collect`` seats ``N`` learners, their tabular co-players and a frozen co-player.

Training layout. Each of the ``N`` learners owns ``B = K + F + 2S`` seats per update
(``K`` tabular episodes, ``F`` episodes against a frozen co-player, ``S`` pairing slots):
  * seats ``[0, K)``: against a fresh tabular co-player;
  * seats ``[K, K+F)``: against the frozen co-player (a trained agent that does not learn);
  * seats ``[K+F, K+F+S)``: row player of slot ``s``, against learner ``succ[i, s]``;
  * seats ``[K+F+S, B)``: column player of slot ``s``, against learner ``pred[i, s]``.
Every slot arranges the learners on a ring (``pairing``: a random ring per slot in training, the
fixed ring ``n -> n + 1`` elsewhere), so each learner-vs-learner episode yields data for both of
its players. With one learner the ring is a self-loop (self-play). The learner always sits in the
row (player 0) against tabular and frozen co-players.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcoop import environment, strategies
from jaxcoop.environment import Game
from jaxcoop.networks import Agent, RoundInput, history_inputs
from jaxcoop.sharding import Sharder, no_sharding
from jaxcoop.state import PlayMetrics


def sample_action(key: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sample actions from logits ``[..., 2]``; returns int32 actions and their log-probs."""
    return sample_with_noise(jax.random.gumbel(key, logits.shape, logits.dtype), logits)


def sample_with_noise(gumbel: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``sample_action`` with its Gumbel noise ``[..., 2]`` drawn beforehand: the same actions
    as ``jax.random.categorical`` for ``gumbel = jax.random.gumbel(key, logits.shape)``."""
    action = jnp.argmax(gumbel + logits, axis=-1).astype(jnp.int32)
    return action, log_prob(logits, action)


# The policy's two actions as one logit difference ``d = logits[..., 1] - logits[..., 0]``: the
# same values as a softmax over ``[..., 2]`` up to float rounding, but every array is ``[...]``,
# not ``[..., 2]`` (on CPU the loss's ``[..., 2]``-shaped passes took about 12 of a GRU 32
# iteration's ~150 ms in a profile: docs/performance.md).


def log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """``log pi(a)`` ``[...]`` of the two-action policy with ``logits [..., 2]``:
    ``-softplus(d)`` for action 0, ``-softplus(-d)`` for action 1."""
    d = logits[..., 1] - logits[..., 0]
    return -jax.nn.softplus(jnp.where(actions == 1, -d, d))


def entropy(logits: jax.Array) -> jax.Array:
    """The entropy ``[...]`` of the two-action policy with ``logits [..., 2]``, in nats:
    ``softplus(-|d|) + |d| sigmoid(-|d|)`` (no cancellation for large ``|d|``)."""
    m = -jnp.abs(logits[..., 1] - logits[..., 0])
    return jax.nn.softplus(m) - m * jax.nn.sigmoid(m)


def gumbel_per_round(keys_T: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Gumbel noise ``[T, *shape]`` for every round's key at once: the per-round draws of
    ``sample_action`` (bit for bit), made in one vectorized call before a rollout's scan, whose
    body then holds no random-number loop (on CPU each draw is a loop of its own)."""
    return jax.vmap(lambda k: jax.random.gumbel(k, shape))(keys_T)


class Transition(NamedTuple):
    """One player's experience, time-major ``[T, *seats]`` (training: ``[N, T, B]``).

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


class Episodes(NamedTuple):
    """Played episodes: int32 ``actions`` and float32 ``rewards``, both ``[E, T, 2]``."""

    actions: jax.Array
    rewards: jax.Array


def play_metrics(
    action: jax.Array,
    reward: jax.Array,
    coplayer_action: jax.Array,
    coplayer_reward: jax.Array,
    num_tabular: int,
    num_frozen: int,
    seat_axis: int,
) -> PlayMetrics:
    """The play metrics of one learner's rounds: means
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
    return PlayMetrics(
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


# --- Policies. ----------------------------------------------------------------------------------


class Policy(NamedTuple):
    """A policy: pure functions over a carried state, for ``E`` episodes (seats).

    initial_state(num_episodes) -> state.
    step(state, RoundInput [E]) -> (state, logits float32 [E, 2]).
    game: the game it was trained for, ``play``'s default (``None``: not known).
    max_rounds: the longest episode it can play (a transformer's positions, a planner's
      horizon); ``None``: any length.
    critic_step: ``step`` that also returns a value estimate ``[E]`` (a learner in training,
      whose rollout records it); ``None``: the policy has no critic.
    """

    initial_state: Callable[[int], Any]
    step: Callable[[Any, RoundInput], tuple[Any, jax.Array]]
    game: Game | None = None
    max_rounds: int | None = None
    critic_step: Callable[[Any, RoundInput], tuple[Any, jax.Array, jax.Array]] | None = None


def check_rounds(max_rounds: int | None, rounds: int, who: str = "the policy") -> None:
    """Raise ``ValueError`` naming both numbers if ``rounds`` exceeds ``max_rounds``."""
    if max_rounds is not None and rounds > max_rounds:
        raise ValueError(
            f"{who} can play at most {max_rounds} rounds (it was trained on {max_rounds}-round "
            f"episodes) and was asked to play a {rounds}-round game; play it with "
            f"game=jaxcoop.make_game(..., horizon={max_rounds}) or fewer rounds"
        )


def tabular_policy(theta: jax.Array) -> Policy:
    """A memory-1 strategy ``[5]`` (or one per seat, ``[*seats, 5]``) as a ``Policy``."""
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

    def critic_step(state, x):
        return agent.apply(params, state, x, method=Agent.step)

    def step(state, x):
        state, logits, _ = critic_step(state, x)
        return state, logits

    return Policy(initial_state, step, game, agent.max_rounds, critic_step)


def learners_policy(agent: Agent, params_N: Any, opponent_id_NxBxZ: jax.Array) -> Policy:
    """``N`` learners (``params_N`` stacked on a leading axis), each in its own ``B`` seats:
    a ``Policy`` over seats ``[N, B]`` with a critic (its ``initial_state`` ignores its
    argument: the seats are ``opponent_id_NxBxZ``'s)."""
    act = jax.vmap(lambda p, c, x: agent.apply(p, c, x, method=Agent.step))

    def initial_state(_):
        init = jax.vmap(lambda p, z: agent.apply(p, z, method=Agent.initial_carry))
        return init(params_N, opponent_id_NxBxZ)

    def critic_step(state, x):
        return act(params_N, state, x)

    def step(state, x):
        state, logits, _ = critic_step(state, x)
        return state, logits

    return Policy(initial_state, step, None, agent.max_rounds, critic_step)


def on_seats(policy: Policy, shape: tuple[int, ...]) -> Policy:
    """``policy`` (one batch of episodes) in seats of ``shape`` (e.g. ``[N, F]``): its state is
    kept flat, its inputs and logits are reshaped around each step."""
    flat = math.prod(shape)

    def step(state, x):
        x = jax.tree.map(lambda v: v.reshape(flat, *v.shape[len(shape) :]), x)
        state, logits = policy.step(state, x)
        return state, logits.reshape(*shape, -1)

    return policy._replace(step=step, critic_step=None)


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


# --- The rollout. -------------------------------------------------------------------------------


class Seating(NamedTuple):
    """Who meets whom: environment ``m``'s row player (player 0) sits in seat ``row[m]``, its
    column player in seat ``col[m]`` (int32 ``[M]``). Seats are numbered across all players'
    seat blocks, flattened, in the order of the players; every seat is in exactly one
    environment (``2M`` seats in all)."""

    row: jax.Array
    col: jax.Array


class Rollout(NamedTuple):
    """What a rollout recorded: ``episodes`` (``Episodes`` ``[M, T, 2]`` in the seating's
    environment order, or ``None``) and ``transition`` (the recorded player's ``Transition``
    ``[T, *seats]``, or ``None``)."""

    episodes: Episodes | None
    transition: Transition | None


def rollout(
    players: Sequence[tuple[Policy, tuple[int, ...]]],
    seating: Seating,
    key: jax.Array,
    game: Game,
    *,
    record: int | None = None,
    record_episodes: bool = True,
    shard: Sharder = no_sharding,
) -> Rollout:
    """Play ``game.horizon`` rounds of every environment of ``seating``.

    Args:
      players: ``(policy, seats)`` pairs: each policy acts in a block of seats of that shape
        (``[E]``; ``[N, K]`` for one block per learner), and is given round inputs and returns
        logits of that shape. ``initial_state`` gets the number of seats.
      seating: the environments (``Seating``), over the players' seats in order.
      key: PRNG key; round ``t``'s key is split into one per player, whose Gumbel noise samples
        the player's actions (drawn before the scan, ``gumbel_per_round``).
      record: the index of the player whose ``Transition`` is returned (its policy needs a
        ``critic_step``); ``record_episodes``: whether the environments' actions and rewards
        are returned.
      shard: constrains each player's per-seat arrays along its last seat axis
        (``sharding.episode_sharder``).
    """
    shapes = [tuple(shape) for _, shape in players]
    sizes = [math.prod(shape) for shape in shapes]
    starts = [sum(sizes[:p]) for p in range(len(sizes))]
    num_envs = seating.row.shape[0]
    if 2 * num_envs != sum(sizes):
        raise ValueError(f"{num_envs} environments seat {2 * num_envs} players, not {sum(sizes)}")
    if record is not None and players[record][0].critic_step is None:
        raise ValueError(f"player {record} is recorded but its policy has no critic_step")

    # Each seat's side of its environment: env * 2 + side, and the seat across the table.
    env_M = jnp.arange(num_envs, dtype=jnp.int32)
    side = jnp.zeros(2 * num_envs, jnp.int32)
    side_of = side.at[seating.row].set(2 * env_M).at[seating.col].set(2 * env_M + 1)
    across = side.at[seating.row].set(seating.col).at[seating.col].set(seating.row)

    def block(x, p):  # player p's seats of a flat per-seat array, in its seat shape
        return jax.lax.slice_in_dim(x, starts[p], starts[p] + sizes[p]).reshape(shapes[p])

    side_P = [block(side_of, p) for p in range(len(players))]
    across_P = [block(across, p) for p in range(len(players))]

    def seat_shard(x, p):
        return shard(x, len(shapes[p]) - 1)

    def round_(carry, noise_P):
        states, envs, inputs = carry
        new_states, actions, out = [], [], None
        for p, (policy, _) in enumerate(players):
            x = RoundInput(*(seat_shard(v, p) for v in inputs[p]))
            if p == record:
                state, logits, value = policy.critic_step(states[p], x)
            else:
                state, logits = policy.step(states[p], x)
            action, log_prob = sample_with_noise(seat_shard(noise_P[p], p), seat_shard(logits, p))
            new_states.append(state)
            actions.append(action)
            if p == record:
                out = (x.obs, action, log_prob, value, logits)
        flat_actions = jnp.concatenate([a.reshape(-1) for a in actions])
        joint_Mx2 = jnp.stack([flat_actions[seating.row], flat_actions[seating.col]], axis=-1)
        envs, obs_Mx2x5, reward_Mx2, _ = jax.vmap(environment.step, (None, 0, 0))(
            game, envs, joint_Mx2
        )
        obs_sides, reward_sides = obs_Mx2x5.reshape(-1, 5), reward_Mx2.reshape(-1)
        inputs = tuple(
            (obs_sides[side_P[p]], actions[p], reward_sides[side_P[p]]) for p in range(len(players))
        )
        record_out = None
        if record is not None:
            obs, action, log_prob, value, logits = out
            co_action = flat_actions[across_P[record]]
            co_reward = reward_sides[side_P[record] ^ 1]
            reward = inputs[record][2]
            record_out = Transition(
                obs, action, reward, log_prob, value, logits, co_action, co_reward
            )
        episodes = (joint_Mx2, reward_Mx2) if record_episodes else None
        return (tuple(new_states), envs, inputs), (episodes, record_out)

    envs = jax.vmap(lambda _: environment.reset(game)[0])(jnp.zeros(num_envs))
    start = environment.one_hot_states(jnp.zeros((), jnp.int32))
    init_inputs = tuple(
        (
            jnp.broadcast_to(start, (*shape, environment.NUM_STATES)),
            jnp.full(shape, -1, jnp.int32),
            jnp.zeros(shape, jnp.float32),
        )
        for shape in shapes
    )
    states = tuple(
        policy.initial_state(size) for (policy, _), size in zip(players, sizes, strict=True)
    )
    keys_TxP = jax.vmap(lambda k: jax.random.split(k, len(players)))(
        jax.random.split(key, game.horizon)
    )
    noise = tuple(gumbel_per_round(keys_TxP[:, p], (*shape, 2)) for p, shape in enumerate(shapes))
    _, (episodes, transition) = jax.lax.scan(round_, (states, envs, init_inputs), noise)
    if episodes is not None:
        episodes = Episodes(*(jnp.swapaxes(x, 0, 1) for x in episodes))
    return Rollout(episodes, transition)


def pairing(
    num_learners: int, num_slots: int = 1, key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Rings of learners, one per slot: int32 ``succ`` and ``pred``, each ``[N, S]`` (learner
    ``n`` meets ``succ[n, s]`` as row player and ``pred[n, s]`` as column player). With a
    ``key``, a random ring per slot (training, re-drawn every update); without, the fixed ring
    ``n -> (n + 1) % N`` in every slot (PPI's pairs, the evaluation)."""
    if key is None:
        ring_SxN = jnp.broadcast_to(jnp.arange(num_learners), (num_slots, num_learners))
    else:
        keys = jax.random.split(key, num_slots)
        ring_SxN = jax.vmap(lambda k: jax.random.permutation(k, num_learners))(keys)
    position_SxN = jnp.argsort(ring_SxN, axis=1)
    succ = jnp.take_along_axis(ring_SxN, (position_SxN + 1) % num_learners, axis=1)
    pred = jnp.take_along_axis(ring_SxN, (position_SxN - 1) % num_learners, axis=1)
    return succ.T.astype(jnp.int32), pred.T.astype(jnp.int32)


def training_seating(
    num_learners: int, num_tabular: int, num_frozen: int, succ_NxS: jax.Array
) -> Seating:
    """The environments of training's layout (this module's header) over the seats of the
    learners ``[N, B]``, then their tabular co-players ``[N, K]``, then the frozen co-player's
    ``[N, F]``: per learner its tabular, frozen and row-slot environments, ``[N, K + F + S]``."""
    n, k, f, s = num_learners, num_tabular, num_frozen, succ_NxS.shape[1]
    b = k + f + 2 * s
    learner = jnp.arange(n, dtype=jnp.int32)[:, None] * b  # the first seat of each learner
    tabular = n * b + jnp.arange(n * k, dtype=jnp.int32).reshape(n, k)
    frozen = n * (b + k) + jnp.arange(n * f, dtype=jnp.int32).reshape(n, f)
    row = learner + jnp.arange(k + f + s, dtype=jnp.int32)[None, :]
    col = jnp.concatenate(
        [tabular, frozen, succ_NxS * b + (k + f + s) + jnp.arange(s, dtype=jnp.int32)[None, :]],
        axis=1,
    )
    return Seating(row.reshape(-1), col.reshape(-1))


class FrozenCoplayer(NamedTuple):
    """A trained agent held fixed as a co-player: its module, its (unstacked) parameters, and
    how many episodes each learner plays against it per update."""

    agent: Agent
    params: Any
    num_episodes: int


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
    """Roll out one update's episodes for all learners at once (``rollout`` over training's
    seating).

    Args:
      agent: the agent module; params: its parameters stacked on a leading learner axis ``[N]``.
      key: PRNG key. game: the game.
      coplayers_NxKx5: tabular co-player of each learner's tabular episodes.
      succ_NxS, pred_NxS: learner rings from ``pairing`` (``S`` may be 0; ``pred`` is
        ``succ``'s inverse, which the seating implies).
      frozen: an optional frozen co-player; each learner plays ``frozen.num_episodes`` against it.
      shard: splits the episode (seat) axis over devices (``sharding.episode_sharder``).

    Returns:
      ``Batch`` with a leading learner axis: transitions ``[N, T, B]``, ``B = K + F + 2S``.
    """
    del pred_NxS  # implied by succ_NxS
    num_learners, num_tabular = coplayers_NxKx5.shape[:2]
    coplayers_NxKx5 = shard(coplayers_NxKx5, 1)
    num_frozen = 0 if frozen is None else frozen.num_episodes
    seats = num_tabular + num_frozen + 2 * succ_NxS.shape[1]
    z_others = jnp.zeros((num_learners, seats - num_tabular, strategies.OPPONENT_ID_SIZE))
    z_NxBxZ = shard(jnp.concatenate([strategies.opponent_id(coplayers_NxKx5), z_others], axis=1), 1)
    players = [
        (learners_policy(agent, params, z_NxBxZ), (num_learners, seats)),
        (tabular_policy(coplayers_NxKx5), (num_learners, num_tabular)),
    ]
    if frozen is not None:
        shape = (num_learners, num_frozen)
        players.append((on_seats(agent_policy(frozen.agent, frozen.params), shape), shape))
    seating = training_seating(num_learners, num_tabular, num_frozen, succ_NxS)
    out = rollout(players, seating, key, game, record=0, record_episodes=False, shard=shard)
    transitions = jax.tree.map(lambda x: shard(jnp.moveaxis(x, 0, 1), 2), out.transition)
    return Batch(transitions, z_NxBxZ)


def play(
    policy_a: Policy | jax.Array,
    policy_b: Policy | jax.Array,
    key: jax.Array,
    num_episodes: int,
    game: Game | None = None,
) -> Episodes:
    """Play ``num_episodes`` episodes of ``policy_a`` (player 0) against ``policy_b`` (player 1):
    ``rollout``'s two-player case.

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
    episode = jnp.arange(num_episodes, dtype=jnp.int32)
    seating = Seating(row=episode, col=num_episodes + episode)
    players = [(policy, (num_episodes,)) for policy in policies]
    return rollout(players, seating, key, game).episodes
