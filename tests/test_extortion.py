"""Measuring extortion: empirical memory-1 behaviour, the ZD extortion fit, and the report.

Payoffs are the paper's IPD (R=1, S=-1, T=2, P=0), so over (CC, CD, DC, DD) S_X - P = (1, -1, 2, 0)
and S_Y - P = (1, 2, -1, 0). Because R + P = T + S, a strategy is zero-determinant iff
p_CC + p_DD = p_CD + p_DC, and with equal weights its ``zd_residual`` (the distance to the ZD plane,
whose normal is (-1, 1, 1, -1)) is |p_CD + p_DC - p_CC - p_DD| / 4.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcoop
from jaxcoop import environment, strategies
from jaxcoop.environment import C, D
from jaxcoop.extortion import ZDFit, extortion_report, fit_extortion, memory1_behaviour

IPD = environment.PRISONERS_DILEMMA
NAN = np.nan

# Two episodes of three rounds, joint actions (player 0, player 1).
HAND_ACTIONS = [
    [(C, D), (D, C), (D, D)],
    [(D, C), (C, C), (C, D)],
]
# Player 0 (own move first): START -> C, D; CD (ep 0) -> D; DC (ep 0, ep 1) -> D, C; CC -> C.
# Player 1 sees the same rounds mirrored: START -> D, C; DC (ep 0) -> C; CD (ep 0, ep 1) -> D, C;
# CC -> D. Round 1 of episode 0 follows (C, D): player 0's CD is player 1's DC.
HAND_BEHAVIOUR = {
    0: ([0.5, 1.0, 0.0, 0.5, NAN], [2, 1, 1, 2, 0]),
    1: ([0.5, 0.0, 0.5, 1.0, NAN], [2, 1, 2, 1, 0]),
}


def hand_episodes(xp=jnp) -> jaxcoop.Episodes:
    actions = np.array(HAND_ACTIONS, dtype=np.int32)
    rewards = IPD[actions[..., 0], actions[..., 1]]
    return jaxcoop.Episodes(xp.asarray(actions), xp.asarray(rewards))


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("player", [0, 1])
def test_memory1_behaviour_counts_decisions_in_the_players_own_view(player, xp):
    behaviour = memory1_behaviour(hand_episodes(xp), player)
    p_cooperate, counts = HAND_BEHAVIOUR[player]
    np.testing.assert_array_equal(behaviour.counts, counts)
    np.testing.assert_array_equal(behaviour.p_cooperate, p_cooperate)  # NaN == NaN here
    assert behaviour.p_cooperate.dtype == np.float64


def test_tit_for_tat_is_fair_not_extortion():
    # p~ = (0, -1, 1, 0) = (S_X - S_Y) / 3 exactly: phi = 1/3, chi = 1.
    fit = fit_extortion(strategies.tit_for_tat())
    assert fit.chi == pytest.approx(1.0, abs=1e-12)
    assert fit.phi == pytest.approx(1.0 / 3.0, abs=1e-12)
    assert fit.residual == pytest.approx(0.0, abs=1e-12)
    assert fit.zd_residual == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(fit.fitted, [1, 0, 1, 0], atol=1e-12)
    assert fit.states_used == 4
    assert not fit.is_extortion


@pytest.mark.parametrize(
    "chi, phi_fraction, phi",
    [
        # direction (S_X - P) - 3 (S_Y - P) = (-2, -7, 5, 0); largest phi 1/7 (CD hits 0).
        (3.0, 0.5, 1.0 / 14.0),
        # direction (-1, -5, 4, 0); largest phi 1/5 (CD hits 0); 0.8 of it.
        (2.0, 0.8, 0.16),
    ],
)
def test_zd_extortioner_is_recovered(chi, phi_fraction, phi):
    fit = fit_extortion(strategies.zd_extortioner(chi=chi, phi_fraction=phi_fraction))
    assert fit.chi == pytest.approx(chi, abs=1e-6)
    assert fit.phi == pytest.approx(phi, abs=1e-6)
    assert fit.residual < 1e-6
    assert fit.zd_residual < 1e-6
    assert fit.is_extortion


def test_always_defect_is_zero_determinant_with_negative_scale():
    # p~ = (-1, -1, 0, 0) = -1/3 (S_X - P) - 2/3 (S_Y - P) exactly, so a = -1/3, b = -2/3:
    # phi = -1/3, chi = -2: against a co-player cooperating with frequency q, ALLD gets
    # s_X = T q = 2 q and leaves s_Y = S q = -q, so s_X = -2 s_Y. A negative phi is not extortion.
    fit = fit_extortion(strategies.always_defect())
    assert fit.chi == pytest.approx(-2.0, abs=1e-12)
    assert fit.phi == pytest.approx(-1.0 / 3.0, abs=1e-12)
    assert fit.residual == pytest.approx(0.0, abs=1e-12)
    assert fit.zd_residual == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(fit.fitted, [0, 0, 0, 0], atol=1e-12)
    assert not fit.is_extortion


@pytest.mark.parametrize(
    "chi, phi, expected",
    [(3.0, 0.1, True), (3.0, -0.1, False), (1.0 + 1e-12, 0.1, False), (1.0, 0.1, False)],
)
def test_is_extortion_needs_chi_above_one_and_a_positive_scale(chi, phi, expected):
    fit = ZDFit(chi, phi, residual=0.0, zd_residual=0.0, fitted=np.zeros(4), states_used=4)
    assert fit.is_extortion is expected


@pytest.mark.parametrize(
    "p_cooperate, zd_residual",
    [
        ((1, 1, 0, 0, 1), 0.5),  # win-stay-lose-shift: |0 + 0 - 1 - 1| / 4
        ((1, 0.9, 0.1, 0.9, 0.5), 0.1),  # |0.1 + 0.9 - 0.9 - 0.5| / 4
    ],
)
def test_a_strategy_off_the_zd_plane_has_a_positive_zd_residual(p_cooperate, zd_residual):
    fit = fit_extortion(np.array(p_cooperate))
    assert fit.zd_residual == pytest.approx(zd_residual, abs=1e-12)
    # Extortioners are ZD strategies (gamma = -(a + b) P), so their fit is never closer.
    assert fit.residual >= fit.zd_residual - 1e-12


def test_a_state_with_count_zero_is_dropped_whatever_its_probability():
    p_cooperate = np.array(strategies.zd_extortioner(chi=3.0), dtype=np.float64)
    p_cooperate[3] = 0.99  # DC: never observed, so this value must not matter
    fit = fit_extortion(p_cooperate, counts=[100, 40, 30, 0, 50])
    assert fit.states_used == 3
    assert fit.chi == pytest.approx(3.0, abs=1e-6)
    assert fit.phi == pytest.approx(1.0 / 14.0, abs=1e-6)
    assert fit.residual < 1e-6
    np.testing.assert_allclose(fit.fitted[2], 5.0 / 14.0, atol=1e-6)  # predicted, not observed

    p_cooperate[3] = np.nan  # the same with counts=None: NaN marks the unobserved state
    fit = fit_extortion(p_cooperate)
    assert fit.states_used == 3
    assert fit.chi == pytest.approx(3.0, abs=1e-6)


def test_weights_change_the_fit_and_the_residual():
    # Player 0's hand behaviour: p~ = (0, -1, 0.5) over CC, CD, DC with counts (1, 1, 2).
    # Equal weights: X^T X = [[6, -3], [-3, 6]], X^T y = (2, -2.5) -> a = 1/6, b = -1/3, chi = 2.
    p_cooperate, counts = HAND_BEHAVIOUR[0]
    equal = fit_extortion(np.array(p_cooperate))
    assert equal.chi == pytest.approx(2.0, abs=1e-12)
    assert equal.phi == pytest.approx(1.0 / 6.0, abs=1e-12)
    # Counts: X^T W X = [[10, -5], [-5, 7]], X^T W y = (3, -3) -> a = 2/15, b = -1/3, chi = 5/2;
    # fitted p~ = (-0.2, -0.8, 0.6), errors (0.2, -0.2, -0.1), RMS sqrt(0.1 / 4).
    weighted = fit_extortion(np.array(p_cooperate), counts)
    assert weighted.chi == pytest.approx(2.5, abs=1e-12)
    assert weighted.phi == pytest.approx(2.0 / 15.0, abs=1e-12)
    assert weighted.residual == pytest.approx(np.sqrt(0.025), abs=1e-12)
    np.testing.assert_allclose(weighted.fitted, [0.8, 0.2, 0.6, 0.0], atol=1e-12)
    assert weighted.zd_residual == pytest.approx(0.0, abs=1e-12)  # 3 states, 3 parameters


@pytest.mark.parametrize("dd_count, residual", [(1, np.sqrt(0.09 / 4)), (6, np.sqrt(0.06))])
def test_a_weighted_error_in_dd_raises_the_residual_but_not_chi(dd_count, residual):
    # S_X - P = S_Y - P = 0 in DD: every extortioner has p_DD = 0, so an error of 0.3 there is
    # unfittable; the residual is sqrt(w_DD 0.3^2 / sum w) = sqrt(0.09 / 4) or sqrt(6 0.09 / 9).
    p_cooperate = np.array(strategies.zd_extortioner(chi=3.0), dtype=np.float64)
    p_cooperate[4] = 0.3
    fit = fit_extortion(p_cooperate, counts=[1, 1, 1, 1, dd_count])
    assert fit.chi == pytest.approx(3.0, abs=1e-6)
    assert fit.residual == pytest.approx(residual, abs=1e-6)


@pytest.mark.parametrize(
    "counts, message",
    [((5, 0, 0, 0, 0), r"only 0 of the states"), ((5, 7, 0, 0, 0), r"only 1 of the states")],
)
def test_fitting_fewer_than_two_states_raises(counts, message):
    with pytest.raises(ValueError, match=message):
        fit_extortion(np.full(5, 0.5), counts)


def test_report_of_one_round_episodes_raises_naming_the_observed_states():
    one_round = jaxcoop.Episodes(np.zeros((4, 1, 2), np.int32), np.ones((4, 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"only 0 of the states CC, CD, DC, DD observed \[\]"):
        extortion_report(one_round)


def test_report_is_json_ready_and_hand_computed():
    report = extortion_report(hand_episodes())
    json.dumps(report, allow_nan=False)
    assert report["p_cooperate"] == [0.5, 1.0, 0.0, 0.5, None]
    assert report["counts"] == [2, 1, 1, 2, 0]
    assert report["chi"] == pytest.approx(2.5, abs=1e-12)  # as in the weights test
    assert report["is_extortion"] is True
    # Player 0 gets -1, 2, 0 and 2, 1, -1 (mean 0.5); player 1 gets 2, -1, 0 and -1, 1, 2.
    assert report["reward"] == pytest.approx(0.5)
    assert report["coplayer_reward"] == pytest.approx(0.5)
    assert report["reward_ratio"] == pytest.approx(1.0)
    assert extortion_report(hand_episodes(), player=1)["counts"] == [2, 1, 2, 1, 0]


def test_report_for_player_1_is_the_report_for_player_0_with_the_seats_swapped():
    # Asymmetric payoffs (player 1's P is 1, player 0's is 0): player 1 must be fitted against its
    # own view of the table, payoffs[a_0, a_1, ::-1] transposed.
    payoffs = np.array([[(1, 2), (-1, 4)], [(2, -2), (0, 1)]], np.float32)
    episodes = hand_episodes(np)
    swapped = jaxcoop.Episodes(episodes.actions[..., ::-1], episodes.rewards[..., ::-1])
    as_player_1 = extortion_report(episodes, player=1, payoffs=payoffs)
    as_player_0 = extortion_report(swapped, player=0, payoffs=payoffs.transpose(1, 0, 2)[..., ::-1])
    assert as_player_1 == as_player_0
    assert as_player_1 != extortion_report(swapped, player=0, payoffs=payoffs)


def test_reward_ratio_is_none_when_the_coplayer_earns_exactly_p():
    actions = np.array([[(C, D), (D, C), (D, C)]], np.int32)  # player 1 gets 2, -1, -1
    episodes = jaxcoop.Episodes(actions, IPD[actions[..., 0], actions[..., 1]])
    report = extortion_report(episodes)
    assert report["coplayer_reward"] == 0.0
    assert report["reward_ratio"] is None


def test_played_extortioner_is_recovered_from_its_episodes():
    episodes = jaxcoop.play(
        strategies.zd_extortioner(chi=3.0),
        strategies.uniform_random(),
        jax.random.key(0),
        num_episodes=2000,
    )
    report = extortion_report(episodes)
    # 200,000 decisions; keys 0-4 gave chi 2.95-3.02 and residuals <= 1.2e-3.
    assert report["chi"] == pytest.approx(3.0, abs=0.15)
    assert report["phi"] == pytest.approx(1.0 / 14.0, abs=0.01)
    assert report["residual"] < 0.01
    assert report["is_extortion"] is True
    # Over 100 rounds the ratio is not yet chi: by telescoping, the mean of
    # (s_X - P) - chi (s_Y - P) over rounds 0..T-2 is (q_{T-1} - q_0) / (phi (T - 1)), q_t the
    # extortioner's P(C) in round t (q_0 = 1). The exact 100-round value is 0.63 / 0.24 = 2.625;
    # keys 0-4 gave 2.57-2.65.
    exact = np.asarray(
        strategies.expected_rewards(
            strategies.zd_extortioner(chi=3.0), strategies.uniform_random(), IPD, 100
        )
    )
    assert exact[0] / exact[1] == pytest.approx(2.625, abs=1e-4)
    assert report["reward_ratio"] == pytest.approx(2.625, abs=0.1)


def test_reward_ratio_approaches_chi_over_long_episodes():
    episodes = jaxcoop.play(
        strategies.zd_extortioner(chi=3.0),
        strategies.uniform_random(),
        jax.random.key(0),
        num_episodes=200,
        game=jaxcoop.make_game(horizon=1000),
    )
    # Exact 1000-round ratio 2.958; keys 0-5 gave 2.92-3.03.
    assert extortion_report(episodes)["reward_ratio"] == pytest.approx(3.0, abs=0.15)
