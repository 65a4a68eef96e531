"""``python -m experiments.ipd`` end to end: the results folder, bad input, non-finite losses."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jaxcoop
from experiments import ipd
from jaxcoop import cli, records, runner
from jaxcoop.presets import preset


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    ipd.main(["--preset", "tiny", "--num-seeds", "2", "--out", str(out)])
    return out


def test_a_tiny_run_writes_the_whole_results_folder(tiny_run):
    for name in (
        records.CONFIG_FILE,
        records.METRICS_FILE,
        records.PLOT_FILE,
        records.SUMMARY_FILE,
        records.EVALUATION_FILE,
        records.EVALUATION_PLOT_FILE,
    ):
        assert (tiny_run / name).stat().st_size > 0, name
    saved = json.loads((tiny_run / records.CONFIG_FILE).read_text())
    assert saved["preset"] == "tiny" and saved["config"]["num_seeds"] == 2


def test_metrics_csv_has_one_row_per_iteration_seed_and_learner(tiny_run):
    config = preset("tiny")
    with (tiny_run / records.METRICS_FILE).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == config.num_iterations * 2 * config.num_learners
    assert [int(r["iteration"]) for r in rows[:: 2 * config.num_learners]] == list(
        range(config.num_iterations)
    )
    history = records.read_metrics(tiny_run)
    assert history["coop_vs_learner"].shape == (2, config.num_iterations, config.num_learners)
    assert np.all((history["coop_vs_tabular"] >= 0) & (history["coop_vs_tabular"] <= 1))


def test_summary_and_evaluation_cover_every_learner(tiny_run):
    summary = json.loads((tiny_run / records.SUMMARY_FILE).read_text())
    assert len(summary["final"]["coop_vs_learner"]["mean"]) == 2
    assert summary["agent_steps_per_second"] > 0 and summary["compile_seconds"] > 0
    played = json.loads((tiny_run / records.EVALUATION_FILE).read_text())
    assert set(played) == {
        "tit_for_tat",
        "always_cooperate",
        "always_defect",
        "win_stay_lose_shift",
        "pool",
        "learner",  # the other learner of the same seed
    }
    # An agent always gets 2 per round against always-cooperate when it defects and 1 when it
    # cooperates: reward = 2 - cooperation, exactly, whatever it learned.
    allc = played["always_cooperate"]
    np.testing.assert_allclose(
        np.array(allc["reward"]["mean"]), 2 - np.array(allc["coop"]["mean"]), atol=1e-5
    )
    assert "cooperation of each trained learner" in runner.summary_table(summary)


def test_an_existing_run_folder_is_refused_and_left_untouched(tiny_run):
    before = (tiny_run / records.METRICS_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):
        ipd.main(["--preset", "tiny", "--out", str(tiny_run)])
    assert (tiny_run / records.METRICS_FILE).read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "huge"], "preset 'huge' is unknown; allowed:"),
        (["--preset", "tiny", "--learning-rate", "1"], "unknown option '--learning-rate'"),
        (["--preset", "tiny", "--p-tabular", "1.5"], "p_tabular=1.5 is invalid"),
        (["--preset", "tiny", "--num-episodes", "abc"], "--num-episodes 'abc' is invalid"),
        (["--preset", "tiny", "--opponent-id", "maybe"], "allowed: true or false"),
        (
            ["--preset", "tiny", "--algo", "sac"],
            "algo='sac' is invalid; allowed: ['a2c', 'ppo', 'ppi']",
        ),
        (["--preset", "tiny", "--ppi-rollouts", "0"], "ppi_rollouts=0 is invalid"),
        (["--preset", "tiny", "--num-episodes", "15"], "num_episodes=15 is invalid"),
        (["--preset", "tiny", "--lr"], "--lr needs a value"),
        (["--preset"], "argument --preset: expected one argument"),  # argparse's own errors too
        (["--preset", "tiny", "--devices", "two"], "argument --devices: invalid int value"),
        (["--preset", "tiny", "--checkpoint-every", "4"], "--checkpoint-every 4 is not a multiple"),
        (["--preset", "tiny", "--keep-checkpoints", "0"], "keep_checkpoints=0; allowed"),
        (["--preset", "cpu", "--scale", "tiny"], "--preset cpu is a scale of its own"),
        (["--preset", "step1-tabular", "--scale", "huge"], "argument --scale: invalid choice"),
    ],
)
def test_bad_command_lines_stop_with_one_message_before_compiling(argv, message, capsys, tmp_path):
    assert cli.main_guard(ipd.main, [*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_overrides_and_equals_syntax_reach_the_config():
    config, name, _, why, *_ = cli.parse(
        ["--preset", "cpu", "--lr=2e-3", "--num-seeds", "4", "--opponent-id", "true"], "t"
    )
    assert name == "cpu" and why == "chosen with --preset"
    assert (config.lr, config.num_seeds, config.opponent_id) == (2e-3, 4, True)


def test_scale_gives_a_paper_preset_as_the_experiment_commands_run_it():
    from jaxcoop.presets import scaled

    argv = ["--preset", "step2-extort", "--scale", "cpu", "--algo", "ppi", "--num-episodes", "64"]
    config, name, out, *_ = cli.parse(argv, "t")
    assert config == scaled("step2-extort", "cpu", algo="ppi").replace(num_episodes=64)
    assert config != jaxcoop.preset("step2-extort", algo="ppi").replace(num_episodes=64)
    assert name == "step2-extort (cpu scale)" and out.name.startswith("step2-extort-cpu-ppi-")
    with pytest.raises(cli.UsageError, match="--scale cannot be used with --resume"):
        cli.parse(["--resume", "runs/x", "--scale", "cpu"], "t")


def test_the_evaluation_episodes_flag_reaches_the_runner(monkeypatch, tmp_path):
    assert cli.parse(["--preset", "tiny"], "t").evaluation_episodes == 256
    assert (
        cli.parse(["--resume", "runs/x", "--evaluation-episodes", "9"], "t").evaluation_episodes
        == 9
    )
    seen = {}

    def fake_run(config, out, **kwargs):
        seen.update(kwargs)
        return None, {}

    monkeypatch.setattr(runner, "run", fake_run)
    ipd.main(["--preset", "tiny", "--out", str(tmp_path / "e"), "--evaluation-episodes", "1024"])
    assert seen["evaluation_episodes"] == 1024
    bad = ["--preset", "tiny", "--out", str(tmp_path / "f"), "--evaluation-episodes", "0"]
    assert cli.main_guard(ipd.main, bad) == 2


def test_checkpoint_flags_are_host_options_also_with_resume(tmp_path):
    from jaxcoop.config import CheckpointSchedule

    assert cli.parse(["--preset", "tiny"], "t").checkpointing == CheckpointSchedule()
    command = cli.parse(["--preset", "tiny", "--checkpoint-every", "6"], "t")
    assert command.checkpointing == CheckpointSchedule(6, 3) and "checkpoint_every" not in (
        command.changes
    )
    resumed = cli.parse(
        ["--resume", "r", "--checkpoint-every", "0", "--keep-checkpoints", "9"], "t"
    )
    assert resumed.checkpointing == CheckpointSchedule(0, 9) and resumed.changes == {}
    experiment = cli.parse_experiment(["--preset", "tiny", "--keep-checkpoints", "2"], "t", "x")
    assert experiment.checkpointing == CheckpointSchedule(None, 2)


def test_an_unusable_results_folder_is_one_line_with_exit_status_1(tiny_run, capsys):
    assert cli.main_guard(ipd.main, ["--preset", "tiny", "--out", str(tiny_run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already holds a run" in err and "\n" not in err


def test_without_a_preset_the_cpu_preset_is_chosen_on_a_cpu_and_says_why():
    _, name, out, why, *_ = cli.parse([], "t")
    assert name == "cpu" and "no accelerator" in why
    assert out.parts[0] == "runs"


def test_a_non_finite_loss_names_learner_and_iteration_and_keeps_the_metrics(tmp_path):
    config = preset("tiny").replace(lr=1e30, adam_eps=1e-30, num_iterations=6, chunk_iterations=2)
    with pytest.raises(FloatingPointError, match=r"learner \d \(seed index 0\) at iteration \d"):
        runner.run(config, tmp_path / "nan", log=lambda line: None)
    assert (tmp_path / "nan" / records.METRICS_FILE).stat().st_size > 0


def test_compare_plots_runs_side_by_side_and_tabulates_them(tiny_run, tmp_path, capsys):
    from experiments import compare

    out = tmp_path / "cmp.png"
    compare.main([str(tiny_run), str(tiny_run), "--labels", "first", "second", "--out", str(out)])
    printed = capsys.readouterr().out
    assert out.stat().st_size > 0
    rows = printed.splitlines()
    assert rows[1].startswith("first") and rows[2].startswith("second")
    history = records.read_metrics(tiny_run)
    tail = history["coop_vs_learner"][:, -1:].mean()  # 6 iterations: the last 10% is 1
    assert f"{tail:.3f}" in rows[1]
    with open(out.with_suffix(".csv")) as f:
        written = list(csv.DictReader(f))
    assert [r["run"] for r in written] == ["first", "second"]
    assert float(written[1]["coop_vs_learner_mean"]) == pytest.approx(tail, abs=1e-5)
    assert float(written[1]["coop_vs_learner_std"]) == pytest.approx(
        history["coop_vs_learner"][:, -1:].mean(axis=(1, 2)).std(), abs=1e-5
    )
    assert cli.main_guard(compare.main, [str(tiny_run), "--labels", "a", "b"]) == 2


def test_compare_draws_a_run_warm_started_from_a_compared_run_from_its_source_update(
    tiny_run, tmp_path
):
    from experiments import compare

    fork = tmp_path / "fork"
    shutil.copytree(tiny_run, fork, ignore=shutil.ignore_patterns("checkpoints"))
    record = json.loads((fork / records.CONFIG_FILE).read_text())
    source = {"run": str(tiny_run), "learner": 0, "iteration": 4}
    record["warm_start"] = {"init_from": [source, {**source, "learner": 1}]}
    (fork / records.CONFIG_FILE).write_text(json.dumps(record))
    assert compare.start_offsets([tiny_run, fork]) == [0, 4]
    assert compare.start_offsets([fork]) == [0]  # its source is not compared
    moved = tmp_path / "records" / tiny_run.name  # the source's record, moved after the run
    shutil.copytree(tiny_run, moved, ignore=shutil.ignore_patterns("checkpoints"))
    assert compare.start_offsets([moved, fork]) == [0, 4]
    record["warm_start"]["init_from"][1]["iteration"] = 5  # learners from two checkpoints
    (fork / records.CONFIG_FILE).write_text(json.dumps(record))
    assert compare.start_offsets([tiny_run, fork]) == [0, 0]


def test_record_keeps_a_small_record_that_reads_back(tiny_run, tmp_path, capsys):
    from PIL import Image

    from experiments import compare, ladder, record

    dest = tmp_path / "kept" / "seed0"
    record.main([str(tiny_run), str(dest), "--every", "4", "--digits", "3"])
    names = sorted(path.name for path in dest.iterdir())
    assert names == sorted(
        [p.name for p in tiny_run.glob("*.json")]
        + [p.name for p in tiny_run.glob("*.png")]
        + ["metrics-every4.csv"]
    )
    assert (dest / records.CONFIG_FILE).read_bytes() == (
        tiny_run / records.CONFIG_FILE
    ).read_bytes()
    summary = json.loads((tiny_run / records.SUMMARY_FILE).read_text())
    kept_summary = json.loads((dest / records.SUMMARY_FILE).read_text())
    assert (
        kept_summary == record.rounded(summary)
        and kept_summary["git_commit"] == summary["git_commit"]
    )
    assert record.rounded({"a": [1 / 3, 2, "x"], "b": 123456789.0}) == {
        "a": [0.333333, 2, "x"],
        "b": 123457000.0,
    }
    figure = Image.open(dest / records.PLOT_FILE)
    assert figure.mode == "P" and figure.size == Image.open(tiny_run / records.PLOT_FILE).size
    full, kept = records.read_metrics(tiny_run), records.read_metrics(dest, "metrics-every4.csv")
    assert kept["iteration"].tolist() == [3, 5]  # every 4th update, and the last of 6
    assert kept.keys() == full.keys()
    np.testing.assert_allclose(kept["loss"], full["loss"][:, [3, 5]], rtol=5e-3)
    # Three significant digits, by hand: 1/3 -> 0.333, 2/3 -> 0.667.
    thirds = {"iteration": np.array([7, 9]), "x": np.array([[[1 / 3], [2 / 3]]])}
    lines = records.write_metrics(tmp_path / "x.csv", thirds, digits=3).read_text().splitlines()
    assert lines == ["iteration,seed,learner,x", "7,0,0,0.333", "9,0,0,0.667"]
    # A kept record draws the ladder's training curve where metrics.csv is gone.
    (dest / "metrics-every100.csv").write_text((dest / "metrics-every4.csv").read_text())
    steps, _ = ladder.histories(dest.parent)[0]
    per_update = records.read_config(tiny_run)[0].agent_steps_per_iteration
    assert steps.tolist() == [4 * per_update, 6 * per_update]
    # ... and experiments.compare compares kept records (the finest thinned file).
    assert records.metrics_name(dest) == "metrics-every4.csv"
    assert records.metrics_name(tiny_run) == records.METRICS_FILE
    assert records.metrics_name(tmp_path) is None
    compare.main([str(dest), "--out", str(tmp_path / "figs" / "c.png")])  # folder made
    assert (tmp_path / "figs" / "c.png").stat().st_size > 0
    assert cli.main_guard(compare.main, [str(dest), "--offsets", "1", "2"]) == 2
    compare.main([str(dest), "--offsets", "100", "--out", str(tmp_path / "o.png")])
    assert "started from another run's update 100" in capsys.readouterr().out
    # Nothing is overwritten, and a folder without metrics is named.
    before = (dest / "metrics-every4.csv").read_text()
    assert cli.main_guard(record.main, [str(tiny_run), str(dest)]) == 1
    assert (dest / "metrics-every4.csv").read_text() == before
    assert cli.main_guard(record.main, [str(tmp_path), str(tmp_path / "new")]) == 1
    assert not (tmp_path / "new").exists()


# A command whose 64 MB intermediate (exp of an outer product, read by a matmul and a sort) is
# a temporary buffer of every run: it prints the minor page faults per run, once warm.
_FAULTS_PER_RUN = """
import resource, sys
import jax, jax.numpy as jnp
from jaxcoop import cli

