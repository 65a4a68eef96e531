"""The iterated 2x2 games: payoffs, first-person observations, episode boundaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoop import environment
from jaxcoop.environment import C, D

HORIZON = 7
step = jax.jit(environment.step)

# (row reward, column reward) for each joint action, written out from the game definitions.
PAYOFF_TABLES = {
    "ipd": {(C, C): (1, 1), (C, D): (-1, 2), (D, C): (2, -1), (D, D): (0, 0)},
    "stag-hunt": {(C, C): (3, 3), (C, D): (0, 2), (D, C): (2, 0), (D, D): (1, 1)},
    "chicken": {(C, C): (0, 0), (C, D): (-1, 1), (D, C): (1, -1), (D, D): (-2, -2)},
    "matching-pennies": {(C, C): (1, -1), (C, D): (-1, 1), (D, C): (-1, 1), (D, D): (1, -1)},
}
PAYOFF_CASES = [
    (name, actions, rewards)
    for name, table in PAYOFF_TABLES.items()
    for actions, rewards in table.items()
]


def test_every_named_game_has_a_payoff_table_in_this_file():
    assert set(PAYOFF_TABLES) == set(environment.GAMES)


@pytest.mark.parametrize("name, actions, rewards", PAYOFF_CASES)
def test_step_pays_each_player_the_game_payoff(name, actions, rewards):
    game = environment.make_game(name, HORIZON)
    state, _ = environment.reset(game)
    _, _, got, _ = step(game, state, jnp.array(actions, jnp.int32))
    np.testing.assert_array_equal(got, np.array(rewards, np.float32))


# Joint action (player 0, player 1) -> the state each player observes next, own move first.
MIRRORED = [
    ((C, C), ("CC", "CC")),
    ((C, D), ("CD", "DC")),
    ((D, C), ("DC", "CD")),
    ((D, D), ("DD", "DD")),
]


@pytest.mark.parametrize("actions, seen", MIRRORED)
def test_observations_are_first_person_and_mirrored(actions, seen):
    game = environment.make_game("ipd", HORIZON)
    state, _ = environment.reset(game)
    _, obs, _, _ = step(game, state, jnp.array(actions, jnp.int32))
    expected = np.zeros((2, 5), np.float32)
    for player, name in enumerate(seen):
        expected[player, environment.STATE_NAMES.index(name)] = 1.0
    np.testing.assert_array_equal(obs, expected)


def test_reset_shows_both_players_start():
    state, obs = environment.reset(environment.make_game("ipd", HORIZON))
    assert obs.shape == (2, 5)
    np.testing.assert_array_equal(obs, [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    assert int(state.round) == 0


@pytest.fixture(scope="module")
def episode():
    """reset, then HORIZON steps with random joint actions, in one jitted scan."""
    game = environment.make_game("ipd", HORIZON)

    @jax.jit
    def run(key):
        state, obs0 = environment.reset(game)
        actions_Tx2 = jax.random.randint(key, (HORIZON, 2), 0, 2)

        def body(state, actions):
            state, obs, rewards, done = environment.step(game, state, actions)
            return state, (obs, rewards, done)

        final, (obs_Tx2x5, rewards, done_T) = jax.lax.scan(body, state, actions_Tx2)
        return obs0, actions_Tx2, obs_Tx2x5, done_T, final.round

    return jax.tree.map(np.asarray, run(jax.random.key(0)))


def test_start_is_seen_only_before_the_first_round(episode):
    obs0, _, obs_Tx2x5, _, _ = episode
    assert (obs0[:, environment.START] == 1).all()
    assert (obs_Tx2x5[..., environment.START] == 0).all()
    np.testing.assert_array_equal(obs_Tx2x5.sum(-1), np.ones((HORIZON, 2)))


def test_observation_after_each_step_encodes_that_steps_actions(episode):
    _, actions_Tx2, obs_Tx2x5, _, _ = episode
    own, other = actions_Tx2, actions_Tx2[:, ::-1]
    np.testing.assert_array_equal(obs_Tx2x5.argmax(-1), 1 + 2 * own + other)


def test_done_marks_only_the_last_round(episode):
    _, _, _, done_T, final_round = episode
    np.testing.assert_array_equal(done_T, [False] * (HORIZON - 1) + [True])
    assert final_round == HORIZON


def test_unknown_game_name_raises():
    with pytest.raises(ValueError, match="nope"):
        environment.make_game("nope")
