"""The Hugging Face Space: requirements that install on the Python and torch ZeroGPU offers, GPU time that
follows the video, the start-up log, the page's weights box, and the app started as a Space starts it.

The wheel checks ask the package index (pip --dry-run, no install): they need PyPI, which CI reaches.
"""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from packaging.requirements import Requirement

from core.labels import TASKS
from core.models import DDAMFN
from core.weights import save_checkpoint
from webapp.config import AppConfig
from webapp.gpu import ZEROGPU_CALL_LIMIT_S, ZEROGPU_MAX_VIDEO_S, analysis_seconds
from webapp.inputs import InputError
from webapp.analyses import Analyses, VideoItem
from webapp.context import Context
from webapp.labels import Labels
from webapp.models import Models

REPO = Path(__file__).resolve().parents[1]
ZEROGPU_TORCH = {"torch": "2.11.0", "torchvision": "0.26.0"}   # the newest pair ZeroGPU accepts
# glibc 2.28 and every older manylinux tag (pip expands only the legacy manylinux2014 name by itself)
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64"]



def analyses(config: AppConfig) -> Analyses:
    ctx = Context(config)
    return Analyses(ctx, Models(ctx), Labels(ctx))


def requirements() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in (ln.split("#")[0].strip() for ln in lines) if line]


def front_matter() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    block = text.split("---\n")[1]
    return {k.strip(): v.strip().strip('"') for k, _, v in (ln.partition(":") for ln in block.splitlines())}


def wheel_check(python_version: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """pip's own answer to: does every pin (torch as ZeroGPU's) have a wheel for this CPython on x86_64 Linux?
    --no-deps: torch's CUDA dependencies are not all on the index reachable here."""
    pins = [str(r) for r in requirements() if r.name not in ZEROGPU_TORCH]
    pins += [f"{name}=={version}" for name, version in ZEROGPU_TORCH.items()]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--only-binary=:all:",
         "--python-version", python_version, "--implementation", "cp", *platforms,
         "--target", str(tmp_path / "target"), "--no-input", *pins],
        capture_output=True, text=True, timeout=300)


def unavailable(proc: subprocess.CompletedProcess) -> str:
    """The requirement pip could not find a wheel for, from its error line."""
    found = re.search(r"No matching distribution found for (\S+)", proc.stderr)
    return found.group(1) if found else proc.stderr.strip().splitlines()[-1]


def test_front_matter_names_a_python_that_zerogpu_offers():
    meta = front_matter()
    assert meta["python_version"] == "3.12", "ZeroGPU offers Python 3.12 and 3.10; our pins need >= 3.11"
    assert meta["app_file"] == "app.py" and meta["sdk"] == "gradio" and meta["hf_oauth"] == "true"


def test_requirements_pin_everything_but_torch_which_admits_zerogpu_and_local_builds():
    local = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                 if "==" in line and not line.startswith("#"))
    for req in requirements():
        if req.name in ZEROGPU_TORCH:
            for version in (ZEROGPU_TORCH[req.name], local[req.name]):
                assert req.specifier.contains(version), f"requirements.txt: {req} must admit {version}"
        else:
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", \
                f"requirements.txt: {req} is not an exact pin"


def test_every_pin_has_a_cpython_312_linux_wheel(tmp_path):
    proc = wheel_check("3.12", tmp_path)
    assert proc.returncode == 0, f"no CPython 3.12 manylinux x86_64 wheel for {unavailable(proc)}"
    assert "Would install" in proc.stdout


def test_python_310_is_refused_because_numpy_has_no_wheel_for_it(tmp_path):
    """The same check can fail: Spaces' default Python (3.10) does not have numpy 2.4.6."""
    proc = wheel_check("3.10", tmp_path)
    assert proc.returncode != 0 and unavailable(proc) == "numpy==2.4.6", proc.stderr[-2000:]


# -- ZeroGPU ------------------------------------------------------------------------------------------------

