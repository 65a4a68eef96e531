"""Tabular memory-1 co-players: tables, the pool, opponent-ID vectors, exact expected rewards."""

import jax
import numpy as np
import pytest

from jaxcoop import environment, strategies

IPD = environment.PRISONERS_DILEMMA
STATES = environment.STATE_NAMES  # START, CC, CD, DC, DD (tabular player's own move first)

# P(C) per state, written out from each strategy's description.
TABLES = {
    # Copy the co-player's last move: C after CC and DC, D after CD and DD.
    "tit_for_tat": {"START": 1, "CC": 1, "CD": 0, "DC": 1, "DD": 0},
    "always_cooperate": {"START": 1, "CC": 1, "CD": 1, "DC": 1, "DD": 1},
    "always_defect": {"START": 0, "CC": 0, "CD": 0, "DC": 0, "DD": 0},
    # Win (CC: R, DC: T) -> repeat own move; lose (CD: S, DD: P) -> switch.
    "win_stay_lose_shift": {"START": 1, "CC": 1, "CD": 0, "DC": 0, "DD": 1},
    "uniform_random": {"START": 0.5, "CC": 0.5, "CD": 0.5, "DC": 0.5, "DD": 0.5},
    "generous_tit_for_tat": {"START": 1, "CC": 1, "CD": 1 / 3, "DC": 1, "DD": 1 / 3},
}


@pytest.mark.parametrize("name", sorted(TABLES))
@pytest.mark.parametrize("state", STATES)
def test_named_strategy_cooperates_with_the_tabled_probability(name, state):
    theta = strategies.NAMED[name]()
    obs = environment.one_hot_states(np.array(STATES.index(state)))
    p_cooperate = np.exp(np.asarray(strategies.logits(theta, obs)))
    np.testing.assert_allclose(p_cooperate[0], TABLES[name][state], atol=1e-5)
    np.testing.assert_allclose(p_cooperate.sum(), 1.0, atol=1e-5)


def test_sample_pool_is_uniform_in_the_unit_interval_with_the_requested_shape():
    pool = np.asarray(strategies.sample_pool(jax.random.key(0), (400, 50)))
    assert pool.shape == (400, 50, 5)
    assert pool.dtype == np.float32
    assert pool.min() >= 0.0 and pool.max() < 1.0
    # 100,000 U(0,1) draws: mean 1/2 with standard error 0.29 / sqrt(1e5) < 1e-3.
    assert abs(pool.mean() - 0.5) < 5e-3
    assert abs((pool < 0.25).mean() - 0.25) < 5e-3


def test_sample_pool_is_fresh_for_every_key_and_every_episode():
    a = np.asarray(strategies.sample_pool(jax.random.key(0), (8,)))
    b = np.asarray(strategies.sample_pool(jax.random.key(1), (8,)))
    assert not np.allclose(a, b)
    assert len({tuple(row) for row in a}) == 8  # no two episodes share a co-player


def test_uniform_pool_is_sample_pool_and_a_named_pool_copies_one_strategy():
    key = jax.random.key(3)
    np.testing.assert_array_equal(
        strategies.sample_coplayers(key, (4, 6), "uniform"), strategies.sample_pool(key, (4, 6))
    )
    tft = strategies.sample_coplayers(key, (4, 6), "tit_for_tat")
    assert tft.shape == (4, 6, 5)
    np.testing.assert_array_equal(tft, np.broadcast_to([1, 1, 0, 1, 0], (4, 6, 5)))


def test_every_named_strategy_is_a_pool():
    assert set(strategies.POOLS) == {"uniform", "named", "uniform+named", *strategies.NAMED}


def test_named_pool_draws_every_named_strategy_and_nothing_else():
    drawn = np.asarray(strategies.sample_coplayers(jax.random.key(5), (70, 20), "named"))
    assert drawn.shape == (70, 20, 5)
    table = np.stack([np.asarray(make()) for make in strategies.NAMED.values()])
    # Each episode's co-player is exactly one row of the table ...
    matches_SxExK = np.all(drawn[..., None, :] == table, axis=-1)
    assert np.all(matches_SxExK.any(axis=-1))
    # ... and each of the 7 named strategies gets about 1/7 of the 1400 episodes.
    share = matches_SxExK.mean(axis=(0, 1))
    assert np.all(np.abs(share - 1 / len(table)) < 0.04), share


def test_uniform_plus_named_pool_is_half_named_half_fresh_uniform_draws():
    drawn = np.asarray(strategies.sample_coplayers(jax.random.key(6), (2000,), "uniform+named"))
    table = np.stack([np.asarray(make()) for make in strategies.NAMED.values()])
    is_named = np.all(drawn[:, None, :] == table, axis=-1).any(axis=-1)
    # 2000 fair coin flips: the named share is 0.5 +- 0.011 (1 s.d.).
    assert abs(is_named.mean() - 0.5) < 0.05
    uniform = drawn[~is_named]
    assert uniform.min() >= 0.0 and uniform.max() < 1.0 and abs(uniform.mean() - 0.5) < 0.02


def test_opponent_id_is_log_probabilities_of_c_and_d_per_state():
    theta = np.array([0.1, 0.25, 0.5, 0.75, 0.9], np.float32)
    z = np.asarray(strategies.opponent_id(theta))
    assert z.shape == (10,)
    expected = [
        np.log(0.1),
        np.log(0.9),
        np.log(0.25),
        np.log(0.75),
        np.log(0.5),
        np.log(0.5),
        np.log(0.75),
        np.log(0.25),
        np.log(0.9),
        np.log(0.1),
    ]
    np.testing.assert_allclose(z, expected, rtol=1e-5)


