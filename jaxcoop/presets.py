"""The named presets: the paper's runs (Table 2) and the same runs at smaller scales.

Read top to bottom: the paper's presets are plain functions; a scale is a plain function of a
paper preset's name giving the fields it changes (``SCALE_CHANGES``, used by ``scaled``); a
backbone and an algorithm bring their own defaults at a scale (``backbone_defaults``,
``algo_defaults``), which touch disjoint fields, so the order they are applied in does not
matter (tested). ``preset(name)`` builds any entry of ``PRESETS``.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxcoop.config import Config

# --- The paper's presets (Table 2). ------------------------------------------------------------


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


PAPER: dict[str, Callable[[], Config]] = {
    "mixed-pool": mixed_pool,
    "opponent-id": opponent_id,
    "no-tabular": no_tabular,
    "step1-tabular": step1_tabular,
    "step2-extort": step2_extort,
    "step3-mutual": step3_mutual,
}
#: Presets at the paper's scale: the ones ``scaled`` resizes.
PAPER_PRESETS = tuple(PAPER)
#: Fig. 1's mixed pool and its two ablations.
FIG1 = ("mixed-pool", "opponent-id", "no-tabular")

# --- Scales: what each changes in a paper preset. ----------------------------------------------


def paper_scale(name: str) -> dict:
    """The paper's own sizes, with its 10 seeds."""
    return dict(num_seeds=10)


def cpu_scale(name: str) -> dict:
    """The ``cpu`` preset found by ``python -m experiments.cpu_search`` (docs/cpu-preset.md, "The
    cpu preset"): 20-round episodes, a 32-unit GRU, 128 episodes per update, 3 seeds, tabular
    co-players drawn from the named strategies (``pool="named"``: with the paper's U(0, 1) pool
    no searched setting left mutual defection within a CPU budget). Fig. 1's runs (which change
    one thing each) also take 3/4 tabular episodes (none without tabular co-players), entropy
    0.03 and reward rescaling 0.1; the other presets keep their Table 2 hyperparameters."""
    changes = dict(
        horizon=20,
        hidden_dim=32,
        num_episodes=128,
        pool="named",
        num_seeds=3,
        num_iterations=20_000,
        chunk_iterations=500,
    )
    if name in FIG1:
        p_tabular = 0.0 if name == "no-tabular" else 0.75
        changes.update(p_tabular=p_tabular, ent_coef=0.03, reward_scale=0.1)
    return changes


def cpu_long_scale(name: str) -> dict:
    """The paper's pool and horizon on a CPU, runs of hours (docs/paper-pool.md). Step 1 is the
    step-1 ladder's setting (GRU 32, 1,024 episodes, 96k updates); steps 2 and 3 are the sizes
    of the step-2/3 runs against the Bayesian learner (GRU 32, 512 episodes, 3 seeds). Fig. 1's
    runs take the step-1 A2C settings (lr 5e-3, reward rescaling 0.2, GAE 0.99) with 512
    episodes per learner and entropy 0.03: with Fig. 1's own settings, and with entropy 0.001 or
    0.01, the learners collapsed to always-defect (policy entropy 2e-5 by 11,000 updates), while
    step 1's entropy stayed at 0.01-0.04 and it became an in-context learner. Their GRU is 64
    wide and they run 24k updates: with GRU 64 the learners of 2 of 6 seeds came to cooperate
    with each other (at updates 5,840 and 12,800), with GRU 32 none in 60,000 updates."""
    changes = dict(
        horizon=100,
        hidden_dim=32,
        pool="uniform",
        num_seeds=1,
        chunk_iterations=100,
    )
    if name in FIG1:
        changes.update(
            hidden_dim=64,
            num_episodes=512,
            lr=5e-3,
            reward_scale=0.2,
            gae_lambda=0.99,
            ent_coef=0.03,
            num_iterations=24_000,
        )
        if name == "no-tabular":
            changes.update(p_tabular=0.0)
    elif name == "step1-tabular":
        changes.update(num_episodes=1024, num_iterations=96_000)
    elif name == "step2-extort":
        changes.update(
            num_episodes=512,
            num_seeds=3,
            num_iterations=2_000,
            chunk_iterations=50,
        )
    elif name == "step3-mutual":
        changes.update(num_episodes=512, num_seeds=3, num_iterations=3_000)
    return changes


