"""``jaxcoop.play``: sampled episodes of two policies agree with the exact Markov-chain rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcoop
from jaxcoop import environment, networks, rollout, strategies
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
    params = networks.init_params(agent, jax.random.key(0))
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


# --- A policy's trained game: play's default, and the longest game it can play. ---------------


@pytest.fixture(scope="module")
def tiny_agents():
    """Untrained GRU and transformer agents of the tiny preset (8-round episodes)."""
    out = {}
    for backbone in ("gru", "transformer"):
        config = jaxcoop.preset("tiny", backbone)
        agent = jaxcoop.make_agent(config)
        out[backbone] = (config, agent, networks.init_params(agent, jax.random.key(0)))
    return out


def _spy(policy, calls):
    """``policy`` with a ``step`` that records every call (a call means it is being traced)."""
    return policy._replace(step=lambda s, x: (calls.append(1), policy.step(s, x))[1])


def test_a_transformer_refuses_a_game_longer_than_its_horizon_before_tracing(tiny_agents):
    config, agent, params = tiny_agents["transformer"]
    assert agent.max_rounds == config.horizon == 8
    calls = []
    policy = _spy(jaxcoop.agent_policy(agent, params), calls)
    message = r"at most 8 rounds .* a 100-round game"
    with pytest.raises(ValueError, match=message):  # no game given: the 100-round default
        jaxcoop.play(policy, strategies.tit_for_tat(), jax.random.key(1), 4)
    with pytest.raises(ValueError, match=r"policy_b can play at most 8 rounds .* 9-round"):
        jaxcoop.play(
            strategies.tit_for_tat(), policy, jax.random.key(1), 4, environment.make_game("ipd", 9)
        )
    assert calls == []  # refused before the policy was traced
    episodes = jaxcoop.play(
        policy, strategies.tit_for_tat(), jax.random.key(1), 4, environment.make_game("ipd", 5)
    )
    assert episodes.actions.shape == (4, 5, 2) and calls  # shorter games are fine


def test_play_defaults_to_the_game_a_policy_was_trained_for(tiny_agents):
    for backbone in ("gru", "transformer"):
        config, agent, params = tiny_agents[backbone]
        game = jaxcoop.make_game("stag-hunt", config.horizon)
        policy = jaxcoop.agent_policy(agent, params, game=game)
        episodes = jaxcoop.play(policy, strategies.tit_for_tat(), jax.random.key(1), 4)
        assert episodes.actions.shape == (4, 8, 2), backbone
        payoffs = np.asarray(game.payoffs)
        a = np.asarray(episodes.actions)
        np.testing.assert_array_equal(episodes.rewards, payoffs[a[..., 0], a[..., 1]])


def test_a_gru_may_play_longer_than_it_was_trained_for_when_asked(tiny_agents):
    """The GRU has no positional limit: given a longer game it plays it (it extrapolates)."""
    config, agent, params = tiny_agents["gru"]
    assert agent.max_rounds is None
    policy = jaxcoop.agent_policy(agent, params, game=jaxcoop.make_game("ipd", config.horizon))
    episodes = jaxcoop.play(
        policy, strategies.tit_for_tat(), jax.random.key(1), 4, jaxcoop.make_game("ipd", 20)
    )
    assert episodes.actions.shape == (4, 20, 2)


def test_policies_trained_for_different_lengths_need_an_explicit_game(tiny_agents):
    _, agent, params = tiny_agents["gru"]
    a = jaxcoop.agent_policy(agent, params, game=jaxcoop.make_game("ipd", 8))
    b = jaxcoop.agent_policy(agent, params, game=jaxcoop.make_game("ipd", 12))
    with pytest.raises(ValueError, match="trained on 8-round and 12-round episodes"):
        jaxcoop.play(a, b, jax.random.key(1), 4)
    assert (
        jaxcoop.play(a, b, jax.random.key(1), 4, jaxcoop.make_game("ipd", 6)).actions.shape[1] == 6
    )


def test_a_loaded_agent_plays_its_own_game_and_refuses_a_longer_one(tiny_agents, tmp_path):
    """``TrainedAgent`` (built by hand here: ``load_agent`` builds it from a checkpoint)."""
    from jaxcoop.trained import TrainedAgent

    for backbone in ("gru", "transformer"):
        config, agent, params = tiny_agents[backbone]
        loaded = TrainedAgent(agent, params, config, tmp_path, 0, 0, 6)
        episodes = jaxcoop.play(loaded, strategies.always_cooperate(), jax.random.key(2), 4)
        assert episodes.actions.shape == (4, config.horizon, 2), backbone
        with pytest.raises(ValueError, match="trained on 8-round episodes"):
            loaded.cooperate_probability("C" * 8, "D" * 8)
        assert 0 < loaded.cooperate_probability("C" * 7, "D" * 7) < 1
    assert loaded.max_rounds == 8
    with pytest.raises(ValueError, match=r"at most 8 rounds .* a 100-round game"):
        jaxcoop.play(
            loaded, strategies.always_cooperate(), jax.random.key(2), 4, environment.make_game()
        )


def test_evaluation_refuses_a_transformer_or_a_planner_beyond_its_horizon(tiny_agents):
    from jaxcoop import evaluation
    from jaxcoop.algorithms import ppi

    _, agent, params = tiny_agents["transformer"]
    tft = evaluation.tabular(strategies.tit_for_tat())
    game = jaxcoop.make_game("ipd", 9)
    with pytest.raises(ValueError, match=r"the Agent can play at most 8 rounds .* 9-round"):
        evaluation.match(evaluation.Player(agent, params), tft, jax.random.key(0), 4, game)
    planner = ppi.make_planner(jaxcoop.preset("tiny", algo="ppi"))
    with pytest.raises(ValueError, match=r"the Planner can play at most 8 rounds .* 9-round"):
        evaluation.match(tft, evaluation.Player(planner, None), jax.random.key(0), 4, game)


# --- rollout.rollout: any policies in any seats (play and training's collect are its cases). -----


def _with_critic(policy, value):
    """``policy`` with a constant critic, so a rollout may record it."""

    def critic_step(state, x):
        state, logits = policy.step(state, x)
        return state, logits, jnp.full(logits.shape[:-1], value)

    return policy._replace(critic_step=critic_step)


def test_a_rollout_of_three_policies_gives_each_seat_its_own_side_of_its_game():
    """Tit-for-tat (recorded) in two seats: row against always-defect, column against
    always-cooperate. By hand: the first game is (C, D) then (D, D) forever; the second (C, C)
    forever; each seat sees its own state (CD = 2 after (C, D), CC = 1), rewards and co-player."""
    tft = _with_critic(rollout.tabular_policy(strategies.tit_for_tat()), 0.5)
    players = [
        (tft, (2,)),
        (rollout.tabular_policy(strategies.always_defect()), (1,)),
        (rollout.tabular_policy(strategies.always_cooperate()), (1,)),
    ]
    # Environment 0: tft seat 0 (row) vs always-defect seat 2; environment 1: always-cooperate
    # seat 3 (row) vs tft seat 1 (column).
    seating = rollout.Seating(row=jnp.array([0, 3]), col=jnp.array([2, 1]))
    out = rollout.rollout(
        players, seating, jax.random.key(0), jaxcoop.make_game(horizon=6), record=0
    )
    t = out.transition
    np.testing.assert_array_equal(out.episodes.actions[0], [[C, D]] + [[D, D]] * 5)
    np.testing.assert_array_equal(out.episodes.actions[1], [[C, C]] * 6)
    np.testing.assert_array_equal(t.action, [[C, C]] + [[D, C]] * 5)
    np.testing.assert_array_equal(t.reward, [[-1.0, 1.0]] + [[0.0, 1.0]] * 5)
    np.testing.assert_array_equal(t.coplayer_action, [[D, C]] * 6)
    np.testing.assert_array_equal(t.coplayer_reward, [[2.0, 1.0]] + [[0.0, 1.0]] * 5)
    states = np.argmax(np.asarray(t.obs), axis=-1)  # observed before acting
    np.testing.assert_array_equal(states, [[0, 0], [2, 1]] + [[4, 1]] * 4)
    np.testing.assert_array_equal(t.value, 0.5)
    assert t.log_prob.shape == (6, 2) and t.logits.shape == (6, 2, 2)


def test_a_rollout_refuses_a_seating_that_does_not_seat_every_seat_once():
    allc = rollout.tabular_policy(strategies.always_cooperate())
    players = [(allc, (2,)), (allc, (1,))]
    seating = rollout.Seating(row=jnp.array([0]), col=jnp.array([1]))
    with pytest.raises(ValueError, match="1 environments seat 2 players, not 3"):
        rollout.rollout(players, seating, jax.random.key(0), jaxcoop.make_game(horizon=4))
    with pytest.raises(ValueError, match="player 0 is recorded but its policy has no critic_step"):
        rollout.rollout(
            [(allc, (1,)), (allc, (1,))], seating, jax.random.key(0),
            jaxcoop.make_game(horizon=4), record=0,
        )  # fmt: skip
