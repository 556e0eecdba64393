"""The Hugging Face Space: its requirements install on the Python and torch that ZeroGPU offers.

The wheel checks ask the package index (pip --dry-run, no install): they need PyPI, which CI reaches.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ZEROGPU_TORCH = {"torch": "2.11.0", "torchvision": "0.26.0"}   # the newest pair ZeroGPU accepts
# glibc 2.28 and every older manylinux tag (pip expands only the legacy manylinux2014 name by itself)
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64"]


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
