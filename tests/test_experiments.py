"""The paper's experiment commands end to end at the tiny scale: their runs, figures and
results, continuing an experiment, and bad input."""

import argparse
import csv
import json

import jax
import numpy as np
import pytest

from experiments import ablations, dynamics, mechanism
from jaxcoop import cli, evaluation, experiment, records


@pytest.fixture(scope="module")
def ablations_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablations")
    ablations.main(["--preset", "tiny", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def mechanism_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mechanism")
    mechanism.main(["--preset", "tiny", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def dynamics_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamics")
    dynamics.main(["--preset", "tiny", "--out", str(out)])
    return out


def _results(out):
    return json.loads((out / experiment.RESULTS_FILE).read_text())


def test_ablations_runs_the_mixed_pool_and_both_ablations(ablations_dir):
    assert (ablations_dir / "ablations.png").stat().st_size > 0
    results = _results(ablations_dir)
    for name in ablations.RUNS:
        config, _ = records.read_config(ablations_dir / name)
        assert (ablations_dir / name / records.SUMMARY_FILE).exists()
        assert results[name]["paper"] == {k: list(v) for k, v in experiment.PAPER[name].items()}
        assert set(results[name]["ours"]) == set(experiment.MEASURES[name])
    with (ablations_dir / experiment.CROSS_PLAY_FILE).open() as f:
        cross = list(csv.DictReader(f))
    players = [f"{name}/L{n}" for name in ablations.RUNS for n in range(2)]
    assert len(cross) == len(players) * (5 + len(players))  # the panel's 5, then the learners
    rows = results["cross_play"]
    assert list(cross[0]) == list(experiment.CROSS_PLAY_COLUMNS)
    for written, row in zip(cross, rows, strict=True):  # the CSV is results.json's rows
        for column, value in written.items():
            expected = row.get(column, "")
            assert value == (expected if isinstance(expected, str) else repr(expected)), column
    assert {r["player"] for r in rows} == set(players)
    assert {r["coplayer"] for r in rows} == {*evaluation.PANEL, *players}
    for r in rows:  # exact identities: ALLC pays 1 for C and 2 for D, ALLD -1 and 0
        if r["coplayer"] == "always_cooperate":
            assert r["reward"] == pytest.approx(2 - r["coop"], abs=1e-6)
        if r["coplayer"] == "always_defect":
            assert r["reward"] == pytest.approx(-r["coop"], abs=1e-6)
            assert r["coplayer_coop"] == 0 and r["coplayer_reward"] == pytest.approx(2 * r["coop"])
    configs = {name: records.read_config(ablations_dir / name)[0] for name in ablations.RUNS}
    assert configs["opponent-id"].opponent_id and not configs["mixed-pool"].opponent_id
    assert configs["no-tabular"].p_tabular == 0.0 and configs["mixed-pool"].p_tabular > 0


def test_results_are_the_last_tenth_of_metrics_csv(ablations_dir):
    metrics = records.read_metrics(ablations_dir / "mixed-pool")
    last = metrics["coop_vs_learner"][:, -1:].mean(axis=(1, 2))  # 6 updates: the last one
    ours = _results(ablations_dir)["mixed-pool"]["ours"]["coop_vs_learner"]
    assert ours["mean"] == pytest.approx(float(last.mean()))
    assert ours["std"] == pytest.approx(float(last.std()))


def test_mechanism_chains_the_three_steps_through_checkpoints(mechanism_dir):
    assert (mechanism_dir / "mechanism.png").stat().st_size > 0
    step2 = json.loads((mechanism_dir / "step2-extort" / records.CONFIG_FILE).read_text())
    step3 = json.loads((mechanism_dir / "step3-mutual" / records.CONFIG_FILE).read_text())
    assert step2["warm_start"]["frozen_coplayer"]["run"] == str(mechanism_dir / "step1-tabular")
    assert step3["warm_start"]["init_from"][0]["run"] == str(mechanism_dir / "step2-extort")
    step1 = records.read_metrics(mechanism_dir / "step1-tabular")
    assert np.all(np.isnan(step1["coop_vs_learner"])) and step1["coop_vs_tabular"].shape[2] == 1
    assert not np.any(np.isnan(records.read_metrics(mechanism_dir / "step2-extort")["frozen_coop"]))
    results = _results(mechanism_dir)
    assert set(results["step1_within_episode"]) == set(mechanism.STEP1_PANEL)
    allc = results["step1_within_episode"]["always_cooperate"]
    np.testing.assert_allclose(allc["reward"], 2 - np.array(allc["coop"]), atol=1e-6)
    reports = results["step2_extortion"]
    assert [(r["seed"], r["learner"]) for r in reports] == [(0, 0), (0, 1)]
    for r in reports:
        assert sum(r["counts"][1:]) == mechanism.EVALUATION_EPISODES * 7  # 8 rounds, 7 after one
        assert r["chi"] is None or np.isfinite(r["chi"])


def test_dynamics_plays_snapshots_from_early_to_final(dynamics_dir):
    assert (dynamics_dir / "dynamics.png").stat().st_size > 0
    snapshots = _results(dynamics_dir)["snapshots"]
    assert list(snapshots) == ["3", "6"]  # tiny: 6 updates in chunks of 3, all kept
    assert set(snapshots["6"]) == {*dynamics.COPLAYERS, "learner"}
    for row in snapshots.values():
        assert row["always_cooperate"]["reward"] == pytest.approx(
            2 - row["always_cooperate"]["coop"], abs=1e-6
        )


def test_snapshot_steps_are_the_nearest_checkpoints_without_repeats():
    assert dynamics.snapshot_steps(list(range(1000, 20_001, 1000))) == [
        1000,
        2000,
        5000,
        10_000,
        20_000,
    ]
    assert dynamics.snapshot_steps([3, 6]) == [3, 6]


@pytest.mark.parametrize("flag", [["--checkpoint-every", "6"], ["--keep-checkpoints", "5"]])
def test_dynamics_refuses_checkpoint_flags_it_cannot_honour(tmp_path, capsys, flag):
    argv = ["--preset", "tiny", "--out", str(tmp_path / "d"), *flag]
    assert cli.main_guard(dynamics.main, argv) == 2
    assert "not used by experiments.dynamics" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything ran


def test_running_an_experiment_again_keeps_its_finished_runs(mechanism_dir, capsys):
    before = {
        name: (mechanism_dir / name / records.METRICS_FILE).read_bytes()
        for name in ("step1-tabular", "step2-extort", "step3-mutual")
    }
    mechanism.main(["--preset", "tiny", "--out", str(mechanism_dir)])
    assert capsys.readouterr().out.count("finished before, kept") == 3
    for name, data in before.items():
        assert (mechanism_dir / name / records.METRICS_FILE).read_bytes() == data


def test_a_folder_of_another_config_is_refused_and_left_untouched(ablations_dir, capsys):
    before = (ablations_dir / "mixed-pool" / records.METRICS_FILE).read_bytes()
    code = cli.main_guard(
        ablations.main, ["--preset", "tiny", "--out", str(ablations_dir), "--lr", "0.01"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "holds a run of another config (lr: 0.003 -> 0.01)" in err
    assert len(err.strip().splitlines()) == 1
    assert (ablations_dir / "mixed-pool" / records.METRICS_FILE).read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["--preset", "tiny", "--backbone", "lstm"], "backbone"),
        (["--preset", "tiny", "--num-seeds", "0"], "num_seeds=0 is invalid"),
        (["--preset", "tiny", "--no-such-field", "1"], "--no-such-field"),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    code = cli.main_guard(mechanism.main, [*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_run_stopped_before_its_first_checkpoint_is_moved_aside_and_started_again(tmp_path):
    from jaxcoop import runner
    from jaxcoop.presets import preset

    config = preset("tiny")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records.write_config(run_dir, config, "tiny")
    (run_dir / records.METRICS_FILE).write_text("iteration,seed\n0,0\n")  # a partial record
    lines = []
    summary = runner.run_or_resume(config, run_dir, "tiny", lines.append)
    assert "stopped before its first checkpoint" in lines[0]
    (aside,) = tmp_path.glob("run.interrupted-*")
    assert (aside / records.METRICS_FILE).read_text() == "iteration,seed\n0,0\n"  # kept
    assert summary["iterations"] == config.num_iterations
    assert (run_dir / records.SUMMARY_FILE).exists()


def test_ppi_runs_are_compared_with_the_papers_ppi_values_where_it_gives_them():
    assert experiment.paper_ranges("step2-extort", "ppi") == {
        "reward_vs_frozen": (0.88, 1.05),
        "frozen_reward": (0.2, 0.23),
    }
    assert experiment.paper_ranges("step2-extort", "a2c")["reward_vs_frozen"] == (1.25, 1.32)
    assert experiment.paper_ranges("mixed-pool", "ppi") == experiment.PAPER["mixed-pool"]


@pytest.mark.slow
def test_ladder_continues_one_run_per_seed_and_keeps_every_rung(tmp_path):
    from experiments import ladder

    out = tmp_path / "ladder"
    argv = ["--rungs", "2", "4", "--seeds", "3", "--out", str(out), "--preset", "tiny"]
    argv += ["--chunk-iterations", "2"]
    ladder.main(argv)
    rows = json.loads((out / "ladder.json").read_text())["rows"]
    assert [(r["rung"], r["seed"]) for r in rows] == [(2, 3), (4, 3)]
    assert rows[1]["agent_steps"] == 2 * rows[0]["agent_steps"] == 2 * 2 * 2 * 16 * 8
    assert rows[0]["tft_coop_at_round_40"] is None  # 8-round episodes
    assert all(np.isfinite(r["efficiency"]) and 0 <= r["allc_defect"] <= 1 for r in rows)
    # One run: rung 4 resumed the rung-2 run, so metrics.csv holds iterations 0..3 once each.
    metrics = records.read_metrics(out / "seed3")
    assert metrics["iteration"].tolist() == [0, 1, 2, 3]
    assert "--resume" in (out / "seed3.log").read_text()
    curves = json.loads((out / "seed3" / "rung-2" / "curves.json").read_text())
    assert len(curves["always_defect"]["coop"]) == 8 and "efficiency" in curves["pool"]
    assert (out / "ladder.png").stat().st_size > 0
    # The same command again finds every rung done and trains nothing.
    before = (out / "seed3" / records.METRICS_FILE).stat().st_mtime_ns
    ladder.main(argv)
    assert (out / "seed3" / records.METRICS_FILE).stat().st_mtime_ns == before


def test_ladder_refuses_bad_rungs_before_running(tmp_path):
    from experiments import ladder

    with pytest.raises(cli.UsageError, match="increasing"):
        ladder.main(["--rungs", "4", "2", "--out", str(tmp_path / "x"), "--preset", "tiny"])
    with pytest.raises(cli.UsageError, match="chunk_iterations"):
        ladder.main(["--rungs", "5", "--out", str(tmp_path / "y"), "--preset", "tiny"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_extortion_mechanism_key_is_the_one_the_mechanism_fits_use():
    from experiments import extortion

    def key_of(*flags):
        args = argparse.Namespace(seed=3, mechanism_key="--mechanism-key" in flags)
        return jax.random.key_data(extortion.evaluation_key(args))

    folded = jax.random.fold_in(jax.random.key(3), 2)  # mechanism.main: fold_in(key, 2)
    assert mechanism.STEP2_FITS == 2
    np.testing.assert_array_equal(key_of("--mechanism-key"), jax.random.key_data(folded))
    np.testing.assert_array_equal(key_of(), jax.random.key_data(jax.random.key(3)))
