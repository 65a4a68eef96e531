"""``make_train`` and ``make_trainer``: the public entry to training, for every algorithm, and
the registry of the algorithm families (``ALGORITHMS``; the families live in ``algorithms``).

One training iteration is a single traced function (each family builds its own);
``make_train`` scans it over all iterations, ``make_trainer`` exposes the pieces for a host
loop that runs it in compiled chunks (``runner``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh

from jaxcoop.algorithms import actor_critic, ppi
from jaxcoop.config import ALGOS, Config
from jaxcoop.networks import make_agent
from jaxcoop.state import Metrics, PlayMetrics, Trainer, TrainState


class Algorithm(NamedTuple):
    """What the run loop and the analysis need of an algorithm family.

    make_trainer(config, coplayer, mesh) -> ``state.Trainer``: the pure functions of a run
      (``coplayer``: a frozen co-player or ``None``; ``mesh``: ``sharding.make_mesh``'s, or
      ``None`` for one device).
    make_player(config) -> what acts for a trained learner in ``evaluation`` (an ``Agent``, or
      PPI's ``Planner``).
    resume(config, learner_state) -> the restored ``TrainState.learner_state`` fitted to
      ``config`` (PPI: a dataset with room for ``config.num_iterations`` phases).
    warm_start(learner_state, episodes) -> ``learner_state`` started from another run's
      episodes ``[..., P, T, 2]`` (PPI's D0); ``None`` where learners start from parameters.
    learning_metrics: the family's NamedTuple in ``Metrics.learning``.
    """

    make_trainer: Callable[[Config, Any, Any], Trainer]
    make_player: Callable[[Config], Any]
    resume: Callable[[Config, Any], Any]
    warm_start: Callable[[Any, Any], Any] | None
    learning_metrics: type


ACTOR_CRITIC = Algorithm(
    make_trainer=actor_critic.make_trainer,
    make_player=make_agent,
    resume=lambda config, learner_state: learner_state,
    warm_start=None,
    learning_metrics=actor_critic.LearningMetrics,
)

PPI = Algorithm(
    # PPI lays out seeds and learners over devices (``runner``), never one learner's episodes.
    make_trainer=lambda config, coplayer, mesh: ppi.make_trainer(config, coplayer),
    make_player=ppi.make_planner,
    resume=lambda config, data: ppi.resize_dataset(data, ppi.dataset_size(config)),
    warm_start=ppi.with_initial_data,
    learning_metrics=ppi.LearningMetrics,
)

#: ``config.algo`` -> the family that trains it (one entry per ``config.ALGOS``).
ALGORITHMS: dict[str, Algorithm] = {"a2c": ACTOR_CRITIC, "ppo": ACTOR_CRITIC, "ppi": PPI}
assert set(ALGORITHMS) == set(ALGOS), "every config.algo needs its family here"


def algorithm(algo: str) -> Algorithm:
    """The family that trains ``algo`` (one of ``config.ALGOS``)."""
    try:
        return ALGORITHMS[algo]
    except KeyError:
        raise ValueError(f"algo={algo!r}: choose one of {', '.join(ALGORITHMS)}") from None


def metric_names(config: Config) -> list[str]:
    """The names of a run's metrics, in ``Metrics.as_dict`` order (the columns of
    ``metrics.csv``): the play metrics, then the algorithm's own."""
    return [*PlayMetrics._fields, *algorithm(config.algo).learning_metrics._fields]


def make_player(config: Config) -> Any:
    """What acts for a trained learner of ``config`` in ``evaluation``: its ``Agent``, or for
    PPI the ``ppi.Planner`` (the improved policy of its model)."""
    return algorithm(config.algo).make_player(config)


def make_trainer(config: Config, coplayer: Any = None, mesh: Mesh | None = None) -> Trainer:
    """The pure functions of a run described by ``config`` (see ``state.Trainer``), from the
    family of ``config.algo`` (for PPI an iteration is a phase).

    ``mesh`` (``sharding.make_mesh``) splits learners and, for A2C / PPO, their episodes over
    devices; it changes where the work runs, not the numbers (up to the order of floating-point
    sums).

    With a frozen ``coplayer`` (an ``Agent``, or a ``ppi.Planner``), each learner plays its
    ``config.num_learner_episodes`` against it instead of against the other learners; its
    parameters live in ``TrainState.coplayer_params`` (``init`` fills them with a random
    initialization: replace them with trained ones, e.g. ``state.replace(coplayer_params=...)``).
    """
    return algorithm(config.algo).make_trainer(config, coplayer, mesh)


def make_train(config: Config) -> Callable[[jax.Array], tuple[TrainState, Metrics]]:
    """``train(key) -> (final_state, metrics)``: the whole run as one pure function.

    ``jax.jit(train)(key)`` runs it. Metrics are ``[num_iterations, num_learners]``
    (``Metrics``). With ``config.num_seeds > 1`` the seeds are ``vmap``ped: every leaf gains a
    leading ``[num_seeds]`` axis, and the seeds' keys are ``jax.random.split(key, num_seeds)``,
    as ``runner.run`` splits ``jax.random.key(config.seed)``.
    """
    trainer = make_trainer(config)

    def one_seed(key: jax.Array) -> tuple[TrainState, Metrics]:
        state = trainer.init(key)
        return jax.lax.scan(
            lambda s, _: trainer.iteration(s), state, None, length=config.num_iterations
        )

    if config.num_seeds == 1:
        return one_seed

    def train(key: jax.Array) -> tuple[TrainState, Metrics]:
        return jax.vmap(one_seed)(jax.random.split(key, config.num_seeds))

    return train
