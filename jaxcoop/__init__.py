"""jaxcoop: multi-agent cooperation through in-context co-player inference, fully jitted in JAX."""

from jaxcoop import environment, evaluation, strategies
from jaxcoop.config import Config
from jaxcoop.environment import Game, make_game
from jaxcoop.networks import Agent, RoundInput, make_agent
from jaxcoop.presets import PRESETS, preset
from jaxcoop.rollout import Episodes, Policy, Transition, agent_policy, play, tabular_policy
from jaxcoop.state import Metrics, TrainState
from jaxcoop.train import make_train, make_trainer
from jaxcoop.trained import TrainedAgent, load_agent

__all__ = [
    "PRESETS",
    "Agent",
    "Config",
    "Episodes",
    "Game",
    "Metrics",
    "Policy",
    "RoundInput",
    "TrainState",
    "TrainedAgent",
    "Transition",
    "agent_policy",
    "environment",
    "evaluation",
    "make_agent",
    "make_game",
    "make_train",
    "make_trainer",
    "load_agent",
    "play",
    "preset",
    "strategies",
    "tabular_policy",
]
