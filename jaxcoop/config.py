"""The frozen, typed configuration of a training run, its validation, and the named presets.

Every field is validated when a ``Config`` is built (``Config(...)`` or ``config.replace(...)``),
so an impossible run stops with one message naming the field before anything is traced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
    # Checkpoints (do not change the training program: may differ on --resume).
    # iterations between checkpoints (a multiple of chunk_iterations); 0: after every chunk
    checkpoint_every: int = 0
    keep_checkpoints: int = 3  # newest checkpoints kept; older ones are deleted

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


#: Fields that may differ when a run is resumed: they do not change the training program.
RESUMABLE_FIELDS = ("num_iterations", "checkpoint_every", "keep_checkpoints")


def field_names() -> list[str]:
    return [f.name for f in fields(Config)]


def program_differences(a: Config, b: Config) -> list[str]:
    """Fields outside ``RESUMABLE_FIELDS`` whose values differ (``"name: a -> b"``)."""
    return [
        f"{name}: {getattr(a, name)!r} -> {getattr(b, name)!r}"
        for name in field_names()
        if name not in RESUMABLE_FIELDS and getattr(a, name) != getattr(b, name)
    ]


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
    _require(c.keep_checkpoints >= 1, "keep_checkpoints", c.keep_checkpoints, "an integer >= 1")
    _require(
        c.checkpoint_every >= 0 and c.checkpoint_every % c.chunk_iterations == 0,
        "checkpoint_every",
        c.checkpoint_every,
        f"0 (every chunk) or a multiple of chunk_iterations={c.chunk_iterations}",
    )
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


# --- Presets: the paper's settings (Table 2) and scaled-down ones. -----------------------------


def mixed_pool() -> Config:
    """Fig. 1: two learners, half their episodes against fresh tabular co-players."""
    return Config()


def opponent_id() -> Config:
    """Fig. 1 ablation: the co-player's identity is handed to the agent."""
    return mixed_pool().replace(opponent_id=True)


def no_tabular() -> Config:
    """Fig. 1 ablation: the learners only meet each other."""
    return mixed_pool().replace(p_tabular=0.0)


def step1_tabular() -> Config:
    """Fig. 2 step 1: one learner against the tabular pool only (in-context best response)."""
    return Config(
        num_learners=1,
        num_episodes=2048,
        p_tabular=1.0,
        reward_scale=0.2,
        gae_lambda=0.99,
        ent_coef=0.001,
        lr=5e-3,
        normalize_advantages=True,
        num_iterations=50_000,
    )


def step2_extort() -> Config:
    """Fig. 2 step 2: new agents against a frozen step-1 agent only (give ``--frozen-coplayer``).
    Two independent learners, so that step 3 has two different extortioners to start from."""
    return Config(
        num_learners=2,
        num_episodes=2048,
        p_tabular=0.0,
        reward_scale=0.05,
        gae_lambda=1.0,
        ent_coef=0.001,
        lr=5e-3,
        normalize_advantages=False,
        num_iterations=100_000,
    )


def step3_mutual() -> Config:
    """Fig. 2 step 3: two learners started from step-2 extortioners (``--init-from``) against
    each other."""
    return Config(
        num_learners=2,
        num_episodes=4096,
        p_tabular=0.0,
        reward_scale=0.02,
        gae_lambda=0.95,
        ent_coef=0.001,
        lr=5e-4,
        normalize_advantages=True,
        num_iterations=10_000,
    )


def cpu() -> Config:
    """The mixed pool scaled to a 2-core CPU (docs/cpu-preset.md): ``scaled("mixed-pool",
    "cpu")``."""
    return scaled("mixed-pool", "cpu")


def cpu_long() -> Config:
    """The mixed pool with the paper's pool at 100 rounds on a 2-core CPU, for hours
    (docs/paper-pool.md): ``scaled("mixed-pool", "cpu-long")``."""
    return scaled("mixed-pool", "cpu-long")


def tiny() -> Config:
    """Seconds end to end: tests and smoke checks (``scaled("mixed-pool", "tiny")``)."""
    return scaled("mixed-pool", "tiny")


PRESETS: dict[str, Callable[[], Config]] = {
    "mixed-pool": mixed_pool,
    "opponent-id": opponent_id,
    "no-tabular": no_tabular,
    "step1-tabular": step1_tabular,
    "step2-extort": step2_extort,
    "step3-mutual": step3_mutual,
    "cpu": cpu,
    "cpu-long": cpu_long,
    "tiny": tiny,
}


