"""The actor-critic family: A2C and PPO on the agent's policy and value heads (``losses``: GAE
and both losses; ``train``: the fused iteration and its ``make_trainer``)."""

from jaxcoop.algorithms.actor_critic import losses
from jaxcoop.algorithms.actor_critic.train import (
    LearningMetrics,
    advantages_and_targets,
    algorithm_loss,
    apply_gradients,
    differentiates_rollout,
    make_optimizer,
    make_trainer,
    make_update,
)

__all__ = [
    "LearningMetrics",
    "advantages_and_targets",
    "algorithm_loss",
    "apply_gradients",
    "differentiates_rollout",
    "losses",
    "make_optimizer",
    "make_trainer",
    "make_update",
]
