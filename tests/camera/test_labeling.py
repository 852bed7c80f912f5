"""Labeling by key press: consent first, atomic PNG files named by time and content hash."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from ferops.camera.labeling import ConsentStore, Labeler, save_crop
from tests.camera.fakes import CLASSES

NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{10}\.png$")


@pytest.fixture
def crop() -> np.ndarray:
    g = np.random.default_rng(3)
    return g.integers(0, 256, size=(48, 48), dtype=np.uint8)


@pytest.fixture
def labeler(tmp_path) -> Labeler:
    return Labeler(CLASSES, tmp_path / "incoming", ConsentStore(tmp_path / "cfg" / "consent"))


def stored(labeler: Labeler) -> list:
    return sorted(labeler.drop_folder.rglob("*")) if labeler.drop_folder.exists() else []


def test_without_consent_nothing_is_written(labeler, crop):
    assert labeler.awaiting_consent            # the notice is up from the start
    for key in "1234567":
        assert labeler.handle_key(ord(key), crop) is None
    assert labeler.save("happy", crop) is None
    assert stored(labeler) == [] and not labeler.consent.path.exists()


def test_declining_keeps_it_off(labeler, crop):
    labeler.handle_key(ord("n"), crop)
    assert not labeler.awaiting_consent and labeler.declined
    assert labeler.handle_key(ord("4"), crop) is None
    assert stored(labeler) == [] and not labeler.consent.path.exists()


def test_with_consent_the_crop_is_saved_under_its_label(labeler, crop):
    assert labeler.handle_key(ord("y"), crop) is None
    assert labeler.consent.path.is_file() and not labeler.awaiting_consent
    path = labeler.handle_key(ord("4"), crop)   # key 4 -> the 4th class
    assert path is not None and path.parent == labeler.drop_folder / CLASSES[3]
    assert NAME.match(path.name)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), crop)
    assert [p for p in stored(labeler) if p.is_file()] == [path]   # no temporary file left


def test_consent_is_remembered(tmp_path, crop):
    consent = ConsentStore(tmp_path / "consent")
    consent.grant()
    again = Labeler(CLASSES, tmp_path / "drop", ConsentStore(tmp_path / "consent"))
    assert not again.awaiting_consent
    assert again.handle_key(ord("1"), crop).parent.name == CLASSES[0]
    consent.revoke()
    assert again.handle_key(ord("1"), crop) is None and again.awaiting_consent


@pytest.mark.parametrize("key", [ord("0"), ord("8"), ord("9"), ord("a"), ord("q"), -1, 255])
def test_keys_outside_1_to_k_are_ignored(labeler, crop, key):
    labeler.consent.grant()
    assert labeler.handle_key(key, crop) is None
    assert stored(labeler) == []


def test_no_face_no_file(labeler):
    labeler.consent.grant()
    assert labeler.handle_key(ord("1"), None) is None and stored(labeler) == []


def test_same_crop_twice_gets_two_files(tmp_path, crop):
    first, second = save_crop(crop, "sad", tmp_path), save_crop(crop, "sad", tmp_path)
    assert first != second and first.read_bytes() == second.read_bytes()


def test_consent_file_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = ConsentStore("~/.config/ferops/labeling-consent")
    assert store.path == tmp_path / ".config" / "ferops" / "labeling-consent"


def test_legend_lists_every_class(labeler):
    text = " ".join(labeler.legend())
    assert all(f"{i} {name}" in text for i, name in enumerate(CLASSES, start=1))
