"""``experiments.same_seed``'s comparison of fingerprints (the runs themselves are not run here)."""

import json
import math

from experiments import same_seed

NAN = float("nan")

A = {"runs": {"a2c-gru": {"metrics.csv": "a" * 64, "column:loss": "b" * 64, "params": "c" * 64}}}


def test_identical_fingerprints_compare_equal_and_exit_zero(tmp_path, capsys):
    rows, same = same_seed.compare(A, A)
    assert same and {r[4] for r in rows} == {"same"} and len(rows) == 3
    (tmp_path / "a.json").write_text(json.dumps(A))
    assert same_seed.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert capsys.readouterr().out.strip().endswith("identical")


def test_a_changed_or_missing_fingerprint_is_a_difference_and_exits_one(tmp_path, capsys):
    changed = json.loads(json.dumps(A))
    changed["runs"]["a2c-gru"]["column:loss"] = "d" * 64
    del changed["runs"]["a2c-gru"]["params"]
    rows, same = same_seed.compare(A, changed)
    verdicts = {r[1]: r[4] for r in rows}
    assert not same
    assert verdicts == {"metrics.csv": "same", "params": "DIFFERENT", "column:loss": "DIFFERENT"}
    for name, data in (("a", A), ("b", changed)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    argv = ["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert same_seed.main(argv) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_ignored_fingerprints_do_not_count():
    changed = json.loads(json.dumps(A))
    changed["runs"]["a2c-gru"]["column:loss"] = "d" * 64
    rows, same = same_seed.compare(A, changed, ignore=("column:loss",))
    assert same and ("a2c-gru", "column:loss", "b" * 12, "d" * 12, "ignored") in rows


def test_a_run_in_one_file_only_is_a_difference():
    rows, same = same_seed.compare(A, {"runs": {}})
    assert not same and all(r[3] == "-" for r in rows)


def test_column_hashes_hash_each_column_of_a_metrics_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,loss\n0,1.5\n1,nan\n")
    other = tmp_path / "other.csv"
    other.write_text("iteration,loss\n0,1.5\n1,0\n")
    a, b = same_seed.column_hashes(path), same_seed.column_hashes(other)
    assert set(a) == {"iteration", "loss"}
    assert a["iteration"] == b["iteration"] and a["loss"] != b["loss"]


def test_a_column_that_differs_by_rounding_is_close_within_rtol_and_different_beyond():
    a = {"runs": {"r": {"column:loss": "a" * 64}}, "values": {"r": {"loss": [2.0, -4.0, NAN]}}}
    b = {"runs": {"r": {"column:loss": "b" * 64}}, "values": {"r": {"loss": [2.0, -4.0004, NAN]}}}
    rows, same = same_seed.compare(a, b, rtol=1e-3)
    assert same and rows[0][4] == "close (1.0e-04 relative)"  # 4e-4 over the scale 4
    rows, same = same_seed.compare(a, b, rtol=1e-5)
    assert not same and rows[0][4] == "DIFFERENT (1.0e-04 relative)"
    rows, same = same_seed.compare(a, b)  # without --rtol the size is shown, still a difference
    assert not same and rows[0][4] == "DIFFERENT (1.0e-04 relative)"


def test_relative_difference_treats_nan_against_a_number_and_lengths_as_infinite():
    assert same_seed.relative_difference([1.0, NAN], [1.0, NAN]) == 0.0
    assert same_seed.relative_difference([1.0, NAN], [1.0, 0.0]) == math.inf
    assert same_seed.relative_difference([1.0], [1.0, 1.0]) == math.inf


def test_column_values_reads_each_column_as_floats(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,loss\n0,1.5\n1,nan\n")
    values = same_seed.column_values(path)
    assert values["iteration"] == [0.0, 1.0] and values["loss"][0] == 1.5
    assert math.isnan(values["loss"][1])
