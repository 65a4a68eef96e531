"""Small learning tests with thresholds: one learner best-responds to a fixed tabular co-player
(``Config.pool`` names the strategy every tabular episode is played against)."""

import functools

import jax
import numpy as np
import pytest

import jaxcoop

CONFIG = jaxcoop.Config(
    num_learners=1,
    p_tabular=1.0,
    horizon=16,
    num_episodes=64,
    embed_dim=16,
    hidden_dim=16,
    lr=1e-2,
    gamma=0.99,
    gae_lambda=0.95,
    reward_scale=0.5,
    ent_coef=0.01,
    normalize_advantages=True,
    num_iterations=60,
    chunk_iterations=60,
)


@functools.cache
def _train_against(pool: str):
    """Metrics ``[I, 1]`` of one learner whose every episode is against ``pool``."""
    _, metrics = jax.jit(jaxcoop.make_train(CONFIG.replace(pool=pool)))(jax.random.key(0))
    return jax.tree.map(np.asarray, metrics)


def _start_and_end(metrics):
    coop = metrics.play.coop_vs_tabular[:, 0]
    return coop[0], coop[-5:].mean()


def test_coplayer_is_really_fixed():
    """Against Always-Cooperate the learner's reward is 1 for C and 2 for D: 2 - cooperation."""
    metrics = _train_against("always_cooperate")
    play = metrics.play
    np.testing.assert_allclose(play.reward_vs_tabular, 2 - play.coop_vs_tabular, atol=1e-6)


@pytest.mark.parametrize(
    "pool, best_response",
    [
        ("always_cooperate", "defect"),  # exploiting pays T = 2 every round
        ("tit_for_tat", "cooperate"),  # defection is punished next round: R + R > T + S
    ],
)
def test_learner_finds_the_best_response_to_a_fixed_coplayer(pool, best_response):
    start, end = _start_and_end(_train_against(pool))
    assert 0.35 < start < 0.65  # untrained: a coin flip, so the thresholds below mean learning
    if best_response == "defect":
        assert end <= 0.2
    else:
        assert end >= 0.8
