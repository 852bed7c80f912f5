"""Shared fixtures. Everything here is real data made on the fly: no mocks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FEROPS_SHARED_DATA", PROJECT.parent / "shared" / "data"))


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def noise_image(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A smooth random grayscale image: distinct per draw, std well above blank."""
    base = rng.integers(40, 215, size=(size // 4, size // 4)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR))
    return np.clip(img.astype(int) + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def write_folder_dataset(tmp_path):
    """Factory: writes <root>/<rel>/<split>/<label>/img_i.png and returns the dataset path."""
    def write(rel: str, per_label: dict[str, int], splits=("train", "test"), seed=0, size=48):
        g = np.random.default_rng(seed)
        base = tmp_path / rel
        for split in splits:
            for label, n in per_label.items():
                folder = base / split / label if split else base / label
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    (folder / f"img_{i}.png").write_bytes(png_bytes(noise_image(g, size)))
        return base
    return write


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """A real Keras model folder as the train stage writes it (model.keras, label_map.json),
    with random weights: for tests of the code around a model, not of its accuracy."""
    import json

    from ferops.data.encode import build_label_map
    from ferops.training.model import build_model
    from tests.factories import PARAMS

    out = tmp_path_factory.mktemp("model")
    model = build_model("vgg", len(PARAMS.classes.names), PARAMS.faces.size, (8, 16), 1, 16,
                        0.0)
    model.save(out / "model.keras")
    label_map = build_label_map(PARAMS.classes, PARAMS.faces)
    (out / "label_map.json").write_text(json.dumps(label_map))
    return out
