"""The GRU agent: shapes, step-by-step rollout equals the whole-sequence call, causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoop import Agent, RoundInput, environment

T, B, Z = 6, 3, 10


def _inputs(key):
    """Random rounds ``[T, B]``: one-hot observations, previous actions (-1 in round 0), rewards."""
    k_obs, k_action, k_reward, k_z = jax.random.split(key, 4)
    obs = environment.one_hot_states(jax.random.randint(k_obs, (T, B), 0, 5))
    actions = jax.random.randint(k_action, (T, B), 0, 2)
    prev_action = jnp.concatenate([jnp.full((1, B), -1), actions[:-1]], axis=0)
    prev_reward = jax.random.normal(k_reward, (T, B))
    return RoundInput(obs, prev_action, prev_reward), jax.random.normal(k_z, (B, Z))


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "opponent_id"])
def agent_setup(request):
    agent = Agent(embed_dim=8, hidden_dim=16, opponent_id=request.param)
    x, z = _inputs(jax.random.key(0))
    params = agent.init(jax.random.key(1), x, z)
    return agent, params, x, z


def test_whole_sequence_call_gives_logits_TxBx2_and_values_TxB(agent_setup):
    agent, params, x, z = agent_setup
    logits, values = agent.apply(params, x, z)
    assert logits.shape == (T, B, 2)
    assert values.shape == (T, B)


def test_stepping_from_the_initial_carry_equals_the_whole_sequence_call(agent_setup):
    agent, params, x, z = agent_setup
    logits, values = agent.apply(params, x, z)
    carry = agent.apply(params, z, method=Agent.initial_carry)
    for t in range(T):
        carry, step_logits, step_values = agent.apply(
            params, carry, jax.tree.map(lambda a, t=t: a[t], x), method=Agent.step
        )
        assert step_logits.shape == (B, 2) and step_values.shape == (B,)
        np.testing.assert_allclose(step_logits, logits[t], atol=1e-5)
        np.testing.assert_allclose(step_values, values[t], atol=1e-5)


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
