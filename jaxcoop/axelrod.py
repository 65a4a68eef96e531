"""jaxcoop's players in the Axelrod library: trained agents and the Bayesian in-context learner
as ``axelrod.Player`` s, and round-robin tournaments against its classic strategies.

Optional dependency (``pip install -e ".[axelrod]"``); ``import jaxcoop`` does not import it.

    import axelrod as axl
    from jaxcoop.axelrod import paper_game, to_axelrod

    agent = to_axelrod("runs/a", learner=0, seed=0)  # learner 0 of seed 0, newest checkpoint
    match = axl.Match([agent, axl.TitForTat()], turns=agent.horizon, game=paper_game(), seed=1)
    match.play()

A player keeps its agent's recurrent carry (GRU state, or the transformer's key/value cache and
position) and feeds it one round at a time, through one compiled step per agent architecture
(``_compiled_step``: shared by clones, resets and every agent of that architecture). Each
turn it reads the last round from ``player.history`` / ``opponent.history`` as the
first-person round the agent was trained on (its state ``1 + 2 * own + other``, its own move,
its own reward in the agent's training game) and draws its move with the player's own
``axelrod.RandomGenerator`` (``random_choice(P(C))``), so a seeded ``axl.Match`` or
``axl.Tournament`` reproduces it. The agent's inputs are its training game's rewards whatever
game the match scores with, so it plays the same moves in ``classic_game()`` (3, 0, 5, 1), a
game outside its training. A match longer than the agent's horizon (an unknown length
included: ``prob_end``) is refused: its end game was trained for that horizon, and the
transformer has no positions beyond it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import environment, reference, strategies
from jaxcoop.environment import PRISONERS_DILEMMA
from jaxcoop.networks import Agent, RoundInput
from jaxcoop.trained import load_agent

axl = strategies.import_axelrod()

#: The classic strategies of ``python -m experiments.tournament``'s default field.
FIELD = (
    "Cooperator",
    "Defector",
    "TitForTat",
    "Grudger",
    "WinStayLoseShift",
    "GTFT",
    "ZDExtort2",
    "Random",
    "Alternator",
    "Prober",
    "SuspiciousTitForTat",
    "TitFor2Tats",
)


def paper_game():
    """The paper's prisoner's dilemma, the agents' training game: ``Game(r=1, s=-1, t=2, p=0)``."""
    return strategies.axelrod_game(PRISONERS_DILEMMA)


def classic_game():
    """Axelrod's classic (R, S, T, P) = (3, 0, 5, 1): outside the agents' training (they play
    the same moves; only the scores change)."""
    return axl.Game()


#: Games by ``--game`` name.
GAMES = {"paper": paper_game, "classic": classic_game}


@dataclasses.dataclass(frozen=True)
class Model:
    """What a player runs: an agent module (a ``networks.Agent`` or a parameter-free
    ``reference.BayesianAgent``), its unstacked ``params``, its carry before round 0 (one
    episode), the ``[2, 2, 2]`` payoffs of its training game and its horizon."""

    agent: Any
    params: Any
    initial_carry: Any
    payoffs: np.ndarray
    horizon: int


@functools.cache
def _compiled_step(agent: Any):
    """``step(params, carry, state, prev_action, prev_reward) -> (carry, P(C))`` for one episode
    (int32 / float32 scalars in, float32 scalar out), compiled once per agent module."""

    def step(params, carry, state, prev_action, prev_reward):
        x = RoundInput(
            environment.one_hot_states(state[None]), prev_action[None], prev_reward[None]
        )
        carry, logits_1x2, _ = agent.apply(params, carry, x, method=Agent.step)
        return carry, jax.nn.softmax(logits_1x2[0])[environment.C]

    return jax.jit(step)


def _model(agent: Any, params: Any, payoffs: np.ndarray, horizon: int) -> Model:
    z = jnp.zeros((1, strategies.OPPONENT_ID_SIZE))  # no co-player identity, as against learners
    carry = agent.apply(params, z, method=Agent.initial_carry)
    return Model(agent, params, carry, np.asarray(payoffs, np.float32), horizon)


@functools.cache
def _trained_model(run_dir: str, learner: int, seed: int, step: int | None) -> Model:
    trained = load_agent(run_dir, learner, seed, step)
    return _model(trained.agent, trained.params, trained.game.payoffs, trained.config.horizon)


@functools.cache
def _bayesian_model(horizon: int) -> Model:
    agent = reference.make_bayesian_agent(environment.make_game("ipd", horizon))
    return _model(agent, {}, PRISONERS_DILEMMA, horizon)


