"""``experiments.same_seed``'s comparison of fingerprints (the runs themselves are not run here)."""

import json

from experiments import same_seed

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
