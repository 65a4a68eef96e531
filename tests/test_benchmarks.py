"""``python -m benchmarks.sps``: FLOP counts against hand counts, the matmul peak, a quick sweep's
JSON and table, out-of-memory configurations, and bad command lines."""

import json
import math

import jax
import jax.numpy as jnp
import pytest

from benchmarks import sps
from jaxcoop import cli, runner
from jaxcoop.networks import RoundInput, init_params, make_agent
from jaxcoop.presets import preset


def test_a_scan_body_counts_once_per_trip_and_nested_scans_multiply():
    b, d = 8, 16

    def f(x_BxD, w_DxD):
        def inner(c, _):
            return c @ w_DxD + 1.0, None

        def outer(c, _):
            return jax.lax.scan(inner, c, None, length=10)[0], None

        return jax.lax.scan(outer, x_BxD, None, length=3)[0]

    flops = sps.jaxpr_flops(jax.make_jaxpr(f)(jnp.ones((b, d)), jnp.ones((d, d))).jaxpr)
    assert flops == sps.Flops(matmul=3 * 10 * 2 * b * d * d, other=3 * 10 * b * d)


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_matmul_flops_of_a_tiny_gru_iteration_match_the_hand_count(algo):
    config = preset("tiny").replace(algo=algo)
    t, e, h, n = config.horizon, config.embed_dim, config.hidden_dim, config.num_learners
    rows = n * config.num_episodes  # agent applications per round
    # Per token: the 8 raw features straight into the gates [8, 3H] (the embedding is folded
    # into the GRU's input projection), the recurrence [H, 3H], both heads as one [H, 3].
    forward = 2 * (8 * 3 * h + 3 * h * h + 3 * h)
    # Backward: every weight's gradient (as the forward), and the cotangents of the
    # recurrence's and the heads' inputs and of the features (the GRU cell's backward pass
    # returns it though nothing uses it).
    backward = forward + 2 * (3 * h * h + 3 * h + 3 * h * 8)
    # The fold, per learner: token kernel [8, E] and bias [E] times the input kernel [E, 3H];
    # backward, its chain rule, twice its forward.
    fold = 2 * (8 + 1) * e * 3 * h
    if algo == "a2c":  # differentiates its own rollout: one forward (fold hoisted), one backward
        expected = t * rows * (forward + backward) + n * fold + t * n * 2 * fold
    else:  # the rollout (fold in every round), then every episode forward and backward once
        # per epoch, each minibatch folding once
        calls = config.ppo_epochs * config.ppo_minibatches
        expected = (
            t * rows * (forward + config.ppo_epochs * (forward + backward))
            + t * n * fold
            + calls * n * 3 * fold
        )
    assert sps.iteration_flops(config).matmul == expected


def test_the_count_agrees_with_xla_cost_analysis_on_code_without_loops():
    """Same convention as XLA where XLA is right (no loop): a transformer's forward + gradient."""
    config = preset("tiny", "transformer")
    agent = make_agent(config)
    params = init_params(agent, jax.random.key(0))
    t, b = config.horizon, 32
    x = RoundInput(jnp.zeros((t, b, 5)), jnp.zeros((t, b), jnp.int32), jnp.zeros((t, b)))

    def loss(p):
        logits, values = agent.apply(p, x, jnp.zeros((b, 10)))
        return jnp.sum(logits) + jnp.sum(values)

    grad = jax.grad(loss)
    ours = sps.jaxpr_flops(jax.make_jaxpr(grad)(params).jaxpr).total
    xla = jax.jit(grad).lower(params).compile().cost_analysis()["flops"]
    assert ours == pytest.approx(xla, rel=0.05)


def test_a_while_loop_is_refused_rather_than_miscounted():
    def f(x):
        return jax.lax.while_loop(lambda c: c.sum() < 10, lambda c: c * 2.0, x)

    with pytest.raises(ValueError, match="while loop"):
        sps.jaxpr_flops(jax.make_jaxpr(f)(jnp.ones(3)).jaxpr)


def test_the_default_sweep_is_the_gradient_learners():
    # PPI's iteration is a whole phase (model training and planning): not a sweep's unit.
    args = sps.parser().parse_args([])
    assert args.algos == ["a2c", "ppo"] and args.backbones == ["gru", "transformer"]


def test_matmul_peak_is_a_positive_finite_rate():
    peak = sps.matmul_peak(64, repeats=2)
    assert math.isfinite(peak) and peak > 0