def test_opponent_id_keeps_leading_axes_and_is_finite_for_deterministic_strategies():
    theta = np.broadcast_to(np.asarray(strategies.tit_for_tat()), (2, 3, 5))
    z = np.asarray(strategies.opponent_id(theta))
    assert z.shape == (2, 3, 10)
    assert np.isfinite(z).all()
    # P(C | START) = 1: log P(C) ~ 0 and log P(D) is very negative.
    assert abs(z[0, 0, 0]) < 1e-5 and z[0, 0, 1] < -10


# --- Exact expected rewards of two tabular strategies. -------------------------------------------

expected_rewards = jax.jit(strategies.expected_rewards, static_argnums=3)

S = strategies
EXPECTED_CASES = [
    # Every round is (C, D): row gets S=-1, column gets T=2.
    ("allc_vs_alld", S.always_cooperate(), S.always_defect(), 5, (-1.0, 2.0)),
    # Round 0 (C, D) = (-1, 2), then (D, D) = (0, 0) for 9 rounds: (-1/10, 2/10).
    ("tft_vs_alld", S.tit_for_tat(), S.always_defect(), 10, (-0.1, 0.2)),
    # Column TFT sees its own view: after (D, C) it is in CD and defects.
    # (D, C) = (2, -1), then (D, D) twice: (2/3, -1/3).
    ("alld_vs_tft", S.always_defect(), S.tit_for_tat(), 3, (2 / 3, -1 / 3)),
    # WSLS vs AllD alternates: CD (-1, 2), DD (0, 0) [lose -> shift to D], CD [lose -> C], DD.
    # Row: (-1 + 0 - 1 + 0) / 4 = -0.5; column: (2 + 0 + 2 + 0) / 4 = 1.0.
    ("wsls_vs_alld", S.win_stay_lose_shift(), S.always_defect(), 4, (-0.5, 1.0)),
    ("tft_vs_tft", S.tit_for_tat(), S.tit_for_tat(), 6, (1.0, 1.0)),
    # One round of two coin flips: row (1 - 1 + 2 + 0) / 4 = 0.5, column (1 + 2 - 1 + 0) / 4.
    ("random_vs_random", S.uniform_random(), S.uniform_random(), 1, (0.5, 0.5)),
]


@pytest.mark.parametrize(
    "theta_a, theta_b, horizon, rewards",
    [case[1:] for case in EXPECTED_CASES],
    ids=[case[0] for case in EXPECTED_CASES],
)
def test_expected_rewards_match_hand_computed_values(theta_a, theta_b, horizon, rewards):
    got = expected_rewards(theta_a, theta_b, IPD, horizon)
    np.testing.assert_allclose(got, rewards, atol=1e-6)


# --- The zero-determinant extortioner. -----------------------------------------------------------

CHI = 3.0
# IPD with chi = 3: direction (S_X - P) - chi (S_Y - P) over (CC, CD, DC, DD)
#   = (1 - 3, -1 - 6, 2 + 3, 0) = (-2, -7, 5, 0).
# Largest phi keeping p = (1, 1, 0, 0) + phi * direction in [0, 1]: min(1/2, 1/7, 1/5) = 1/7;
# phi_fraction 0.5 -> phi = 1/14 and p = (1 - 2/14, 1 - 7/14, 5/14, 0) = (6/7, 1/2, 5/14, 0).
PHI = 1 / 14
ZD_TABLE = (1.0, 6 / 7, 1 / 2, 5 / 14, 0.0)


def test_zd_extortioner_table_is_the_press_dyson_strategy():
    theta = strategies.zd_extortioner(chi=CHI, phi_fraction=0.5, start=1.0)
    np.testing.assert_allclose(theta, ZD_TABLE, atol=1e-6)


ZD_COPLAYERS = {
    "tit_for_tat": S.tit_for_tat(),
    "always_cooperate": S.always_cooperate(),
    "always_defect": S.always_defect(),
    "win_stay_lose_shift": S.win_stay_lose_shift(),
    **{
        f"random{i}": theta
        for i, theta in enumerate(np.random.default_rng(0).uniform(size=(5, 5)).astype(np.float32))
    },
}


@pytest.mark.parametrize("coplayer", ZD_COPLAYERS.values(), ids=ZD_COPLAYERS.keys())
def test_zd_extortioner_enforces_its_linear_relation_against_any_coplayer(coplayer):
    """s_X - P = chi (s_Y - P), P = 0. Akin's lemma bounds the finite-horizon error by
    1 / (phi T) = 14 / 2000 = 0.007."""
    extortioner = strategies.zd_extortioner(chi=CHI, phi_fraction=0.5)
    s_x, s_y = np.asarray(expected_rewards(extortioner, coplayer, IPD, 2000))
    assert abs(s_x - CHI * s_y) <= 1 / (PHI * 2000) + 1e-4


def test_zd_extortioner_takes_the_lions_share_from_an_unconditional_cooperator():
    """Against AllC the chain alternates CC <-> DC: P(CC -> DC) = 1/7, P(DC -> CC) = 5/14,
    stationary (5/7, 2/7). s_X = 5/7 + 2 * 2/7 = 9/7, s_Y = 5/7 - 2/7 = 3/7."""
    extortioner = strategies.zd_extortioner(chi=CHI, phi_fraction=0.5)
    s = expected_rewards(extortioner, S.always_cooperate(), IPD, 2000)
    np.testing.assert_allclose(s, (9 / 7, 3 / 7), atol=2e-3)


def test_zd_extortioner_rejects_chi_below_one():
    with pytest.raises(ValueError, match="chi"):
        strategies.zd_extortioner(chi=0.5)