#: The scale of each preset below the paper's (``preset`` switches backbones at that scale).
PRESET_SCALES = {"cpu": "cpu", "cpu-long": "cpu-long", "tiny": "tiny"}
#: Presets at the paper's scale: the ones ``scaled`` resizes.
PAPER_PRESETS = tuple(name for name in PRESETS if name not in PRESET_SCALES)
SCALES = ("paper", "cpu", "cpu-long", "tiny")
#: Scales that take their backbone and algorithm defaults from another scale.
_DEFAULTS_OF = {"cpu-long": "cpu"}

#: What a scale changes in a paper preset (``scaled``): ``"*"`` for every preset, then per
#: preset. The cpu scale is the ``cpu`` preset found by ``python -m experiments.cpu_search``
#: (docs/cpu-preset.md, "The cpu preset"): 20-round episodes, a 32-unit GRU, 128 episodes per
#: update, 3 seeds, tabular co-players drawn from the named strategies (``pool="named"``: with
#: the paper's U(0, 1) pool no searched setting left mutual defection within a CPU budget);
#: its mixed pool (and the ablations, which change one thing each) also take 3/4 tabular
#: episodes, entropy 0.03 and reward rescaling 0.1. The other presets keep their Table 2
#: hyperparameters.
_CPU_MIXED = dict(p_tabular=0.75, ent_coef=0.03, reward_scale=0.1)
#: The cpu-long scale (docs/paper-pool.md): the paper's pool and horizon, a 32-unit GRU, runs of
#: hours. Step 1 is the step-1 ladder's setting (1,024 episodes, 96k updates); steps 2 and 3 are
#: the sizes of the step-2/3 runs against the Bayesian learner (512 episodes, 3 seeds). The mixed
#: pool and its ablations take the step-1 A2C settings (lr 5e-3, reward rescaling 0.2, GAE 0.99)
#: with 512 episodes per learner and entropy 0.03: with Fig. 1's own settings, and with entropy
#: 0.001 or 0.01, the learners collapsed to always-defect (policy entropy 2e-5 by 11,000
#: updates), while step 1's entropy stayed at 0.01-0.04 and it became an in-context learner.
_LONG_MIXED = dict(
    num_episodes=512,
    lr=5e-3,
    reward_scale=0.2,
    gae_lambda=0.99,
    ent_coef=0.03,
    num_iterations=96_000,
)
SCALE_CHANGES: dict[str, dict[str, dict]] = {
    "paper": {"*": dict(num_seeds=10)},
    "cpu": {
        "*": dict(
            horizon=20,
            hidden_dim=32,
            num_episodes=128,
            pool="named",
            num_seeds=3,
            num_iterations=20_000,
            chunk_iterations=500,
        ),
        "mixed-pool": _CPU_MIXED,
        "opponent-id": _CPU_MIXED,
        "no-tabular": {**_CPU_MIXED, "p_tabular": 0.0},
    },
    "cpu-long": {
        "*": dict(
            horizon=100,
            hidden_dim=32,
            pool="uniform",
            num_seeds=1,
            chunk_iterations=100,
            checkpoint_every=1000,
        ),
        "mixed-pool": _LONG_MIXED,
        "opponent-id": _LONG_MIXED,
        "no-tabular": {**_LONG_MIXED, "p_tabular": 0.0},
        "step1-tabular": dict(num_episodes=1024, num_iterations=96_000),
        "step2-extort": dict(
            num_episodes=512,
            num_seeds=3,
            num_iterations=2_000,
            chunk_iterations=50,
            checkpoint_every=500,
        ),
        "step3-mutual": dict(
            num_episodes=512, num_seeds=3, num_iterations=3_000, checkpoint_every=500
        ),
    },
    "tiny": {
        "*": dict(
            horizon=8,
            num_episodes=16,
            embed_dim=8,
            hidden_dim=16,
            lr=3e-3,
            num_iterations=6,
            chunk_iterations=3,
            ppo_minibatches=2,
            ppo_epochs=2,
        )
    },
}

