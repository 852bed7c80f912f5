"""`ferops serve`: start the BentoML service on the champion (a thin `bentoml serve` wrapper).

    ferops serve                 # 127.0.0.1:3000 from params.yaml `serving:`
    ferops serve --port 8080 --host 0.0.0.0

Run it from the project root (where serving/ is). Set $FEROPS_API_KEY to require a key.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ferops.config import load_params
from ferops.errors import FeropsError
from ferops.stage import run_stage, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops serve", "Serve the @champion over HTTP with BentoML.")
    parser.add_argument("--host", help="bind address (default: serving.host)")
    parser.add_argument("--port", type=int, help="port (default: serving.port)")
    parser.add_argument("--reload-code", action="store_true",
                        help="restart on code changes (development)")

    def body(args) -> None:
        cfg = load_params(args.params).serving
        if not Path("serving/service.py").is_file():
            raise FeropsError("serving/service.py not found: run `ferops serve` from the "
                              "project root")
        exe = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or \
            shutil.which("bentoml")
        if exe is None:
            raise FeropsError("bentoml is not installed in this environment")
        cmd = [exe, "serve", "serving.service:EmotionService", "--host",
               args.host or cfg.host, "--port", str(args.port or cfg.port)]
        if args.reload_code:
            cmd.append("--reload")
        env = {**os.environ, "FEROPS_PARAMS": str(Path(args.params).resolve())}
        os.execve(exe, cmd, env)  # the service replaces this process: signals go straight to it

    return run_stage(body, parser, argv)
