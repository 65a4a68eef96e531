"""Two-player iterated 2x2 matrix games (default: the paper's prisoner's dilemma) as pure functions.

Conventions used everywhere in jaxcoop:
  * actions: ``C = 0``, ``D = 1``;
  * the two players sit on the last array axis (size 2);
  * observations are first-person one-hot vectors over 5 states
    ``[START, CC, CD, DC, DD]``, where the first letter is the observer's own previous action.

``reset`` and ``step`` act on one episode; ``jax.vmap`` them for many.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

C, D = 0, 1
NUM_ACTIONS = 2
NUM_STATES = 5
START = 0
STATE_NAMES = ("START", "CC", "CD", "DC", "DD")


def _payoffs(cc, cd, dc, dd) -> np.ndarray:
    """Payoff table ``[a_0, a_1, player]`` from the four (row, column) outcome pairs."""
    return np.array([[cc, cd], [dc, dd]], dtype=np.float32)


#: The paper's prisoner's dilemma: R=1, S=-1, T=2, P=0.
PRISONERS_DILEMMA = _payoffs((1, 1), (-1, 2), (2, -1), (0, 0))
#: Stag hunt (C = stag, D = hare): R=3 > T=2 > P=1 > S=0.
STAG_HUNT = _payoffs((3, 3), (0, 2), (2, 0), (1, 1))
#: Chicken (C = swerve, D = straight): T=1 > R=0 > S=-1 > P=-2.
CHICKEN = _payoffs((0, 0), (-1, 1), (1, -1), (-2, -2))
#: Matching pennies (zero-sum; player 0 wants to match, player 1 to mismatch).
MATCHING_PENNIES = _payoffs((1, -1), (-1, 1), (-1, 1), (1, -1))

GAMES = {
    "ipd": PRISONERS_DILEMMA,
    "stag-hunt": STAG_HUNT,
    "chicken": CHICKEN,
    "matching-pennies": MATCHING_PENNIES,
}


@struct.dataclass
class Game:
    """A repeated 2x2 game.

    Attributes:
      payoffs: float32 ``[2, 2, 2]``; ``payoffs[a_0, a_1]`` is the reward pair ``(r_0, r_1)``.
      horizon: number of rounds per episode (static).
    """

    payoffs: jax.Array
    horizon: int = struct.field(pytree_node=False, default=100)


def make_game(name: str = "ipd", horizon: int = 100) -> Game:
    """The named game of ``GAMES`` with the given horizon."""
    if name not in GAMES:
        raise ValueError(f"game={name!r} is unknown; allowed: {sorted(GAMES)}")
    return Game(payoffs=jnp.asarray(GAMES[name]), horizon=horizon)


@struct.dataclass
class EnvState:
    """Episode state: ``round`` is the index of the next round to be played (int32 scalar)."""

    round: jax.Array


def first_person_states(actions_2: jax.Array) -> jax.Array:
    """State index (1..4) each player observes after joint action ``actions_2`` (int ``[..., 2]``).

    Player ``i`` sees ``1 + 2 * own + other``, so the two players see mirrored states.
    """
    own, other = actions_2, jnp.flip(actions_2, axis=-1)
    return 1 + 2 * own + other


def one_hot_states(states: jax.Array) -> jax.Array:
    """One-hot float32 ``[..., 5]`` of integer states."""
    return jax.nn.one_hot(states, NUM_STATES, dtype=jnp.float32)


def reset(game: Game) -> tuple[EnvState, jax.Array]:
    """Start an episode.

    Returns:
      state, and observations float32 ``[2, 5]`` (both players see START).
    """
    del game
    obs = one_hot_states(jnp.full((2,), START, jnp.int32))
    return EnvState(round=jnp.zeros((), jnp.int32)), obs


def step(
    game: Game, state: EnvState, actions: jax.Array
) -> tuple[EnvState, jax.Array, jax.Array, jax.Array]:
    """Play one round.

    Args:
      game: the game.
      state: current episode state.
      actions: int ``[2]``, each player's action (0 = C, 1 = D).

    Returns:
      next state; observations float32 ``[2, 5]`` (first person); rewards float32 ``[2]``
      (indexed from ``game.payoffs``); ``done`` bool scalar, true after the last round.
    """
    rewards = game.payoffs[actions[0], actions[1]]
    obs = one_hot_states(first_person_states(actions))
    next_round = state.round + 1
    return EnvState(round=next_round), obs, rewards, next_round >= game.horizon
