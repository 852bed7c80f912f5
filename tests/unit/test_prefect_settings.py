"""Prefect's telemetry is off for everything run from the project folder (pyproject.toml's
[tool.prefect.server]): offline servers would log "Failed to send telemetry" otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT

READ = ("from prefect.settings import get_current_settings as s; "
        "print(s().server.analytics_enabled)")


def analytics_enabled(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run([sys.executable, "-c", READ], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    return out.stdout.strip()


def test_telemetry_is_off_in_the_project_and_on_by_default_elsewhere(tmp_path: Path):
    assert analytics_enabled(PROJECT) == "False"
    assert analytics_enabled(tmp_path) == "True"   # so the project's setting is what turns it off
