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
