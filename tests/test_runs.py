"""Runs that survive and agents you can use: checkpoints, resume after SIGKILL, run records,
``load_agent``, warm starts and frozen co-players, and bad run folders."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcoop
from experiments import ipd
from jaxcoop import checkpoints, cli, loggers, records, runner, train, trained
from jaxcoop.algorithms import actor_critic
from jaxcoop.config import CheckpointSchedule
from jaxcoop.environment import C
from jaxcoop.presets import preset
from jaxcoop.records import RunFolderError
from jaxcoop.state import Metrics, PlayMetrics
from jaxcoop.train import make_trainer

REPO = Path(__file__).resolve().parent.parent
TINY = preset("tiny").replace(num_seeds=2, num_iterations=4, chunk_iterations=2)
#: Tests that count checkpoints save after every chunk (the default saves every 5 minutes).
EVERY_CHUNK = CheckpointSchedule(every=0)


def quiet(line):
    del line


def _tree_equal(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished tiny run: 2 seeds x 2 learners, checkpoints at iterations 2 and 4."""
    out = tmp_path_factory.mktemp("runs") / "source"
    state, _ = runner.run(
        TINY, out, "tiny", log=quiet, evaluation_episodes=8, checkpointing=EVERY_CHUNK
    )
    return out, jax.device_get(state)


# --- Checkpoints and run records. ---------------------------------------------------------------


def test_checkpoints_hold_the_final_state_metrics_and_config(source_run):
    out, state = source_run
    assert checkpoints.steps(out) == [2, 4]
    target = jax.eval_shape(
        jax.vmap(make_trainer(TINY).init), jax.random.split(jax.random.key(0), 2)
    )
    ckpt = checkpoints.restore(out, target=target)
    assert _tree_equal(ckpt.state.params, state.params)
    assert _tree_equal(ckpt.state.learner_state, state.learner_state)
    assert _tree_equal(jax.random.key_data(ckpt.state.key), jax.random.key_data(state.key))
    np.testing.assert_array_equal(ckpt.state.iteration, [4, 4])
    history = records.read_metrics(out)
    assert list(history) == [*train.metric_names(TINY), "iteration"]  # columns in order
    for name in train.metric_names(TINY):  # the CSV keeps 6 significant digits
        np.testing.assert_allclose(ckpt.metrics[name], history[name], rtol=1e-5)
    assert ckpt.meta["iteration"] == 4 and ckpt.meta["config"] == TINY.to_dict()


def test_checkpoints_every_k_chunks_always_at_the_end_and_only_the_newest_kept(tmp_path):
    """Saved at 2, 4, 6 and 7, the 3 newest kept: every chunk would keep [5, 6, 7], no final
    save [2, 4, 6], no deletion [2, 4, 6, 7]."""
    config = TINY.replace(num_seeds=1, num_iterations=7, chunk_iterations=1)
    schedule = CheckpointSchedule(every=2, keep=3)
    runner.run(config, tmp_path / "r", log=quiet, evaluation_episodes=4, checkpointing=schedule)
    assert checkpoints.steps(tmp_path / "r") == [4, 6, 7]
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["4", "6", "7"]


def test_summary_records_versions_commit_speed_and_final_values(source_run):
    out, _ = source_run
    summary = json.loads((out / records.SUMMARY_FILE).read_text())
    assert summary["versions"]["jax"] == jax.__version__
    assert {"flax", "optax", "jaxlib", "orbax-checkpoint"} <= set(summary["versions"])
    assert summary["git_commit"] is None or len(summary["git_commit"].split("+")[0]) == 40
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    assert summary["agent_steps_per_second"] > 0 and summary["device"]
    assert len(summary["final"]["coop_vs_tabular"]["mean"]) == TINY.num_learners
    assert "reward_vs_frozen" not in summary["final"]  # no frozen co-player in this run
    assert set(summary["evaluation"]["always_defect"]) == {"coop", "reward"}
    assert len((out / records.SUMMARY_FILE).read_text().splitlines()) < 50  # one screen


# --- Resume. ------------------------------------------------------------------------------------

KILL_ARGS = ["--preset", "tiny", "--num-seeds", "2", "--num-iterations", "80"]
KILL_ARGS += ["--chunk-iterations", "2", "--checkpoint-every", "2", "--keep-checkpoints", "2"]


