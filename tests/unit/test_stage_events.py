"""Stages record start/done/failed events for their caller ($FEROPS_EVENTS), and the flow's
command runner reads them: no parsing of log text to learn which stage failed and why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pipelines.common import run_command

from ferops.errors import DataError
from ferops.stage import EVENTS_ENV, run_stage, stage_parser


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_outcome_is_recorded_with_its_kind(tmp_path: Path, monkeypatch):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_ENV, str(log))
    assert run_stage(lambda args: None, stage_parser("ferops train", "t"), []) == 0

    def bad_data(args):
        raise DataError("3 images fail 'label in allowed set'")
    assert run_stage(bad_data, stage_parser("ferops-validate", "v"), []) == 2

    def crash(args):
        raise ZeroDivisionError("boom")
    with pytest.raises(ZeroDivisionError):
        run_stage(crash, stage_parser("ferops evaluate", "e"), [])
    got = [(e["event"], e["stage"], e.get("kind")) for e in events(log)]
    assert got == [("start", "train", None), ("done", "train", None),
                   ("start", "validate", None), ("failed", "validate", "data"),
                   ("start", "evaluate", None), ("failed", "evaluate", "crash")]
    assert "label in allowed set" in events(log)[3]["message"]


def test_without_the_variable_nothing_is_written(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(EVENTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_stage(lambda args: None, stage_parser("ferops train", "t"), []) == 0
    assert list(tmp_path.iterdir()) == []


CHILD = """
import sys
from ferops.registry import MLflowUnavailableError
from ferops.stage import run_stage, stage_parser
def body(args):
    raise MLflowUnavailableError("MLflow at http://127.0.0.1:9/ failed: ConnectionError")
run_stage(lambda a: None, stage_parser("ferops evaluate", "e"), [])
sys.exit(run_stage(body, stage_parser("ferops register", "r"), []))
"""


def test_the_runner_collects_a_childs_events_and_removes_its_file(tmp_path: Path,
                                                                  monkeypatch):
    import tempfile
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the events file goes
    result = run_command([sys.executable, "-c", CHILD], tmp_path, 120)
    assert result.returncode == 2 and result.stages_run() == ["evaluate", "register"]
    failed = result.failure()
    assert failed["stage"] == "register" and failed["kind"] == "registry_unavailable"
    assert "127.0.0.1:9" in failed["message"]
    assert list(scratch.iterdir()) == []