def tiny_scale(name: str) -> dict:
    """Seconds end to end: tests and smoke checks."""
    return dict(
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


#: What each scale changes in a paper preset, by the preset's name.
SCALE_CHANGES: dict[str, Callable[[str], dict]] = {
    "paper": paper_scale,
    "cpu": cpu_scale,
    "cpu-long": cpu_long_scale,
    "tiny": tiny_scale,
}
SCALES = tuple(SCALE_CHANGES)

# --- What a backbone and an algorithm bring at a scale. ----------------------------------------


def backbone_defaults(backbone: str, scale: str) -> dict:
    """Settings ``backbone`` brings into a config that does not use it already (explicit field
    overrides still win). The transformer: width 64, 2 layers, 4 heads at the paper's scale;
    width 32 on a CPU (a 2-core budget); width 16, 1 layer, 2 heads at ``tiny``."""
    if backbone != "transformer":
        return {}
    if scale == "paper":
        return dict(hidden_dim=64, num_layers=2, num_heads=4)
    if scale in ("cpu", "cpu-long"):
        return dict(hidden_dim=32, num_layers=2, num_heads=4)
    return dict(hidden_dim=16, num_layers=1, num_heads=2)


def algo_defaults(algo: str, scale: str) -> dict:
    """Settings ``algo`` brings into a config of another algorithm (explicit field overrides
    still win); only PPI has any. An iteration is a phase (paper: 30 phases of 20,000 episodes
    per learner, AdamW lr 1e-4, gradient clip 1.0; the other ``ppi_*`` defaults are the
    paper's); the planner's discount ``gamma`` is 1 (undiscounted rollouts of ``ppi_depth``
    rounds). On a CPU the model trains 40 epochs a phase, 4x the paper's 10: with 10 its
    512-episode phases leave the model unfit and step 3 of the mechanism defects
    (docs/ppi-cpu-gru/README.md, "Fig. 2/4 with PPI")."""
    if algo != "ppi":
        return {}
    changes = dict(max_grad_norm=1.0, gamma=1.0, chunk_iterations=1)
    if scale == "paper":
        changes.update(lr=1e-4, num_episodes=20_000, num_iterations=30)
    elif scale in ("cpu", "cpu-long"):
        changes.update(
            lr=1e-3,
            num_episodes=512,
            num_iterations=12,
            ppi_pretrain_episodes=4096,
            ppi_epochs=40,
            ppi_batch_size=128,
            ppi_rollouts=4,
            ppi_depth=10,
        )
    else:
        changes.update(
            lr=3e-3,
            num_episodes=16,
            num_iterations=2,
            ppi_pretrain_episodes=64,
            ppi_batch_size=16,
            ppi_epochs=2,
            ppi_rollouts=2,
            ppi_depth=3,
        )
    return changes


def _with(config: Config, scale: str, backbone: str | None, algo: str | None) -> Config:
    """``config`` switched to ``backbone`` and ``algo`` (where they differ from its own) with
    their defaults at ``scale``."""
    if backbone is not None and backbone != config.backbone:
        config = config.replace(backbone=backbone, **backbone_defaults(backbone, scale))
    if algo is not None and algo != config.algo:
        config = config.replace(algo=algo, **algo_defaults(algo, scale))
    return config


def scaled(name: str, scale: str, backbone: str | None = None, algo: str | None = None) -> Config:
    """Paper preset ``name`` (``PAPER_PRESETS``) at ``scale`` (``SCALES``), switched to
    ``backbone`` and ``algo`` with their defaults at that scale."""
    if name not in PAPER:
        raise ValueError(f"preset {name!r} is not a paper preset; allowed: {list(PAPER)}")
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is unknown; allowed: {list(SCALES)}")
    return _with(PAPER[name]().replace(**SCALE_CHANGES[scale](name)), scale, backbone, algo)


# --- The presets of ``--preset``: the paper's and the mixed pool at each smaller scale. --------


def cpu() -> Config:
    """The mixed pool scaled to a 2-core CPU (docs/cpu-preset.md)."""
    return scaled("mixed-pool", "cpu")


def cpu_long() -> Config:
    """The mixed pool with the paper's pool at 100 rounds on a 2-core CPU, for hours
    (docs/paper-pool.md)."""
    return scaled("mixed-pool", "cpu-long")


def tiny() -> Config:
    """Seconds end to end: tests and smoke checks."""
    return scaled("mixed-pool", "tiny")


PRESETS: dict[str, Callable[[], Config]] = {**PAPER, "cpu": cpu, "cpu-long": cpu_long, "tiny": tiny}
#: The scale of each preset below the paper's (``preset`` switches backbones at that scale).
PRESET_SCALES = {"cpu": "cpu", "cpu-long": "cpu-long", "tiny": "tiny"}


def preset(name: str, backbone: str | None = None, algo: str | None = None) -> Config:
    """The named preset (``PRESETS``), switched to ``backbone`` and ``algo`` with their defaults
    at the preset's scale."""
    if name not in PRESETS:
        raise ValueError(f"preset {name!r} is unknown; allowed: {sorted(PRESETS)}")
    return _with(PRESETS[name](), PRESET_SCALES.get(name, "paper"), backbone, algo)
