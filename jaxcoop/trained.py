"""Trained agents out of run folders: ``load_agent`` for any code, and warm starts of new runs.

A *source* is ``RUN_DIR[:LEARNER]``: a results folder with at least one checkpoint and optionally
one learner's index in it; as a frozen co-player, ``bayes`` is the Bayesian in-context learner of
``reference`` instead (a run folder named so is ``./bayes``). ``load_agent`` gives a policy that
``jaxcoop.play`` accepts and that answers one round at a time
(``TrainedAgent.cooperate_probability``). ``resolve_warm_start`` turns ``--init-from`` /
``--frozen-coplayer`` sources into parameters for a new run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import environment, reference, strategies
from jaxcoop.algorithms import ppi
from jaxcoop.config import Config
from jaxcoop.environment import C
from jaxcoop.networks import (
    AGENT_FIELDS,
    Agent,
    RoundInput,
    agent_fields,
    history_inputs,
    make_agent,
    states_before,
)
from jaxcoop.records import RunFolderError, read_config
from jaxcoop.rollout import Policy, agent_policy
from jaxcoop.train import make_trainer

if TYPE_CHECKING:
    from jaxcoop.checkpoints import Checkpoint

#: The ``--frozen-coplayer`` source of the Bayesian in-context learner (``reference``).
BAYES = "bayes"


@dataclasses.dataclass(frozen=True)
class Source:
    """``RUN_DIR[:LEARNER]``: a run folder and, optionally, one learner in it; or, with
    ``builtin="bayes"`` (``Source.parse("bayes")``), the Bayesian in-context learner."""

    run_dir: Path
    learner: int | None = None
    builtin: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        if str(text) == BAYES:
            return cls(Path(BAYES), builtin=BAYES)
        head, sep, tail = str(text).rpartition(":")
        if sep and tail.isdigit():
            return cls(Path(head), int(tail))
        return cls(Path(text))

    def __str__(self) -> str:
        if self.builtin is not None:
            return self.builtin
        return f"{self.run_dir}" + ("" if self.learner is None else f":{self.learner}")


class Loaded(NamedTuple):
    """A source's config, its parameters ``[S, N, ...]`` (numpy) and the checkpoint's iteration."""

    config: Config
    params: Any
    iteration: int
    checkpoint: Path


def load(run_dir: Path, step: int | None = None) -> Loaded:
    """The parameters of every seed and learner of a run's newest (or ``step``) checkpoint."""
    from jaxcoop import checkpoints  # orbax, imported when a run is read, not by ``import jaxcoop``

    config, _ = read_config(run_dir)
    ckpt = checkpoints.restore(run_dir, step)
    return Loaded(config, ckpt.params, int(ckpt.meta["iteration"]), ckpt.path)


def _check_index(name: str, index: int, size: int, run_dir: Path) -> None:
    if not 0 <= index < size:
        raise RunFolderError(f"{name} {index} is not in {run_dir}: it has {name}s 0..{size - 1}")


