"""The agent with both backbones: shapes, the step-by-step rollout (GRU state, transformer
key/value cache) equals the whole-sequence call with and without jit, causality."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoop import Agent, RoundInput, environment, rollout

T, B, Z = 6, 3, 10


def _inputs(key):
    """Random rounds ``[T, B]``: one-hot observations, previous actions (-1 in round 0), rewards."""
    k_obs, k_action, k_reward, k_z = jax.random.split(key, 4)
    obs = environment.one_hot_states(jax.random.randint(k_obs, (T, B), 0, 5))
    actions = jax.random.randint(k_action, (T, B), 0, 2)
    prev_action = jnp.concatenate([jnp.full((1, B), -1), actions[:-1]], axis=0)
    prev_reward = jax.random.normal(k_reward, (T, B))
    return RoundInput(obs, prev_action, prev_reward), jax.random.normal(k_z, (B, Z))


@pytest.fixture(
    scope="module",
    params=[("gru", False), ("gru", True), ("transformer", False), ("transformer", True)],
    ids=["gru", "gru-opponent_id", "transformer", "transformer-opponent_id"],
)
def agent_setup(request):
    backbone, opponent_id = request.param
    agent = Agent(
        backbone=backbone,
        embed_dim=8,
        hidden_dim=16,
        opponent_id=opponent_id,
        num_layers=2,
        num_heads=4,
        horizon=T,
    )
    x, z = _inputs(jax.random.key(0))
    params = agent.init(jax.random.key(1), x, z)
    if backbone == "transformer":  # non-trivial positions and norms (init: ~0 and 1)
        params = jax.tree.map(
            lambda p, k: p + 0.3 * jax.random.normal(k, p.shape),
            params,
            _keys_like(params, jax.random.key(2)),
        )
    return agent, params, x, z


def _keys_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def test_whole_sequence_call_gives_logits_TxBx2_and_values_TxB(agent_setup):
    agent, params, x, z = agent_setup
    logits, values = agent.apply(params, x, z)
    assert logits.shape == (T, B, 2)
    assert values.shape == (T, B)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_stepping_from_the_initial_carry_equals_the_whole_sequence_call(agent_setup, jit):
    """The rollout path (GRU state / transformer key-value cache, one round at a time) and the
    training path (one parallel forward over ``[T, B]``) are the same function."""
    agent, params, x, z = agent_setup
    maybe_jit = jax.jit if jit else (lambda f: f)
    whole = maybe_jit(lambda p, x, z: agent.apply(p, x, z))
    initial = maybe_jit(lambda p, z: agent.apply(p, z, method=Agent.initial_carry))
    step = maybe_jit(lambda p, c, x: agent.apply(p, c, x, method=Agent.step))
    logits, values = whole(params, x, z)
    carry = initial(params, z)
    for t in range(T):
        carry, step_logits, step_values = step(params, carry, jax.tree.map(lambda a, t=t: a[t], x))
        assert step_logits.shape == (B, 2) and step_values.shape == (B,)
        np.testing.assert_allclose(step_logits, logits[t], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(step_values, values[t], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(logits[0] - logits[-1])).max() > 1e-3  # not a constant function


def test_the_transformer_cache_is_per_layer_in_the_layout_its_matmuls_read():
    """Keys ``[B, heads, head_dim, T]``, values ``[B, heads, T, head_dim]``, one buffer each
    per layer; a step writes its position only."""
    agent = Agent(backbone="transformer", embed_dim=8, hidden_dim=16, num_layers=3, num_heads=2)
    x, z = _inputs(jax.random.key(0))
    params = agent.init(jax.random.key(1), x, z)
    carry = agent.apply(params, z, method=Agent.initial_carry)
    assert len(carry.keys) == len(carry.values) == 3  # one buffer per layer
    for keys, values in zip(carry.keys, carry.values, strict=True):
        assert keys.shape == (B, 2, 8, 100) and keys.dtype == np.float32
        assert values.shape == (B, 2, 100, 8) and values.dtype == np.float32
    assert int(carry.position) == 0
    carry, _, _ = agent.apply(params, carry, jax.tree.map(lambda a: a[0], x), method=Agent.step)
    assert int(carry.position) == 1
    for cache in (*(k.swapaxes(2, 3) for k in carry.keys), *carry.values):  # [B, heads, T, Dh]
        np.testing.assert_array_equal(cache[:, :, 1:], 0.0)  # only position 0 is written
        assert np.abs(np.asarray(cache[:, :, 0])).max() > 0


def _dot_generals(jaxpr) -> list:
    """Every ``dot_general`` equation of a jaxpr, its sub-jaxprs (scans, custom VJPs) included."""
    from benchmarks.sps import _sub_jaxprs

    found = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    for e in jaxpr.eqns:
        for sub in _sub_jaxprs(e.params):
            found += _dot_generals(sub)
    return found


def test_the_parallel_attention_never_scores_a_query_against_a_later_half_of_keys():
    """The update's causal attention runs in two halves of the queries (``_causal_attention``):
    of a ``T x T`` score matrix per layer and head it computes the first half's ``T/2 x T/2``
    block and the second half's ``T/2 x T`` rows, 3/4 of the elements; a regression to one
    masked ``T x T`` product computes all of them."""
    agent = Agent(backbone="transformer", embed_dim=8, hidden_dim=16, num_layers=2, num_heads=4)
    x, z = _inputs(jax.random.key(0))
    params = agent.init(jax.random.key(1), x, z)
    jaxpr = jax.make_jaxpr(lambda p: agent.apply(p, x, z))(params)
    outputs = [e.outvars[0].aval.shape for e in _dot_generals(jaxpr.jaxpr)]
    # [B, heads, queries, keys]; head_dim 4 is neither T nor T/2
    scores = [s[2:] for s in outputs if len(s) == 4 and s[:2] == (B, 4) and 16 // 4 not in s[2:]]
    half = T // 2
    assert sorted(scores) == [(half, half)] * 2 + [(half, T)] * 2


def test_the_parallel_attention_in_halves_equals_one_masked_product():
    from jaxcoop.networks import _causal_attention, _masked_softmax

    for length in (1, 2, 7, 10):
        q, k, v = jax.random.normal(jax.random.key(length), (3, length, 2, 3, 4))
        scores = jnp.einsum("tbhd,sbhd->bhts", q, k)
        causal = jnp.tril(jnp.ones((length, length), bool))
        expected = jnp.einsum("bhts,sbhd->tbhd", _masked_softmax(scores, causal), v)
        np.testing.assert_allclose(_causal_attention(q, k, v), expected, rtol=1e-5, atol=1e-6)


def _elements(dims: str) -> int:
    return math.prod(int(d) for d in dims.split(",") if d)


def test_a_rollout_step_copies_no_whole_transformer_cache():
    """In the compiled rounds of two learners' transformers (vmapped, as in training), no copy
    or transpose has a layer cache's size: each round writes one position in place and the
    attention matmuls read the cache as it lies. (A ``[B, T, heads, head_dim]`` key cache was
    transposed for its matmul, a copy of every layer's cache every round; a stacked
    ``[layers, ...]`` cache was sliced and re-stacked, two more.)"""
    agent = Agent(backbone="transformer", embed_dim=8, hidden_dim=16, num_layers=2, num_heads=2)
    x, z = _inputs(jax.random.key(0))
    params = jax.vmap(lambda k: agent.init(k, x, z))(jax.random.split(jax.random.key(1), 2))
    policy = rollout.learners_policy(agent, params, jnp.stack([z, z]))
    x0 = jax.tree.map(lambda a: jnp.stack([a[0], a[0]]), x)  # round 0's inputs, [2, B]

    def rounds(carry):  # a few rounds in a loop, as in a rollout
        return jax.lax.scan(lambda c, _: policy.step(c, x0), carry, None, length=3)

    hlo = jax.jit(rounds, donate_argnums=0).lower(policy.initial_state(None)).compile().as_text()
    cache = 2 * B * 100 * 16  # learners x episodes x positions x width
    arrays = re.findall(r"= f32\[([\d,]*)\]\S* (\w[\w-]*)\(", hlo)
    assert any(_elements(dims) == cache for dims, _ in arrays)  # the caches are in the program
    whole = [(dims, op) for dims, op in arrays if op in ("copy", "transpose")]
    assert not [c for c in whole if _elements(c[0]) == cache], whole


def test_the_transformer_refuses_episodes_longer_than_its_positions():
    agent = Agent(backbone="transformer", embed_dim=8, hidden_dim=16, horizon=T - 1)
    x, z = _inputs(jax.random.key(0))
    with pytest.raises(ValueError, match=f"{T} tokens exceed the transformer's {T - 1} positions"):
        agent.init(jax.random.key(1), x, z)


def test_output_at_round_t_depends_on_no_later_round_and_no_other_episode(agent_setup):
    """d value[t, b] / d input[t', b']: zero unless t' <= t and b' == b; nonzero on that set."""
    agent, params, x, z = agent_setup

    def values_from(obs, prev_reward):
        return agent.apply(params, x._replace(obs=obs, prev_reward=prev_reward), z)[1]

    d_obs, d_reward = jax.jacobian(values_from, argnums=(0, 1))(x.obs, x.prev_reward)
    # d_obs: [T, B, T, B, 5] -> total influence per (t, b, t', b')
    influence = np.abs(np.asarray(d_obs)).sum(-1) + np.abs(np.asarray(d_reward))
    t, b, t_in, b_in = np.meshgrid(*(np.arange(n) for n in (T, B, T, B)), indexing="ij")
    allowed = (t_in <= t) & (b_in == b)
    np.testing.assert_array_equal(influence[~allowed], 0.0)
    assert (influence[allowed] > 0).all()


def test_opponent_id_vector_reaches_every_round_only_when_enabled(agent_setup):
    agent, params, x, z = agent_setup
    d_z = jax.jacobian(lambda z: agent.apply(params, x, z)[1])(z)  # [T, B, B, Z]
    reach_TxB = np.abs(np.asarray(d_z)).sum(-1)[:, np.arange(B), np.arange(B)]
    if agent.opponent_id:
        assert (reach_TxB > 0).all()
    else:
        np.testing.assert_array_equal(d_z, 0.0)


def _gru_cell_by_autodiff(params, h, x):
    """The GRU equations written plainly (flax GRUCell, gate order r, z, n), for autodiff."""
    w_in, b_in, w_hidden, b_hidden_n = params
    xr, xz, xn = jnp.split(x @ w_in + b_in[None], 3, axis=-1)
    hr, hz, hn = jnp.split(h @ w_hidden, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + b_hidden_n[None]))
    return (1.0 - z) * n + z * h


def test_the_gru_cells_hand_written_backward_pass_equals_autodiff():
    from jaxcoop.networks import gru_cell

    e, h_size, b = 8, 16, 5
    k = jax.random.split(jax.random.key(0), 7)
    params = (
        jax.random.normal(k[0], (e, 3 * h_size)) * 0.3,
        jax.random.normal(k[1], (3 * h_size,)) * 0.3,
        jax.random.normal(k[2], (h_size, 3 * h_size)) * 0.3,
        jax.random.normal(k[3], (h_size,)) * 0.3,
    )
    h, x = jax.random.normal(k[4], (b, h_size)), jax.random.normal(k[5], (b, e))
    weights = jax.random.normal(k[6], (b, h_size))  # a loss that weighs every output differently

    def loss(cell):
        return lambda p, h, x: jnp.sum(weights * jnp.sin(cell(p, h, x)))

    np.testing.assert_allclose(
        gru_cell(params, h, x), _gru_cell_by_autodiff(params, h, x), atol=1e-6
    )
    ours = jax.grad(loss(gru_cell), argnums=(0, 1, 2))(params, h, x)
    reference = jax.grad(loss(_gru_cell_by_autodiff), argnums=(0, 1, 2))(params, h, x)
    for a, r in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(a, r, atol=1e-5, rtol=1e-5)
    # Also under vmap (learners) and jit, as in training.
    stacked = jax.tree.map(lambda v: jnp.stack([v, 2 * v]), (params, h, x))
    batched = jax.jit(jax.vmap(jax.grad(loss(gru_cell), argnums=(0, 1, 2))))(*stacked)
    expected = jax.vmap(jax.grad(loss(_gru_cell_by_autodiff), argnums=(0, 1, 2)))(*stacked)
    for a, r in zip(jax.tree.leaves(batched), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, r, atol=1e-5, rtol=1e-5)


def test_recomputed_heads_have_the_plain_heads_values_and_gradients(agent_setup):
    from jaxcoop import networks

    agent, params, _, _ = agent_setup
    y = jax.random.normal(jax.random.key(3), (B, 16))

    def loss(params, heads):
        logits, value = agent.apply(params, y, method=heads)
        return jnp.sum(jnp.sin(logits)) + jnp.sum(value**2)

    plain = jax.value_and_grad(loss)(params, networks._apply_heads)  # no recomputation
    recomputed = jax.value_and_grad(loss)(params, lambda m, y: m._heads(y))
    np.testing.assert_allclose(plain[0], recomputed[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(plain[1]), jax.tree.leaves(recomputed[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_gru_round_runs_three_matmuls_over_the_episodes_and_none_token_sized():
    """The GRU's round (``Agent.step``, as a rollout runs it) folds the token embedding into
    the input projection and both heads into one matmul: of its matmuls over the ``B``
    episodes, one takes the 8 raw features, one the hidden state, one the heads' input (the
    hidden state after swish), and none an ``embed_dim``-wide token (a regression to embedding
    first costs two more matmuls per round forward and three backward)."""
    embed_dim, hidden_dim = 12, 16
    agent = Agent(backbone="gru", embed_dim=embed_dim, hidden_dim=hidden_dim)
    x, z = _inputs(jax.random.key(0))
    params = agent.init(jax.random.key(1), x, z)
    carry = agent.apply(params, z, method=Agent.initial_carry)
    x0 = jax.tree.map(lambda a: a[0], x)
    jaxpr = jax.make_jaxpr(lambda p, c: agent.apply(p, c, x0, method=Agent.step))(params, carry)

    lhs_shapes = [e.invars[0].aval.shape for e in _dot_generals(jaxpr.jaxpr)]
    over_episodes = sorted(shape[-1] for shape in lhs_shapes if shape[0] == B)
    assert over_episodes == [8, hidden_dim, hidden_dim], over_episodes
