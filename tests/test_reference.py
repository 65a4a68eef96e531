"""The reference players: the oracle against brute force and hand values, the Bayesian learner
against named co-players and as a frozen co-player, and the in-context efficiency."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ipd
from experiments import reference as reference_cli
from jaxcoop import environment, evaluation, records, reference, strategies, trained
from jaxcoop.environment import C, D
from jaxcoop.evaluation import Player
from jaxcoop.networks import Agent, RoundInput
from jaxcoop.presets import preset
from jaxcoop.rollout import Policy, play

PAYOFFS = np.asarray(environment.PRISONERS_DILEMMA, np.float64)[..., 0]


def _exact_value(theta: np.ndarray, table_Tx5: np.ndarray) -> float:
    """Expected reward per round of the action table ``[T, 5]`` against memory-1 ``theta``
    (co-player's view), by exact state distributions."""
    q = np.asarray(theta, np.float64)[reference.MIRROR]  # P(co-player C) in my states
    dist, total = np.eye(5)[environment.START], 0.0
    for actions in np.asarray(table_Tx5):
        nxt = np.zeros(5)
        for s in range(5):
            for b, p_b in ((C, q[s]), (D, 1.0 - q[s])):
                total += dist[s] * p_b * PAYOFFS[actions[s], b]
                nxt[1 + 2 * actions[s] + b] += dist[s] * p_b
        dist = nxt
    return total / len(table_Tx5)


def _brute_force(theta: np.ndarray, horizon: int, openings=(C, D)) -> float:
    """The best expected reward per round of every deterministic policy (round, state) ->
    action, first move one of ``openings``, against memory-1 ``theta``."""
    # Round 0 sees only START, later rounds only CC..DD: other entries never matter.
    tables = (
        [np.full(5, bits[0])] + [np.r_[0, bits[1 + 4 * t : 5 + 4 * t]] for t in range(horizon - 1)]
        for bits in itertools.product(openings, *[(C, D)] * (4 * (horizon - 1)))
    )
    return max(_exact_value(theta, np.stack(table)) for table in tables)


@pytest.mark.parametrize("horizon", [1, 2, 3])
def test_the_oracle_is_the_best_deterministic_policy(horizon):
    game = environment.make_game("ipd", horizon)
    thetas = np.asarray(strategies.sample_pool(jax.random.key(horizon), (4,)))
    thetas = np.concatenate([thetas, [[0.9, 0.8, 0.1, 0.7, 0.3]]])
    values = np.asarray(reference.oracle_value(jnp.asarray(thetas), game))
    expected = [_brute_force(theta, horizon) for theta in thetas]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("horizon", [1, 2, 5, 20])
def test_the_oracle_hand_values(horizon):
    """Always-cooperate: defect every round, 2 per round. Always-defect: defect, 0.
    Tit-for-tat: cooperate, then defect in the last round, (T - 1 + 2) / T = (T + 1) / T."""
    game = environment.make_game("ipd", horizon)
    named = jnp.stack(
        [strategies.always_cooperate(), strategies.always_defect(), strategies.tit_for_tat()]
    )
    values = np.asarray(reference.oracle_value(named, game))
    np.testing.assert_allclose(values, [2.0, 0.0, (horizon + 1) / horizon], rtol=1e-6)
    table = np.asarray(reference.oracle_table(strategies.tit_for_tat(), game))  # [T, 5]
    on_path = [environment.START] + [1] * (horizon - 1)  # START, then CC
    np.testing.assert_array_equal(table[np.arange(horizon), on_path], [C] * (horizon - 1) + [D])


@pytest.mark.parametrize("horizon", [1, 3])
def test_the_oracle_opening_with_c_is_the_best_policy_that_opens_with_c(horizon):
    game = environment.make_game("ipd", horizon)
    thetas = strategies.sample_pool(jax.random.key(horizon), (3,))
    episodes = play(
        reference.oracle_policy(thetas[0], game, opening=C), thetas[0], jax.random.key(0), 1, game
    )
    assert int(episodes.actions[0, 0, 0]) == C
    for theta in np.asarray(thetas):
        table = reference.oracle_table(jnp.asarray(theta), game, opening=C)  # [T, 5]
        exact = _exact_value(theta, np.asarray(table))
        assert exact == pytest.approx(_brute_force(theta, horizon, openings=(C,)), rel=1e-5)


def test_the_oracle_opening_with_c_hand_values():
    """20 rounds. Always-cooperate: 1, then 2 for 19 rounds. Always-defect: -1, then 0.
    Tit-for-tat: the oracle opens with C anyway, (T + 1) / T."""
    game = environment.make_game("ipd", 20)
    named = [strategies.always_cooperate(), strategies.always_defect(), strategies.tit_for_tat()]
    tables = [np.asarray(reference.oracle_table(t, game, opening=C)) for t in named]
    values = [_exact_value(np.asarray(t), table) for t, table in zip(named, tables, strict=True)]
    np.testing.assert_allclose(values, [(1 + 2 * 19) / 20, -1 / 20, 21 / 20], rtol=1e-6)


def test_value_iteration_levels_agree():
    game = environment.make_game("ipd", 6)
    coop = strategies.sample_pool(jax.random.key(3), (3,))
    every = reference.all_q_values(coop, game.payoffs, 6)  # [K, 3, 5, 2]
    for left in range(1, 7):
        one = reference.q_values(coop, game.payoffs, 6, jnp.full((3,), left))
        np.testing.assert_allclose(one, every[left - 1], rtol=1e-6)


def test_the_oracle_plays_its_value_in_rollout_play():
    game = environment.make_game("ipd", 10)
    thetas = strategies.sample_pool(jax.random.key(0), (2000,))
    episodes = play(reference.oracle_policy(thetas, game), thetas, jax.random.key(1), 2000, game)
    played = np.asarray(episodes.rewards[..., 0]).mean()
    exact = float(reference.oracle_value(thetas, game).mean())
    assert abs(played - exact) < 0.03  # about 3 standard errors


@pytest.mark.parametrize("horizon", [20, 100])
def test_the_bayesian_learner_defects_against_unconditional_coplayers(horizon):
    """It never cooperates with always-cooperate; against always-defect it probes at most a
    few rounds (measured: once in 20 rounds, twice in 100), at most 5% of them."""
    game = environment.make_game("ipd", horizon)
    named = jnp.stack([strategies.always_cooperate(), strategies.always_defect()])
    episodes = play(reference.bayesian_policy(game), named, jax.random.key(0), 2, game)
    coop = np.asarray(episodes.actions[..., 0] == C).mean(axis=1)
    assert coop[0] == 0.0
    assert 0.0 < coop[1] <= 0.05
    assert np.asarray(episodes.actions[1, :5, 0] == D).all()  # the probes come later


def test_the_bayesian_agent_module_matches_the_policy_and_refuses_other_horizons():
    """The parameter-free module runs through ``Agent.step`` / ``Agent.initial_carry`` as a
    frozen co-player is run in training, and plays exactly as ``bayesian_policy``."""
    game = environment.make_game("ipd", 12)
    agent = reference.make_bayesian_agent(game)
    params = agent.init(
        jax.random.key(0),
        RoundInput(jnp.zeros((1, 1, 5)), jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1))),
        jnp.zeros((1, 10)),
    )
    assert jax.tree.leaves(params) == []
    thetas = strategies.sample_pool(jax.random.key(1), (64,))

    def initial_state(num_episodes):
        return agent.apply(params, jnp.zeros((num_episodes, 10)), method=Agent.initial_carry)

    def step(carry, x):
        carry, logits, _ = agent.apply(params, carry, x, method=Agent.step)
        return carry, logits

    as_module = play(Policy(initial_state, step), thetas, jax.random.key(2), 64, game)
    as_policy = play(reference.bayesian_policy(game), thetas, jax.random.key(2), 64, game)
    np.testing.assert_array_equal(as_module.actions, as_policy.actions)
    longer, key = environment.make_game("ipd", 13), jax.random.key(0)
    with pytest.raises(ValueError, match="plans for horizon=12 and cannot play a 13-round"):
        evaluation.match(Player(agent, params), evaluation.tabular(thetas), key, 64, longer)


