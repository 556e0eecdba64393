"""The environment variables that more than one part of AffectLens reads, with their defaults, in one place.

The web app's own settings (logins, limits, weights) are webapp.config.AppConfig, built from the
environment once at start; what the database, the command lines and the weights loader share is read
here, through an `env` mapping (default: os.environ, as it is when asked, so that a test or a Space that
sets a variable is seen).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

DATA_DIR = Path("data")              # stored analyses, uploaded videos and the default SQLite database
DB_FILE_NAME = "affectlens.db"
KEPT_VIDEOS = "videos"               # data_dir/videos/<sha256 hex>.<ext>: the kept copy of each uploaded video
HUB_ENDPOINT = "https://huggingface.co"
UPSTREAM_URL = "https://raw.githubusercontent.com/SainingZhang/DDAMFN/main"   # named weights (core.upstream)
_TRUE = ("1", "true", "yes", "on")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """AFFECTLENS_DATA_DIR, else ./data."""
    value = _env(env).get("AFFECTLENS_DATA_DIR")
    return Path(value).expanduser() if value else DATA_DIR


def kept_video(data: Path, key: str) -> Path | None:
    """The kept copy of an uploaded video (key "sha256:<hex>") in the data folder `data`, or None (an
    Aff-Wild2 video, or not kept)."""
    if not key.startswith("sha256:"):
        return None
    found = sorted((Path(data) / KEPT_VIDEOS).glob(key.removeprefix("sha256:") + ".*"))
    return found[0] if found else None


def media_url(env: Mapping[str, str] | None = None) -> str | None:
    """AFFECTLENS_MEDIA_URL: where outside tools reach the videos, a prefix to which a video's file name
    is appended (Label Studio's "/data/local-files/?d=videos/", "https://media.example.org/clips/"); None:
    unset, exports then name the bare file, beside the exported files."""
    return _env(env).get("AFFECTLENS_MEDIA_URL") or None


def db_url(env: Mapping[str, str] | None = None) -> str:
    """AFFECTLENS_DB_URL, else a SQLite file in the data directory."""
    return _env(env).get("AFFECTLENS_DB_URL") or f"sqlite:///{data_dir(env) / DB_FILE_NAME}"


def hub_offline(env: Mapping[str, str] | None = None) -> bool:
    """HF_HUB_OFFLINE (huggingface_hub reads it only when imported; we read it when asked)."""
    return _env(env).get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_endpoint(env: Mapping[str, str] | None = None) -> str:
    """HF_ENDPOINT, else the public Hub."""
    return (_env(env).get("HF_ENDPOINT") or HUB_ENDPOINT).rstrip("/")


def upstream_url(env: Mapping[str, str] | None = None) -> str:
    """AFFECTLENS_UPSTREAM_URL, else GitHub's raw files of the DDAMFN authors' repository (branch main):
    the base address of the named weights (a mirror, or a test server)."""
    return (_env(env).get("AFFECTLENS_UPSTREAM_URL") or UPSTREAM_URL).rstrip("/")