class TrainedAgent:
    """One learner of one seed of a trained run, as a policy.

    ``initial_state(num_episodes)`` / ``step(state, RoundInput [E])`` make it a policy for
    ``jaxcoop.play`` (which plays its ``game`` by default and refuses, for a transformer, a
    longer one: ``max_rounds``); ``cooperate_probability(my_moves, their_moves)`` answers one
    round at a time for external tools, for histories shorter than its trained horizon.

    Attributes: ``agent`` (module), ``params`` (unstacked), ``config`` (the run's), ``game``
    (the game it was trained on), ``max_rounds`` (the longest game it can play, ``None``: any),
    ``run_dir``, ``learner``, ``seed``, ``iteration`` (of the checkpoint). An agent trained with
    the opponent-ID ablation gets an all-zero identity vector, as it did against learners.
    """

    def __init__(self, agent, params, config, run_dir, learner, seed, iteration):
        self.agent, self.params, self.config = agent, params, config
        self.run_dir, self.learner, self.seed, self.iteration = run_dir, learner, seed, iteration
        self.game = environment.make_game(config.game, config.horizon)
        self.policy: Policy = agent_policy(agent, params, game=self.game)
        self.max_rounds = self.policy.max_rounds

    def __repr__(self) -> str:
        return (
            f"TrainedAgent({self.run_dir}, learner={self.learner}, seed={self.seed}, "
            f"iteration={self.iteration}, {self.config.backbone} {self.config.hidden_dim})"
        )

    def initial_state(self, num_episodes: int) -> Any:
        return self.policy.initial_state(num_episodes)

    def step(self, state: Any, x: RoundInput) -> tuple[Any, jax.Array]:
        return self.policy.step(state, x)

    @functools.cached_property
    def _probabilities(self):
        """Jitted ``f(my [T], their [T]) -> P(C) [T]``: the probability of cooperating in every
        round of a ``T``-round history, each from the moves before it (teacher forcing)."""
        payoffs = self.game.payoffs

        def probabilities(my_T, their_T):
            after_Tx1 = environment.first_person_states(jnp.stack([my_T, their_T], -1))[:, :1]
            reward_Tx1 = payoffs[my_T, their_T, 0][:, None]
            x = history_inputs(states_before(after_Tx1), my_T[:, None], reward_Tx1)
            z = jnp.zeros((1, strategies.OPPONENT_ID_SIZE))
            logits_Tx1x2, _ = self.agent.apply(self.params, x, z)
            return jax.nn.softmax(logits_Tx1x2[:, 0])[:, C]

        return jax.jit(probabilities)

    def cooperate_probabilities(self, my_moves, their_moves) -> np.ndarray:
        """P(C) in every round up to the next one, ``[t + 1]`` for ``t`` moves so far: entry ``k``
        is the probability of cooperating in round ``k + 1`` given the first ``k`` moves."""
        my, their = _moves(my_moves, "my_moves"), _moves(their_moves, "their_moves")
        if len(my) != len(their):
            raise ValueError(
                f"my_moves has {len(my)} moves and their_moves {len(their)}; they must be equal"
            )
        horizon = self.config.horizon
        if len(my) >= horizon:
            raise ValueError(
                f"{len(my)} moves were played; this agent was trained on {horizon}-round "
                f"episodes, so it answers for histories of 0..{horizon - 1} moves"
            )
        pad = np.zeros(horizon, np.int32)
        my_T, their_T = pad.copy(), pad.copy()
        my_T[: len(my)], their_T[: len(their)] = my, their
        return np.asarray(self._probabilities(my_T, their_T))[: len(my) + 1]

    def cooperate_probability(self, my_moves, their_moves) -> float:
        """The probability of cooperating next, after the moves so far (sequences of ``"C"`` /
        ``"D"`` or ``0`` / ``1``, the agent's own first; a string such as ``"CCD"`` works)."""
        return float(self.cooperate_probabilities(my_moves, their_moves)[-1])


def _moves(moves, name: str) -> np.ndarray:
    """Moves as int32 codes (C = 0, D = 1) from ``"C"``/``"D"`` (any case) or ``0``/``1``."""
    out = []
    for i, move in enumerate(moves):
        if isinstance(move, str) and move.upper() in ("C", "D"):
            out.append(0 if move.upper() == "C" else 1)
        elif isinstance(move, (int, np.integer)) and int(move) in (0, 1):
            out.append(int(move))
        else:
            raise ValueError(f"{name}[{i}] = {move!r} is not a move; allowed: 'C', 'D', 0, 1")
    return np.asarray(out, np.int32)