def test_efficiency_is_zero_for_always_defect_and_one_for_the_oracle_on_common_draws():
    game = environment.make_game("ipd", 20)  # at 10 rounds the Bayesian learner always defects
    pool = evaluation.panel(jax.random.key(0), 500, ("pool",))["pool"]
    key = jax.random.key(1)
    refs = evaluation.references(pool, key, 500, game)
    alld = evaluation.match(evaluation.tabular(strategies.always_defect()), pool, key, 500, game)
    oracle = evaluation.match(Player(reference.ORACLE, None), pool, key, 500, game)
    assert evaluation.efficiency(alld, refs) == (0.0, 0.0)
    assert evaluation.efficiency(oracle, refs) == (1.0, 0.0)
    bayes = evaluation.efficiency(
        evaluation.match(Player(reference.BAYESIAN, None), pool, key, 500, game), refs
    )
    assert 0.0 < bayes.value < 1.0 and 0.0 < bayes.se < 0.5
    with pytest.raises(ValueError, match="tabular co-players only"):
        oracle, bayesian = Player(reference.ORACLE, None), Player(reference.BAYESIAN, None)
        evaluation.match(oracle, bayesian, key, 4, game)


def test_the_reference_command_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "ref.json"
    reference_cli.main(["--horizon", "12", "--episodes", "32", "--out", str(out), "--seed", "3"])
    result = json.loads(out.read_text())
    assert result["horizon"] == 12 and result["episodes"] == 32
    assert set(result["players"]) == {
        "always_defect", "always_cooperate", "tit_for_tat", "oracle", "bayesian",
        "cooperate_then_defect", "oracle_opening_c",
    }  # fmt: skip
    for r in result["players"].values():
        assert {"reward", "se", "coop", "efficiency", "efficiency_se"} <= set(r)
    assert result["players"]["always_defect"]["efficiency"] == 0.0
    assert result["players"]["oracle"]["efficiency"] == 1.0
    assert result["players"]["always_cooperate"]["coop"] == 1.0
    assert "git_commit" in result and "versions" in result
    assert "bayesian" in capsys.readouterr().out
    again = tmp_path / "again.json"
    reference_cli.main(["--horizon", "12", "--episodes", "32", "--out", str(again), "--seed", "3"])
    assert json.loads(again.read_text())["players"] == result["players"]  # same key, same numbers


