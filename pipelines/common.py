"""Plumbing shared by the flows: project paths, params, child processes, the retraining lock.

Commands run with the interpreter that runs the flow (`sys.executable -m dvc`, `-m ferops.cli`)
and with its bin/ first on PATH, because dvc.yaml's stages call a bare `python`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ferops.config import Params, load_params
from ferops.files import read_json  # noqa: F401  (re-exported for the flows)
from ferops.files import write_json_atomic as write_json  # noqa: F401
from ferops.stage import EVENTS_ENV

STATE_DIR = Path("artifacts/pipelines")   # flow state; outside every DVC output
LOCK_FILE = STATE_DIR / "retrain.lock"
TAIL_LINES = 400                          # output lines kept for errors and reports

# Deployment names ("<flow name>/<deployment name>"), shared by serve.py and prefect.yaml.
RETRAIN_FLOW, RETRAIN_DEPLOYMENT = "ferops-retrain", "ferops-retrain/retrain"


class StepError(RuntimeError):
    """A pipeline step failed; the message is meant for the operator."""

    stages: list[str] = []   # the dvc stages that ran before the failure, when known


def resolve_project(project_dir: str | Path | None) -> Path:
    root = Path(project_dir or ".").expanduser().resolve()
    if not (root / "params.yaml").is_file():
        raise StepError(f"{root} is not a ferops project (no params.yaml)")
    return root


def project_params(root: Path) -> Params:
    return load_params(root / "params.yaml")


def project_env(root: Path) -> dict[str, str]:
    """The environment for child commands: this venv first, the project's own src/ importable."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if (root / "src").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"),
                                                          env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLflow's own client retries ~4 minutes by default; the Prefect task retries are the
    # visible policy, so keep the inner one short unless the operator chose otherwise.
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return env


def dvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def ferops_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferops.cli", *args]


@dataclass
class CommandResult:
    cmd: list[str]
    returncode: int
    output: str          # the last TAIL_LINES lines, stdout and stderr merged
    timed_out: bool = False
    # What the ferops stages it started recorded (ferops.stage: start/done/failed, in order).
    events: list[dict] = field(default_factory=list)

    def stages_run(self) -> list[str]:
        """The stages that ran (not those DVC found up to date), in order."""
        return list(dict.fromkeys(e["stage"] for e in self.events if e["event"] == "start"))

    def failure(self) -> dict | None:
        """The last failed stage's event: stage, kind (data, registry, ...) and message."""
        return next((e for e in reversed(self.events) if e["event"] == "failed"), None)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        what = "timed out" if self.timed_out else f"exited with {self.returncode}"
        shown = self.cmd[2:] if self.cmd[:2] == [sys.executable, "-m"] else self.cmd
        return f"`{' '.join(shown)}` {what}"


def run_command(cmd: list[str], root: Path, timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> CommandResult:
    """Run cmd in root in its own process group; on timeout the whole group is killed.

    A group, because `dvc repro` starts the training process as its child: killing only
    dvc would leave training running. Lines go to on_line as they come (live logs).
    """
    fd, events_path = tempfile.mkstemp(prefix="ferops-events-", suffix=".jsonl")
    os.close(fd)
    env = {**project_env(root), EVENTS_ENV: events_path}
    try:
        return _run(cmd, root, env, timeout_s, on_line, Path(events_path))
    finally:
        Path(events_path).unlink(missing_ok=True)


def _run(cmd: list[str], root: Path, env: dict[str, str], timeout_s: float,
         on_line: Callable[[str], None] | None, events_path: Path) -> CommandResult:
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    expired = threading.Event()
    timer = threading.Timer(timeout_s, lambda: (expired.set(), _kill_group(proc)))
    timer.start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if on_line:
                on_line(line.rstrip("\n"))
        proc.wait()
    except BaseException:  # cancelled flow, Ctrl-C: never leave the group behind
        _kill_group(proc)
        raise
    finally:
        timer.cancel()
    return CommandResult(cmd, proc.returncode, "\n".join(tail), expired.is_set(),
                         read_events(events_path))


def read_events(path: Path) -> list[dict]:
    """The event lines the stages appended (a line cut short by a kill is skipped)."""
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def _kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def retrain_lock(root: Path) -> Iterator[bool]:
    """Hold the project's retraining lock; yields False at once when another run holds it.

    An OS file lock (flock) in the project, not a Prefect concurrency limit, so it also
    holds without a Prefect server, across served, worker and hand-started runs, and is
    released by the kernel if the holder dies.
    """
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retrain_running(root: Path) -> bool:
    """Whether a retraining run holds the lock right now (checked without keeping it)."""
    with retrain_lock(root) as acquired:
        return not acquired