class JaxcoopPlayer(axl.Player):
    """A jaxcoop ``Model`` as an Axelrod player (see the module's docstring). Subclasses call
    ``_start(model)`` in ``__init__`` (``reset`` calls ``__init__``: a fresh carry)."""

    classifier = {
        "memory_depth": float("inf"),
        "stochastic": True,
        "long_run_time": False,
        "inspects_source": False,
        "manipulates_source": False,
        "manipulates_state": False,
        # Trained (or planning) for episodes of its horizon; refuses longer matches.
        "makes_use_of": {"length"},
    }

    def _start(self, model: Model) -> None:
        self.model = model
        self._carry = model.initial_carry
        self._probabilities: list[float] = []  # P(C) in each turn so far
        super().__init__()

    @property
    def horizon(self) -> int:
        """The most turns it plays (its training episodes' length)."""
        return self.model.horizon

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return (
            type(self) is type(other)
            and self.init_kwargs == other.init_kwargs
            and list(self.history) == list(other.history)
        )

    __hash__ = None

    def receive_match_attributes(self) -> None:
        length = self.match_attributes["length"]
        if length > self.horizon:
            turns = "an unknown number of" if length == float("inf") else str(length)
            raise ValueError(
                f"{self.name} plays at most {self.horizon} turns (its training episodes); this "
                f"match has {turns} turns"
            )

    def cooperate_probability(self, opponent: axl.Player) -> float:
        """Its probability of cooperating this turn, after the rounds in its history."""
        turn = len(self.history)
        if turn >= self.horizon:
            raise ValueError(f"{self.name} plays at most {self.horizon} turns; this is turn {turn}")
        step = _compiled_step(self.model.agent)
        while len(self._probabilities) <= turn:  # feed the rounds not yet fed, one at a time
            k = len(self._probabilities)
            if k == 0:
                state, own, reward = environment.START, -1, 0.0
            else:
                own = int(self.history[k - 1] == axl.Action.D)
                theirs = int(opponent.history[k - 1] == axl.Action.D)
                state, reward = 1 + 2 * own + theirs, self.model.payoffs[own, theirs, 0]
            self._carry, p = step(
                self.model.params, self._carry, np.int32(state), np.int32(own), np.float32(reward)
            )
            self._probabilities.append(float(p))
        return self._probabilities[turn]

    def strategy(self, opponent: axl.Player) -> axl.Action:
        return self._random.random_choice(self.cooperate_probability(opponent))


class TrainedPlayer(JaxcoopPlayer):
    """Learner ``learner`` of seed ``seed`` of a results folder (newest or ``step``
    checkpoint) as an Axelrod player (``to_axelrod``). Loading is cached per process, so
    ``clone()`` and ``reset()`` are cheap."""

    name = "jaxcoop agent"

    def __init__(
        self,
        run_dir: str,
        learner: int = 0,
        seed: int = 0,
        step: int | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"jaxcoop {Path(run_dir).name} s{seed}/L{learner}"
        self._start(_trained_model(str(Path(run_dir).resolve()), learner, seed, step))


class BayesianPlayer(JaxcoopPlayer):
    """The Bayesian in-context learner of ``jaxcoop.reference`` (Beta(1, 1) posteriors over its
    co-player's memory-one probabilities, greedy best response for the rounds left) planning
    for ``horizon`` turns of the paper's game; deterministic given the history. It plans for
    ``horizon`` turns even in a shorter match. (The oracle cannot play here: it must be told its
    co-player's five probabilities.)"""

    classifier = {**JaxcoopPlayer.classifier, "stochastic": False}

    def __init__(self, horizon: int = 100) -> None:
        self.name = f"jaxcoop Bayesian learner ({horizon} turns)"
        self._start(_bayesian_model(horizon))

    def strategy(self, opponent: axl.Player) -> axl.Action:
        return axl.Action.C if self.cooperate_probability(opponent) > 0.5 else axl.Action.D


def to_axelrod(
    run_dir: str | Path,
    learner: int = 0,
    seed: int = 0,
    step: int | None = None,
    name: str | None = None,
) -> TrainedPlayer:
    """A trained learner of a results folder as an ``axelrod.Player`` (``TrainedPlayer``).

    Args:
      run_dir: a results folder of ``python -m experiments.ipd`` (A2C / PPO).
      learner, seed: which learner of which seed; step: a checkpoint (default the newest).
      name: its name in tournaments (default ``jaxcoop <folder> s<seed>/L<learner>``).

    Raises ``RunFolderError`` / ``ValueError`` for a folder, learner or seed that is not there.
    """
    return TrainedPlayer(str(run_dir), learner, seed, step, name)


def bayesian_player(horizon: int = 100) -> BayesianPlayer:
    """The Bayesian in-context learner planning for ``horizon`` turns as an ``axelrod.Player``."""
    return BayesianPlayer(horizon)


def classic_players(names: Sequence[str]) -> list[axl.Player]:
    """Axelrod strategies by class name (``"TitForTat"``); ``ValueError`` naming an unknown one
    with the closest names."""
    by_name = {s.__name__: s for s in axl.all_strategies}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        hints = {n: difflib.get_close_matches(n, by_name, 3) for n in unknown}
        raise ValueError(
            "unknown Axelrod strategies: "
            + "; ".join(f"{n!r} (closest: {', '.join(h) or 'none'})" for n, h in hints.items())
        )
    return [by_name[n]() for n in names]


def ranking(results) -> list[dict]:
    """An ``axelrod.ResultSet``'s ranking (``summarise``), best first: per player its rank (from
    1), name, median score per turn, cooperation rating, median wins, first-move cooperation and
    the rates of each state and of cooperating after it."""
    rows = []
    for rank, row in enumerate(results.summarise(), start=1):
        fields = {name.lower(): value for name, value in row._asdict().items()}
        numbers = {k: float(v) for k, v in fields.items() if k not in ("rank", "name")}
        rows.append({"rank": rank, "name": str(fields["name"]), **numbers})
    return rows


def ranking_table(rows: list[dict]) -> str:
    """``ranking``'s main columns as a Markdown table."""
    lines = [
        "| rank | player | median score / turn | cooperation | wins | first move C |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rank']} | {r['name']} | {r['median_score']:.3f} | "
            f"{r['cooperation_rating']:.3f} | {r['wins']:g} | {r['initial_c_rate']:.2f} |"
        )
    return "\n".join(lines)


def payoff_matrix(results) -> tuple[list[str], np.ndarray]:
    """The mean payoff per turn ``[P, P]`` of each row player against each column player, and
    the players' names, both in ranking order."""
    order = list(results.ranking)
    matrix = np.asarray(results.payoff_matrix, np.float64)[np.ix_(order, order)]
    return list(results.ranked_names), matrix