def main(argv):
    f = jax.jit(lambda a: (lambda e: jnp.sum(e @ a[:, None]) + jnp.sum(jnp.sort(e[:8], axis=1)))(
        jnp.exp(a[:, None] * a[None, :])))
    a = jnp.linspace(0.0, 1.0, 4096)
    jax.block_until_ready(f(a))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        jax.block_until_ready(f(a))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)

sys.exit(cli.main_guard(main))
"""


@pytest.mark.skipif(runner.huge_pages_environment() is None, reason="no huge pages to ask for")
def test_a_command_restarts_itself_with_huge_pages_and_stops_faulting_4_kb_pages():
    """In 4 KB pages the 64 MB temporary costs 16,384 faults per run (16,427 measured with
    ``JAXCOOP_HUGE_PAGES=0``); in 2 MB pages, 594 measured (32 for the temporary)."""
    script = [sys.executable, "-c", _FAULTS_PER_RUN]
    faults = subprocess.run(script, capture_output=True, text=True, check=True).stdout
    assert float(faults) < 2000


# A command whose worker thread allocates three 8 MiB blocks, touches and frees them, again and
# again (as XLA's threads do inside a run), after one 10 MiB block has raised glibc's dynamic
# thresholds: it prints the minor page faults per round, once warm.
_THREAD_ARENA_FAULTS_PER_ROUND = """
import ctypes, resource, sys, threading
from jaxcoop import cli

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def touched(size):
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    return p

