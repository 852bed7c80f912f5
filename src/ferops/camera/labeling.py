"""Opt-in labeling: save the current face crop under a label, only after the person consents.

Crops land in <drop_folder>/<label>/ where ingest's `incoming` source picks them up. Files are
written to a hidden temporary name and renamed (ferops.files), so ingest (which skips dot-files)
never reads half a file.
Only the 48x48 grayscale crop the model sees is stored, never the frame.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ferops.dropfolder import save_crop  # noqa: F401 - re-exported (ferops.camera)
from ferops.files import write_atomic

CONSENT_NOTICE = (
    "Labeling stores pictures of faces.",
    "With your consent, a number key saves the face crop",
    "shown (48x48 gray, never the full frame) with that",
    "label into the training data folder, to improve the",
    "next model. Ask everyone in view before you label.",
    "Press y to accept (remembered here), n to decline.",
)
KEY_YES, KEY_NO = (ord("y"), ord("Y")), (ord("n"), ord("N"))


class ConsentStore:
    """The one-time acceptance, remembered as a small file (camera.consent_file)."""

    def __init__(self, path: str | Path):
        self.path = Path(os.path.expanduser(str(path)))

    def granted(self) -> bool:
        return self.path.is_file()

    def grant(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        write_atomic(self.path, f"ferops labeling consent accepted {stamp}\n")

    def revoke(self) -> None:
        self.path.unlink(missing_ok=True)


class Labeler:
    """Maps key presses to labels and saves crops; pure of any display, so tests drive it.

    Keys 1..K pick classes[0..K-1]. Until consent is given, a number key only raises the
    consent notice (`awaiting_consent`) and stores nothing; y accepts, n declines.
    """

    def __init__(self, classes: Sequence[str], drop_folder: str | Path, consent: ConsentStore):
        if not 1 <= len(classes) <= 9:
            raise ValueError("labeling by number key supports 1 to 9 classes")
        self.classes = tuple(classes)
        self.drop_folder = Path(drop_folder)
        self.consent = consent
        self.awaiting_consent = not consent.granted()
        self.declined = False
        self.saved: list[Path] = []

    def label_for_key(self, key: int) -> str | None:
        index = key - ord("1")
        return self.classes[index] if 0 <= index < len(self.classes) else None

    def handle_key(self, key: int, crop: np.ndarray | None) -> Path | None:
        """React to one key; return the saved file's path, or None when nothing was stored."""
        if self.awaiting_consent and key in KEY_YES:
            self.consent.grant()
            self.awaiting_consent = False
            return None
        if self.awaiting_consent and key in KEY_NO:
            self.awaiting_consent, self.declined = False, True
            return None
        label = self.label_for_key(key)
        if label is None:
            return None
        if not self.consent.granted():
            self.awaiting_consent = not self.declined
            return None
        return self.save(label, crop)

    def save(self, label: str, crop: np.ndarray | None) -> Path | None:
        """Store one crop under label if consent was given; None without consent or crop."""
        if crop is None or label not in self.classes or not self.consent.granted():
            return None
        path = save_crop(crop, label, self.drop_folder)
        self.saved.append(path)
        return path

    def legend(self) -> list[str]:
        head = "label the largest face:" if self.consent.granted() else "labeling (needs consent):"
        keys = [f"{i} {name}" for i, name in enumerate(self.classes, start=1)]
        # Two columns' worth per line keeps the legend short on a 480-line frame.
        rows = ["  ".join(keys[i:i + 4]) for i in range(0, len(keys), 4)]
        return [head, *rows, "q quit"]