def test_a_killed_run_resumes_to_identical_parameters_and_metrics(tmp_path):
    """SIGKILL a real run mid-way, resume it, compare with an uninterrupted run."""
    killed, full = tmp_path / "killed", tmp_path / "full"
    env = os.environ | {"PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.ipd", *KILL_ARGS, "--out", str(killed)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("[20/80"):  # 10 chunks done: kill in the middle of the run
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / records.SUMMARY_FILE).exists()  # it really died before the end
    assert 18 <= checkpoints.latest_step(killed) < 80  # the save of 20 may be cut short

    ipd.main(["--resume", str(killed)])
    ipd.main([*KILL_ARGS, "--out", str(full)])
    assert (killed / records.METRICS_FILE).read_bytes() == (
        full / records.METRICS_FILE
    ).read_bytes()
    a, b = checkpoints.restore(killed), checkpoints.restore(full)
    assert a.meta["iteration"] == b.meta["iteration"] == 80
    assert _tree_equal(a.params, b.params)
    summary = json.loads((killed / records.SUMMARY_FILE).read_text())
    assert summary["sessions"] == 2


def test_resume_continues_a_finished_run_to_more_iterations(tmp_path, source_run):
    out = tmp_path / "more"
    shutil.copytree(source_run[0], out)
    runner.resume(out, {"num_iterations": 6}, log=quiet, evaluation_episodes=4)
    assert checkpoints.latest_step(out) == 6
    config, record = records.read_config(out)
    _, source_record = records.read_config(source_run[0])
    assert config.num_iterations == 6  # so a later plain --resume knows the run's length
    assert record == {**source_record, "config": config.to_dict()}
    history = records.read_metrics(out)
    np.testing.assert_array_equal(history["iteration"], np.arange(6))
    # The first 4 iterations are the original run's rows, byte for byte.
    before = (source_run[0] / records.METRICS_FILE).read_text().splitlines()
    after = (out / records.METRICS_FILE).read_text().splitlines()
    assert after[: len(before)] == before and len(after) > len(before)


