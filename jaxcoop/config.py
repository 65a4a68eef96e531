"""The frozen, typed configuration of a training run and its validation (the named presets:
``jaxcoop.presets``).

A ``Config`` holds what determines a run's numbers: the traced program (game, pool, agent,
algorithm, sizes), the seed and the run's length. When the host loop saves checkpoints and how
many it keeps is a ``CheckpointSchedule`` beside it (``runner.run(config, ...,
checkpointing=...)``; ``--checkpoint-every``, ``--keep-checkpoints``): it never changes the
numbers, so it is free to differ on ``--resume``. Where a run logs and which devices it runs on
are arguments of the host loop too.

Every field is validated when a ``Config`` is built (``Config(...)`` or ``config.replace(...)``),
so an impossible run stops with one message naming the field before anything is traced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from jaxcoop import strategies
from jaxcoop.environment import GAMES
from jaxcoop.networks import BACKBONES
from jaxcoop.strategies import POOLS

ALGOS = ("a2c", "ppo", "ppi")


@dataclass(frozen=True)
class Config:
    """One training run. Defaults are the paper's mixed pool with A2C (Table 2)."""

    # Game.
    game: str = "ipd"
    horizon: int = 100
    # Population and co-player pool.
    num_learners: int = 2
    num_episodes: int = 4096  # episodes per learner per update
    p_tabular: float = 0.5  # fraction of each learner's episodes against fresh tabular co-players
    pool: str = "uniform"  # tabular co-players: strategies.POOLS or axelrod:<Class> (paper: U(0,1))
    opponent_id: bool = False  # ablation: prepend the co-player's 10-number identity vector
    # Agent.
    backbone: str = "gru"  # "gru" (the paper's) or "transformer"
    embed_dim: int = 32
    hidden_dim: int = 128  # GRU state size; transformer width
    num_layers: int = 2  # transformer only
    num_heads: int = 4  # transformer only
    # Learning.
    algo: str = "a2c"
    lr: float = 1e-3
    adam_eps: float = 1e-5
    max_grad_norm: float = 1.0
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    reward_scale: float = 0.02
    normalize_advantages: bool = True
    ppo_epochs: int = 4
    ppo_minibatches: int = 4
    clip_eps: float = 0.2
    # PPI (algo="ppi"; jaxcoop/algorithms/ppi/): an iteration is a phase, num_episodes are
    # collected per learner per phase, lr / max_grad_norm / gamma are the model's AdamW and the
    # planner's discount.
    ppi_epochs: int = 10  # passes over all data so far when training the model each phase
    ppi_batch_size: int = 256  # episodes per model minibatch
    ppi_weight_decay: float = 1e-2  # AdamW (beta1 0.9, beta2 0.98)
    ppi_pretrain_episodes: int = 200_000  # D0: episodes of two random tabular agents
    ppi_rollouts: int = 8  # Monte-Carlo rollouts per action in the model
    ppi_depth: int = 15  # rounds per rollout
    # pi(a|x) ~ p(a|x) exp(beta Q(x, a)), raw rewards. 1.0 from the cpu beta study
    # (docs/ppi-cpu-gru/README.md, "β, phases, pool"): the paper's printed 0.01 leaves the
    # prior unchanged; 1-10 act alike.
    ppi_beta: float = 1.0
    # Own actions of only the last W phases' episodes train the prior (D0's before the first
    # phase); the model's other heads learn from all data. 0: all data (the paper's).
    ppi_prior_window: int = 0
    # Each phase's episodes are played in this many sequential pieces per co-player kind (one
    # lax.map), so the planner's per-rollout state is held for one piece at a time: the memory
    # knob for paper-scale transformer PPI (docs/usage.md). 1: all at once. Changes the random
    # numbers.
    ppi_collect_chunks: int = 1
    # Schedule.
    num_iterations: int = 200_000
    chunk_iterations: int = 500  # iterations per compiled chunk; the host logs between chunks
    num_seeds: int = 1
    seed: int = 0

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` applied (validated)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; allowed: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # Derived sizes.
    @property
    def num_tabular_episodes(self) -> int:
        """Episodes per learner per update against tabular co-players."""
        return round(self.p_tabular * self.num_episodes)

    @property
    def num_learner_episodes(self) -> int:
        """Episodes per learner per update against other learners (always even)."""
        return self.num_episodes - self.num_tabular_episodes

    @property
    def num_pair_slots(self) -> int:
        """Random learner pairings per update; each gives every learner 2 learner episodes."""
        return self.num_learner_episodes // 2

    @property
    def agent_steps_per_iteration(self) -> int:
        """Actions taken by learning agents in one update (all learners)."""
        return self.num_learners * self.num_episodes * self.horizon


#: The one field a resumed run may change: it may be made longer (or shorter, down to its
#: newest checkpoint). PPI's dataset is sized by it and is resized on resume.
RESUMABLE_FIELDS = ("num_iterations",)


def field_names() -> list[str]:
    return [f.name for f in fields(Config)]


def differences(a: Config, b: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """Fields outside ``ignore`` whose values differ, as ``"name: a -> b"``."""
    return [
        f"{name}: {getattr(a, name)!r} -> {getattr(b, name)!r}"
        for name in field_names()
        if name not in ignore and getattr(a, name) != getattr(b, name)
    ]


#: Seconds of training between checkpoints when ``CheckpointSchedule.every`` is not given.
DEFAULT_INTERVAL_SECONDS = 300.0


@dataclass(frozen=True)
class CheckpointSchedule:
    """When a run saves checkpoints; the last chunk is always saved.

    every: iterations between checkpoints, a multiple of ``chunk_iterations`` (0: after every
      chunk); ``None`` (default): after the first chunk that ends ``DEFAULT_INTERVAL_SECONDS``
      or more after the previous save, so that a run of any speed loses at most about five
      minutes of training to a crash without writing its growing metrics history every chunk.
    keep: the newest checkpoints kept; older ones are deleted.
    """

    every: int | None = None
    keep: int = 3

    def __post_init__(self):
        bad = isinstance(self.every, bool) or not isinstance(self.every, int)
        if self.every is not None and (bad or self.every < 0):
            raise ValueError(f"checkpoint_every={self.every!r}; allowed: an integer >= 0")
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 1:
            raise ValueError(f"keep_checkpoints={self.keep!r}; allowed: an integer >= 1")

    def check(self, chunk_iterations: int) -> None:
        """Raise ``ValueError`` unless ``every`` falls on chunk ends."""
        if self.every and self.every % chunk_iterations:
            raise ValueError(
                f"checkpoint_every={self.every} is not a multiple of chunk_iterations="
                f"{chunk_iterations} (checkpoints are written between chunks); allowed: 0 (every "
                "chunk) or a multiple of it"
            )

    def due(self, end: int, last: int, seconds_since_save: float) -> bool:
        """Whether to save after the chunk ending at iteration ``end`` of ``last``."""
        if end == last:
            return True
        if self.every is None:
            return seconds_since_save >= DEFAULT_INTERVAL_SECONDS
        return self.every == 0 or end % self.every == 0


#: The schedule of a run that does not choose one.
DEFAULT_CHECKPOINTING = CheckpointSchedule()


def _require(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"config field {name}={value!r} is invalid; allowed: {allowed}")


_POOLS_ALLOWED = f"{list(POOLS)} or axelrod:<a memory-one class of the Axelrod library>"


def _is_axelrod_strategy(pool: str) -> bool:
    """Whether ``pool`` is ``axelrod:<Class>`` of a memory-one strategy (Axelrod installed)."""
    if not pool.startswith(strategies.AXELROD_PREFIX):
        return False
    try:
        strategies.named(pool)
    except (ImportError, ValueError) as e:
        raise ValueError(f"config field pool={pool!r} is invalid: {e}") from e
    return True


def validate(c: Config) -> None:
    """Raise ``ValueError`` naming the first field that cannot work."""
    for f in fields(c):
        value = getattr(c, f.name)
        expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[f.type]
        is_bool = isinstance(value, bool)
        ok = isinstance(value, expected) and (f.type == "bool" or not is_bool)
        _require(ok, f.name, value, f"a value of type {f.type}")
    _require(c.game in GAMES, "game", c.game, str(sorted(GAMES)))
    _require(c.pool in POOLS or _is_axelrod_strategy(c.pool), "pool", c.pool, _POOLS_ALLOWED)
    _require(c.algo in ALGOS, "algo", c.algo, str(list(ALGOS)))
    _require(c.backbone in BACKBONES, "backbone", c.backbone, str(sorted(BACKBONES)))
    for name in (
        "horizon",
        "num_learners",
        "num_episodes",
        "embed_dim",
        "hidden_dim",
        "num_layers",
        "num_heads",
        "ppo_epochs",
        "ppo_minibatches",
        "ppi_epochs",
        "ppi_batch_size",
        "ppi_pretrain_episodes",
        "ppi_rollouts",
        "ppi_depth",
        "ppi_collect_chunks",
        "num_iterations",
        "chunk_iterations",
        "num_seeds",
    ):
        _require(getattr(c, name) >= 1, name, getattr(c, name), "an integer >= 1")
    for name in ("lr", "adam_eps", "max_grad_norm", "reward_scale", "clip_eps"):
        _require(getattr(c, name) > 0, name, getattr(c, name), "a number > 0")
    for name in ("gamma", "gae_lambda", "p_tabular"):
        _require(0.0 <= getattr(c, name) <= 1.0, name, getattr(c, name), "a number in [0, 1]")
    for name in ("ent_coef", "vf_coef", "ppi_weight_decay", "ppi_beta"):
        _require(getattr(c, name) >= 0, name, getattr(c, name), "a number >= 0")
    for name in ("seed", "ppi_prior_window"):
        _require(getattr(c, name) >= 0, name, getattr(c, name), "an integer >= 0")
    _require(
        c.num_learner_episodes % 2 == 0,
        "num_episodes",
        c.num_episodes,
        f"a value whose learner share num_episodes * (1 - p_tabular) = "
        f"{c.num_learner_episodes} is even (each learner pairing yields two episodes)",
    )
    if c.backbone == "transformer":
        _require(
            c.hidden_dim % c.num_heads == 0,
            "num_heads",
            c.num_heads,
            f"a divisor of hidden_dim={c.hidden_dim} (the transformer's width)",
        )
    if c.algo == "ppi":
        _require(
            c.num_tabular_episodes % c.ppi_collect_chunks == 0
            and c.num_pair_slots % c.ppi_collect_chunks == 0,
            "ppi_collect_chunks",
            c.ppi_collect_chunks,
            f"a divisor of both the tabular episodes (num_tabular_episodes="
            f"{c.num_tabular_episodes}) and the learner pairs (num_pair_slots={c.num_pair_slots}) "
            f"a phase plays",
        )
    if c.algo == "ppo":
        _require(
            c.num_episodes % c.ppo_minibatches == 0,
            "ppo_minibatches",
            c.ppo_minibatches,
            f"a divisor of num_episodes={c.num_episodes}",
        )
    _require(
        c.num_iterations % c.chunk_iterations == 0,
        "chunk_iterations",
        c.chunk_iterations,
        f"a divisor of num_iterations={c.num_iterations} (every chunk has one compiled length)",
    )
