"""``jaxcoop.play``: sampled episodes of two policies agree with the exact Markov-chain rewards."""

import jax
import numpy as np
import pytest

import jaxcoop
from jaxcoop import environment, strategies, train
from jaxcoop.environment import C, D

NUM_EPISODES = 2000
HORIZON = 100  # play's default game: the paper's 100-round IPD
# Two tabular strategies [5] share one compiled program.
play_tabular = jax.jit(jaxcoop.play, static_argnums=3)


@pytest.fixture(scope="module")
def gtft_vs_random():
    theta_a, theta_b = strategies.generous_tit_for_tat(), strategies.uniform_random()
    episodes = play_tabular(theta_a, theta_b, jax.random.key(0), NUM_EPISODES)
    return theta_a, theta_b, episodes


def test_play_returns_actions_and_rewards_per_episode_round_and_player(gtft_vs_random):
    _, _, episodes = gtft_vs_random
    assert episodes.actions.shape == (NUM_EPISODES, HORIZON, 2)
    assert episodes.rewards.shape == (NUM_EPISODES, HORIZON, 2)
    assert set(np.unique(episodes.actions)) == {C, D}


def test_rewards_are_the_payoffs_of_the_played_actions(gtft_vs_random):
    _, _, episodes = gtft_vs_random
    actions = np.asarray(episodes.actions)
    payoffs = environment.PRISONERS_DILEMMA[actions[..., 0], actions[..., 1]]
    np.testing.assert_array_equal(episodes.rewards, payoffs)


def _assert_matches_exact_rewards(theta_a, theta_b, episodes):
    """Mean reward per round within 4 standard errors (from per-episode means) of the exact."""
    exact = np.asarray(
        strategies.expected_rewards(theta_a, theta_b, environment.PRISONERS_DILEMMA, HORIZON)
    )
    per_episode_Ex2 = np.asarray(episodes.rewards).mean(axis=1)
    mean = per_episode_Ex2.mean(axis=0)
    stderr = per_episode_Ex2.std(axis=0, ddof=1) / np.sqrt(len(per_episode_Ex2))
    assert (stderr > 0).all()
    assert (np.abs(mean - exact) < 4 * stderr).all(), (mean, exact, stderr)


def test_generous_tft_vs_random_matches_exact_expected_rewards(gtft_vs_random):
    _assert_matches_exact_rewards(*gtft_vs_random)


def test_wsls_vs_random_theta_matches_exact_expected_rewards():
    """An asymmetric co-player, so a mirrored-state bug in either player would show."""
    theta_a = strategies.win_stay_lose_shift()
    theta_b = np.array([0.9, 0.8, 0.1, 0.6, 0.3], np.float32)
    episodes = play_tabular(theta_a, theta_b, jax.random.key(1), NUM_EPISODES)
    _assert_matches_exact_rewards(theta_a, theta_b, episodes)


def test_tit_for_tat_vs_always_defect_plays_the_known_sequence():
    """(C, D) in round 0, then (D, D) forever: rewards (-1, 2), then (0, 0).

    Few episodes: "deterministic" tables are clipped to P = 1e-6, so 1,600 draws stray with
    probability ~0.2% (and the key is fixed).
    """
    episodes = jaxcoop.play(
        strategies.tit_for_tat(), strategies.always_defect(), jax.random.key(2), 8
    )
    expected_actions = np.array([[C, D]] + [[D, D]] * (HORIZON - 1))
    expected_rewards = np.array([[-1.0, 2.0]] + [[0.0, 0.0]] * (HORIZON - 1))
    np.testing.assert_array_equal(
        episodes.actions, np.broadcast_to(expected_actions, (8, HORIZON, 2))
    )
    np.testing.assert_array_equal(
        episodes.rewards, np.broadcast_to(expected_rewards, (8, HORIZON, 2))
    )


def test_same_key_replays_identically_and_another_key_does_not(gtft_vs_random):
    theta_a, theta_b, episodes = gtft_vs_random
    again = play_tabular(theta_a, theta_b, jax.random.key(0), NUM_EPISODES)
    other = play_tabular(theta_a, theta_b, jax.random.key(99), NUM_EPISODES)
    np.testing.assert_array_equal(episodes.actions, again.actions)
    assert (np.asarray(episodes.actions) != np.asarray(other.actions)).any()


def test_untrained_agent_plays_tit_for_tat():
    config = jaxcoop.preset("tiny")
    agent = jaxcoop.make_agent(config)
    params = train.init_params(agent, jax.random.key(0))
    game = jaxcoop.make_game("ipd", config.horizon)
    episodes = jaxcoop.play(
        jaxcoop.agent_policy(agent, params), strategies.tit_for_tat(), jax.random.key(1), 32, game
    )
    actions = np.asarray(episodes.actions)
    assert actions.shape == (32, config.horizon, 2)
    assert episodes.rewards.shape == (32, config.horizon, 2)
    assert set(np.unique(actions)) == {C, D}  # an untrained agent plays both moves
    # Tit-for-tat opens with C and then copies the agent's previous move.
    np.testing.assert_array_equal(actions[:, 0, 1], C)
    np.testing.assert_array_equal(actions[:, 1:, 1], actions[:, :-1, 0])
