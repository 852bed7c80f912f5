"""The canonical emotion vocabulary and the spellings datasets use for it."""

from __future__ import annotations

# FER2013 order first (its integer ids 0-6), then FER+'s extra class.
CANONICAL: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt",
)
FER2013_IDS: tuple[str, ...] = CANONICAL[:7]

# Folder names seen in public FER datasets (Kaggle layouts, FER+, AffectNet-style names).
ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear", "afraid": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
    "contempt": "contempt",
}


def normalize_label(name: str) -> str | None:
    """Return the canonical label for a dataset's spelling, or None if it is not an emotion."""
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    return ALIASES.get(key)
