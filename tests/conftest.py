"""Shared fixtures. Tests never reach a network: the Hugging Face Hub is offline for the whole session."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Eager torch unless a test asks for another runtime (tests/test_runtime.py): OpenVINO would convert the
# encoders anew in every test's own data folder, minutes of CPU each.
os.environ.setdefault("AFFECTLENS_RUNTIME", "torch")

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO.parent / "shared" / "media"


def busy_server_threads() -> list[str]:
    """The names of Gradio's worker threads (AnyIO's, daemons) still inside this repository's code: an event
    a closed page started (a frame view's CLIP scores) keeps running after its server is closed."""
    frames = sys._current_frames()
    busy = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident) if thread.name == "AnyIO worker thread" else None
        while frame is not None and not (frame.f_code.co_filename.startswith(str(REPO))
                                         and "site-packages" not in frame.f_code.co_filename):
            frame = frame.f_back
        if frame is not None:
            busy.append(f"{thread.name}: {frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
    return busy


def pytest_unconfigure(config):
    """Wait (up to 2 min) for those events to end: a daemon thread inside a torch operator when the interpreter
    exits aborts the process ("terminate called without an active exception", exit status 134)."""
    deadline = time.monotonic() + 120
    while busy_server_threads() and time.monotonic() < deadline:
        time.sleep(0.2)


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