def blank_video(path: Path, seconds: int) -> Path:
    """A tiny video of the given length (1 frame per second)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 1, (32, 32))
    for _ in range(seconds):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    return path


def test_gpu_time_follows_the_video_length(media_dir, tmp_path):
    """`spaces` calls the duration with the analysis' own arguments: short clips ask for less (and queue
    ahead), nothing asks for more than ZeroGPU allows."""
    args = (["DDAMFN+LSTM"], "basic", None)
    short = analysis_seconds(VideoItem("single_face.mp4", media_dir / "single_face.mp4"), *args)
    medium = analysis_seconds(VideoItem("m.mp4", blank_video(tmp_path / "m.mp4", 120)), *args)
    long = analysis_seconds(VideoItem("l.mp4", blank_video(tmp_path / "l.mp4", 400)), *args)
    assert short < medium < long == ZEROGPU_CALL_LIMIT_S
    assert analysis_seconds(VideoItem("1-30-1280x720"), *args) == ZEROGPU_CALL_LIMIT_S   # Aff-Wild2 images


def test_zerogpu_refuses_long_videos_naming_the_limit(tmp_path):
    env = {"AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "AFFECTLENS_MAX_DURATION_S": "600"}
    assert AppConfig.from_env(env).max_duration_s == 600
    config = AppConfig.from_env({**env, "SPACES_ZERO_GPU": "true"})
    assert config.max_duration_s == ZEROGPU_MAX_VIDEO_S < 600
    video = blank_video(tmp_path / "long.mp4", int(ZEROGPU_MAX_VIDEO_S) + 30)
    with pytest.raises(InputError, match=rf"long\.mp4 lasts {int(ZEROGPU_MAX_VIDEO_S) + 30} s; this app accepts "
                                         rf"videos up to {ZEROGPU_MAX_VIDEO_S:g} s"):
        analyses(config).upload_item(str(video), None)


def test_start_up_log_names_the_database_and_warns_of_sqlite_on_a_space(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'db.sqlite'}"
    postgres = "postgresql+psycopg://me:secret@db.example:5432/affectlens"
    on_space = AppConfig(db_url=sqlite, space_id="me/affectlens").startup_log()
    assert on_space[0] == f"AffectLens database: {sqlite}" and "lost when the Space restarts" in on_space[2]
    assert AppConfig(db_url=sqlite).startup_log() == [
        f"AffectLens database: {sqlite}",
        "SQLite writers take turns in order of arrival across threads and processes (open-file-description locks)"]
    assert AppConfig(db_url=postgres, space_id="me/affectlens").startup_log() == [
        "AffectLens database: postgresql+psycopg://me:***@db.example:5432/affectlens"]


def test_weights_box_says_where_each_model_came_from(tmp_path):
    ddamfn = save_checkpoint(tmp_path / "ddamfn.pt", DDAMFN(tasks=TASKS))
    services = analyses(AppConfig(weights={"ddamfn": str(ddamfn)}, clip_model="ViT-S-32", device="cpu"))
    box = services.weights_overview()
    assert "| ddamfn | `ddamfn.pt` | trained |" in box            # by base name: no server path on the page
    assert "| lstm | `random` | **untrained** (random weights, fixed seed) |" in box
    assert "| clip | `random` | **untrained** (random weights, fixed seed) |" in box


# -- The Space, started as Hugging Face starts it -----------------------------------------------------------

def test_app_starts_as_a_space(tmp_path):
    """`python app.py` with a Space's variables (OAuth faked, Hub offline): the page is served with the
    sign-in button and the weights box, and the log warns that the SQLite database will not survive."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SYSTEM": "spaces", "SPACE_ID": "someone/affectlens", "OAUTH_CLIENT_ID": "fake-client",
           "OAUTH_CLIENT_SECRET": "fake-secret", "OAUTH_SCOPES": "openid profile",
           "OPENID_PROVIDER_URL": "https://huggingface.co", "GRADIO_SERVER_PORT": str(port),
           "AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'space.db'}", "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tmp_path / "space.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        page, deadline = None, time.monotonic() + 45
        while page is None and time.monotonic() < deadline and app.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, f"the Space did not serve its page:\n{log.read_text()[-3000:]}"
        assert "Sign in with Hugging Face" in page and "weights-info" in page
        text = log.read_text()
        assert "AffectLens database: sqlite:///" in text and "lost when the Space restarts" in text
        assert "CLIP: no weights configured and the default cannot be had" in text
    finally:
        app.terminate()
        app.wait(timeout=10)
