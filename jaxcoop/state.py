"""What a training run carries and reports, for every algorithm: ``TrainState``, ``Metrics`` and
the ``Trainer`` functions (``make_trainer`` builds them; ``records`` and ``checkpoints`` read and
write them without needing the training program)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import struct


@struct.dataclass
class TrainState:
    """Everything a run carries between iterations (learner axis ``[N]`` first where stacked).
    ``learner_state`` is what each learner's algorithm carries beside its parameters: the
    optimizer state for A2C / PPO, the dataset for PPI (``ppi.Dataset``; its model's optimizer
    starts afresh every phase)."""

    params: Any
    learner_state: Any
    key: jax.Array
    iteration: jax.Array
    coplayer_params: Any = None  # the frozen co-player's parameters (unstacked), if there is one


class PlayMetrics(NamedTuple):
    """How the learners played in one iteration, per learner (``[N]``; ``[I, N]`` after scanning,
    ``[S, I, N]`` over seeds). Rewards are raw game rewards per round; cooperation is the
    fraction of C actions. ``*_vs_tabular`` are NaN when there are no tabular episodes,
    ``*_vs_learner`` when there are no learner episodes, ``*frozen*`` when there is no frozen
    co-player. ``tabular_reward`` is the tabular co-players' own reward per round;
    ``frozen_reward`` / ``frozen_coop`` are the frozen co-player's reward and cooperation in its
    episodes against the learner."""

    reward_vs_learner: jax.Array
    coop_vs_learner: jax.Array
    reward_vs_tabular: jax.Array
    coop_vs_tabular: jax.Array
    tabular_reward: jax.Array
    reward_vs_frozen: jax.Array
    coop_vs_frozen: jax.Array
    frozen_reward: jax.Array
    frozen_coop: jax.Array


class Metrics(NamedTuple):
    """What one iteration reports, per learner (shapes as ``PlayMetrics``): how the learners
    played (``play``) and what their algorithm reports of its update (``learning``: its
    family's own NamedTuple, ``actor_critic.LearningMetrics`` or ``ppi.LearningMetrics``; every
    family's has ``loss`` and ``grad_norm``). ``as_dict`` flattens both, play first: the
    columns of ``metrics.csv``."""

    play: PlayMetrics
    learning: Any

    def as_dict(self) -> dict[str, Any]:
        return {**self.play._asdict(), **self.learning._asdict()}


class Trainer(NamedTuple):
    """Pure functions of one run: ``init(key)``, ``iteration(state)``, ``chunk(state)``."""

    init: Callable[[jax.Array], TrainState]
    iteration: Callable[[TrainState], tuple[TrainState, Metrics]]
    chunk: Callable[[TrainState], tuple[TrainState, Metrics]]