def load_agent(
    run_dir: str | Path, learner: int = 0, seed: int = 0, step: int | None = None
) -> TrainedAgent:
    """Learner ``learner`` of seed ``seed`` from the newest (or ``step``) checkpoint of a run."""
    run_dir = Path(run_dir)
    loaded = load(run_dir, step)
    config = loaded.config
    if config.algo == "ppi":
        raise RunFolderError(
            f"{run_dir} is a PPI run: load_agent gives A2C / PPO agents; play a PPI learner "
            "with jaxcoop.evaluation.Player(jaxcoop.algorithms.ppi.make_planner(config), params)"
        )
    _check_index("learner", learner, config.num_learners, run_dir)
    _check_index("seed", seed, config.num_seeds, run_dir)
    params = jax.tree.map(lambda x: jnp.asarray(x[seed, learner]), loaded.params)
    return TrainedAgent(
        make_agent(config), params, config, run_dir, learner, seed, loaded.iteration
    )


# --- Warm starts. -------------------------------------------------------------------------------


class WarmStart(NamedTuple):
    """What a new run takes from other runs.

    params: the learners' initial parameters ``[S, N, ...]`` (numpy) or ``None``.
    coplayer: the frozen co-player (an ``Agent``, or a ``ppi.Planner`` for a PPI source) or
      ``None``; coplayer_params: its ``[S, ...]``.
    record: what ``config.json`` keeps about both (``{}`` when neither is used).
    data: for PPI learners, the episodes that replace D0 ``[S, N, P, T, 2]`` (int8 numpy: each
      source learner's newest ``ppi_pretrain_episodes``; a PPI model is re-initialized every
      phase, so its data, not its parameters, is what it starts from) or ``None``.
    """

    params: Any = None
    coplayer: Any = None
    coplayer_params: Any = None
    record: dict = {}
    data: Any = None


def _seed_index(source: Source, source_seeds: int, seeds: int) -> np.ndarray:
    """Which source seed each of the run's seeds takes: the same one, or the only one."""
    if source_seeds == seeds:
        return np.arange(seeds)
    if source_seeds == 1:
        return np.zeros(seeds, int)
    raise RunFolderError(
        f"{source.run_dir} has {source_seeds} seeds and this run {seeds}: seeds are matched one "
        "to one, or a single-seed source is shared; change --num-seeds"
    )


#: What a frozen PPI co-player plans with, kept in its ``config.json`` record.
PLANNER_FIELDS = ("ppi_rollouts", "ppi_depth", "ppi_beta", "gamma")


def _agent_record(source: Source, loaded: Loaded, learner: int) -> dict:
    record = {
        "run": str(source.run_dir),
        "learner": learner,
        "iteration": loaded.iteration,
        "checkpoint": str(loaded.checkpoint),
        "agent": {name: getattr(loaded.config, name) for name in AGENT_FIELDS},
        "game": loaded.config.game,
        "algo": loaded.config.algo,
    }
    if loaded.config.algo == "ppi":
        record["planner"] = {name: getattr(loaded.config, name) for name in PLANNER_FIELDS}
    return record


def _bayes_record(config: Config) -> dict:
    game = environment.make_game(config.game, config.horizon)
    agent = reference.make_bayesian_agent(game)
    return {
        "run": BAYES,
        "algo": BAYES,
        "agent": {"horizon": agent.horizon, "payoffs": list(agent.payoffs)},
        "game": config.game,
    }


def coplayer_agent(record: dict) -> Any:
    """The frozen co-player from its ``config.json`` record: its ``Agent``, for a PPI
    source its ``ppi.Planner`` (the improved policy of its model), for ``bayes`` the
    ``reference.BayesianAgent``."""
    if record.get("algo") == BAYES:
        agent = record["agent"]
        return reference.BayesianAgent(horizon=agent["horizon"], payoffs=tuple(agent["payoffs"]))
    if record.get("algo") != "ppi":
        return Agent(**record["agent"])
    p = record["planner"]
    model = ppi.WorldModel(**record["agent"])
    horizon = record["agent"]["horizon"]
    return ppi.Planner(model, horizon, p["ppi_rollouts"], p["ppi_depth"], p["ppi_beta"], p["gamma"])


