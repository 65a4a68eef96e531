"""Config validation names the offending field; presets build; derived sizes."""

import pytest

import jaxcoop
from jaxcoop import Config, cli
from jaxcoop.config import DEFAULT_INTERVAL_SECONDS, RESUMABLE_FIELDS, CheckpointSchedule

BAD_VALUES = [
    # (changes, the field the message must name)
    (dict(p_tabular=1.5), "p_tabular"),
    (dict(num_episodes=0), "num_episodes"),
    (dict(hidden_dim=-1), "hidden_dim"),
    (dict(algo="sac"), "algo"),
    (dict(game="poker"), "game"),
    (dict(pool="grim_trigger"), "pool"),
    (dict(gamma=1.01), "gamma"),
    (dict(lr=0.0), "lr"),
    # 3 does not divide the 16 episodes.
    (dict(algo="ppo", num_episodes=16, ppo_minibatches=3), "ppo_minibatches"),
    # 15 learner episodes cannot be split into pairings of two.
    (dict(num_episodes=15, p_tabular=0.0), "num_episodes"),
    # 16 * (1 - 0.25) = 12 is fine, 10 * (1 - 0.5) = 5 is odd.
    (dict(num_episodes=10, p_tabular=0.5), "num_episodes"),
    # 3 does not divide 10 iterations.
    (dict(num_iterations=10, chunk_iterations=3), "chunk_iterations"),
    (dict(lr="x"), "lr"),
    (dict(opponent_id=1), "opponent_id"),
    (dict(num_learners=2.0), "num_learners"),
    (dict(horizon=True), "horizon"),
    # The transformer splits its width into heads: 4 heads do not divide 30.
    (dict(backbone="transformer", hidden_dim=30, num_heads=4), "num_heads"),
    (dict(num_layers=0), "num_layers"),
    # PPI's pieces: 16 episodes at p_tabular 0.5 are 8 tabular and 4 pairs; 8 does not divide 4.
    (dict(algo="ppi", num_episodes=16, ppi_collect_chunks=8), "ppi_collect_chunks"),
    (dict(ppi_collect_chunks=0), "ppi_collect_chunks"),
]


def _case_id(case):
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


@pytest.mark.parametrize("changes, field", BAD_VALUES, ids=[_case_id(c) for c in BAD_VALUES])
def test_invalid_value_raises_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"config field {field}="):
        Config(**changes)
    with pytest.raises(ValueError, match=rf"config field {field}="):
        jaxcoop.preset("tiny").replace(**changes)


def test_ppo_minibatches_need_not_divide_episodes_under_a2c():
    assert Config(algo="a2c", num_episodes=16, ppo_minibatches=3).ppo_minibatches == 3


def test_unknown_field_in_replace_raises_naming_it():
    with pytest.raises(ValueError, match="unknown_field"):
        Config().replace(unknown_field=1)


def test_unknown_preset_raises_naming_it():
    with pytest.raises(ValueError, match="no-such-preset"):
        jaxcoop.preset("no-such-preset")


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().lr = 1.0


@pytest.mark.parametrize("name", sorted(jaxcoop.PRESETS))
def test_every_preset_builds_a_valid_config(name):
    config = jaxcoop.preset(name)
    assert isinstance(config, Config)
    assert config.replace() == config  # survives re-validation


def test_presets_differ_from_the_default_where_their_ablation_says():
    assert jaxcoop.preset("opponent-id").opponent_id is True
    assert jaxcoop.preset("no-tabular").p_tabular == 0.0
    assert jaxcoop.preset("step1-tabular").num_learners == 1
    assert jaxcoop.preset("step1-tabular").p_tabular == 1.0


def test_default_derived_sizes():
    config = Config()
    # 4096 episodes per learner, half against tabular co-players.
    assert config.num_tabular_episodes == 2048
    assert config.num_learner_episodes == 2048
    # Each pairing slot gives a learner one row and one column episode: 2048 / 2.
    assert config.num_pair_slots == 1024
    # 2 learners * 4096 episodes * 100 rounds.
    assert config.agent_steps_per_iteration == 819_200


