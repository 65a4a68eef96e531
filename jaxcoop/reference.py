"""Reference players against memory-1 co-players: the exact oracle and a Bayesian in-context
learner, both planning by finite-horizon backward value iteration over the 5 states.

The **oracle** knows its co-player's five cooperation probabilities ``theta [..., 5]``
(``strategies``' layout, from the co-player's own view) and plays the exact best response for
the rounds left: the most any policy can earn against that co-player.

The **Bayesian learner** holds Beta(1, 1) posteriors over the same five probabilities, updates
the one of the state the co-player acted in from the co-player's move it sees each round, and
acts as the finite-horizon best response to the posterior *mean* (greedy certainty
equivalence: no exploration bonus, no randomness). Why this rule: it is the simplest learner
that infers its co-player in context and has no parameter to tune, and being deterministic
given the history it sees every co-player draw with the same random numbers as the other
reference players (common draws). It never explores for information's sake, so it is a lower
bound on what in-context inference can earn; the oracle is the upper bound.

Both are ``rollout.Policy`` s (``oracle_policy``, ``bayesian_policy``), ``evaluation`` players
(``ORACLE``, ``BAYESIAN``), and the Bayesian learner is also a parameter-free agent module
(``BayesianAgent``) that training can hold fixed as its co-player
(``--frozen-coplayer bayes``). Ties between C and D go to D.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop.environment import NUM_STATES, PRISONERS_DILEMMA, C, D, Game
from jaxcoop.networks import Agent, RoundInput
from jaxcoop.rollout import Policy

#: The state a player's co-player sees when the player sees state ``s``: CD and DC swap.
MIRROR = np.array([0, 1, 3, 2, 4])
#: Logit gap of a deterministic action: larger than any difference of two float32 Gumbel draws
#: (``jax.random.categorical``), so the other action is never sampled.
_SURE = 1e4


def _as_payoffs(payoffs) -> jax.Array:
    return jnp.asarray(payoffs, jnp.float32).reshape(2, 2, 2)


def _bellman(coop_5: jax.Array, payoffs: jax.Array):
    """One backup ``V_{k-1} [..., 5] -> (Q_k(., C), Q_k(., D))``, each ``[..., 5]``, against a
    co-player cooperating with probability ``coop_5 [..., 5]`` in each of the focal player's
    states. Elementwise only (no reductions, no reshapes), so that XLA makes one fused loop of
    it: the Bayesian learner runs it up to ``horizon`` times in every round."""
    r = _as_payoffs(payoffs)[..., 0]  # [a, b]: the focal player's reward
    p = coop_5

    def backup(value_5):
        def q(a):  # this round's reward plus the value of the next state 1 + 2a + b
            return p * (r[a, C] + value_5[..., 1 + 2 * a + C, None]) + (1.0 - p) * (
                r[a, D] + value_5[..., 1 + 2 * a + D, None]
            )

        return q(C), q(D)

    return backup


def all_q_values(coop_5: jax.Array, payoffs: jax.Array, horizon: int) -> jax.Array:
    """Optimal action values ``[K, ..., 5, 2]`` with ``k + 1`` rounds left (``k < horizon``)
    against a memory-1 co-player cooperating with probability ``coop_5 [..., 5]`` in each state
    *of the focal player's view*: backward value iteration, V_0 = 0,
    Q_k(s, a) = sum_b P(b | s) (r(a, b) + V_{k-1}(s'(a, b))), V_k = max_a Q_k."""
    backup = _bellman(coop_5, payoffs)

    def level(value_5, _):
        q_c, q_d = backup(value_5)
        return jnp.maximum(q_c, q_d), jnp.stack([q_c, q_d], axis=-1)

    _, q_Kx5x2 = jax.lax.scan(level, jnp.zeros(coop_5.shape, jnp.float32), None, length=horizon)
    return q_Kx5x2


def q_values(
    coop_5: jax.Array, payoffs: jax.Array, horizon: int, rounds_left: jax.Array
) -> jax.Array:
    """``all_q_values`` at ``rounds_left`` (int ``[...]``, 1..horizon) rounds left only,
    ``[..., 5, 2]``, without keeping the other levels; zero where ``rounds_left`` is outside
    1..horizon. Runs as many backups as the most rounds left (in a rollout every episode is at
    the same round), not ``horizon``."""
    backup = _bellman(coop_5, payoffs)
    rounds_left = jnp.asarray(rounds_left)
    valid = (rounds_left >= 1) & (rounds_left <= horizon)
    levels = jnp.clip(jnp.max(rounds_left), 1, horizon)

    def level(k, value_5):  # V_k where k < rounds_left, else V_{rounds_left - 1} kept
        return jnp.where((k < rounds_left)[..., None], jnp.maximum(*backup(value_5)), value_5)

    value_5 = jax.lax.fori_loop(1, levels, level, jnp.zeros(coop_5.shape, jnp.float32))
    return jnp.where(valid[..., None, None], jnp.stack(backup(value_5), axis=-1), 0.0)


def best_action(q_x2: jax.Array) -> jax.Array:
    """The greedy action of values ``[..., 2]`` (int32; ties go to D)."""
    return jnp.where(q_x2[..., C] > q_x2[..., D], C, D).astype(jnp.int32)


def deterministic_logits(action: jax.Array) -> jax.Array:
    """Logits ``[..., 2]`` under which ``action`` (int ``[...]``) is sampled with certainty."""
    return jnp.where(jax.nn.one_hot(action, 2, dtype=bool), 0.0, -_SURE)


def _own_view(theta: jax.Array) -> jax.Array:
    """A co-player's P(C) ``[..., 5]`` re-indexed by the focal player's states."""
    return jnp.asarray(theta, jnp.float32)[..., MIRROR]


def oracle_table(theta: jax.Array, game: Game, opening: int | None = None) -> jax.Array:
    """The oracle's action int32 ``[..., T, 5]`` in each round ``t`` and state against
    co-players ``theta [..., 5]`` (the best response with ``T - t`` rounds left). With
    ``opening`` (C or D) its first move is that one and the rest still the best response: it
    earns ``Q*(start, opening)``, what knowing the co-player is worth after a forced first move."""
    q_Kx_x5x2 = all_q_values(_own_view(theta), game.payoffs, game.horizon)
    table = jnp.moveaxis(best_action(q_Kx_x5x2[::-1]), 0, -2)
    if opening is None:
        return table
    return table.at[..., 0, 0].set(opening)


def oracle_value(theta: jax.Array, game: Game) -> jax.Array:
    """The exact optimal expected reward per round ``[...]`` against known memory-1 co-players
    ``theta [..., 5]`` over ``game.horizon`` rounds."""
    q_Kx_x5x2 = all_q_values(_own_view(theta), game.payoffs, game.horizon)
    return q_Kx_x5x2[-1, ..., 0, :].max(axis=-1) / game.horizon


def _state_index(obs: jax.Array) -> jax.Array:
    return jnp.argmax(obs, axis=-1).astype(jnp.int32)


def oracle_policy(theta: jax.Array, game: Game, opening: int | None = None) -> Policy:
    """The oracle against co-players ``theta`` ``[5]`` or ``[E, 5]`` (one per episode) as a
    ``Policy`` for ``game``; its state is its action table ``[E, T, 5]`` (``oracle_table``,
    first move ``opening`` if given) and the round index ``[E]``."""
    theta = jnp.asarray(theta, jnp.float32)

    def initial_state(num_episodes):
        table = oracle_table(theta, game, opening)
        table = jnp.broadcast_to(table, (num_episodes, game.horizon, 5))
        return table, jnp.zeros((num_episodes,), jnp.int32)

    def step(state, x: RoundInput):
        table_ExTx5, t_E = state
        action = table_ExTx5[jnp.arange(t_E.shape[0]), t_E, _state_index(x.obs)]
        return (table_ExTx5, t_E + 1), deterministic_logits(action)

    return Policy(initial_state, step)


# --- The Bayesian in-context learner. ------------------------------------------------------------


class BeliefState(NamedTuple):
    """The Bayesian learner's state for ``E`` episodes.

    coop, defect: float32 ``[E, 5]``, the co-player's moves counted per state of its own view
    (the Beta posterior is Beta(1 + coop, 1 + defect)).
    prev_state: int32 ``[E]``, the learner's state in the previous round.
    round: int32 ``[E]``, the index of the round about to be played.
    """

    coop: jax.Array
    defect: jax.Array
    prev_state: jax.Array
    round: jax.Array


def initial_beliefs(num_episodes: int) -> BeliefState:
    """The prior, Beta(1, 1) everywhere, before round 0 of ``num_episodes`` episodes."""
    zeros = jnp.zeros((num_episodes, NUM_STATES), jnp.float32)
    start = jnp.zeros((num_episodes,), jnp.int32)
    return BeliefState(zeros, zeros, start, start)


def posterior_mean(beliefs: BeliefState) -> jax.Array:
    """The co-player's posterior mean P(C) ``[E, 5]`` per state of its own view."""
    return (1.0 + beliefs.coop) / (2.0 + beliefs.coop + beliefs.defect)


def bayesian_step(
    beliefs: BeliefState, x: RoundInput, payoffs: jax.Array, horizon: int
) -> tuple[BeliefState, jax.Array, jax.Array]:
    """One round of the Bayesian learner planning for ``horizon`` rounds: update on the
    co-player's previous move (in ``x.obs`` ``[E, 5]``), then act greedily on the posterior mean.

    Returns:
      beliefs; logits float32 ``[E, 2]`` (deterministic); value float32 ``[E]`` (the return it
      expects over the rounds left under its posterior mean).
    """
    state = _state_index(x.obs)
    seen = (beliefs.round > 0)[:, None]
    acted_in = jax.nn.one_hot(jnp.asarray(MIRROR)[beliefs.prev_state], NUM_STATES) * seen
    cooperated = ((state - 1) % 2 == C)[:, None]
    beliefs = beliefs._replace(
        coop=beliefs.coop + acted_in * cooperated,
        defect=beliefs.defect + acted_in * ~cooperated,
    )
    q_Ex5x2 = q_values(
        _own_view(posterior_mean(beliefs)), payoffs, horizon, horizon - beliefs.round
    )
    # The current state's values by a one-hot sum, not a gather: XLA would fuse the whole value
    # iteration into a gather and recompute it for every element read (measured 6 ms a round).
    q_Ex2 = jnp.sum(q_Ex5x2 * jax.nn.one_hot(state, NUM_STATES)[:, :, None], axis=1)
    beliefs = beliefs._replace(prev_state=state, round=beliefs.round + 1)
    return beliefs, deterministic_logits(best_action(q_Ex2)), q_Ex2.max(axis=-1)


def bayesian_policy(game: Game) -> Policy:
    """The Bayesian learner as a ``Policy`` planning for ``game.horizon`` rounds (play it in
    ``game``; ``evaluation.match`` refuses a longer game). Its state is a ``BeliefState``."""

    def step(beliefs, x):
        beliefs, logits, _ = bayesian_step(beliefs, x, game.payoffs, game.horizon)
        return beliefs, logits

    return Policy(initial_beliefs, step)


@dataclasses.dataclass(frozen=True)
class _BayesianCore:
    """``networks``' backbone protocol for ``BayesianAgent``: the token is the round's
    ``RoundInput`` itself and the output the pair (logits, value)."""

    horizon: int
    payoffs: tuple

    def initial_carry(self, batch_size: int) -> BeliefState:
        return initial_beliefs(batch_size)

    def step(self, carry: BeliefState, x: RoundInput):
        carry, logits, value = bayesian_step(carry, x, jnp.asarray(self.payoffs), self.horizon)
        return carry, (logits, value)

    def sequence(self, x_TxB: RoundInput, prefix: None = None):
        if prefix is not None:
            raise ValueError("the Bayesian learner takes no opponent-ID token")
        _, y = jax.lax.scan(self.step, self.initial_carry(x_TxB.obs.shape[1]), x_TxB)
        return y


#: The paper's payoff table flattened, ``BayesianAgent``'s default.
PD_PAYOFFS = tuple(float(v) for v in PRISONERS_DILEMMA.reshape(-1))


class BayesianAgent(Agent):
    """The Bayesian learner as a parameter-free ``networks.Agent`` (``init`` gives ``{}``), so
    that anything that runs an agent runs it: ``rollout.collect``'s frozen co-player
    (``agent.apply(params, carry, x, method=Agent.step) -> (carry, logits, value)``,
    ``initial_carry(z [E, 10])``), ``rollout.agent_policy``, the whole-episode ``__call__``.

    Attributes:
      horizon: the rounds it plans for; it must play games of exactly that length.
      payoffs: the game's ``[2, 2, 2]`` payoff table, flattened to 8 floats (hashable).
    """

    payoffs: tuple = PD_PAYOFFS

    def setup(self):
        self.core = _BayesianCore(self.horizon, tuple(self.payoffs))

    def _token(self, x: RoundInput) -> RoundInput:
        return x

    def _heads(self, y):
        return y


def make_bayesian_agent(game: Game) -> BayesianAgent:
    """The ``BayesianAgent`` for ``game`` (its horizon and payoffs)."""
    payoffs = tuple(float(v) for v in np.asarray(game.payoffs).reshape(-1))
    return BayesianAgent(horizon=game.horizon, payoffs=payoffs)


def check_horizon(agent, horizon: int) -> None:
    """Raise ``ValueError`` if ``agent`` is a ``BayesianAgent`` built for another horizon than
    ``horizon`` (it plans for its own horizon and never clamps)."""
    if isinstance(agent, BayesianAgent) and agent.horizon != horizon:
        raise ValueError(
            f"the Bayesian learner plans for horizon={agent.horizon} and cannot play a "
            f"{horizon}-round game; build it for that game (reference.make_bayesian_agent)"
        )


# --- Reference players in ``evaluation``, and the in-context efficiency. -------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference player of ``evaluation`` (``Player(ORACLE, None)``, ``Player(BAYESIAN,
    None)``), built for the game it plays; the oracle also needs a tabular co-player.
    ``opening``: the oracle's forced first move (``ORACLE_OPENING_C``), None for its best one."""

    name: str
    opening: int | None = None

    @property
    def knows_coplayer(self) -> bool:
        return self.name == "oracle"

    def policy(self, game: Game, coplayer_theta: jax.Array | None) -> Policy:
        if self.knows_coplayer:
            return oracle_policy(coplayer_theta, game, self.opening)
        return bayesian_policy(game)


