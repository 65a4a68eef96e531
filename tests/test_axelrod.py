"""jaxcoop in the Axelrod library: trained agents and the Bayesian learner as ``axelrod.Player`` s,
Axelrod's memory-one strategies as tabular co-players, and ``experiments.tournament``."""

import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

axl = pytest.importorskip("axelrod")

import jaxcoop  # noqa: E402
from experiments import tournament  # noqa: E402
from jaxcoop import axelrod as jaxcoop_axelrod  # noqa: E402
from jaxcoop import cli, evaluation, reference, strategies  # noqa: E402
from jaxcoop.environment import C  # noqa: E402
from jaxcoop.evaluation import Player  # noqa: E402
from jaxcoop.presets import preset  # noqa: E402

HORIZON = 100
#: Axelrod's memory-one strategies: the ones ``from_axelrod`` converts in the paper's game, among
#: those whose class says memory depth 0 or 1 (without building the other 200).
MEMORY_ONE = []
for _strategy in axl.all_strategies:
    if _strategy.classifier.get("memory_depth", float("inf")) <= 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                MEMORY_ONE.append((_strategy, strategies.from_axelrod(_strategy())))
            except ValueError:
                pass


def _sharpen(params):
    """Policy logits 300 times larger than at initialization: an agent whose P(C) spans (0, 1)
    and depends on the history (a freshly initialized one plays 1/2 everywhere)."""
    head = params["params"]["policy"]
    head["kernel"] = head["kernel"] * 300.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_run):
    """Untrained, sharpened GRU and transformer agents of 100-round episodes (1 seed, 1 learner)."""
    base = preset("tiny").replace(num_seeds=1, num_learners=1, horizon=HORIZON)
    root = tmp_path_factory.mktemp("axelrod")
    return {
        backbone: write_run(root / backbone, base.replace(backbone=backbone), _sharpen)
        for backbone in ("gru", "transformer")
    }


def _match(players, turns, seed):
    match = axl.Match(players, turns=turns, game=jaxcoop_axelrod.paper_game(), seed=seed)
    return match.play()


def test_memory_one_strategies_are_found():
    names = {s.__name__ for s, _ in MEMORY_ONE}
    assert {"Cooperator", "TitForTat", "GTFT", "ZDExtort2", "Random", "Alternator"} <= names
    assert len(MEMORY_ONE) >= 30, names


def test_a_trained_player_is_stochastic_with_unbounded_memory(runs):
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    assert isinstance(player, axl.Player)
    assert axl.Classifiers["stochastic"](player) is True
    assert axl.Classifiers["memory_depth"](player) == float("inf")
    assert player.horizon == HORIZON and str(player) == "jaxcoop gru s0/L0"


@pytest.mark.parametrize("backbone", ["gru", "transformer"])
def test_each_turn_the_player_reads_the_history_as_the_agent_does(runs, backbone):
    """P(C) of every turn of a match equals the loaded agent's, teacher-forced on the history
    (a whole-episode forward: the GRU's sequence, the transformer's masked parallel pass)."""
    player = jaxcoop_axelrod.to_axelrod(runs[backbone])
    played = _match([player, axl.Random()], HORIZON, seed=4)
    mine, theirs = ([a.name for a in side] for side in zip(*played, strict=True))
    assert len(set(mine)) == 2 and len(set(theirs)) == 2
    agent = jaxcoop.load_agent(runs[backbone])
    expected = agent.cooperate_probabilities(mine[:-1], theirs[:-1])
    np.testing.assert_allclose(player._probabilities, expected, rtol=1e-5, atol=1e-6)


def test_matches_agree_with_jaxcoop_play_against_every_memory_one_strategy(runs):
    """Against each memory-one strategy of Axelrod: the agent's and the strategy's cooperation
    in seeded Axelrod matches agree with ``jaxcoop`` episodes of the agent against the
    converted strategy, within 4.5 standard errors (both samples' errors)."""
    turns, matches, episodes = 10, 30, 1000
    agent = jaxcoop.load_agent(runs["gru"])
    game = jaxcoop.Game(agent.game.payoffs, turns)
    me = Player(agent.agent, agent.params)
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    for i, (strategy, theta) in enumerate(MEMORY_ONE):
        coop_Mx2 = []
        for m in range(matches):
            played = _match([player, strategy()], turns, seed=1000 * i + m)
            coop_Mx2.append(np.mean([[a == axl.Action.C, b == axl.Action.C] for a, b in played], 0))
        key = jax.random.key(i)
        actions = np.asarray(
            evaluation.match(me, evaluation.tabular(theta), key, episodes, game)[0]
        )
        coop_Ex2 = (actions == C).mean(axis=1)
        for side, who in enumerate(("agent", strategy.__name__)):
            axelrod_side, jax_side = np.asarray(coop_Mx2)[:, side], coop_Ex2[:, side]
            se = np.hypot(axelrod_side.std() / np.sqrt(matches), jax_side.std() / np.sqrt(episodes))
            gap = abs(axelrod_side.mean() - jax_side.mean())
            assert gap <= max(4.5 * se, 1e-3), (strategy.__name__, who, gap, se)