def main(argv):
    faults = []

    def rounds():
        libc.free(touched(10 << 20))
        blocks = lambda: [libc.free(p) for p in [touched(8 << 20) for _ in range(3)]]
        blocks()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            blocks()
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)

    thread = threading.Thread(target=rounds)
    thread.start()
    thread.join()
    print(faults[0])

sys.exit(cli.main_guard(main))
"""


@pytest.mark.skipif(runner.huge_pages_environment() is None, reason="no malloc tunables to set")
def test_a_commands_worker_threads_keep_their_freed_memory_mapped():
    """glibc trims a thread's arena back to the kernel once its free top passes the dynamic
    trim threshold (twice the last unmapped block, here 20 MiB), so every round faulted its
    24 MiB back in (6,112 faults per round measured with ``hugetlb=1`` alone and with
    ``JAXCOOP_HUGE_PAGES=0``); with the thresholds fixed at their 32 / 64 MiB maxima, 0."""
    script = [sys.executable, "-c", _THREAD_ARENA_FAULTS_PER_ROUND]
    faults = subprocess.run(script, capture_output=True, text=True, check=True).stdout
    assert float(faults) < 100


def test_huge_pages_are_not_asked_for_when_turned_off_or_already_set(monkeypatch):
    monkeypatch.setenv(runner.HUGE_PAGES_ENV, "0")
    assert runner.huge_pages_environment() is None
    monkeypatch.delenv(runner.HUGE_PAGES_ENV)
    for tunable in runner.MALLOC_TUNABLES:
        monkeypatch.setenv("GLIBC_TUNABLES", f"{tunable}=0")
        assert runner.huge_pages_environment() is None


def test_main_guard_called_from_code_never_restarts_the_process(monkeypatch):
    monkeypatch.setattr(runner, "restart_with_huge_pages", lambda: pytest.fail("restarted"))
    assert cli.main_guard(lambda argv: None, ["--x"]) == 0
    assert cli.main_guard(lambda argv: None) == 0  # defined here, not in __main__