@pytest.mark.slow  # about 95 CPU-s; the device check's test covers a sweep record
def test_a_quick_sweep_writes_every_field_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "results" / "sps.json"  # the folder is created
    assert cli.main_guard(sps.main, ["--quick", "--algos", "ppo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["device"] == runner.device_name() and result["jax_version"] == jax.__version__
    assert result["date"] and result["preset"] == "tiny" and result["matmul_peak_flops"] > 0
    assert [(r["backbone"], r["algo"]) for r in result["records"]] == [
        ("gru", "ppo"),
        ("transformer", "ppo"),
    ]
    # The peak is measured before the sweep and after each configuration; the best one counts.
    assert len(result["matmul_peak_measurements"]) == 3
    assert result["matmul_peak_flops"] == max(result["matmul_peak_measurements"])
    for r in result["records"]:
        assert set(r) == set(sps.RECORD_FIELDS) and r["skipped"] is None
        assert r["fraction_of_peak"] == pytest.approx(
            r["flops_per_second"] / result["matmul_peak_flops"]
        )
        config = preset("tiny", r["backbone"]).replace(algo="ppo", num_episodes=64)
        assert r["agent_steps_per_second"] == pytest.approx(
            r["iterations_per_second"] * config.agent_steps_per_iteration
        )
        # 2 learners, 32 tabular episodes each (one seat) and 16 learner pairings (two seats).
        assert r["env_rounds_per_second"] == pytest.approx(
            r["iterations_per_second"] * (2 * 32 + 2 * 16) * config.horizon
        )
        assert r["flops_per_iteration"] == sps.iteration_flops(config.replace(num_seeds=1)).total
        assert 0 < r["fraction_of_peak"] and r["memory_bytes"] > 0
        assert r["memory_source"] == "compiled memory_analysis"  # CPU: no memory_stats()
    assert "% peak" in printed and "agent-steps/s" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("gru ", "transformer "))]
    assert len(rows) == 2 and f"wrote {out}" in printed


def test_out_of_memory_is_recorded_as_skipped_and_other_errors_raise(monkeypatch):
    config = preset("tiny")

    def out_of_memory(config, devices=None):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 TiB")

    monkeypatch.setattr(runner, "compile_seeds", out_of_memory)
    record = sps.measure_or_skip(config, repeats=1, peak_flops=1.0)
    assert set(record) == set(sps.RECORD_FIELDS)
    assert record["skipped"].startswith("out of memory: RESOURCE_EXHAUSTED")
    result = dict(device="d", preset="tiny", matmul_peak_flops=1.0, matmul_size=8, xla_flags="")
    assert "skipped: out of memory" in sps.table({**result, "records": [record]})

    def broken(config, devices=None):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(runner, "compile_seeds", broken)
    with pytest.raises(jax.errors.JaxRuntimeError, match="something else"):
        sps.measure_or_skip(config, repeats=1, peak_flops=1.0)


