"""Many devices and many hosts give the numbers of one device (``jaxcoop.sharding``).

JAX fixes the device count when it starts, so each test runs fresh Python processes with
``--xla_force_host_platform_device_count``; the two-process test joins them with
``jax.distributed`` on localhost.
"""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import ipd
from jaxcoop import records

REPO = Path(__file__).resolve().parents[1]

SAME_RUN_ON_1_AND_8_DEVICES = """
import json
import sys
import jax
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxcoop import networks, presets, rollout, runner, sharding, strategies
from jaxcoop.environment import make_game

assert jax.device_count() == 8, jax.devices()
out = {}
for backbone, algo in [name.split("-") for name in sys.argv[1:]]:
    cfg = presets.preset("tiny", backbone).replace(algo=algo, num_seeds=2, num_episodes=32)
    runs = []
    for n in (1, 8):
        state, chunk, _ = runner.compile_seeds(cfg, jax.devices()[:n])
        for _ in range(2):
            state, metrics = chunk(state)
        runs.append((sharding.to_host(state.params), jax.device_get(metrics)))
    out["params_spec"] = str(jax.tree.leaves(state.params)[0].sharding.spec)
    (p1, m1), (p8, m8) = runs
    out[backbone + "-" + algo] = {
        "params": max(float(np.max(np.abs(a - b))) for a, b in zip(
            jax.tree.leaves(p1), jax.tree.leaves(p8))),
        "metrics": max(float(np.nanmax(np.abs(a - b))) for a, b in zip(
            jax.tree.leaves(m1), jax.tree.leaves(m8))),
        "param_scale": max(float(np.max(np.abs(a))) for a in jax.tree.leaves(p1)),
    }

# Where the rollout's episodes live: one seed, so learners 2 ways and seats 4 ways.
cfg = presets.preset("tiny").replace(num_episodes=32)
mesh = sharding.make_mesh(1, 2)
agent = networks.make_agent(cfg)
params = jax.vmap(lambda k: networks.init_params(agent, k))(jax.random.split(jax.random.key(0), 2))
coplayers = strategies.sample_coplayers(jax.random.key(1), (2, cfg.num_tabular_episodes), "uniform")
succ, pred = rollout.pairing(2, cfg.num_pair_slots, jax.random.key(2))
collect = jax.jit(lambda p: rollout.collect(
    agent, p, jax.random.key(3), make_game("ipd", cfg.horizon), coplayers, succ, pred,
    shard=sharding.episode_sharder(mesh)))
action = collect(params).transition.action
out["mesh"] = dict(mesh.shape)
out["action_spec"] = str(action.sharding.spec)
out["action_shard_shape"] = list(action.addressable_shards[0].data.shape)
print("RESULT", json.dumps(out))
"""


def _env(devices: int) -> dict:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return os.environ | {"XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}


@pytest.mark.parametrize(
    "name", ["gru-a2c", pytest.param("transformer-ppo", marks=pytest.mark.slow)]
)
def test_eight_devices_train_like_one_and_split_learners_and_episodes(name):
    done = subprocess.run(
        [sys.executable, "-c", SAME_RUN_ON_1_AND_8_DEVICES, name],
        cwd=REPO,
        env=_env(8),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    # Same seed, same numbers: only the order of the gradient sums differs.
    assert result[name]["params"] < 1e-5 * max(1.0, result[name]["param_scale"]), name
    assert result[name]["metrics"] < 1e-4, name
    # 2 seeds x 2 learners x 2 episode shards for training; parameters split by seed and learner.
    assert result["params_spec"] == "P('seed', 'learner')"
    # One seed: learners 2 ways, the 32 seats per learner 4 ways (8 per device).
    assert result["mesh"] == {"seed": 1, "learner": 2, "episode": 4}
    assert result["action_spec"] == "P('learner', None, 'episode')"
    assert result["action_shard_shape"] == [1, 8, 8]  # [N / 2, T, B / 4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _metrics(run_dir: Path) -> np.ndarray:
    with open(run_dir / records.METRICS_FILE) as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(v) for v in row.values()] for row in rows])


ARGS = ["--preset", "tiny", "--num-seeds", "2"]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_train_like_one(tmp_path):
    """Two processes x 2 devices on localhost: process 0 writes the run; it matches one device."""
    shared, alone = tmp_path / "two-processes", tmp_path / "one-process"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.ipd", *ARGS, "--out", str(shared)]
            + ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
            + ["--process-id", str(i)],
            cwd=REPO,
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert "wall time" in logs[0] and "wall time" not in logs[1]  # process 0 reports

    ipd.main([*ARGS, "--out", str(alone)])
    np.testing.assert_allclose(_metrics(shared), _metrics(alone), atol=1e-5, equal_nan=True)
    summary = json.loads((shared / records.SUMMARY_FILE).read_text())
    assert summary["device"] == "4 x cpu (cpu, 2 processes)"
    assert (shared / records.EVALUATION_FILE).exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--devices", "0"], "--devices 0; allowed: 1 to"),
        (["--coordinator", "localhost:1"], "go together"),
        (
            ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
            "allowed: 0 <= process id < number of processes",
        ),
    ],
)
def test_bad_device_flags_are_refused_before_anything_runs(tmp_path, capsys, flags, message):
    from jaxcoop import cli

    status = cli.main_guard(ipd.main, [*ARGS, "--out", str(tmp_path / "x"), *flags])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
