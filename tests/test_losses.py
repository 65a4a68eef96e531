"""GAE and the A2C / PPO losses against hand-computed numbers; PPO(1 epoch, no clip) == A2C."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcoop.algorithms import actor_critic
from jaxcoop.algorithms.actor_critic import losses

LOG_HALF = np.log(0.5)

# --- GAE: T = 3, B = 1, gamma = 0.5. -----------------------------------------------------------
REWARDS = [1.0, 2.0, 3.0]
VALUES = [0.5, 1.0, 2.0]
# Next values (nothing after the last round): [1, 2, 0].
# TD errors: delta_0 = 1 + 0.5 * 1 - 0.5 = 1.0
#            delta_1 = 2 + 0.5 * 2 - 1.0 = 2.0
#            delta_2 = 3 + 0.5 * 0 - 2.0 = 1.0
GAE_CASES = {
    # lambda = 0: advantages are the TD errors.
    0.0: [1.0, 2.0, 1.0],
    # lambda = 0.5, gamma * lambda = 0.25: A_2 = 1; A_1 = 2 + 0.25 * 1 = 2.25;
    # A_0 = 1 + 0.25 * 2.25 = 1.5625.
    0.5: [1.5625, 2.25, 1.0],
    # lambda = 1: discounted returns G = [1 + 0.5 * 3.5, 2 + 0.5 * 3, 3] = [2.75, 3.5, 3]
    # minus values: [2.25, 2.5, 1.0].
    1.0: [2.25, 2.5, 1.0],
}


@pytest.mark.parametrize("lam", sorted(GAE_CASES))
def test_gae_matches_hand_computed_advantages_and_targets(lam):
    rewards_TxB = jnp.array(REWARDS)[:, None]
    values_TxB = jnp.array(VALUES)[:, None]
    advantages, targets = losses.gae(rewards_TxB, values_TxB, gamma=0.5, lam=lam)
    assert advantages.shape == targets.shape == (3, 1)
    np.testing.assert_allclose(advantages[:, 0], GAE_CASES[lam], rtol=1e-6)
    # Value targets are the lambda-returns, A + V.
    np.testing.assert_allclose(targets[:, 0], np.add(GAE_CASES[lam], VALUES), rtol=1e-6)


def test_gae_keeps_episodes_in_the_batch_apart():
    """Column 1 has zero rewards and values, so its advantages are zero whatever column 0 holds."""
    rewards_TxB = jnp.array([REWARDS, [0.0, 0.0, 0.0]]).T
    values_TxB = jnp.array([VALUES, [0.0, 0.0, 0.0]]).T
    advantages, _ = losses.gae(rewards_TxB, values_TxB, gamma=0.5, lam=0.5)
    np.testing.assert_allclose(advantages[:, 0], GAE_CASES[0.5], rtol=1e-6)
    np.testing.assert_array_equal(advantages[:, 1], 0.0)


def test_normalize_gives_zero_mean_and_unit_std():
    x = losses.normalize(jnp.array([[1.0, 2.0], [3.0, 6.0]]))
    # mean 3, std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
    np.testing.assert_allclose(x, (np.array([[1, 2], [3, 6]]) - 3) / np.sqrt(3.5), rtol=1e-5)


# --- A2C: T = 2, B = 1. -----------------------------------------------------------------------
# Round 0: logits [0, 0]      -> pi = [1/2, 1/2], action 0, log pi = log 1/2, A = 2.
# Round 1: logits [0, log 3]  -> pi = [1/4, 3/4], action 1, log pi = log 3/4, A = -1.
A2C_LOGITS = jnp.array([[[0.0, 0.0]], [[0.0, np.log(3.0)]]])
A2C_ACTIONS = jnp.array([[0], [1]])
A2C_ADVANTAGES = jnp.array([[2.0], [-1.0]])
A2C_VALUES = jnp.array([[1.0], [0.0]])
A2C_TARGETS = jnp.array([[3.0], [0.5]])
# policy = -mean(log pi * A) = -(2 log 1/2 - log 3/4) / 2 = log 2 + log(3/4) / 2
A2C_POLICY = np.log(2) + np.log(0.75) / 2  # 0.549306
# value = mean((V - target)^2) = ((1 - 3)^2 + (0 - 0.5)^2) / 2 = (4 + 0.25) / 2
A2C_VALUE = 2.125
# entropy: H([1/2, 1/2]) = log 2; H([1/4, 3/4]) = (1/4) log 4 + (3/4) log(4/3)
A2C_ENTROPY = (np.log(2) + 0.25 * np.log(4) + 0.75 * np.log(4 / 3)) / 2  # 0.627741


def test_two_action_log_prob_and_entropy_match_the_softmax_and_stay_finite_at_the_extremes():
    """``rollout.log_prob`` / ``entropy`` work on the logit difference: the softmax's values (the
    hand cases above, random logits) and, at |d| = 30 where a naive ``softplus(d) - d
    sigmoid(d)`` cancels to 0 (or 2e-6), the entropy ``log(1 + e^-30) + 30 e^-30 / (1 + e^-30)``
    = 2.9e-12 to float32, and finite gradients."""
    from jaxcoop import rollout

    np.testing.assert_allclose(
        rollout.log_prob(A2C_LOGITS, A2C_ACTIONS), [[LOG_HALF], [np.log(0.75)]], rtol=1e-6
    )
    np.testing.assert_allclose(rollout.entropy(A2C_LOGITS).mean(), A2C_ENTROPY, rtol=1e-6)
    logits = jax.random.normal(jax.random.key(0), (64, 2)) * 4.0
    log_softmax = np.asarray(jax.nn.log_softmax(logits))
    for action in (0, 1):
        got = rollout.log_prob(logits, jnp.full(64, action))
        np.testing.assert_allclose(got, log_softmax[:, action], rtol=1e-5, atol=1e-6)
    softmax_entropy = -(np.exp(log_softmax) * log_softmax).sum(axis=-1)
    np.testing.assert_allclose(rollout.entropy(logits), softmax_entropy, rtol=1e-5, atol=1e-6)
    extreme = jnp.array([[0.0, 30.0], [30.0, 0.0]])
    tiny = np.exp(-30.0)
    np.testing.assert_allclose(rollout.entropy(extreme), [31 * tiny, 31 * tiny], rtol=1e-5)
    np.testing.assert_allclose(rollout.log_prob(extreme, jnp.array([0, 0])), [-30.0, -tiny])
    grads = jax.grad(lambda x: rollout.entropy(x).sum() + rollout.log_prob(x, 1).sum())(extreme)
    assert np.all(np.isfinite(grads))


def test_a2c_loss_terms_match_hand_computed_values():
    total, info = losses.a2c_loss(
        A2C_LOGITS,
        A2C_VALUES,
        A2C_ACTIONS,
        A2C_ADVANTAGES,
        A2C_TARGETS,
        ent_coef=0.1,
        vf_coef=0.5,
    )
    np.testing.assert_allclose(info.policy, A2C_POLICY, rtol=1e-5)
    np.testing.assert_allclose(info.value, A2C_VALUE, rtol=1e-6)
    np.testing.assert_allclose(info.entropy, A2C_ENTROPY, rtol=1e-5)
    # total = policy + 0.5 * value - 0.1 * entropy = 0.549306 + 1.0625 - 0.062774
    np.testing.assert_allclose(total, A2C_POLICY + 0.5 * A2C_VALUE - 0.1 * A2C_ENTROPY, rtol=1e-5)
    np.testing.assert_allclose(info.total, total)
    # A2C does not measure how far an update moves from the acting policy: NaN, not 0.
    assert np.isnan(info.approx_kl) and np.isnan(info.clip_fraction)


# --- PPO: one step, logits [0, 0] (pi(a) = 1/2), clip_eps = 0.2. -------------------------------
def _ppo(ratio, advantage, ent_coef=0.0, vf_coef=0.0, logits=None):
    """PPO loss of one step whose probability ratio pi / pi_old is ``ratio``."""
    logits = jnp.zeros((1, 1, 2)) if logits is None else logits
    old_log_prob = jnp.full((1, 1), LOG_HALF - np.log(ratio))  # log(1/2 / ratio)
    return losses.ppo_loss(
        logits,
        jnp.zeros((1, 1)),
        jnp.zeros((1, 1), jnp.int32),
        old_log_prob,
        jnp.full((1, 1), advantage),
        jnp.zeros((1, 1)),
        clip_eps=0.2,
        ent_coef=ent_coef,
        vf_coef=vf_coef,
    )


@pytest.mark.parametrize(
    "ratio, advantage, policy_loss, clip_fraction",
    [
        # Inside [0.8, 1.2]: -min(1.1 * 1, 1.1 * 1) = -1.1.
        (1.1, 1.0, -1.1, 0.0),
        # Above 1.2 with A > 0: the clipped term wins, -min(1.5, 1.2) = -1.2.
        (1.5, 1.0, -1.2, 1.0),
        # Above 1.2 with A < 0: the pessimistic unclipped term wins, -min(-1.5, -1.2) = 1.5.
        (1.5, -1.0, 1.5, 1.0),
        # Below 0.8 with A < 0: the clipped term wins, -min(-0.5, -0.8) = 0.8.
        (0.5, -1.0, 0.8, 1.0),
    ],
)
def test_ppo_policy_loss_is_the_pessimistic_minimum_of_clipped_and_unclipped(
    ratio, advantage, policy_loss, clip_fraction
):
    _, info = _ppo(ratio, advantage)
    np.testing.assert_allclose(info.policy, policy_loss, rtol=1e-5)
    np.testing.assert_allclose(info.clip_fraction, clip_fraction)
    # approx KL = (r - 1) - log r
    np.testing.assert_allclose(info.approx_kl, (ratio - 1) - np.log(ratio), rtol=1e-4, atol=1e-7)


def test_ppo_gradient_vanishes_when_clipped_and_not_otherwise():
    def policy_grad(ratio):
        return jax.grad(lambda logits: _ppo(ratio, 1.0, logits=logits)[0])(jnp.zeros((1, 1, 2)))

    # Clipped (ratio 1.5 > 1.2, A > 0): constant -1.2, no gradient.
    np.testing.assert_array_equal(policy_grad(1.5), 0.0)
    # Unclipped: d(-r A)/dlogits = -r A (onehot(a) - pi) = -1.1 * ([1, 0] - [1/2, 1/2]).
    np.testing.assert_allclose(policy_grad(1.1)[0, 0], [-0.55, 0.55], rtol=1e-5)


def test_ppo_shares_the_a2c_value_and_entropy_terms():
    _, a2c = losses.a2c_loss(
        A2C_LOGITS, A2C_VALUES, A2C_ACTIONS, A2C_ADVANTAGES, A2C_TARGETS, 0.1, 0.5
    )
    old_log_prob = jnp.log(jnp.array([[0.5], [0.75]]))  # ratio 1 in both rounds
    total, ppo = losses.ppo_loss(
        A2C_LOGITS,
        A2C_VALUES,
        A2C_ACTIONS,
        old_log_prob,
        A2C_ADVANTAGES,
        A2C_TARGETS,
        0.2,
        0.1,
        0.5,
    )
    np.testing.assert_allclose(ppo.value, a2c.value, rtol=1e-6)
    np.testing.assert_allclose(ppo.entropy, a2c.entropy, rtol=1e-6)
    # ratio 1: policy = -mean(A) = -(2 - 1) / 2 = -0.5
    np.testing.assert_allclose(ppo.policy, -0.5, rtol=1e-5)
    np.testing.assert_allclose(total, -0.5 + 0.5 * A2C_VALUE - 0.1 * A2C_ENTROPY, rtol=1e-5)


# --- The training update: PPO with one epoch, one minibatch and no clipping is A2C. ------------


def test_ppo_one_epoch_one_minibatch_unclipped_updates_like_a2c(tiny_rollout):
    """At the acting parameters the ratio is 1 and grad(r A) = grad(log pi) A, so one PPO step
    equals one A2C step. Plain SGD (lr 1) makes the update the raw gradient, so a scale error
    would show (Adam's first step would hide it)."""
    a2c_config = tiny_rollout.config.replace(algo="a2c")
    ppo_config = a2c_config.replace(algo="ppo", ppo_epochs=1, ppo_minibatches=1, clip_eps=1e6)
    learner0 = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    params, batch = learner0(tiny_rollout.params), learner0(tiny_rollout.batch)
    optimizer = optax.sgd(1.0)
    opt_state = optimizer.init(params)

    def step(config):
        update = jax.jit(actor_critic.make_update(config, tiny_rollout.agent, optimizer))
        new_params, _, info, grad_norm = update(params, opt_state, batch, jax.random.key(3))
        return new_params, info, grad_norm

    a2c_params, a2c_info, a2c_norm = step(a2c_config)
    ppo_params, ppo_info, ppo_norm = step(ppo_config)

    assert float(a2c_norm) > 1e-3  # the step moves the parameters
    np.testing.assert_allclose(ppo_norm, a2c_norm, rtol=1e-4)
    for a, p in zip(jax.tree.leaves(a2c_params), jax.tree.leaves(ppo_params), strict=True):
        np.testing.assert_allclose(p, a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ppo_info.value, a2c_info.value, rtol=1e-5)
    np.testing.assert_allclose(ppo_info.clip_fraction, 0.0)


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_the_losses_gradient_makes_one_array_of_the_logits_shape(algo):
    """Speed guard (docs/performance.md): the loss works on the logit difference, so its
    compiled gradient writes one ``[T, B, 2]`` array, the logits' cotangent (through distrax's
    ``Categorical`` it made nine, slow on CPU)."""
    t, b = 100, 64
    zeros, actions = jnp.zeros((t, b)), jnp.zeros((t, b), jnp.int32)

    def loss(logits):
        if algo == "a2c":
            return losses.a2c_loss(logits, zeros, actions, zeros + 1.0, zeros, 0.01, 0.5)[0]
        return losses.ppo_loss(logits, zeros, actions, zeros, zeros + 1.0, zeros, 0.2, 0.01, 0.5)[0]

    hlo = jax.jit(jax.grad(loss)).lower(jnp.zeros((t, b, 2))).compile().as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    made = [line for line in entry.splitlines() if f"= f32[{t},{b},2]" in line]
    assert len([line for line in made if "parameter(" not in line]) == 1, made
