"""Advantages and the A2C / PPO losses: pure functions of network outputs, time-major `[T, B]`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcoop import rollout


def gae(
    rewards_TxB: jax.Array, values_TxB: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimation over fixed-horizon episodes (no bootstrap after round T).

    Returns:
      advantages ``[T, B]`` and value targets (the lambda-returns) ``[T, B]``.
    """
    next_values = jnp.concatenate([values_TxB[1:], jnp.zeros_like(values_TxB[:1])], axis=0)
    deltas = rewards_TxB + gamma * next_values - values_TxB

    def back(advantage_next, delta):
        advantage = delta + gamma * lam * advantage_next
        return advantage, advantage

    _, advantages = jax.lax.scan(back, jnp.zeros_like(deltas[0]), deltas, reverse=True)
    return advantages, advantages + values_TxB


def normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Zero mean, unit standard deviation over all entries."""
    return (x - x.mean()) / (x.std() + eps)


class LossInfo(NamedTuple):
    """Scalars reported per update (means over the batch). ``approx_kl`` and ``clip_fraction``
    measure how far PPO's update moved from the acting policy; A2C has no such quantity and
    reports NaN for both."""

    total: jax.Array
    policy: jax.Array
    value: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array


def _value_and_entropy_terms(logits, values, targets, ent_coef, vf_coef):
    value_loss = jnp.mean((values - targets) ** 2)
    entropy = rollout.entropy(logits).mean()
    return value_loss, entropy, vf_coef * value_loss - ent_coef * entropy


def a2c_loss(
    logits: jax.Array,
    values: jax.Array,
    actions: jax.Array,
    advantages: jax.Array,
    targets: jax.Array,
    ent_coef: float,
    vf_coef: float,
) -> tuple[jax.Array, LossInfo]:
    """``mean(-log pi(a|x) A) + vf_coef mean((V - target)^2) - ent_coef mean(H[pi])``.

    Args: logits ``[T, B, 2]``; values, actions, advantages, targets ``[T, B]``.
    """
    log_prob = rollout.log_prob(logits, actions)
    policy_loss = -jnp.mean(log_prob * advantages)
    value_loss, entropy, rest = _value_and_entropy_terms(logits, values, targets, ent_coef, vf_coef)
    total = policy_loss + rest
    nan = jnp.full((), jnp.nan)  # PPO's measures of the policy's move: none for A2C
    return total, LossInfo(total, policy_loss, value_loss, entropy, nan, nan)


def ppo_loss(
    logits: jax.Array,
    values: jax.Array,
    actions: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    targets: jax.Array,
    clip_eps: float,
    ent_coef: float,
    vf_coef: float,
) -> tuple[jax.Array, LossInfo]:
    """Clipped PPO: ``-mean(min(r A, clip(r, 1 +- eps) A))`` + the A2C value and entropy terms.

    Args: as ``a2c_loss`` plus ``old_log_prob`` ``[T, B]`` of the acting policy.
    """
    log_prob = rollout.log_prob(logits, actions)
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    policy_loss = -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))
    value_loss, entropy, rest = _value_and_entropy_terms(logits, values, targets, ent_coef, vf_coef)
    total = policy_loss + rest
    approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
    clip_fraction = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    return total, LossInfo(total, policy_loss, value_loss, entropy, approx_kl, clip_fraction)
