"""Shared fixtures. Tests never reach a network: the Hugging Face Hub is offline for the whole session."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MEDIA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real face videos beside the checkout (../shared/media); CI and every developer have them."""
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"sample media not found at {MEDIA_DIR}")
    return MEDIA_DIR


@pytest.fixture(scope="session")
def affwild2_data(tmp_path_factory, media_dir):
    """A small Aff-Wild2 copy with real face crops (tests/datagen.py), built once per session.

    Shared by many tests: read it, never change it (copy it with datagen.copy_affwild2 first).
    """
    from tests.datagen import make_affwild2

    return make_affwild2(tmp_path_factory.mktemp("affwild2"), media_dir=media_dir)


@pytest.fixture(scope="session")
def affwild2_root(affwild2_data) -> Path:
    """Root folder of the shared Aff-Wild2 test copy (cropped_aligned/, *_Challenge/, videos/)."""
    return affwild2_data.root
