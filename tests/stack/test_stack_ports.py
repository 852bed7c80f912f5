"""`bash deploy/stack.sh up` refuses at once, naming the port, when another process holds one
of the stack's ports on 127.0.0.1 (host networking would otherwise leave a server crash-looping
and the stack reported "unhealthy" minutes later), and builds and starts nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.factories import free_port, write_params

pytestmark = [pytest.mark.slow, pytest.mark.stack]


def test_up_names_a_busy_port_and_starts_nothing(tmp_path: Path):
    shutil.copytree(PROJECT / "deploy", tmp_path / "deploy",
                    ignore=shutil.ignore_patterns(".env"))
    write_params(tmp_path, serving={"port": free_port()})
    name = f"ferops-ports-{os.getpid()}"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        env = {**os.environ, "FEROPS_PROJECT": str(tmp_path), "PYTHON": sys.executable,
               "FEROPS_STACK_NAME": name, "PGPORT": str(busy),
               "MLFLOW_PORT": str(free_port()), "PREFECT_PORT": str(free_port())}
        up = subprocess.run(["bash", str(tmp_path / "deploy/stack.sh"), "up"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert up.returncode == 1, up.stdout + up.stderr
    assert f"port(s) {busy} on 127.0.0.1 already in use" in up.stderr
    assert "FEROPS_STACK_NAME" in up.stderr                  # and how to run beside it
    assert "pinned wheels" not in up.stdout                   # nothing built
    containers = subprocess.run(["docker", "ps", "-aq", "--filter",
                                 f"label=com.docker.compose.project={name}"],
                                capture_output=True, text=True, check=True).stdout.split()
    assert containers == []