def frozen_coplayer(record: dict) -> Any:
    """The frozen co-player of a run from its ``config.json`` record, or ``None``."""
    frozen = record.get("warm_start", {}).get("frozen_coplayer")
    return None if frozen is None else coplayer_agent(frozen)


def state_shapes(config: Config, trainer: Any) -> Any:
    """The seed-stacked ``TrainState`` of a run, as shapes (``jax.eval_shape``)."""
    keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
    return jax.eval_shape(jax.vmap(trainer.init), keys)


def restore_state(run_dir: Path, step: int, config: Config, coplayer: Any = None) -> Checkpoint:
    """The checkpoint at ``step`` of a run of ``config`` (frozen ``coplayer``, if any) with its
    whole ``TrainState``. A PPI dataset comes back as saved, sized for the ``num_iterations``
    the run had then (a resumed run may have been given more: ``ppi.resize_dataset``)."""
    from jaxcoop import checkpoints  # orbax, imported when a run is read, not by ``import jaxcoop``

    if config.algo == "ppi":
        saved = checkpoints.restore(run_dir, step).meta["config"]["num_iterations"]
        config = config.replace(num_iterations=saved)
    trainer = make_trainer(config, coplayer)
    return checkpoints.restore(run_dir, step, state_shapes(config, trainer))


def newest_episodes(run_dir: Path, loaded: Loaded, count: int) -> np.ndarray:
    """The newest ``count`` episodes in every seed's and learner's dataset of a PPI run, int8
    ``[S, N, count, T, 2]`` (its checkpoint at ``loaded.iteration``)."""
    config, record = read_config(run_dir)
    ckpt = restore_state(run_dir, int(loaded.checkpoint.name), config, frozen_coplayer(record))
    filled = int(ppi.dataset_count(config, loaded.iteration))
    if filled < count:
        raise RunFolderError(
            f"--init-from {run_dir}: its learners have {filled} episodes and this run's "
            f"ppi_pretrain_episodes={count} wants that many; lower --ppi-pretrain-episodes"
        )
    return np.asarray(ckpt.state.learner_state.actions[:, :, filled - count : filled])