ORACLE = Reference("oracle")
#: The oracle made to open with C: what a player that must cooperate once to find a
#: cooperative co-player (Fig. 1's learners meet each other that way) can still earn.
ORACLE_OPENING_C = Reference("oracle", opening=C)
BAYESIAN = Reference("bayesian")


class Efficiency(NamedTuple):
    """In-context efficiency ``(r - r_alld) / (r_oracle - r_alld)`` and its standard error."""

    value: float
    se: float


def efficiency(reward_E, always_defect_E, oracle_E) -> Efficiency:
    """The in-context efficiency from per-episode rewards per round ``[E]`` of a player, of
    always-defect and of the oracle, all against the same co-players with the same random
    numbers: the ratio of the mean gains over always-defect, with its delta-method standard
    error over episodes, ``se = std(g - eff * m) / (mean(m) sqrt(E))`` with ``g = r - r_alld``,
    ``m = r_oracle - r_alld``. NaN when the oracle earns no more than always-defect."""
    alld = np.asarray(always_defect_E, np.float64)
    gain = np.asarray(reward_E, np.float64) - alld
    margin = np.asarray(oracle_E, np.float64) - alld
    if margin.mean() <= 0:
        return Efficiency(float("nan"), float("nan"))
    value = gain.mean() / margin.mean()
    residual = gain - value * margin
    se = residual.std(ddof=1) / (margin.mean() * np.sqrt(len(gain))) if len(gain) > 1 else np.nan
    return Efficiency(float(value), float(se))
