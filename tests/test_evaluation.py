"""The evaluation suite: per-round curves and cross-play of tabular players agree with the exact
Markov chain, standard errors are the textbook ones, and trained learners meet every co-player."""

import jax
import numpy as np
import pytest

from jaxcoop import environment, evaluation, networks, strategies
from jaxcoop.environment import C, D
from jaxcoop.evaluation import cross_play, curves, match, tabular
from jaxcoop.presets import preset
from jaxcoop.rollout import Episodes, agent_policy, play, tabular_policy

HORIZON = 12
EPISODES = 4096
GAME = environment.make_game("ipd", HORIZON)
# Two stochastic memory-1 strategies over (START, CC, CD, DC, DD), own move first.
THETA_A = np.array([0.9, 0.8, 0.3, 0.6, 0.2], np.float32)
THETA_B = np.array([0.4, 0.7, 0.1, 0.9, 0.5], np.float32)


def exact_curves(theta_a, theta_b):
    """Per-round P(C) of both players and both expected rewards, from the Markov chain."""
    dist_Tx4 = np.asarray(strategies.markov_chain(theta_a, theta_b, HORIZON), np.float64)
    payoffs_4x2 = environment.PRISONERS_DILEMMA.reshape(4, 2).astype(np.float64)
    rewards_Tx2 = dist_Tx4 @ payoffs_4x2
    return {
        "coop": dist_Tx4[:, 0] + dist_Tx4[:, 1],  # a plays C in CC and CD
        "coplayer_coop": dist_Tx4[:, 0] + dist_Tx4[:, 2],  # b plays C in CC and DC
        "reward": rewards_Tx2[:, 0],
        "coplayer_reward": rewards_Tx2[:, 1],
    }


@pytest.fixture(scope="module")
def sampled():
    episodes = match(tabular(THETA_A), tabular(THETA_B), jax.random.key(3), EPISODES, GAME)
    return curves(episodes)


def test_markov_chain_rows_are_distributions_and_start_from_the_first_moves():
    dist_Tx4 = np.asarray(strategies.markov_chain(THETA_A, THETA_B, HORIZON))
    np.testing.assert_allclose(dist_Tx4.sum(axis=1), 1.0, atol=1e-6)
    # Round 1 is decided in START: P(a = C) = 0.9, P(b = C) = 0.4, independently.
    np.testing.assert_allclose(dist_Tx4[0], [0.9 * 0.4, 0.9 * 0.6, 0.1 * 0.4, 0.1 * 0.6], atol=1e-6)


@pytest.mark.parametrize("side", evaluation.SIDES)
def test_per_round_curves_of_tabular_play_match_the_markov_chain(sampled, side):
    exact_T = exact_curves(THETA_A, THETA_B)[side]
    # Per-round standard error of a mean over EPISODES episodes, from the exact distribution.
    if side.endswith("coop"):
        se_T = np.sqrt(exact_T * (1 - exact_T) / EPISODES)
    else:
        second_moment = np.asarray(strategies.markov_chain(THETA_A, THETA_B, HORIZON)) @ (
            environment.PRISONERS_DILEMMA.reshape(4, 2)[:, 0 if side == "reward" else 1] ** 2
        )
        se_T = np.sqrt((second_moment - exact_T**2) / EPISODES)
    assert sampled[side].shape == (HORIZON,)
    assert np.all(np.abs(sampled[side] - exact_T) < 4.5 * se_T), (sampled[side], exact_T)


def test_episode_averages_match_the_exact_expected_rewards_within_their_standard_error(sampled):
    exact = np.asarray(
        strategies.expected_rewards(THETA_A, THETA_B, environment.PRISONERS_DILEMMA, HORIZON)
    )
    for side, value in zip(("reward", "coplayer_reward"), exact, strict=True):
        assert 0 < sampled[f"{side}_se"] < 0.02
        assert abs(sampled[f"{side}_mean"] - value) < 4 * sampled[f"{side}_se"]


def test_deterministic_strategies_give_exact_curves_and_zero_standard_error():
    # Tit-for-tat against always-defect: C then D forever; rewards -1 then 0 (and 2 then 0).
    tft, alld = strategies.tit_for_tat(), strategies.always_defect()
    c = curves(match(tabular(tft), tabular(alld), jax.random.key(0), 8, GAME))
    expected_coop = np.r_[1.0, np.zeros(HORIZON - 1)]
    np.testing.assert_array_equal(c["coop"], expected_coop)
    np.testing.assert_array_equal(c["reward"], np.r_[-1.0, np.zeros(HORIZON - 1)])
    np.testing.assert_array_equal(c["coplayer_reward"], np.r_[2.0, np.zeros(HORIZON - 1)])
    assert c["coop_mean"] == pytest.approx(1 / HORIZON)
    assert c["coop_se"] == 0.0 and c["reward_se"] == 0.0


