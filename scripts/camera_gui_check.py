"""Open the camera client's live window on a virtual display and save a screenshot.

    python scripts/camera_gui_check.py [--model-project DIR] [--out shot.png]

The pinned OpenCV wheel is the headless build (no windows), so this installs the GUI build
of the same version into a side folder (`.gui-opencv/`, git-ignored) and puts it first on
the camera client's PYTHONPATH only. It needs Xvfb, xwd and netpbm
(`apt-get install xvfb x11-apps netpbm`). Steps: serve a model (the current champion, or
DIR/artifacts/model with --model-project), write a 640x480 video of a real face photo
(scikit-image's astronaut), run `ferops-camera --source video` in a window on display :99,
take a screenshot after a few seconds, and report the client's own summary line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import face_frame, start_server, use_artifacts  # noqa: E402

GUI_DIR = ROOT / ".gui-opencv"


def gui_opencv() -> Path:
    from importlib.metadata import version
    if not (GUI_DIR / "cv2").is_dir():  # the GUI wheel of exactly the pinned headless version
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(GUI_DIR),
                        f"opencv-python=={version('opencv-python-headless')}"], check=True)
    return GUI_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-project", type=Path,
                        help="serve DIR/artifacts/model instead of the store's champion")
    parser.add_argument("--out", type=Path, default=Path("camera-window.png"))
    parser.add_argument("--port", type=int, default=3941)
    args = parser.parse_args()
    missing = [t for t in ("Xvfb", "xwd", "xwdtopnm", "pnmtopng") if not shutil.which(t)]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install xvfb x11-apps netpbm",
              file=sys.stderr)
        return 2
    import cv2
    import numpy as np
    work = Path(tempfile.mkdtemp(prefix="ferops-gui-"))
    if args.model_project:
        use_artifacts(args.model_project, work / "bentoml")
    video = work / "face.mp4"
    frame = face_frame()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 480))
    for i in range(450):  # 30 s at 15 fps, the face drifting sideways
        writer.write(np.roll(frame, (i % 60) - 30, axis=1))
    writer.release()
    server = start_server(args.port, work / "serve.log", {})
    xvfb = subprocess.Popen(["Xvfb", ":99", "-screen", "0", "1024x768x24"])
    camera = None
    try:
        time.sleep(2)
        env = dict(os.environ, DISPLAY=":99", QT_QPA_PLATFORM="xcb",
                   PYTHONPATH=os.pathsep.join([str(gui_opencv()), str(ROOT / "src")]))
        camera = subprocess.Popen(
            [str(Path(sys.executable).parent / "ferops-camera"), "--source", str(video),
             "--service", f"http://127.0.0.1:{args.port}", "--max-frames", "400"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(12)
        subprocess.run(f"xwd -root -display :99 | xwdtopnm 2>/dev/null | pnmtopng > "
                       f"'{args.out}'", shell=True, check=True)
        output, _ = camera.communicate(timeout=120)
    finally:
        if camera and camera.poll() is None:
            camera.kill()
        xvfb.terminate()
        server.terminate()
        server.wait(timeout=30)
    print(output.strip().splitlines()[-1] if output.strip() else "(no output)")
    print(f"camera exit status {camera.returncode}; screenshot: {args.out}")
    return camera.returncode


if __name__ == "__main__":
    raise SystemExit(main())
