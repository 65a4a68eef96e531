"""The sequence-model agent: token embeddings, a recurrent backbone, policy and value heads.

Everything is time-major: sequences are ``[T, B, ...]``.

A **backbone** is a flax module with three methods:
  * ``initial_carry(batch_size) -> carry``: the state before the first token;
  * ``step(carry, tokens) -> (carry, y_BxH)``: one token per episode (``Tokens`` ``[B]``), for
    rollouts;
  * ``sequence(tokens, prefix=None) -> y_TxBxH``: whole episodes (``Tokens`` ``[T, B]``) from
    ``initial_carry``, after one ``prefix`` token ``[B]`` if given, for training.
``step`` applied T times from ``initial_carry`` equals ``sequence`` on the same tokens. Two exist:
``GRU`` (the paper's; the carry is the hidden state) and ``Transformer`` (causal self-attention;
the carry is a preallocated key/value cache, and ``sequence`` is one masked parallel forward).

The agent turns each round into one token: linear embeddings of the first-person observation
(one-hot, 5), its own previous action (one-hot, 2; zeros in round 0) and previous reward (1; zero
in round 0), summed into one ``embed_dim`` vector: one linear map of the 8 raw features, kept
factored (``Tokens``) so that the GRU folds it into its input projection. With ``opponent_id``
on, an extra token made from the 10-number conditioning vector is prepended to the episode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxcoop import environment
from jaxcoop.environment import NUM_ACTIONS, NUM_STATES
from jaxcoop.strategies import OPPONENT_ID_SIZE

Carry = Any


def affine(x_xF: jax.Array, kernel_FxD: jax.Array, bias_D: jax.Array) -> jax.Array:
    """``x @ kernel + bias`` ``[..., D]`` for any leading axes of ``x``."""
    return x_xF @ kernel_FxD + bias_D.reshape((1,) * (x_xF.ndim - 1) + bias_D.shape)


class Affine(nn.Module):
    """The parameters of ``x @ kernel + bias`` (``nn.Dense``'s names and initialization) as
    attributes, so that a scan body can close over them and a caller can compose them.
    Without ``use_bias`` there is no bias parameter and ``bias`` is zeros."""

    in_features: int
    features: int
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()

    def setup(self):
        shape = (self.in_features, self.features)
        self.kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        if self.use_bias:
            self.bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        else:
            self.bias = jnp.zeros((self.features,), jnp.float32)

    def __call__(self, x_xF: jax.Array) -> jax.Array:
        """``x @ kernel + bias`` ``[..., features]``."""
        return affine(x_xF, self.kernel, self.bias)


class Tokens(NamedTuple):
    """Tokens ``features @ kernel + bias`` (``[..., E]``) kept as their linear map of the raw
    ``features [..., F]``: the GRU folds ``kernel [F, E]`` into its input projection (one
    ``[F, 3H]`` matmul per round instead of ``[F, E]`` and ``[E, 3H]``, and no token-sized
    cotangents in the backward pass); the transformer embeds them (``embedded``)."""

    features: jax.Array
    kernel: jax.Array
    bias: jax.Array

    def embedded(self) -> jax.Array:
        """The tokens ``[..., E]``."""
        return affine(self.features, self.kernel, self.bias)


def _gru_forward(params, h_BxH: jax.Array, x_BxE: jax.Array):
    w_in, b_in, w_hidden, b_hidden_n = params
    size = h_BxH.shape[-1]
    gx = x_BxE @ w_in + b_in[None]
    gh = h_BxH @ w_hidden
    r = jax.nn.sigmoid(gx[:, :size] + gh[:, :size])
    z = jax.nn.sigmoid(gx[:, size : 2 * size] + gh[:, size : 2 * size])
    hn = gh[:, 2 * size :] + b_hidden_n[None]
    n = jnp.tanh(gx[:, 2 * size :] + r * hn)
    return (1.0 - z) * n + z * h_BxH, (params, h_BxH, x_BxE, r, z, n, hn)


def _gru_backward(residuals, dh_new_BxH):
    (w_in, _, w_hidden, _), h, x, r, z, n, hn = residuals
    d_n = dh_new_BxH * (1.0 - z) * (1.0 - n * n)  # through tanh
    d_r = d_n * hn * r * (1.0 - r)
    d_z = dh_new_BxH * (h - n) * z * (1.0 - z)
    d_hn = d_n * r
    dgx_Bx3H = jnp.concatenate([d_r, d_z, d_n], axis=-1)
    dgh_Bx3H = jnp.concatenate([d_r, d_z, d_hn], axis=-1)
    grads = (x.T @ dgx_Bx3H, dgx_Bx3H.sum(0), h.T @ dgh_Bx3H, d_hn.sum(0))
    return grads, dh_new_BxH * z + dgh_Bx3H @ w_hidden.T, dgx_Bx3H @ w_in.T


@jax.custom_vjp
def gru_cell(params, h_BxH: jax.Array, x_BxE: jax.Array) -> jax.Array:
    """One GRU step (flax GRUCell equations, gate order r, z, n) with a hand-written backward
    pass: the gates' cotangents in one elementwise pass, then the four matmuls. ``params``:
    input kernel ``[F, 3H]`` (``GRU._params``: the token map folded in), input bias ``[3H]``,
    hidden kernel ``[H, 3H]``, ``n``-gate hidden bias ``[H]``. Same values and gradients as
    automatic differentiation of the equations, and measured 1.2x faster for the whole
    training iteration on CPU (benchmarks/README.md)."""
    return _gru_forward(params, h_BxH, x_BxE)[0]


gru_cell.defvjp(_gru_forward, _gru_backward)


class GRU(nn.Module):
    """GRU with fused gate matmuls (flax GRUCell equations, gate order r, z, n).

    ``sequence`` projects each round's token inside the scan, like ``step``: precomputing the
    projection of a whole sequence (``[T, B, 3H]``) is fewer, larger matmuls but moves several
    times more memory, and measured slower on CPU (benchmarks/README.md).
    """

    input_dim: int
    hidden_dim: int

    def setup(self):
        h = self.hidden_dim
        self.input_proj = Affine(self.input_dim, 3 * h, name="input")
        self.w_hidden = self.param(
            "hidden_kernel", nn.initializers.orthogonal(), (h, 3 * h), jnp.float32
        )
        self.b_hidden_n = self.param("hidden_bias_n", nn.initializers.zeros, (h,), jnp.float32)

    def initial_carry(self, batch_size: int) -> jax.Array:
        return jnp.zeros((batch_size, self.hidden_dim), jnp.float32)

    def _params(self, tokens: Tokens):
        """``gru_cell``'s parameters for ``tokens``' raw features: the token map folded into
        the input projection."""
        w_in, b_in = self.input_proj.kernel, self.input_proj.bias
        w_tokens = tokens.kernel @ w_in
        return w_tokens, tokens.bias @ w_in + b_in, self.w_hidden, self.b_hidden_n

    def step(self, carry: jax.Array, tokens: Tokens) -> tuple[jax.Array, jax.Array]:
        h = gru_cell(self._params(tokens), carry, tokens.features)
        return h, h

    def sequence(self, tokens: Tokens, prefix: Tokens | None = None) -> jax.Array:
        batch = tokens.features.shape[1]
        carry = (
            self.initial_carry(batch)
            if prefix is None
            else self.step(self.initial_carry(batch), prefix)[0]
        )
        params = self._params(tokens)  # outside the scan body

        def body(h, features_BxF):
            h = gru_cell(params, h, features_BxF)
            return h, h

        _, h_TxBxH = jax.lax.scan(body, carry, tokens.features)
        return h_TxBxH


class TransformerCache(NamedTuple):
    """The transformer's carry: keys ``[B, heads, head_dim, T_max]`` and values
    ``[B, heads, T_max, head_dim]`` for the whole horizon, one float32 array per layer each, and
    the next position (int32 scalar). Each is laid out as its attention matmul reads it (keys
    contracted over ``head_dim``, values over ``T_max``), and each layer has its own buffer, so
    a rollout's step writes one position in place; any other layout or a stacked cache makes
    XLA copy (and transpose) the whole cache every round."""

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    position: jax.Array


class Block(nn.Module):
    """One pre-norm transformer block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``.
    The attention itself is done by the caller (parallel or cached), between ``project`` and
    ``finish``."""

    width: int
    num_heads: int

    def setup(self):
        self.norm_attention = nn.LayerNorm(name="norm_attention")
        self.qkv = nn.Dense(3 * self.width, name="qkv")
        self.out = nn.Dense(self.width, name="attention_out")
        self.norm_mlp = nn.LayerNorm(name="norm_mlp")
        self.mlp_in = nn.Dense(4 * self.width, name="mlp_in")
        self.mlp_out = nn.Dense(self.width, name="mlp_out")

    def project(self, x_xD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Queries (pre-scaled), keys, values ``[..., heads, head_dim]`` of tokens ``[..., D]``."""
        head_dim = self.width // self.num_heads
        qkv = self.qkv(self.norm_attention(x_xD))
        q, k, v = jnp.split(qkv.reshape(*x_xD.shape[:-1], 3 * self.num_heads, head_dim), 3, -2)
        return q / jnp.sqrt(head_dim).astype(q.dtype), k, v

    def finish(self, x_xD: jax.Array, attended_xHxDh: jax.Array) -> jax.Array:
        x = x_xD + self.out(attended_xHxDh.reshape(x_xD.shape))
        return x + self.mlp_out(nn.gelu(self.mlp_in(self.norm_mlp(x))))


def _masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    return jax.nn.softmax(jnp.where(mask, scores, -1e30), axis=-1)


def _causal_attention(q_TxBxHxDh: jax.Array, k_TxBxHxDh: jax.Array, v_TxBxHxDh: jax.Array):
    """Causal attention ``[T, B, H, Dh]`` over whole episodes, in two halves of the queries: the
    first half attends to the first half of the keys only, so the quarter of the ``T x T``
    scores that the mask would zero is never computed (one layer's forward and backward at 2 x
    256 episodes x 100 rounds measured ~25 % faster on one CPU core; docs/performance.md)."""
    length = q_TxBxHxDh.shape[0]
    half = length // 2
    causal_TxT = jnp.tril(jnp.ones((length, length), bool))

    def attend(q, k, v, mask):
        scores_BxHxTxS = jnp.einsum("tbhd,sbhd->bhts", q, k)
        return jnp.einsum("bhts,sbhd->tbhd", _masked_softmax(scores_BxHxTxS, mask), v)

    if half == 0:
        return attend(q_TxBxHxDh, k_TxBxHxDh, v_TxBxHxDh, causal_TxT)
    first = attend(
        q_TxBxHxDh[:half], k_TxBxHxDh[:half], v_TxBxHxDh[:half], causal_TxT[:half, :half]
    )
    second = attend(q_TxBxHxDh[half:], k_TxBxHxDh, v_TxBxHxDh, causal_TxT[half:])
    return jnp.concatenate([first, second], axis=0)


class Transformer(nn.Module):
    """Causal pre-norm transformer over an episode's tokens, with learned positions.

    ``sequence`` runs all ``T`` tokens at once under a causal mask (training); ``step`` runs one
    token against the key/value cache carried through a rollout: the new key and value are
    written at the current position with ``lax.dynamic_update_slice`` and the query attends to
    the positions written so far (shapes fixed to ``max_len``, so it compiles once).
    """

    width: int
    num_layers: int
    num_heads: int
    max_len: int

    def setup(self):
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by {self.num_heads} heads")
        self.input_proj = nn.Dense(self.width, name="input")
        self.position = self.param(
            "position", nn.initializers.normal(0.02), (self.max_len, self.width), jnp.float32
        )
        self.blocks = [
            Block(self.width, self.num_heads, name=f"block{i}") for i in range(self.num_layers)
        ]
        self.norm = nn.LayerNorm(name="norm")

    def initial_carry(self, batch_size: int) -> TransformerCache:
        head_dim = self.width // self.num_heads
        keys = (batch_size, self.num_heads, head_dim, self.max_len)
        values = (batch_size, self.num_heads, self.max_len, head_dim)
        return TransformerCache(
            tuple(jnp.zeros(keys, jnp.float32) for _ in range(self.num_layers)),
            tuple(jnp.zeros(values, jnp.float32) for _ in range(self.num_layers)),
            jnp.zeros((), jnp.int32),
        )

    def step(self, carry: TransformerCache, tokens: Tokens) -> tuple[TransformerCache, jax.Array]:
        pos = carry.position
        x = self.input_proj(tokens.embedded()) + self.position[pos][None]
        written = jnp.arange(self.max_len) <= pos  # [T_max]
        keys, values = [], []
        for layer, block in enumerate(self.blocks):
            q_BxHxDh, k, v = block.project(x)
            update = jax.lax.dynamic_update_slice_in_dim
            k_cache = update(carry.keys[layer], k[..., None], pos, 3)  # [B, H, Dh, T]
            v_cache = update(carry.values[layer], v[:, :, None], pos, 2)  # [B, H, T, Dh]
            scores_BxHxT = jnp.einsum("bhd,bhdt->bht", q_BxHxDh, k_cache)
            weights = _masked_softmax(scores_BxHxT, written)
            x = block.finish(x, jnp.einsum("bht,bhtd->bhd", weights, v_cache))
            keys.append(k_cache)
            values.append(v_cache)
        carry = TransformerCache(tuple(keys), tuple(values), pos + 1)
        return carry, self.norm(x)

    def sequence(self, tokens: Tokens, prefix: Tokens | None = None) -> jax.Array:
        x_TxBxE = tokens.embedded()
        if prefix is not None:
            x_TxBxE = jnp.concatenate([prefix.embedded()[None], x_TxBxE], axis=0)
        length = x_TxBxE.shape[0]
        if length > self.max_len:
            raise ValueError(f"{length} tokens exceed the transformer's {self.max_len} positions")
        x = self.input_proj(x_TxBxE) + self.position[:length, None]
        for block in self.blocks:
            x = block.finish(x, _causal_attention(*block.project(x)))  # [T, B, H, Dh] each
        y = self.norm(x)
        return y if prefix is None else y[1:]


#: Backbones by name: each builds the ``backbone`` submodule of an ``Agent`` from its fields.
BACKBONES = {
    "gru": lambda agent: GRU(agent.embed_dim, agent.hidden_dim, name="backbone"),
    "transformer": lambda agent: Transformer(
        width=agent.hidden_dim,
        num_layers=agent.num_layers,
        num_heads=agent.num_heads,
        max_len=agent.horizon + int(agent.opponent_id),
        name="backbone",
    ),
}


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


def states_before(after_TxB: jax.Array) -> jax.Array:
    """One-hot float32 ``[T, B, 5]`` of the first-person state each round starts from, given
    the state each round left ``[T, B]``: ``START``, then the previous round's."""
    return environment.one_hot_states(shift_right(after_TxB, environment.START))


def history_inputs(obs_TxBx5: jax.Array, own_TxB: jax.Array, rewards_TxB: jax.Array) -> RoundInput:
    """What an agent saw in each round of its episodes ``[T, B]``: its observation
    ``obs_TxBx5`` (e.g. ``states_before``), its own previous move (-1 in round 0) and its own
    previous reward (0 in round 0), from its moves and rewards."""
    return RoundInput(obs_TxBx5, shift_right(own_TxB, -1), shift_right(rewards_TxB, 0.0))


def _apply_heads(agent: Agent, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = nn.swish(y)  # both heads in one matmul: [H, 2 + 1]
    heads = (agent.policy_head, agent.value_head)
    kernel = jnp.concatenate([head.kernel for head in heads], axis=1)
    bias = jnp.concatenate([head.bias for head in heads])
    out = affine(y, kernel, bias)
    return out[..., :NUM_ACTIONS], out[..., NUM_ACTIONS]


#: The heads, recomputed in the backward pass from the backbone's output (``nn.checkpoint``):
#: a differentiated rollout then stores one ``[B, H]`` array per round for them instead of
#: four (A2C at the CPU target, 2 x 1,024 episodes x 100 rounds, GRU 128: compiled memory
#: 951 -> 651 MiB, and a few percent faster; benchmarks/README.md).
_recomputed_heads = nn.checkpoint(_apply_heads)


class Agent(nn.Module):
    """Policy and value over the episode so far.

    Attributes:
      backbone: a key of ``BACKBONES``.
      embed_dim: token width (paper: 32).
      hidden_dim: backbone width (GRU state; transformer model width; paper GRU: 128).
      opponent_id: prepend a token built from the 10-number co-player vector.
      num_layers, num_heads: transformer depth and attention heads (unused by the GRU).
      horizon: rounds per episode (the transformer's positions; unused by the GRU).
    """

    backbone: str = "gru"
    embed_dim: int = 32
    hidden_dim: int = 128
    opponent_id: bool = False
    num_layers: int = 2
    num_heads: int = 4
    horizon: int = 100

    @property
    def max_rounds(self) -> int | None:
        """The longest episode it can play: a transformer's ``horizon`` (it has that many
        learned positions); ``None`` for the GRU (no positional limit)."""
        return self.horizon if self.backbone == "transformer" else None

    def setup(self):
        self.core = BACKBONES[self.backbone](self)
        e = self.embed_dim
        self.embed_obs = Affine(NUM_STATES, e, name="embed_obs")
        self.embed_action = Affine(NUM_ACTIONS, e, use_bias=False, name="embed_action")
        self.embed_reward = Affine(1, e, use_bias=False, name="embed_reward")
        if self.opponent_id:
            self.embed_id = Affine(OPPONENT_ID_SIZE, e, name="embed_opponent_id")
        h, orthogonal = self.hidden_dim, nn.initializers.orthogonal
        self.policy_head = Affine(h, NUM_ACTIONS, kernel_init=orthogonal(0.01), name="policy")
        self.value_head = Affine(h, 1, kernel_init=orthogonal(1.0), name="value")

    def _token(self, x: RoundInput) -> Tokens:
        prev_action = jax.nn.one_hot(x.prev_action, NUM_ACTIONS, dtype=jnp.float32)
        features = jnp.concatenate([x.obs, prev_action, x.prev_reward[..., None]], axis=-1)
        parts = (self.embed_obs, self.embed_action, self.embed_reward)
        kernel = jnp.concatenate([part.kernel for part in parts], axis=0)
        return Tokens(features, kernel, self.embed_obs.bias)

    def _id_token(self, z_BxZ: jax.Array) -> Tokens:
        return Tokens(z_BxZ, self.embed_id.kernel, self.embed_id.bias)

    def _heads(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _recomputed_heads(self, y)

    def initial_carry(self, z_BxZ: jax.Array) -> Carry:
        """Carry before round 0 of ``B`` episodes (``z_BxZ``: opponent-ID vectors, maybe unused)."""
        carry = self.core.initial_carry(z_BxZ.shape[0])
        if self.opponent_id:
            carry, _ = self.core.step(carry, self._id_token(z_BxZ))
        return carry

    def step(self, carry: Carry, x: RoundInput) -> tuple[Carry, jax.Array, jax.Array]:
        """One round for ``B`` episodes: returns carry, logits ``[B, 2]``, value ``[B]``."""
        carry, y = self.core.step(carry, self._token(x))
        return (carry, *self._heads(y))

    def features(self, x: RoundInput, z_BxZ: jax.Array) -> jax.Array:
        """The backbone's output ``[T, B, H]`` for whole episodes ``[T, B]`` (one per round)."""
        prefix = self._id_token(z_BxZ) if self.opponent_id else None
        return self.core.sequence(self._token(x), prefix)

    def __call__(self, x: RoundInput, z_BxZ: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Whole episodes ``[T, B]``: logits ``[T, B, 2]`` and values ``[T, B]``."""
        return self._heads(self.features(x, z_BxZ))


# --- An agent of a config. ----------------------------------------------------------------------

#: Config fields that fix an agent's architecture: ``Agent``'s fields.
AGENT_FIELDS = (
    "backbone",
    "embed_dim",
    "hidden_dim",
    "opponent_id",
    "num_layers",
    "num_heads",
    "horizon",
)


def agent_fields(backbone: str) -> tuple[str, ...]:
    """The ``AGENT_FIELDS`` that matter for ``backbone`` (the GRU ignores depth, heads, horizon)."""
    return AGENT_FIELDS[:4] if backbone == "gru" else AGENT_FIELDS


def make_agent(config) -> Agent:
    """The ``Agent`` of a ``config.Config`` (its ``AGENT_FIELDS``)."""
    return Agent(**{name: getattr(config, name) for name in AGENT_FIELDS})


def init_params(agent: Agent, key: jax.Array) -> Any:
    """Parameters of one agent."""
    x = RoundInput(
        obs=jnp.zeros((1, 1, NUM_STATES)),
        prev_action=jnp.zeros((1, 1), jnp.int32),
        prev_reward=jnp.zeros((1, 1)),
    )
    return agent.init(key, x, jnp.zeros((1, OPPONENT_ID_SIZE)))
