"""Predictive Policy Improvement (PPI): one sequence model as world model and policy prior, and
the policy improved by Monte-Carlo planning inside it.

The model reads the agent's tokens (``networks.Agent``'s embedding and backbone: one token per
round from the first-person observation, own previous action and previous reward). From the
backbone's output ``y_t`` after round ``t``'s token it predicts, in the order the paper's tokens
come within a round:

* the agent's own action ``a_t`` (``prior``: the policy prior, categorical over C / D);
* given ``a_t`` (``next_obs``): the next observation ``o_{t+1}`` (categorical over the 5 states;
  it is the joint action ``(a_t, b_t)`` seen first-person, so it carries the co-player's move);
* given ``o_{t+1}`` (``reward``): the reward ``r_t`` (Gaussian with unit variance: its negative
  log-likelihood is ``(r_t - r̂_t)² / 2`` up to a constant).

The improved policy is ``π(a | x) ∝ p(a | x) · exp(β · Q̂(x, a))``. ``Q̂`` is the mean over
``K`` rollouts of ``H`` rounds inside the model, started from the backbone's carried state (the
GRU's hidden state, the transformer's key/value cache), never from the history again: the first
round plays ``a``, later rounds sample the agent's action from the prior; the co-player's move is
sampled from the predicted next observation restricted to the two states consistent with the
agent's own action, and the next token reads the model's predicted reward (the Gaussian's mean)
given that observation, as in real play; ``Q̂`` counts the predicted reward expected over the
co-player's move (the same mean as the sampled move's, with less variance). Rewards
after the episode's last round are not counted. All rollouts for all episodes of a batch are one
``vmap``ped ``scan``.
"""

from jaxcoop.algorithms.ppi.model import (
    Model,
    ModelLoss,
    Targets,
    WorldModel,
    init_model_params,
    make_model,
    model_loss,
    network_model,
    targets,
)
from jaxcoop.algorithms.ppi.planning import (
    Planner,
    PlannerState,
    against_tabular,
    consistent_pair,
    coplayer_policy,
    improved_logits,
    improved_policy,
    make_planner,
    q_values,
)
from jaxcoop.algorithms.ppi.train import (
    Dataset,
    LearningMetrics,
    dataset_count,
    dataset_size,
    make_optimizer,
    make_trainer,
    prior_start,
    resize_dataset,
    with_initial_data,
)

__all__ = [
    "Dataset",
    "LearningMetrics",
    "Model",
    "ModelLoss",
    "Planner",
    "PlannerState",
    "Targets",
    "WorldModel",
    "against_tabular",
    "consistent_pair",
    "coplayer_policy",
    "dataset_count",
    "dataset_size",
    "improved_logits",
    "improved_policy",
    "init_model_params",
    "make_model",
    "make_optimizer",
    "make_planner",
    "make_trainer",
    "model_loss",
    "network_model",
    "prior_start",
    "q_values",
    "resize_dataset",
    "targets",
    "with_initial_data",
]
