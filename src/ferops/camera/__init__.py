"""The realtime camera client: local face detection, remote classification, live overlay.

Frames stay on this machine; only 48x48 grayscale face crops are sent to the service.
Entry points: `ferops-camera` (cli.main), run_headless() and run_realtime().
"""

from __future__ import annotations

from ferops.camera.client import Prediction, ResilientClassifier, ServiceClient, ServiceError
from ferops.camera.headless import run_headless
from ferops.camera.labeling import ConsentStore, Labeler, save_crop
from ferops.camera.pipeline import CameraError, Summary
from ferops.camera.realtime import gui_problem, run_realtime

__all__ = [
    "CameraError", "ConsentStore", "Labeler", "Prediction", "ResilientClassifier",
    "ServiceClient", "ServiceError", "Summary", "gui_problem", "run_headless", "run_realtime",
    "save_crop",
]