def test_from_axelrod_matches_axelrods_own_play_of_every_memory_one_strategy():
    """Each converted strategy's five probabilities against Axelrod's own play of it (against
    Random, in the paper's game): the frequency of C on the first move and after each state,
    exact where the probability is 0 or 1, else within 4.5 standard errors."""
    matches, turns = 60, 20
    for i, (strategy, theta) in enumerate(MEMORY_ONE):
        counts = np.zeros((5, 2))  # [state, (C, all)]
        for m in range(matches):
            played = _match([strategy(), axl.Random()], turns, seed=7919 * i + m)
            state = 0
            for own, theirs in played:
                counts[state] += (own == axl.Action.C, 1)
                state = 1 + 2 * (own == axl.Action.D) + (theirs == axl.Action.D)
        p = np.asarray(theta, np.float64)
        seen = counts[:, 1] > 0
        freq = counts[seen, 0] / counts[seen, 1]
        se = np.sqrt(p[seen] * (1 - p[seen]) / counts[seen, 1])
        assert np.all(np.abs(freq - p[seen]) <= 4.5 * se + 1e-12), (strategy.__name__, freq, p)
        assert seen.sum() >= 3, strategy.__name__


def test_from_axelrod_reads_the_memory_one_players_vector():
    """An ``axelrod.MemoryOnePlayer``: ``_initial`` and ``_four_vector`` over (CC, CD, DC, DD),
    its own move first, as jaxcoop's tabular order."""
    for strategy in axl.all_strategies:
        if issubclass(strategy, axl.MemoryOnePlayer):
            player = strategy()
            expected = [player._initial == axl.Action.C, *player._four_vector.values()]
            theta = strategies.from_axelrod(player, payoffs=None)
            np.testing.assert_allclose(theta, expected, atol=1e-7, err_msg=strategy.__name__)
    # Asymmetric: TFT copies the co-player, Alternator flips its own move, both start with C.
    np.testing.assert_array_equal(strategies.from_axelrod(axl.TitForTat()), [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(strategies.from_axelrod(axl.Alternator()), [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(strategies.from_axelrod(axl.SuspiciousTitForTat())[0], 0)


@pytest.mark.parametrize(
    "strategy, message",
    [
        (axl.TitFor2Tats(), "memory depth 2"),
        (axl.Grudger(), "memory depth inf"),
        (axl.RandomTitForTat(), "depends on earlier rounds or the turn"),
        (axl.FirstByAnonymous(), r"draws with RandomGenerator.uniform\(\)"),
        (axl.ZDGen2(), "cannot play this game"),
    ],
)
def test_from_axelrod_refuses_what_has_no_memory_one_form(strategy, message):
    with pytest.raises(ValueError, match=message):
        strategies.from_axelrod(strategy)


def test_axelrod_strategies_can_be_named_as_pool_and_panel_co_players():
    gtft = strategies.from_axelrod(axl.GTFT())
    coplayers = strategies.sample_coplayers(jax.random.key(0), (3,), "axelrod:GTFT")
    np.testing.assert_array_equal(coplayers, np.broadcast_to(gtft, (3, 5)))
    assert preset("tiny").replace(pool="axelrod:ZDExtort2").pool == "axelrod:ZDExtort2"
    with pytest.raises(ValueError, match="pool='axelrod:TitFor2Tats' is invalid.*memory depth"):
        preset("tiny").replace(pool="axelrod:TitFor2Tats")
    with pytest.raises(ValueError, match="has no strategy 'Nope'"):
        preset("tiny").replace(pool="axelrod:Nope")
    panel = evaluation.panel(jax.random.key(0), 4, ("axelrod:TitForTat", "tit_for_tat"))
    np.testing.assert_array_equal(panel["axelrod:TitForTat"].params, panel["tit_for_tat"].params)


def test_clone_and_reset_replay_the_same_match_under_one_seed(runs):
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    first = _match([player, axl.GTFT()], 30, seed=11)
    assert _match([player.clone(), axl.GTFT()], 30, seed=11) == first
    player.reset()
    assert len(player.history) == 0 and player._probabilities == []
    assert _match([player, axl.GTFT()], 30, seed=11) == first
    assert _match([player, axl.GTFT()], 30, seed=12) != first


def test_a_second_match_does_not_recompile_and_a_clone_shares_the_step(runs):
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    _match([player, axl.TitForTat()], 5, seed=0)
    clone = player.clone()
    _match([clone, player], 20, seed=1)
    assert clone.model is player.model
    step = jaxcoop_axelrod._compiled_step(player.model.agent)
    assert step._cache_size() == 1


def test_a_100_turn_match_of_a_gru_agent_takes_well_under_a_second(runs):
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    _match([player, axl.TitForTat()], HORIZON, seed=0)  # compiled here
    start = time.perf_counter()
    _match([player, axl.TitForTat()], HORIZON, seed=1)
    assert time.perf_counter() - start < 0.5


def test_longer_matches_than_the_horizon_are_refused(runs):
    player = jaxcoop_axelrod.to_axelrod(runs["gru"])
    with pytest.raises(ValueError, match="plays at most 100 turns.*this match has 101 turns"):
        axl.Match([player, axl.TitForTat()], turns=HORIZON + 1)
    with pytest.raises(ValueError, match="an unknown number of turns"):
        axl.Match([player, axl.TitForTat()], prob_end=0.1)


def test_the_bayesian_player_plays_as_jaxcoops_bayesian_learner():
    """Deterministic on both sides: the same moves as ``evaluation.match`` of the reference
    Bayesian learner against tit-for-tat and against an extortioner's deterministic start."""
    turns = 12
    game = jaxcoop.make_game("ipd", turns)
    bayes = jaxcoop_axelrod.bayesian_player(turns)
    assert axl.Classifiers["stochastic"](bayes) is False
    for strategy in (axl.TitForTat(), axl.Alternator(), axl.SuspiciousTitForTat()):
        played = _match([bayes, strategy], turns, seed=0)
        mine = [int(a == axl.Action.D) for a, _ in played]
        theta = strategies.from_axelrod(strategy)
        episodes = evaluation.match(
            Player(reference.BAYESIAN, None), evaluation.tabular(theta), jax.random.key(0), 2, game
        )
        np.testing.assert_array_equal(np.asarray(episodes.actions)[0, :, 0], mine)


def test_a_seeded_tournament_is_reproduced(runs):
    def play():
        players = [jaxcoop_axelrod.to_axelrod(runs["gru"]), axl.Random(), axl.GTFT()]
        game = jaxcoop_axelrod.paper_game()
        t = axl.Tournament(players, game=game, turns=10, repetitions=2, seed=5)
        return t.play(progress_bar=False).payoff_matrix

    assert play() == play()


def test_the_tournament_command_writes_the_ranking_and_the_heat_map(runs, tmp_path, capsys):
    out = tmp_path / "t"
    args = [str(runs["gru"]), "--field", "TitForTat,Defector,ZDExtort2", "--turns", "10"]
    tournament.main([*args, "--repetitions", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "jaxcoop gru s0/L0" in printed and "Bayesian learner" in printed
    rows = (out / "ranking.csv").read_text().splitlines()
    assert rows[0].startswith("rank,name,median_score") and len(rows) == 1 + 5
    assert (out / "ranking.md").read_text().startswith("| rank | player |")
    assert (out / "payoff_matrix.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--field", "TitForTat,TitForTwoTats"], "unknown Axelrod strategies: 'TitForTwoTats'"),
        (["--turns", "101"], "--turns 101 is longer than .* 100-round"),
        (["--repetitions", "0"], "--repetitions 0"),
    ],
)
def test_the_tournament_command_refuses_bad_input_before_playing(runs, extra, message):
    with pytest.raises(cli.UsageError, match=message):
        tournament.main([str(runs["gru"]), *extra])


def test_the_tournament_command_names_a_missing_run_folder(tmp_path, capsys):
    assert cli.main_guard(tournament.main, [str(tmp_path / "nothing")]) == 1
    assert "nothing" in capsys.readouterr().err


def test_import_jaxcoop_does_not_import_axelrod():
    code = "import sys, jaxcoop; print('axelrod' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