def test_tiny_derived_sizes():
    config = jaxcoop.preset("tiny")
    # 16 episodes, p_tabular 0.5: 8 tabular, 8 learner episodes = 4 slots.
    assert (config.num_tabular_episodes, config.num_learner_episodes) == (8, 8)
    assert config.num_pair_slots == 4


def test_a_backbone_brings_its_preset_defaults_and_flags_still_win():
    cpu = jaxcoop.preset("cpu", "transformer")
    assert (cpu.backbone, cpu.hidden_dim, cpu.num_layers, cpu.num_heads) == (
        "transformer",
        32,
        2,
        4,
    )
    paper = jaxcoop.preset("mixed-pool", "transformer")
    assert (paper.hidden_dim, paper.num_layers, paper.num_heads) == (64, 2, 4)
    assert jaxcoop.preset("cpu", "gru") == jaxcoop.preset("cpu")
    config, *_ = cli.parse(
        ["--preset", "cpu", "--backbone", "transformer", "--hidden-dim", "48"], "t"
    )
    assert (config.backbone, config.hidden_dim, config.num_layers) == ("transformer", 48, 2)


def test_ppi_brings_its_scale_defaults_and_flags_still_win():
    # The cpu scale trains PPI's model 40 epochs a phase; the paper (and config default) 10.
    assert jaxcoop.preset("cpu", algo="ppi").ppi_epochs == 40
    assert jaxcoop.preset("mixed-pool", algo="ppi").ppi_epochs == 10
    assert jaxcoop.preset("cpu").ppi_epochs == 10  # A2C: PPI's defaults are not brought in
    config, *_ = cli.parse(["--preset", "cpu", "--algo", "ppi", "--ppi-epochs", "10"], "t")
    assert (config.algo, config.ppi_epochs, config.num_episodes) == ("ppi", 10, 512)


def test_the_cpu_long_scale_keeps_the_papers_pool_and_horizon_and_changes_the_sizes():
    from jaxcoop.presets import scaled

    for name in jaxcoop.presets.PAPER_PRESETS:
        config = scaled(name, "cpu-long")
        width = 64 if name in jaxcoop.presets.FIG1 else 32  # Fig. 1 cooperated only at 64
        assert (config.pool, config.horizon, config.hidden_dim) == ("uniform", 100, width), name
        assert config.p_tabular == jaxcoop.preset(name).p_tabular, name  # the pool mix too
    mixed = jaxcoop.preset("cpu-long")
    assert mixed == scaled("mixed-pool", "cpu-long")
    # The mixed pool takes the step-1 A2C settings with entropy 0.03, at 512 episodes.
    step1 = jaxcoop.preset("step1-tabular")
    assert (mixed.lr, mixed.reward_scale, mixed.gae_lambda) == (
        step1.lr,
        step1.reward_scale,
        step1.gae_lambda,
    )
    assert mixed.ent_coef == 0.03
    assert (mixed.num_episodes, mixed.num_learners, mixed.num_iterations) == (512, 2, 24_000)
    assert scaled("opponent-id", "cpu-long") == mixed.replace(opponent_id=True)
    assert scaled("no-tabular", "cpu-long") == mixed.replace(p_tabular=0.0)
    # Backbones and algorithms bring their cpu defaults.
    assert jaxcoop.preset("cpu-long", "transformer").hidden_dim == 32
    assert jaxcoop.preset("cpu-long", algo="ppi").ppi_epochs == 40
    config, *_ = cli.parse(["--preset", "cpu-long", "--num-iterations", "200"], "t")
    assert (config.horizon, config.num_iterations) == (100, 200)