def test_curves_standard_error_is_hand_computed():
    # Three episodes of two rounds; player 0 cooperates in 2, 1 and 0 rounds: per-episode
    # cooperation 1, 0.5, 0 -> mean 0.5, sample std 0.5, standard error 0.5 / sqrt(3).
    actions = np.array([[[C, C], [C, D]], [[C, C], [D, C]], [[D, D], [D, D]]], np.int32)
    rewards = environment.PRISONERS_DILEMMA[actions[..., 0], actions[..., 1]]
    c = curves(Episodes(actions, rewards))
    np.testing.assert_allclose(c["coop"], [2 / 3, 1 / 3])
    assert c["coop_mean"] == pytest.approx(0.5)
    assert c["coop_se"] == pytest.approx(0.5 / np.sqrt(3))
    # Player 0's rewards per episode: (1 - 1)/2 = 0, (1 + 2)/2 = 1.5, 0 -> mean 0.5.
    assert c["reward_mean"] == pytest.approx(0.5)
    assert c["coplayer_coop_mean"] == pytest.approx(0.5)


def test_cross_play_has_one_row_per_pair_with_both_sides_and_matches_the_exact_values():
    players = {"tft": tabular(strategies.tit_for_tat()), "a": tabular(THETA_A)}
    coplayers = {"alld": tabular(strategies.always_defect()), "b": tabular(THETA_B)}
    rows = cross_play(players, coplayers, jax.random.key(1), EPISODES, GAME)
    assert [(r["player"], r["coplayer"]) for r in rows] == [
        ("tft", "alld"),
        ("tft", "b"),
        ("a", "alld"),
        ("a", "b"),
    ]
    for r in rows:
        theta_a = np.asarray(players[r["player"]].params)
        theta_b = np.asarray(coplayers[r["coplayer"]].params)
        exact = exact_curves(theta_a, theta_b)
        for side in evaluation.SIDES:
            assert abs(r[side] - exact[side].mean()) <= 4 * r[f"{side}_se"] + 1e-6, (r, side)
    table = evaluation.cross_play_table(rows)
    assert len(table.splitlines()) == 1 + len(rows) and "±" in table


def test_unknown_coplayer_name_is_refused_with_the_allowed_names():
    with pytest.raises(ValueError, match=r"co-player 'tit_for_two' is unknown; allowed: \["):
        evaluation.coplayer_thetas("tit_for_two", jax.random.key(0), 4)


def test_evaluate_learners_meets_the_panel_and_the_other_learner():
    config = preset("tiny").replace(num_learners=3)
    agent = networks.make_agent(config)
    game = environment.make_game(config.game, config.horizon)
    keys = jax.random.split(jax.random.key(0), 2 * 3).reshape(2, 3)
    params = jax.vmap(jax.vmap(lambda k: networks.init_params(agent, k)))(keys)  # [S=2, N=3]
    result = evaluation.evaluate_learners(
        agent, params, game, jax.random.key(1), 16, ("always_cooperate", "always_defect")
    )
    assert list(result) == ["always_cooperate", "always_defect", evaluation.LEARNER]
    for r in result.values():
        assert r["coop"].shape == (2, 3, config.horizon) and r["coop_se"].shape == (2, 3)
    allc, alld = result["always_cooperate"], result["always_defect"]
    np.testing.assert_array_equal(allc["coplayer_coop"], 1.0)
    np.testing.assert_array_equal(alld["coplayer_coop"], 0.0)
    # Against always-cooperate: 1 when cooperating, 2 when defecting, every round.
    np.testing.assert_allclose(allc["reward"], 2 - allc["coop"], atol=1e-6)
    summary = evaluation.summarize(result)
    assert set(summary[evaluation.LEARNER]) == set(evaluation.SIDES)
    assert len(summary["always_defect"]["coop"]["mean"]) == 3


def test_an_opponent_id_agent_reads_the_tabular_coplayers_identity_in_play_as_in_training():
    config = preset("tiny").replace(opponent_id=True)
    agent = networks.make_agent(config)
    game = environment.make_game(config.game, config.horizon)
    params = networks.init_params(agent, jax.random.key(0))
    other = networks.init_params(agent, jax.random.key(1))
    # A fresh policy head (init scale 0.01) hardly moves; scale it so the carry, which the ID
    # sets, matters to the moves.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: 300 * x if "['policy']" in jax.tree_util.keystr(path) else x, params
    )
    theta = strategies.sample_coplayers(jax.random.key(2), (64,), "uniform")  # [E, 5]
    key = jax.random.key(3)
    got = match(evaluation.Player(agent, params), tabular(theta), key, 64, game)

    def played(opponent_id, coplayer):
        return play(agent_policy(agent, params, opponent_id), coplayer, key, 64, game)

    want = played(strategies.opponent_id(theta), tabular_policy(theta))
    np.testing.assert_array_equal(got.actions, want.actions)
    blind = played(None, tabular_policy(theta))  # what evaluation played before: zeros
    assert (np.asarray(blind.actions) != np.asarray(got.actions)).any()
    # Against another trained agent the ID is zeros, as against a learner in training.
    got = match(evaluation.Player(agent, params), evaluation.Player(agent, other), key, 64, game)
    want = played(None, agent_policy(agent, other))
    np.testing.assert_array_equal(got.actions, want.actions)
