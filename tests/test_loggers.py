"""Optional TensorBoard / W&B sinks: what reaches the backend, NaN skipped, missing packages."""

import ast
import importlib.machinery
import inspect
import struct
import sys
import types
import warnings

import numpy as np
import pytest

from jaxcoop import loggers

NAN = float("nan")


def read_scalars(log_dir):
    """Every (tag, step, value) in the event files under ``log_dir``, parsing the TFRecord framing
    (u64 length, masked crc of it, payload, masked crc of the payload) and checking both crcs."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    from tensorboardX.record_writer import masked_crc32c

    files = sorted(log_dir.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    triples, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert header_crc == masked_crc32c(header)
        payload = data[pos + 12 : pos + 12 + length]
        assert len(payload) == length
        (payload_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert payload_crc == masked_crc32c(payload)
        pos += 16 + length
        event = event_pb2.Event.FromString(payload)
        for value in event.summary.value:
            triples.append((value.tag, event.step, value.simple_value))
    return triples


def test_tensorboard_sink_writes_exact_scalars_and_skips_nan(tmp_path):
    pytest.importorskip("tensorboardX")
    sinks = loggers.open_sinks(
        tmp_path, tensorboard=True, wandb_project=None, run_name="r", config={"lr": 0.1}
    )
    assert len(sinks) == 1 and isinstance(sinks[0], loggers.TensorBoardSink)
    sinks[0].log(0, {"learner0/reward": 1.5, "learner1/reward": NAN})
    sinks[0].log(5, {"learner0/reward": -0.25, "learner1/reward": np.float32(2.0)})
    sinks[0].close()

    triples = read_scalars(tmp_path / "tensorboard")
    assert triples == [
        ("learner0/reward", 0, 1.5),
        ("learner0/reward", 5, -0.25),
        ("learner1/reward", 5, 2.0),
    ]


class FakeRun:
    def __init__(self, run_id):
        self.id = run_id
        self.logged = []
        self.finished = False

    def log(self, data, step=None):
        self.logged.append((dict(data), step))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in ``wandb`` module in sys.modules, with a spec so ``find_spec`` sees it."""
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.calls = []

    def init(**kwargs):
        module.calls.append(kwargs)
        module.run = FakeRun(kwargs.get("id") or "abc123")
        return module.run

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_wandb_sink_initialises_logs_and_finishes(tmp_path, fake_wandb):
    config = {"lr": 0.1, "algo": "ppo"}
    sinks = loggers.open_sinks(
        tmp_path, tensorboard=False, wandb_project="coop", run_name="tiny", config=config
    )
    assert len(sinks) == 1 and isinstance(sinks[0], loggers.WandbSink)
    sink = sinks[0]
    assert fake_wandb.calls == [
        dict(project="coop", name="tiny", config=config, dir=str(tmp_path), id=None, resume=None)
    ]
    assert sink.run_id == "abc123"

    sink.log(10, {"learner0/reward": 1.5, "learner1/reward": NAN})
    sink.log(20, {"learner0/reward": NAN, "learner1/reward": np.float64(-2.0)})
    sink.log(30, {"learner0/reward": NAN})  # nothing left to log
    assert not fake_wandb.run.finished
    sink.close()

    assert fake_wandb.run.logged == [
        ({"learner0/reward": 1.5}, 10),
        ({"learner1/reward": -2.0}, 20),
    ]
    assert all(type(v) is float for data, _ in fake_wandb.run.logged for v in data.values())
    assert fake_wandb.run.finished


def test_wandb_sink_resumes_a_run(tmp_path, fake_wandb):
    (sink,) = loggers.open_sinks(
        tmp_path,
        tensorboard=False,
        wandb_project="coop",
        run_name="tiny",
        config={},
        wandb_id="xyz789",
    )
    assert fake_wandb.calls[0]["id"] == "xyz789"
    assert fake_wandb.calls[0]["resume"] == "allow"
    assert sink.run_id == "xyz789"


@pytest.mark.parametrize(
    "missing, kwargs, hint",
    [
        (
            "tensorboardX",
            dict(tensorboard=True, wandb_project=None),
            "--tensorboard needs the tensorboardX package: pip install 'jaxcoop[tensorboard]'",
        ),
        (
            "wandb",
            dict(tensorboard=False, wandb_project="coop"),
            "--wandb needs the wandb package: pip install 'jaxcoop[wandb]'",
        ),
    ],
)
def test_a_missing_package_raises_with_the_install_hint(
    monkeypatch, tmp_path, missing, kwargs, hint
):
    looked_up = []

    def find_spec(name):
        looked_up.append(name)
        return None if name == missing else importlib.machinery.ModuleSpec(name, None)

    monkeypatch.setattr(loggers, "find_spec", find_spec)
    with pytest.raises(loggers.LoggerUnavailable) as info:
        loggers.check_available(**kwargs)
    assert isinstance(info.value, RuntimeError)
    assert str(info.value).startswith(hint)
    assert missing in looked_up
    with pytest.raises(loggers.LoggerUnavailable):
        loggers.open_sinks(tmp_path, run_name="r", config={}, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_check_available_passes_when_nothing_or_an_installed_package_is_requested(monkeypatch):
    monkeypatch.setattr(loggers, "find_spec", lambda name: None)  # nothing installed
    loggers.check_available(tensorboard=False, wandb_project=None)
    monkeypatch.setattr(
        loggers, "find_spec", lambda name: importlib.machinery.ModuleSpec(name, None)
    )
    loggers.check_available(tensorboard=True, wandb_project="coop")


def test_open_sinks_with_both_off_returns_nothing_and_writes_nothing(tmp_path):
    sinks = loggers.open_sinks(
        tmp_path, tensorboard=False, wandb_project=None, run_name="r", config={}
    )
    assert sinks == []
    assert list(tmp_path.iterdir()) == []


def test_chunk_scalars_nanmean_over_seeds_and_iterations_per_learner():
    # [S=2, I=2, N=3]
    reward = np.array(
        [
            [[1.0, NAN, NAN], [3.0, 4.0, NAN]],
            [[NAN, 2.0, NAN], [5.0, 6.0, NAN]],
        ],
        dtype=np.float32,
    )
    coop = np.array(
        [
            [[0.0, 1.0, 0.5], [1.0, 1.0, 0.5]],
            [[0.0, 0.0, 0.25], [1.0, 0.0, 0.75]],
        ]
    )
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        scalars = loggers.chunk_scalars({"reward": reward, "coop": coop})
    assert scalars == {
        "learner0/reward": 3.0,  # (1 + 3 + 5) / 3
        "learner1/reward": 4.0,  # (4 + 2 + 6) / 3
        # learner2/reward is all NaN: left out
        "learner0/coop": 0.5,
        "learner1/coop": 0.5,
        "learner2/coop": 0.5,
    }
    assert all(type(v) is float for v in scalars.values())
    assert loggers.chunk_scalars({}) == {}


def test_chunk_scalars_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="reward"):
        loggers.chunk_scalars({"reward": np.zeros((2, 3))})


def test_the_backends_are_not_imported_at_module_import_time():
    tree = ast.parse(inspect.getsource(loggers))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert "numpy" in top_level  # the walk sees the real imports
    assert not top_level & {"tensorboardX", "tensorboard", "wandb"}