def test_differences_name_each_changed_field_except_the_ignored():
    base = jaxcoop.preset("tiny")
    longer = base.replace(num_iterations=12)
    assert jaxcoop.config.differences(base, longer) == ["num_iterations: 6 -> 12"]
    assert jaxcoop.config.differences(base, longer, ignore=RESUMABLE_FIELDS) == []
    assert jaxcoop.config.differences(base, base.replace(lr=0.1)) == ["lr: 0.003 -> 0.1"]


def test_checkpointing_is_a_host_option_not_a_config_field():
    assert not {"checkpoint_every", "keep_checkpoints"} & set(jaxcoop.config.field_names())
    assert RESUMABLE_FIELDS == ("num_iterations",)


@pytest.mark.parametrize(
    "every, keep, field",
    [
        (-1, 3, "checkpoint_every"),
        (2.5, 3, "checkpoint_every"),
        (True, 3, "checkpoint_every"),
        (None, 0, "keep_checkpoints"),
    ],
)
def test_a_bad_checkpoint_schedule_names_its_option(every, keep, field):
    with pytest.raises(ValueError, match=rf"{field}="):
        CheckpointSchedule(every, keep)


def test_checkpoint_schedule_saves_on_its_multiples_or_every_five_minutes_and_at_the_end():
    every2 = CheckpointSchedule(every=2)
    assert [end for end in range(1, 8) if every2.due(end, 7, 0.0)] == [2, 4, 6, 7]
    assert all(CheckpointSchedule(every=0).due(end, 7, 0.0) for end in range(1, 8))
    timed = CheckpointSchedule()
    assert not timed.due(3, 7, DEFAULT_INTERVAL_SECONDS - 1)
    assert timed.due(3, 7, DEFAULT_INTERVAL_SECONDS) and timed.due(7, 7, 0.0)
    CheckpointSchedule(every=6).check(chunk_iterations=3)
    with pytest.raises(ValueError, match="checkpoint_every=4 is not a multiple of chunk_iter"):
        CheckpointSchedule(every=4).check(chunk_iterations=3)


def test_backbone_and_algorithm_defaults_touch_disjoint_fields_so_their_order_is_free():
    from jaxcoop import presets
    from jaxcoop.config import ALGOS
    from jaxcoop.networks import BACKBONES

    for scale in presets.SCALES:
        for backbone in BACKBONES:
            for algo in ALGOS:
                shared = set(presets.backbone_defaults(backbone, scale)) & set(
                    presets.algo_defaults(algo, scale)
                )
                assert not shared, (scale, backbone, algo, shared)
    # Concretely: the tiny mixed pool switched to the transformer and PPI either way round.
    base = presets.scaled("mixed-pool", "tiny")
    b, a = presets.backbone_defaults("transformer", "tiny"), presets.algo_defaults("ppi", "tiny")
    one = base.replace(backbone="transformer", **b).replace(algo="ppi", **a)
    two = base.replace(algo="ppi", **a).replace(backbone="transformer", **b)
    assert one == two == presets.scaled("mixed-pool", "tiny", "transformer", "ppi")
    assert (one.hidden_dim, one.num_layers, one.ppi_depth, one.num_iterations) == (16, 1, 3, 2)


def test_a_scale_changes_only_what_it_names_and_the_fig1_runs_differ_in_one_thing():
    from jaxcoop import presets

    for scale in ("cpu", "cpu-long"):
        mixed, opp, none = (presets.scaled(n, scale) for n in presets.FIG1)
        assert opp == mixed.replace(opponent_id=True), scale
        assert none == mixed.replace(p_tabular=0.0), scale
    # What the cpu scale does not name stays the paper's: step 2's Table 2 settings.
    step2 = presets.scaled("step2-extort", "cpu")
    assert (step2.lr, step2.reward_scale, step2.p_tabular) == (5e-3, 0.05, 0.0)
    assert (step2.horizon, step2.num_episodes, step2.pool) == (20, 128, "named")
