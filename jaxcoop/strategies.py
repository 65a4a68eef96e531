"""Tabular memory-1 co-players: 5 cooperation probabilities ``[START, CC, CD, DC, DD]``.

States are from the tabular player's own view (its own previous action first). A strategy is
just a float32 array ``[..., 5]``; the pool samples them i.i.d. U(0, 1), fresh every episode.
Named strategies are constructors returning such arrays: ``jaxcoop.strategies.tit_for_tat()``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop.environment import NUM_STATES, PRISONERS_DILEMMA

OPPONENT_ID_SIZE = 2 * NUM_STATES
_LOG_EPS = 1e-6


def cooperate_probability(theta: jax.Array, obs: jax.Array) -> jax.Array:
    """P(C) of strategies ``theta`` float ``[..., 5]`` given one-hot observations ``[..., 5]``
    (a single strategy ``[5]`` is broadcast over the observations' leading axes)."""
    theta = jnp.broadcast_to(theta, jnp.broadcast_shapes(theta.shape, obs.shape))
    return jnp.sum(theta * obs, axis=-1)


def logits(theta: jax.Array, obs: jax.Array) -> jax.Array:
    """Action logits float32 ``[..., 2]`` (log P(C), log P(D)) of a tabular strategy."""
    p = jnp.clip(cooperate_probability(theta, obs), _LOG_EPS, 1.0 - _LOG_EPS)
    return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def sample_pool(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Random pool co-players: float32 ``[*shape, 5]`` with entries i.i.d. U(0, 1)."""
    return jax.random.uniform(key, (*shape, NUM_STATES), dtype=jnp.float32)


def opponent_id(theta: jax.Array) -> jax.Array:
    """The paper's conditioning vector ``[..., 10]``: per state, log P(C) and log P(D)."""
    p = jnp.clip(theta, _LOG_EPS, 1.0 - _LOG_EPS)
    return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1).reshape(
        *theta.shape[:-1], OPPONENT_ID_SIZE
    )


def _strategy(*probs: float) -> jax.Array:
    return jnp.asarray(probs, dtype=jnp.float32)


def always_cooperate() -> jax.Array:
    """Cooperate in every state."""
    return _strategy(1, 1, 1, 1, 1)


def always_defect() -> jax.Array:
    """Defect in every state."""
    return _strategy(0, 0, 0, 0, 0)


def tit_for_tat() -> jax.Array:
    """Cooperate first, then copy the co-player's previous move."""
    return _strategy(1, 1, 0, 1, 0)


def win_stay_lose_shift() -> jax.Array:
    """Pavlov: cooperate first; repeat own move after CC or DC, switch after CD or DD."""
    return _strategy(1, 1, 0, 0, 1)


def generous_tit_for_tat(generosity: float = 1.0 / 3.0) -> jax.Array:
    """Tit-for-tat that forgives a defection with probability ``generosity``."""
    return _strategy(1, 1, generosity, 1, generosity)


def uniform_random() -> jax.Array:
    """Cooperate with probability 1/2 in every state (the pool's average strategy)."""
    return _strategy(0.5, 0.5, 0.5, 0.5, 0.5)


def zd_extortioner(
    chi: float = 3.0,
    phi_fraction: float = 0.5,
    start: float = 1.0,
    payoffs: np.ndarray = PRISONERS_DILEMMA,
) -> jax.Array:
    """Press-Dyson zero-determinant extortioner: ``s_X - P = chi * (s_Y - P)`` for any co-player.

    ``p = (1, 1, 0, 0) + phi * [(S_X - P) - chi (S_Y - P)]`` over (CC, CD, DC, DD), with ``phi``
    a fraction ``phi_fraction`` of the largest value keeping every probability in [0, 1].

    Args:
      chi: extortion factor (>= 1).
      phi_fraction: in (0, 1].
      start: P(C) in the first round (the long-run payoffs do not depend on it).
      payoffs: ``[2, 2, 2]`` payoff table of a prisoner's dilemma.
    """
    if chi < 1.0:
        raise ValueError(f"chi={chi} must be >= 1")
    if not 0.0 < phi_fraction <= 1.0:
        raise ValueError(f"phi_fraction={phi_fraction} must be in (0, 1]")
    table = np.asarray(payoffs, dtype=np.float64)
    s_x = table[:, :, 0].reshape(4)
    s_y = table[:, :, 1].reshape(4)
    punishment = table[1, 1, 0]
    base = np.array([1.0, 1.0, 0.0, 0.0])
    direction = (s_x - punishment) - chi * (s_y - punishment)
    bounds = [
        (1.0 - b) / d if d > 0 else b / -d for b, d in zip(base, direction, strict=True) if d != 0
    ]
    phi = phi_fraction * min(bounds)
    p = np.clip(base + phi * direction, 0.0, 1.0)
    return _strategy(start, *p)


NAMED = {
    "always_cooperate": always_cooperate,
    "always_defect": always_defect,
    "tit_for_tat": tit_for_tat,
    "win_stay_lose_shift": win_stay_lose_shift,
    "generous_tit_for_tat": generous_tit_for_tat,
    "zd_extortioner": zd_extortioner,
    "uniform_random": uniform_random,
}


POOLS = ("uniform", "named", "uniform+named", *NAMED)


def sample_coplayers(key: jax.Array, shape: tuple[int, ...], pool: str = "uniform") -> jax.Array:
    """Tabular co-players ``[*shape, 5]``.

    ``pool``: ``"uniform"`` (the paper's pool: fresh U(0, 1) draws), ``"named"`` (each episode
    one of the named strategies, uniformly at random), ``"uniform+named"`` (each episode one or
    the other with probability 1/2), or a name of ``NAMED`` (that strategy in every episode).
    """
    if pool == "uniform":
        return sample_pool(key, shape)
    if pool == "named":
        table = jnp.stack([make() for make in NAMED.values()])
        return table[jax.random.randint(key, shape, 0, len(NAMED))]
    if pool == "uniform+named":
        key_uniform, key_named, key_choice = jax.random.split(key, 3)
        pick_named = jax.random.bernoulli(key_choice, 0.5, shape)[..., None]
        uniform = sample_pool(key_uniform, shape)
        named = sample_coplayers(key_named, shape, "named")
        return jnp.where(pick_named, named, uniform)
    return jnp.broadcast_to(NAMED[pool](), (*shape, NUM_STATES))


def markov_chain(theta_a: jax.Array, theta_b: jax.Array, horizon: int) -> jax.Array:
    """Exact distribution of the joint action in every round ``[T, 4]`` of two tabular strategies.

    Joint actions in a's view: CC, CD, DC, DD (a's own action first); b sees the mirrored state.
    """
    theta_a, theta_b = (jnp.asarray(x, jnp.float32) for x in (theta_a, theta_b))
    mirror = jnp.array([0, 2, 1, 3])

    def joint(p_a, p_b):  # distribution over (a, b) in order CC, CD, DC, DD
        pa = jnp.stack([p_a, 1 - p_a], -1)
        pb = jnp.stack([p_b, 1 - p_b], -1)
        return (pa[..., :, None] * pb[..., None, :]).reshape(*pa.shape[:-1], 4)

    transition_4x4 = joint(theta_a[1:], theta_b[1:][mirror])

    def round_(dist_4, _):
        return dist_4 @ transition_4x4, dist_4

    _, dist_Tx4 = jax.lax.scan(round_, joint(theta_a[0], theta_b[0]), None, length=horizon)
    return dist_Tx4


def expected_rewards(
    theta_a: jax.Array, theta_b: jax.Array, payoffs: jax.Array, horizon: int
) -> jax.Array:
    """Exact expected reward per round ``[2]`` of two tabular strategies over ``horizon`` rounds
    (the mean over rounds of ``markov_chain``'s distributions times the payoffs)."""
    reward_4x2 = jnp.asarray(payoffs, jnp.float32).reshape(4, 2)
    return (markov_chain(theta_a, theta_b, horizon) @ reward_4x2).mean(axis=0)