def test_a_configuration_larger_than_the_device_is_skipped_before_it_runs(monkeypatch):
    monkeypatch.setattr(sps, "_memory_limit", lambda: 1024)
    record = sps.measure_or_skip(preset("tiny"), repeats=1, peak_flops=1.0)
    assert record["skipped"].startswith("needs ") and "more than the device's" in record["skipped"]
    assert record["compiled_memory_bytes"] > 1024 and record["iterations_per_second"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backbones", "lstm"], "argument --backbones: invalid choice: 'lstm'"),
        (["--algos", "sac"], "argument --algos: invalid choice: 'sac'"),
        (["--algos", "ppi"], "argument --algos: invalid choice: 'ppi'"),
        (["--episodes", "0"], "argument --episodes: '0' is not an integer >= 1"),
        (["--episodes", "many"], "argument --episodes: 'many' is not an integer >= 1"),
        (["--repeats", "-1"], "argument --repeats: '-1' is not an integer >= 1"),
        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["--preset", "tiny", "--episodes", "6"], "gru a2c 6 episodes x 8 rounds: config field"),
        (["--devices", "99"], "--devices 99: JAX sees"),
        (["--fast"], "unrecognized arguments: --fast"),
    ],
)
def test_bad_command_lines_stop_with_one_message_before_measuring(argv, message, capsys, tmp_path):
    out = tmp_path / "sps.json"
    assert cli.main_guard(sps.main, [*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists() and not captured.out


def test_gru_backward_split_times_every_variant_and_counts_its_matmuls(capsys):
    from benchmarks import gru_backward

    argv = ["--episodes", "8", "--rounds", "3", "--hidden", "4", "--embed", "2", "--repeats", "1"]
    assert cli.main_guard(gru_backward.main, argv) == 0
    result = json.loads(capsys.readouterr().out)
    variants = {"forward", "custom", "autodiff", "no_weight_grads", "weight_grads_batched"}
    assert set(result["seconds"]) == set(result["gflop"]) == variants
    assert all(s > 0 for s in result["seconds"].values())
    one_pass = 2 * 3 * 2 * 8 * (2 + 4) * 12 / 1e9  # rounds x learners x episodes, 3H = 12
    assert result["gflop"]["forward"] == pytest.approx(one_pass)
    assert result["gflop"]["custom"] == pytest.approx(3 * one_pass)
    assert cli.main_guard(gru_backward.main, ["--episodes", "0"]) == 2


#: The top-level keys of ``benchmarks.device``'s JSON (benchmarks/DEVICE.md, "The JSON").
DEVICE_KEYS = {
    "device",
    "jax_version",
    "jaxlib_version",
    "date",
    "quick",
    "xla_flags",
    "budget_seconds",
    "elapsed_seconds",
    "complete",
    "matmul_size",
    "matmul_peak_flops",
    "matmul_peak_bf16_flops",
    "sweep",
    "slices",
    "projections",
    "skipped",
    "goal_seconds",
    "versions",
    "git_commit",
    "host",
    "glibc_tunables",
    "command",
}


@pytest.fixture
def device_gru_a2c(monkeypatch):
    """``benchmarks.device`` whose ``--quick`` sweep is GRU A2C alone (one compilation)."""
    from benchmarks import device

    monkeypatch.setitem(device.QUICK, "backbones", ("gru",))
    monkeypatch.setitem(device.QUICK, "algos", ("a2c",))
    return device


def test_device_quick_runs_end_to_end_and_projects_from_the_measured_rates(
    device_gru_a2c, tmp_path, capsys
):
    device = device_gru_a2c
    out = tmp_path / "results" / "device.json"
    assert cli.main_guard(device.main, ["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == DEVICE_KEYS
    assert result["complete"] and result["quick"] and result["skipped"] == []
    assert "--xla_backend_optimization_level=0" in result["xla_flags"]
    assert result["matmul_peak_flops"] > 0 and result["matmul_peak_bf16_flops"] > 0
    (record,) = result["sweep"]["records"]
    assert set(record) == set(sps.RECORD_FIELDS) and record["agent_steps_per_second"] > 0
    slices = result["slices"]
    assert list(slices) == list(device.SLICES)
    for r in slices.values():
        assert set(r) == set(device.SLICE_FIELDS) and r["skipped"] is None
        assert r["timed_updates"] == 6 == 2 * len(r["chunk_seconds"])  # 3 chunks of 2 updates
        assert r["seconds_per_update"] == pytest.approx(sum(r["chunk_seconds"]) / 6)
        assert r["agent_steps_per_second"] > 0 and r["memory_bytes"] > 0
    runs = {p["run"]: p for p in result["projections"]}
    assert list(runs) == list(device.PAPER_RUNS)
    assert [p["updates"] for p in runs.values()] == [200_000, 50_000, 100_000, 10_000]
    # By hand: projected seconds = updates x seconds per update of the run's own slice ...
    mixed, step1 = slices["mixed-pool"], slices["step1-tabular"]
    assert runs["mixed-pool"]["projected_seconds"] == pytest.approx(
        200_000 * sum(mixed["chunk_seconds"]) / 6
    )
    assert runs["step1-tabular"]["projected_seconds"] == pytest.approx(
        50_000 / step1["iterations_per_second"]
    )
    # ... or, for steps 2 and 3, its agent-steps at the mixed pool's agent-steps per second.
    step3 = runs["step3-mutual"]
    assert step3["agent_steps_per_update"] == 2 * 16 * 8  # learners x episodes x rounds (tiny)
    assert step3["projected_seconds"] == pytest.approx(
        10_000 * 2 * 16 * 8 / mixed["agent_steps_per_second"]
    )
    for p in runs.values():
        assert p["projected_seconds"] > 0 and p["within_goal"] == (p["projected_seconds"] <= 3600)
    printed = capsys.readouterr().out
    assert "paper run (1 seed)" in printed and f"wrote {out}" in printed


def test_device_check_out_of_time_or_cut_short_leaves_valid_json(device_gru_a2c, tmp_path):
    device = device_gru_a2c
    out = tmp_path / "device.json"
    device.run(device.QUICK, 0.0, out, 64, log=lambda line: None)  # no time: only the peaks
    result = json.loads(out.read_text())
    assert result["complete"] and result["matmul_peak_flops"] > 0
    assert result["skipped"] == [
        "sweep gru a2c 64 episodes: time budget spent",
        "slice mixed-pool: time budget spent",
        "slice step1-tabular: time budget spent",
    ]
    assert all(p["projected_seconds"] is None for p in result["projections"])

    def interrupt(line):
        if line.startswith("[1/"):
            raise KeyboardInterrupt  # cut after the first configuration of the sweep

    with pytest.raises(KeyboardInterrupt):
        device.run({**device.QUICK, "algos": ("a2c", "ppo")}, 60.0, out, 64, log=interrupt)
    result = json.loads(out.read_text())
    assert not result["complete"] and result["slices"] == {}
    (record,) = result["sweep"]["records"]
    assert record["algo"] == "a2c" and record["iterations_per_second"] > 0
    assert cli.main_guard(device.main, ["--budget-seconds", "soon"]) == 2


def test_side_by_side_summarizes_medians_bests_and_speedups():
    from benchmarks import side_by_side

    s = side_by_side.summarize([0.30, 0.20, 0.25], [0.10, 0.14, 0.12])
    assert s["base_median_s"] == 0.25 and s["new_median_s"] == 0.12
    assert s["base_best_s"] == 0.20 and s["new_best_s"] == 0.10
    assert s["speedup_median"] == pytest.approx(0.25 / 0.12)
    assert s["speedup_best"] == pytest.approx(2.0)


def test_side_by_side_refuses_an_unknown_revision_before_timing_anything(tmp_path):
    from benchmarks import side_by_side

    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match="does not know the revision 'no-such-rev'"):
        side_by_side.main(["no-such-rev", "--config", "--preset tiny", "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit):
        side_by_side.parse(["HEAD", "--config", "--preset tiny", "--rounds", "0"])
