"""Shared fixtures. Tests never reach a network: the Hugging Face Hub is offline for the whole session."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Eager torch unless a test asks for another runtime (tests/test_runtime.py): OpenVINO would convert the
# encoders anew in every test's own data folder, minutes of CPU each.
os.environ.setdefault("AFFECTLENS_RUNTIME", "torch")

MEDIA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real face videos beside the checkout (../shared/media); CI and every developer have them, so a
    missing folder fails the tests that need it rather than skipping them unnoticed."""
    if not MEDIA_DIR.is_dir():
        pytest.fail(f"sample media not found: these tests need the folder {MEDIA_DIR} (../shared/media beside "
                    "the checkout)", pytrace=False)
    return MEDIA_DIR


@pytest.fixture(scope="session")
def ffmpeg():
    """ffmpeg run quietly, overwriting outputs: ffmpeg(*args) -> CompletedProcess (stdout as bytes).

    The README's test command (make test) installs ffmpeg, so a missing one fails the tests that need it."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed: run the tests with `make test`, which installs it, or "
                    "`apt-get install ffmpeg`", pytrace=False)

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([path, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)

    return run


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small CPU training runs are fastest on one thread: with several, OpenMP workers spin and stall
    whenever the machine is busy with other processes (seen: 10-30x slower DDAMFN steps)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
