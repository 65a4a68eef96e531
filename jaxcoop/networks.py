"""The sequence-model agent: token embeddings, a recurrent backbone, policy and value heads.

Everything is time-major: sequences are ``[T, B, ...]``.

A **backbone** is a flax module with three methods (the transformer of a later issue implements
the same three):
  * ``initial_carry(batch_size) -> carry``: the state before the first token;
  * ``step(carry, x_BxE) -> (carry, y_BxH)``: one token, for rollouts;
  * ``sequence(x_TxBxE) -> y_TxBxH``: a whole sequence from ``initial_carry``, for training.
``step`` applied T times from ``initial_carry`` equals ``sequence`` on the same tokens.

The agent turns each round into one token: linear embeddings of the first-person observation
(one-hot, 5), its own previous action (one-hot, 2; zeros in round 0) and previous reward (1; zero
in round 0), summed into one ``embed_dim`` vector. With ``opponent_id`` on, an extra token made
from the 10-number conditioning vector is prepended to the episode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcoop.environment import NUM_ACTIONS

Carry = Any


class GRU(nn.Module):
    """GRU with fused gate matmuls (flax GRUCell equations, gate order r, z, n).

    The input projection of a whole sequence is one ``[T*B, E] x [E, 3H]`` matmul; only the
    hidden-state recurrence runs inside the scan.
    """

    hidden_dim: int

    def setup(self):
        h = self.hidden_dim
        self.input_proj = nn.Dense(3 * h, name="input")
        self.w_hidden = self.param(
            "hidden_kernel", nn.initializers.orthogonal(), (h, 3 * h), jnp.float32
        )
        self.b_hidden_n = self.param("hidden_bias_n", nn.initializers.zeros, (h,), jnp.float32)

    def initial_carry(self, batch_size: int) -> jax.Array:
        return jnp.zeros((batch_size, self.hidden_dim), jnp.float32)

    def _recur(self, h_BxH: jax.Array, gx_Bx3H: jax.Array) -> jax.Array:
        gh = h_BxH @ self.w_hidden
        xr, xz, xn = jnp.split(gx_Bx3H, 3, axis=-1)
        hr, hz, hn = jnp.split(gh, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * (hn + self.b_hidden_n[None]))
        return (1.0 - z) * n + z * h_BxH

    def step(self, carry: jax.Array, x_BxE: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self._recur(carry, self.input_proj(x_BxE))
        return h, h

    def sequence(self, x_TxBxE: jax.Array) -> jax.Array:
        gx_Tx_Bx3H = self.input_proj(x_TxBxE)

        def body(h, gx):
            h = self._recur(h, gx)
            return h, h

        _, h_TxBxH = jax.lax.scan(body, self.initial_carry(x_TxBxE.shape[1]), gx_Tx_Bx3H)
        return h_TxBxH


BACKBONES = {"gru": GRU}


class RoundInput(NamedTuple):
    """What the agent sees in one round (leading axes ``[...]``, e.g. ``[B]`` or ``[T, B]``).

    obs: float32 ``[..., 5]`` one-hot first-person state.
    prev_action: int32 ``[...]``, own previous action, -1 in round 0 (embedded as zeros).
    prev_reward: float32 ``[...]``, own previous reward, 0 in round 0.
    """

    obs: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array


def shift_right(x_TxB: jax.Array, fill) -> jax.Array:
    """``[fill, x_0, ..., x_{T-2}]`` along the time axis."""
    return jnp.concatenate([jnp.full_like(x_TxB[:1], fill), x_TxB[:-1]], axis=0)


class Agent(nn.Module):
    """Policy and value over the episode so far.

    Attributes:
      backbone: a key of ``BACKBONES``.
      embed_dim: token width (paper: 32).
      hidden_dim: backbone width (paper: 128).
      opponent_id: prepend a token built from the 10-number co-player vector.
    """

    backbone: str = "gru"
    embed_dim: int = 32
    hidden_dim: int = 128
    opponent_id: bool = False

    def setup(self):
        self.core = BACKBONES[self.backbone](hidden_dim=self.hidden_dim, name="backbone")
        self.embed_obs = nn.Dense(self.embed_dim, name="embed_obs")
        self.embed_action = nn.Dense(self.embed_dim, use_bias=False, name="embed_action")
        self.embed_reward = nn.Dense(self.embed_dim, use_bias=False, name="embed_reward")
        if self.opponent_id:
            self.embed_id = nn.Dense(self.embed_dim, name="embed_opponent_id")
        self.policy_head = nn.Dense(
            NUM_ACTIONS, kernel_init=nn.initializers.orthogonal(0.01), name="policy"
        )
        self.value_head = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="value")

    def _token(self, x: RoundInput) -> jax.Array:
        prev_action = jax.nn.one_hot(x.prev_action, NUM_ACTIONS, dtype=jnp.float32)
        return (
            self.embed_obs(x.obs)
            + self.embed_action(prev_action)
            + self.embed_reward(x.prev_reward[..., None])
        )

    def _heads(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = nn.swish(y)
        return self.policy_head(y), self.value_head(y)[..., 0]

    def initial_carry(self, z_BxZ: jax.Array) -> Carry:
        """Carry before round 0 of ``B`` episodes (``z_BxZ``: opponent-ID vectors, maybe unused)."""
        carry = self.core.initial_carry(z_BxZ.shape[0])
        if self.opponent_id:
            carry, _ = self.core.step(carry, self.embed_id(z_BxZ))
        return carry

    def step(self, carry: Carry, x: RoundInput) -> tuple[Carry, jax.Array, jax.Array]:
        """One round for ``B`` episodes: returns carry, logits ``[B, 2]``, value ``[B]``."""
        carry, y = self.core.step(carry, self._token(x))
        return (carry, *self._heads(y))

    def __call__(self, x: RoundInput, z_BxZ: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Whole episodes ``[T, B]``: logits ``[T, B, 2]`` and values ``[T, B]``."""
        tokens = self._token(x)
        if self.opponent_id:
            tokens = jnp.concatenate([self.embed_id(z_BxZ)[None], tokens], axis=0)
        y = self.core.sequence(tokens)
        if self.opponent_id:
            y = y[1:]
        return self._heads(y)