def test_the_bayesian_learner_is_a_frozen_coplayer_end_to_end(tmp_path):
    out = tmp_path / "vs-bayes"
    argv = ["--preset", "tiny", "--num-learners", "1", "--num-iterations", "2"]
    ipd.main([*argv, "--chunk-iterations", "2", "--frozen-coplayer", "bayes", "--out", str(out)])
    record = json.loads((out / records.CONFIG_FILE).read_text())["warm_start"]
    assert record["frozen_coplayer"]["run"] == "bayes"
    assert record["frozen_coplayer"]["agent"]["horizon"] == 8
    history = records.read_metrics(out)
    assert np.isfinite(history["frozen_coop"]).all()
    summary = json.loads((out / records.SUMMARY_FILE).read_text())
    assert summary["warm_start"] == {"frozen_coplayer": "bayes"}
    assert np.isfinite(summary["evaluation"]["pool"]["efficiency"]).all()
    played = json.loads((out / records.EVALUATION_FILE).read_text())
    assert set(played["pool"]["efficiency"]) == {"mean", "std", "se"}
    with pytest.raises(ValueError, match="no parameters to start from"):
        trained.resolve_warm_start(preset("tiny"), [trained.Source.parse("bayes")])
    # How much the learner extorts the Bayesian learner it was trained against.
    from experiments import extortion as extortion_cli

    extortion_cli.main([str(out), "--against", "bayes"])
    reports = json.loads((out / "extortion.json").read_text())
    assert [(r["seed"], r["learner"]) for r in reports] == [(0, 0)]
    assert len(reports[0]["p_cooperate"]) == 5 and sum(reports[0]["counts"]) > 0
    assert -1.0 <= reports[0]["coplayer_reward"] <= 2.0