#: Settings a backbone brings into a config that does not use it already, per scale
#: (explicit field overrides still win).
BACKBONE_DEFAULTS: dict[str, dict[str, dict]] = {
    "gru": {"paper": {}, "cpu": {}, "tiny": {}},
    "transformer": {
        "paper": dict(hidden_dim=64, num_layers=2, num_heads=4),
        "cpu": dict(hidden_dim=32, num_layers=2, num_heads=4),  # 2-core CPU budget
        "tiny": dict(hidden_dim=16, num_layers=1, num_heads=2),
    },
}


#: Settings PPI brings into a config of another algorithm, per scale (``algo="ppi"``; explicit
#: field overrides still win): an iteration is a phase (paper: 30 phases of 20,000 episodes per
#: learner, AdamW lr 1e-4, gradient clip 1.0; the other ``ppi_*`` defaults are the paper's).
#: The planner's discount ``gamma`` is 1 (undiscounted rollouts of ``ppi_depth`` rounds). The
#: cpu scale trains its model 40 epochs a phase, 4x the paper's 10: with 10 its 512-episode
#: phases leave the model unfit and step 3 of the mechanism defects
#: (docs/ppi-cpu-gru/README.md, "Fig. 2/4 with PPI").
ALGO_DEFAULTS: dict[str, dict[str, dict]] = {
    "ppi": {
        "paper": dict(
            lr=1e-4,
            max_grad_norm=1.0,
            gamma=1.0,
            num_episodes=20_000,
            num_iterations=30,
            chunk_iterations=1,
        ),
        "cpu": dict(
            lr=1e-3,
            max_grad_norm=1.0,
            gamma=1.0,
            num_episodes=512,
            num_iterations=12,
            chunk_iterations=1,
            ppi_pretrain_episodes=4096,
            ppi_epochs=40,
            ppi_batch_size=128,
            ppi_rollouts=4,
            ppi_depth=10,
        ),
        "tiny": dict(
            lr=3e-3,
            max_grad_norm=1.0,
            gamma=1.0,
            num_episodes=16,
            num_iterations=2,
            chunk_iterations=1,
            ppi_pretrain_episodes=64,
            ppi_batch_size=16,
            ppi_epochs=2,
            ppi_rollouts=2,
            ppi_depth=3,
        ),
    },
}


def _switch_algo(config: Config, algo: str | None, scale: str) -> Config:
    if algo is None or algo == config.algo:
        return config
    defaults = ALGO_DEFAULTS.get(algo, {}).get(_DEFAULTS_OF.get(scale, scale), {})
    return config.replace(algo=algo, **defaults)


def _switch_backbone(config: Config, backbone: str | None, scale: str) -> Config:
    if backbone is None or backbone == config.backbone:
        return config
    if backbone not in BACKBONE_DEFAULTS:
        raise ValueError(
            f"config field backbone={backbone!r} is invalid; allowed: {sorted(BACKBONES)}"
        )
    return config.replace(
        backbone=backbone, **BACKBONE_DEFAULTS[backbone][_DEFAULTS_OF.get(scale, scale)]
    )


def preset(name: str, backbone: str | None = None, algo: str | None = None) -> Config:
    """The named preset (``PRESETS``), switched to ``backbone`` with its ``BACKBONE_DEFAULTS``
    and to ``algo`` with its ``ALGO_DEFAULTS``."""
    if name not in PRESETS:
        raise ValueError(f"preset {name!r} is unknown; allowed: {sorted(PRESETS)}")
    scale = PRESET_SCALES.get(name, "paper")
    return _switch_algo(_switch_backbone(PRESETS[name](), backbone, scale), algo, scale)


def scaled(name: str, scale: str, backbone: str | None = None, algo: str | None = None) -> Config:
    """Paper preset ``name`` (``PAPER_PRESETS``) at ``scale`` (``SCALES``: ``SCALE_CHANGES``),
    switched to ``backbone`` and ``algo`` with their defaults at that scale."""
    if name not in PAPER_PRESETS:
        raise ValueError(f"preset {name!r} is not a paper preset; allowed: {list(PAPER_PRESETS)}")
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is unknown; allowed: {list(SCALES)}")
    changes = SCALE_CHANGES[scale]
    config = PRESETS[name]().replace(**{**changes["*"], **changes.get(name, {})})
    return _switch_algo(_switch_backbone(config, backbone, scale), algo, scale)
