"""ferops.files: atomic writes leave the old file or the new one, never half, never litter."""

from pathlib import Path

import numpy as np
import pytest

from ferops.files import atomic_path, read_json, save_npy_atomic, write_atomic, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = write_atomic(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_temporary_is_hidden_and_keeps_the_suffix(tmp_path: Path):
    with atomic_path(tmp_path / "resume.keras") as tmp:
        assert tmp.name.startswith(".") and tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.mkdir()  # a writer that makes a folder (Keras' folder formats)
        (tmp / "x").write_text("1")
    assert (tmp_path / "resume.keras/x").read_text() == "1"


def test_json_and_npy_round_trip(tmp_path: Path):
    write_json_atomic(tmp_path / "a/b.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "a/b.json") == {"a": [1, 2], "b": 1}
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{half")
    assert read_json(tmp_path / "bad.json") is None
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(np.load(save_npy_atomic(tmp_path / "x.npy", arr)), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "bad.json", "x.npy"]