def test_rows_after_the_newest_checkpoint_are_recomputed_identically(tmp_path, source_run):
    out = tmp_path / "lost-checkpoint"
    shutil.copytree(source_run[0], out)
    shutil.rmtree(out / "checkpoints" / "4")  # as if killed after the metrics, before the save
    with (out / records.METRICS_FILE).open("a") as f:
        f.write("4,0,0,0.5")  # and a half-written row
    runner.resume(out, log=quiet, evaluation_episodes=4)
    original = (source_run[0] / records.METRICS_FILE).read_bytes()
    assert (out / records.METRICS_FILE).read_bytes() == original


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "0.5"], "--lr would change its training program"),
        (["--preset", "tiny"], "--preset cannot be used with --resume"),
        (["--out", "x"], "--out cannot be used with --resume"),
    ],
)
def test_resume_refuses_program_changes_on_the_command_line(flags, message, capsys):
    assert cli.main_guard(ipd.main, ["--resume", "some/run", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_refuses_a_config_whose_program_differs(tmp_path, source_run):
    out = tmp_path / "edited"
    shutil.copytree(source_run[0], out)
    record = json.loads((out / records.CONFIG_FILE).read_text())
    record["config"]["hidden_dim"] = 32
    (out / records.CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match=r"checkpoint .*4 does not match this run's config"):
        runner.resume(out, log=quiet)
    with pytest.raises(RunFolderError, match=r"ppo_epochs: 2 -> 3"):
        runner.resume(out, {"ppo_epochs": 3}, log=quiet)


def test_resume_refuses_a_checkpoint_whose_metrics_this_version_does_not_report(
    tmp_path, source_run, monkeypatch
):
    # As a PPI run written before metrics became per-algorithm: its checkpoint's names differ.
    out = tmp_path / "old-metrics"
    shutil.copytree(source_run[0], out)
    before = (out / records.METRICS_FILE).read_bytes()
    renamed = [n.replace("policy_loss", "action_nll") for n in train.metric_names(TINY)]
    monkeypatch.setattr(runner, "metric_names", lambda config: renamed)
    with pytest.raises(RunFolderError, match=r"written before metrics became per-algorithm"):
        runner.resume(out, log=quiet)
    assert (out / records.METRICS_FILE).read_bytes() == before  # nothing rewritten


# --- Bad run folders: one clear message, nothing destroyed. ------------------------------------


def _main_error(argv, capsys) -> str:
    assert cli.main_guard(ipd.main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_missing_partial_and_corrupted_run_folders_are_named(tmp_path, capsys, source_run):
    missing = tmp_path / "nowhere"
    assert f"{missing} is not a folder" in _main_error(["--resume", str(missing)], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no config.json" in _main_error(["--resume", str(empty)], capsys)

    partial = tmp_path / "partial"
    shutil.copytree(source_run[0], partial)
    shutil.rmtree(partial / "checkpoints")
    assert "holds no complete checkpoint" in _main_error(["--resume", str(partial)], capsys)

    garbled = tmp_path / "garbled"
    shutil.copytree(source_run[0], garbled)
    (garbled / records.CONFIG_FILE).write_text("{not json")
    err = _main_error(["--resume", str(garbled)], capsys)
    assert f"{garbled / records.CONFIG_FILE} is corrupted" in err


def test_a_corrupted_checkpoint_is_named_and_older_ones_are_kept(tmp_path, capsys, source_run):
    out = tmp_path / "corrupt"
    shutil.copytree(source_run[0], out)
    for path in (out / "checkpoints" / "4" / "params").rglob("*"):
        if path.is_file() and path.name != "commit_success.txt":
            path.write_bytes(b"\0garbage")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    err = _main_error(["--resume", str(out)], capsys)
    assert f"checkpoint {out.absolute() / 'checkpoints' / '4'}" in err
    assert "older checkpoints [2] are untouched" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(RunFolderError, match="cannot be read"):
        jaxcoop.load_agent(out)


def test_an_unfinished_checkpoint_write_leaves_the_previous_one_usable(tmp_path, source_run):
    """A crash mid-write leaves orbax's temporary folder, never a half checkpoint."""
    out = tmp_path / "mid-write"
    shutil.copytree(source_run[0], out)
    tmp = out / "checkpoints" / "6.orbax-checkpoint-tmp-1234567"
    shutil.copytree(out / "checkpoints" / "4", tmp)
    shutil.rmtree(tmp / "params")
    assert checkpoints.steps(out) == [2, 4]
    assert jaxcoop.load_agent(out).iteration == 4


def test_a_full_disk_while_checkpointing_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    calls = []
    save = checkpoints.ocp.CheckpointManager.save

    def failing_save(self, step, *args, **kwargs):
        calls.append(step)
        if step >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "save", failing_save)
    config = TINY.replace(num_seeds=1, chunk_iterations=1)
    out = tmp_path / "full-disk"
    with pytest.raises(RunFolderError, match=r"No space left on device.*checkpoints \[1\]"):
        runner.run(config, out, log=quiet, checkpointing=EVERY_CHUNK)
    assert calls == [1, 2]
    assert checkpoints.steps(out) == [1]
    assert len(records.read_metrics(out)["iteration"]) == 2  # the rows of both chunks are kept
    monkeypatch.undo()
    runner.resume(out, log=quiet, evaluation_episodes=4)  # and the run can go on
    assert checkpoints.latest_step(out) == 4


def test_a_full_disk_while_appending_metrics_names_the_file(tmp_path, monkeypatch):
    (tmp_path / records.METRICS_FILE).write_text("header\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", no_space)
    metrics = {name: np.zeros((1, 1, 1)) for name in train.metric_names(TINY)}
    with pytest.raises(RunFolderError, match=f"could not append to {tmp_path / 'metrics.csv'}"):
        records.append_metrics(tmp_path, metrics, 0)


def test_an_unwritable_results_folder_is_refused_before_compiling(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _main_error(["--preset", "tiny", "--out", str(blocker / "run")], capsys)
    assert f"cannot write the results folder {blocker / 'run'}" in err


# --- load_agent. --------------------------------------------------------------------------------


def test_load_agent_answers_round_by_round_like_the_batched_policy(source_run):
    out, _ = source_run
    agent = jaxcoop.load_agent(out, learner=1, seed=1)
    assert (agent.learner, agent.seed, agent.iteration) == (1, 1, 4)
    horizon = agent.config.horizon
    episodes = jaxcoop.play(
        agent, jaxcoop.strategies.tit_for_tat(), jax.random.key(3), 4, agent.game
    )
    actions = np.asarray(episodes.actions)

    # The batched policy, teacher-forced on the played histories: P(C) per episode and round.
    def batched(state, inputs):
        state, logits = agent.step(state, inputs)
        return state, jax.nn.softmax(logits)[:, C]

    rewards = np.asarray(episodes.rewards)
    prev_action = np.concatenate([np.full((4, 1), -1), actions[:, :-1, 0]], axis=1)
    prev_reward = np.concatenate([np.zeros((4, 1)), rewards[:, :-1, 0]], axis=1)
    state = 1 + 2 * actions[:, :-1, 0] + actions[:, :-1, 1]
    state = np.concatenate([np.zeros((4, 1), int), state], axis=1)
    inputs = jaxcoop.RoundInput(
        jaxcoop.environment.one_hot_states(jnp.asarray(state.T)),
        jnp.asarray(prev_action.T, jnp.int32),
        jnp.asarray(prev_reward.T, jnp.float32),
    )
    _, p_TxE = jax.lax.scan(batched, agent.initial_state(4), inputs)
    for e in range(4):
        mine = "".join("CD"[a] for a in actions[e, :, 0])
        theirs = list(actions[e, :, 1])  # 0/1 codes work too
        for t in range(horizon):
            p = agent.cooperate_probability(mine[:t], theirs[:t])
            np.testing.assert_allclose(p, p_TxE[t, e], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            agent.cooperate_probabilities(mine[: horizon - 1], theirs[: horizon - 1]),
            p_TxE[:, e],
            rtol=1e-5,
            atol=1e-6,
        )


def _constant_policy_run(write_run, tmp_path, name: str, p_cooperate: float, base=TINY) -> Path:
    """A run folder whose learners cooperate with probability ``p_cooperate`` in every round
    (policy head: zero kernel, bias log-odds), written through the checkpoint writer; its
    config is ``base`` with one seed, one learner and only tabular co-players."""
    logit = float(np.log(p_cooperate / (1 - p_cooperate)))

    def constant(params):
        head = params["params"]["policy"]
        head["kernel"] = np.zeros_like(head["kernel"])
        bias = np.broadcast_to(np.array([logit, 0.0], np.float32), head["bias"].shape)
        head["bias"] = bias.copy()

    config = base.replace(num_seeds=1, num_learners=1, p_tabular=1.0)
    return write_run(tmp_path / name, config, constant)


def test_load_agent_gives_the_hand_computed_probability_of_a_constant_policy(write_run, tmp_path):
    out = _constant_policy_run(write_run, tmp_path, "p03", 0.3)
    agent = jaxcoop.load_agent(out)
    assert agent.cooperate_probability([], []) == pytest.approx(0.3, abs=1e-6)
    assert agent.cooperate_probability("CDD", ["D", "c", 1]) == pytest.approx(0.3, abs=1e-6)
    played = jaxcoop.play(agent, agent, jax.random.key(0), 2000, agent.game)
    coop = np.mean(np.asarray(played.actions) == C)
    assert abs(coop - 0.3) < 4 * np.sqrt(0.3 * 0.7 / played.actions.size)


@pytest.mark.parametrize(
    "my, their, message",
    [
        ("CX", "CC", r"my_moves\[1\] = 'X' is not a move"),
        ("CC", [0, 2], r"their_moves\[1\] = 2 is not a move"),
        ("CC", "C", "my_moves has 2 moves and their_moves 1"),
        ("C" * 8, "D" * 8, "trained on 8-round episodes"),
    ],
)
def test_bad_histories_are_refused_with_the_reason(source_run, my, their, message):
    agent = jaxcoop.load_agent(source_run[0])
    with pytest.raises(ValueError, match=message):
        agent.cooperate_probability(my, their)


def test_load_agent_names_a_missing_learner_or_seed(source_run):
    with pytest.raises(RunFolderError, match=r"learner 2 is not in .*learners 0..1"):
        jaxcoop.load_agent(source_run[0], learner=2)
    with pytest.raises(RunFolderError, match=r"seed 5 is not in .*seeds 0..1"):
        jaxcoop.load_agent(source_run[0], seed=5)


# --- Warm starts. -------------------------------------------------------------------------------


def test_init_from_starts_each_learner_and_seed_from_the_source(source_run):
    out, state = source_run
    warm = trained.resolve_warm_start(TINY, [trained.Source(out)])
    trainer = make_trainer(TINY)
    start = runner.init_seeds(TINY, trainer, warm)
    assert _tree_equal(start.params, state.params)
    # One learner of the source for all learners (learner 1 of each seed), fresh optimizer.
    warm = trained.resolve_warm_start(TINY, [trained.Source.parse(f"{out}:1")])
    start = runner.init_seeds(TINY, trainer, warm)
    for n in range(2):
        assert _tree_equal(
            jax.tree.map(lambda x, n=n: x[:, n], start.params),
            jax.tree.map(lambda x: x[:, 1], state.params),
        )
    assert warm.record["init_from"][0]["learner"] == 1
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(start.learner_state[1][0].mu))


def test_init_from_refuses_another_architecture_and_seed_count(source_run):
    out = trained.Source(source_run[0])
    with pytest.raises(RunFolderError, match="hidden_dim=16 and this run hidden_dim=32"):
        trained.resolve_warm_start(TINY.replace(hidden_dim=32), [out])
    with pytest.raises(RunFolderError, match="has 2 seeds and this run 3"):
        trained.resolve_warm_start(TINY.replace(num_seeds=3), [out])
    with pytest.raises(ValueError, match="given 3 times"):
        trained.resolve_warm_start(TINY, [out] * 3)


def test_a_frozen_coplayer_is_played_against_and_never_changes(write_run, tmp_path):
    """Against a frozen always-defector (hand-built), every learner gets at most 0 per round
    and the co-player's parameters are the same after training; the run resumes without the
    co-player's own folder (its parameters are in the run's checkpoints)."""
    alld = _constant_policy_run(write_run, tmp_path, "alld", 1e-7)
    config = TINY.replace(num_learners=1, p_tabular=0.5)
    out = tmp_path / "vs-alld"
    ipd.main(
        [
            "--preset", "tiny", "--num-learners", "1", "--num-seeds", "2",
            "--num-iterations", "4", "--chunk-iterations", "2",
            "--frozen-coplayer", f"{alld}:0", "--out", str(out),
        ]
    )  # fmt: skip
    history = records.read_metrics(out)
    np.testing.assert_array_equal(history["frozen_coop"], 0.0)
    assert np.all(history["reward_vs_frozen"] <= 0.0)
    np.testing.assert_allclose(history["reward_vs_frozen"], -history["coop_vs_frozen"], atol=1e-6)
    assert np.isnan(history["coop_vs_learner"]).all()
    assert np.isfinite(history["coop_vs_tabular"]).all()
    target = jax.eval_shape(
        jax.vmap(make_trainer(config, trained.coplayer_agent(_record(out))).init),
        jax.random.split(jax.random.key(0), 2),
    )
    final = checkpoints.restore(out, target=target)
    source = checkpoints.restore(alld)
    for seed in range(2):
        assert _tree_equal(
            jax.tree.map(lambda x, s=seed: x[s], final.state.coplayer_params),
            jax.tree.map(lambda x: x[0, 0], source.params),
        )
    summary = json.loads((out / records.SUMMARY_FILE).read_text())
    assert summary["final"]["frozen_coop"]["mean"] == [0.0]
    assert summary["warm_start"] == {"frozen_coplayer": str(alld)}

    shutil.rmtree(alld)
    runner.resume(out, {"num_iterations": 6}, log=quiet, evaluation_episodes=4)
    history = records.read_metrics(out)
    np.testing.assert_array_equal(history["frozen_coop"], 0.0)
    assert history["frozen_coop"].shape == (2, 6, 1)


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / records.CONFIG_FILE).read_text())["warm_start"]["frozen_coplayer"]


def test_a_frozen_transformer_refuses_a_run_longer_than_its_horizon(write_run, tmp_path):
    """Its positions end at its trained horizon: a longer run would clamp them silently."""
    base = jaxcoop.preset("tiny", "transformer")
    source = _constant_policy_run(write_run, tmp_path, "short", 0.5, base)
    with pytest.raises(RunFolderError, match=r"trained on 8-round episodes .* horizon=12"):
        trained.resolve_warm_start(TINY.replace(horizon=12), frozen=trained.Source(source))
    warm = trained.resolve_warm_start(TINY, frozen=trained.Source(source))  # 8 rounds: fine
    assert warm.coplayer.max_rounds == 8


def test_a_frozen_coplayer_needs_non_tabular_episodes(source_run):
    with pytest.raises(ValueError, match="p_tabular=1.0 leaves none"):
        trained.resolve_warm_start(
            TINY.replace(p_tabular=1.0), frozen=trained.Source(source_run[0])
        )


def test_init_from_and_tensorboard_through_the_command_line(tmp_path, source_run):
    out = tmp_path / "warm"
    argv = ["--preset", "tiny", "--num-seeds", "2", "--num-iterations", "2"]
    argv += ["--chunk-iterations", "2", "--init-from", f"{source_run[0]}:1"]
    ipd.main([*argv, "--tensorboard", "--out", str(out)])
    record = json.loads((out / records.CONFIG_FILE).read_text())["warm_start"]
    assert record["init_from"][0]["run"] == str(source_run[0])
    assert record["init_from"][0]["learner"] == 1 and record["init_from"][0]["iteration"] == 4
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_a_missing_logging_package_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loggers, "find_spec", lambda name: None if name == "wandb" else object())
    out = tmp_path / "wandb-run"
    err = _main_error(["--preset", "tiny", "--wandb", "proj", "--out", str(out)], capsys)
    assert "--wandb needs the wandb package" in err
    assert not out.exists()


