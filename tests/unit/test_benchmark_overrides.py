"""benchmarks/accuracy.py checks its --set overrides before a two-hour run starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from benchmarks.accuracy import check_overrides, parse_overrides

from tests.conftest import PROJECT


def _raw() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def _params(tmp_path: Path, overrides: dict) -> Path:
    raw = _raw()
    raw["train"] = {"profile": "cpu", **overrides}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_real_override_is_in_the_recorded_config(tmp_path):
    profile = _raw()["train_profiles"]["cpu"]
    new_wd = profile["weight_decay"] * 10
    overrides = parse_overrides([f"weight_decay={new_wd}"])
    effective = check_overrides(_params(tmp_path, overrides), overrides)
    assert effective["weight_decay"] == pytest.approx(new_wd)
    # The rest of the profile is recorded too, not only what was overridden.
    assert list(effective["widths"]) == profile["widths"]
    assert effective["epochs"] == profile["epochs"]


def test_an_override_that_changes_nothing_is_refused(tmp_path):
    """A variant named for a change the profile already has would be a mislabeled replicate."""
    overrides = {"balance": _raw()["train_profiles"]["cpu"]["balance"]}
    with pytest.raises(SystemExit, match="changes nothing for balance"):
        check_overrides(_params(tmp_path, overrides), overrides)


def test_a_typo_is_refused_before_the_run(tmp_path):
    overrides = parse_overrides(["weigth_decay=0.1"])
    with pytest.raises(SystemExit, match=r"bad --set: .*train\.weigth_decay: unknown key"):
        check_overrides(_params(tmp_path, overrides), overrides)