def resolve_warm_start(
    config: Config, init_from: Sequence[Source] = (), frozen: Source | None = None
) -> WarmStart:
    """Load ``--init-from`` and ``--frozen-coplayer`` sources for a run of ``config``.

    ``init_from``: one source for all learners or one per learner; without ``:LEARNER`` learner
    ``n`` starts from the source's learner ``n`` (or its only one). Seeds match one to one, or a
    single-seed source is shared by all seeds. Architectures must agree (``AGENT_FIELDS``).
    ``frozen``: one learner (default 0) held fixed as every learner's non-tabular co-player,
    or ``bayes``: the Bayesian in-context learner planning for this run's game and horizon
    (it has no parameters; ``WarmStart.coplayer_params`` stays ``None``).
    Raises ``RunFolderError`` / ``ValueError`` naming what does not fit, before any compilation.
    PPI learners start from their sources' newest data instead of their parameters
    (``WarmStart.data``); a PPI source must warm-start PPI learners, and a frozen PPI
    co-player (it plans) plays PPI learners only.
    """
    n, seeds = config.num_learners, config.num_seeds
    if any(source.builtin is not None for source in init_from):
        raise ValueError(
            f"--init-from {BAYES}: the Bayesian learner has no parameters to start from; it can "
            "only be the frozen co-player (--frozen-coplayer bayes)"
        )
    if len(init_from) not in (0, 1, n):
        raise ValueError(
            f"--init-from was given {len(init_from)} times; give it once (all learners) or "
            f"once per learner ({n})"
        )
    if frozen is not None and config.num_learner_episodes == 0:
        raise ValueError(
            "--frozen-coplayer needs episodes to play against it: p_tabular=1.0 leaves none; "
            "lower --p-tabular"
        )
    cache: dict[Path, Loaded] = {}

    def get(source: Source) -> Loaded:
        if source.run_dir not in cache:
            cache[source.run_dir] = load(source.run_dir)
        return cache[source.run_dir]

    records_, per_learner = [], []
    episodes: dict[Path, np.ndarray] = {}  # PPI sources' newest data
    for i in range(n):
        if not init_from:
            break
        source = init_from[i] if len(init_from) == n else init_from[0]
        loaded = get(source)
        ppi_run = config.algo == "ppi"
        if ppi_run != (loaded.config.algo == "ppi"):
            raise RunFolderError(
                f"--init-from {source}: it is an algo={loaded.config.algo!r} run and this run "
                f"algo={config.algo!r}; PPI learners start from PPI runs' data, A2C / PPO "
                "learners from A2C / PPO runs' parameters"
            )
        fields = ("game", "horizon") if ppi_run else agent_fields(config.backbone)
        for name in fields:
            mine, theirs = getattr(config, name), getattr(loaded.config, name)
            if mine != theirs:
                what = "episodes" if ppi_run else "parameters"
                raise RunFolderError(
                    f"--init-from {source}: it has {name}={theirs!r} and this run "
                    f"{name}={mine!r}; its {what} cannot be used"
                )
        if source.learner is not None:
            learner = source.learner
        else:
            learner = i if loaded.config.num_learners > i else 0
        _check_index("learner", learner, loaded.config.num_learners, source.run_dir)
        index = _seed_index(source, loaded.config.num_seeds, seeds)
        if ppi_run:
            if source.run_dir not in episodes:
                count = config.ppi_pretrain_episodes
                episodes[source.run_dir] = newest_episodes(source.run_dir, loaded, count)
            per_learner.append(episodes[source.run_dir][index, learner])
        else:
            per_learner.append(
                jax.tree.map(lambda x, ix=index, ln=learner: x[ix, ln], loaded.params)
            )
        if len(init_from) == n or i == 0:
            records_.append(_agent_record(source, loaded, learner))
    params = data = None
    if per_learner and config.algo == "ppi":
        data = np.stack(per_learner, axis=1)
    elif per_learner:
        params = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *per_learner)

    coplayer = coplayer_params = None
    record: dict = {}
    if records_:
        record["init_from"] = records_
    if frozen is not None and frozen.builtin == BAYES:
        record["frozen_coplayer"] = _bayes_record(config)
        coplayer = coplayer_agent(record["frozen_coplayer"])
    elif frozen is not None:
        loaded = get(frozen)
        learner = 0 if frozen.learner is None else frozen.learner
        _check_index("learner", learner, loaded.config.num_learners, frozen.run_dir)
        if loaded.config.game != config.game:
            raise RunFolderError(
                f"--frozen-coplayer {frozen} was trained on game={loaded.config.game!r}; this run "
                f"plays game={config.game!r}"
            )
        if loaded.config.algo == "ppi" and config.algo != "ppi":
            raise RunFolderError(
                f"--frozen-coplayer {frozen} is a PPI agent (it plans inside its model): it can "
                f"be the frozen co-player of PPI learners only; this run is algo={config.algo!r}"
            )
        if loaded.config.algo == "ppi" and loaded.config.horizon != config.horizon:
            raise RunFolderError(
                f"--frozen-coplayer {frozen} plans for horizon={loaded.config.horizon} and this "
                f"run plays horizon={config.horizon}"
            )
        index = _seed_index(frozen, loaded.config.num_seeds, seeds)
        coplayer_params = jax.tree.map(lambda x: x[index, learner], loaded.params)
        record["frozen_coplayer"] = _agent_record(frozen, loaded, learner)
        coplayer = coplayer_agent(record["frozen_coplayer"])
        limit = getattr(coplayer, "max_rounds", None)
        if limit is not None and limit < config.horizon:
            raise RunFolderError(
                f"--frozen-coplayer {frozen} was trained on {limit}-round episodes and can play "
                f"at most {limit} rounds (a transformer's positions); this run plays "
                f"horizon={config.horizon}"
            )
    return WarmStart(params, coplayer, coplayer_params, record, data)