# --- The host loop's callbacks. ------------------------------------------------------------------


def _counting_chunk(config):
    """A stand-in for a compiled chunk: the state is the iteration count, every metric the
    iteration numbers of the chunk ``[S=1, I, N=1]`` (no compilation)."""

    def chunk(state):
        its = np.arange(state, state + config.chunk_iterations, dtype=np.float32)
        value = its.reshape(1, -1, 1)
        learning = actor_critic.LearningMetrics(
            *(value for _ in actor_critic.LearningMetrics._fields)
        )
        return state + config.chunk_iterations, Metrics(
            PlayMetrics(*(value for _ in PlayMetrics._fields)), learning
        )

    return chunk


def test_run_chunks_reports_every_chunk_to_every_callback_in_order_and_closes_them():
    config = TINY.replace(num_iterations=6, chunk_iterations=2)
    seen, closed = [], []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __call__(self, r):
            seen.append((self.name, r.begin, r.end, r.state, float(r.metrics["loss"][0, -1, 0])))

        def close(self):
            closed.append(self.name)

    state, seconds = runner.run_chunks(
        _counting_chunk(config), 2, config, 2, [Recorder("a"), lambda r: None, Recorder("b")]
    )
    assert state == 6 and seconds >= 0
    assert seen == [
        ("a", 2, 4, 4, 3.0),
        ("b", 2, 4, 4, 3.0),
        ("a", 4, 6, 6, 5.0),
        ("b", 4, 6, 6, 5.0),
    ]
    assert closed == ["a", "b"]


def test_run_chunks_closes_every_callback_when_one_raises(tmp_path):
    config = TINY.replace(num_iterations=6, chunk_iterations=2)
    history = {name: np.full((1, 6, 1), np.nan, np.float32) for name in train.metric_names(config)}
    closed = []

    class Closer:
        def __call__(self, r):
            pass

        def close(self):
            closed.append(True)

    def bad_chunk(state):
        state, metrics = _counting_chunk(config)(state)
        nan = np.full((1, 2, 1), np.nan, np.float32)
        return state, metrics._replace(learning=metrics.learning._replace(loss=nan))

    recorder = runner.MetricsRecorder(tmp_path, history, write=False)
    with pytest.raises(FloatingPointError, match="iteration 0"):
        runner.run_chunks(bad_chunk, 0, config, 0, [recorder, Closer()])
    assert closed == [True]
    np.testing.assert_array_equal(history["reward_vs_learner"][0, :2, 0], [0.0, 1.0])
