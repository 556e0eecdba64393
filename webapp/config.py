"""Settings of the web app, read once from the environment so that a Space, `make run` and the tests
configure the same code the same way."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


def _users(text: str) -> tuple[tuple[str, str], ...]:
    """Parse "alice:pw,bob:pw" into login pairs; a malformed entry is an error, not a silent skip."""
    pairs = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, password = entry.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"AFFECTLENS_USERS entry {entry!r} is not of the form user:password")
        pairs.append((name, password))
    return tuple(pairs)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    # Inside Gradio's upload folder: files written there count as created by the app and may be served.
    gradio_tmp = env.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(gradio_tmp) / "affectlens"


@dataclass(frozen=True)
class AppConfig:
    db_url: str | None = None                 # None: the db package's default (SQLite under ./data)
    affwild2_root: Path | None = None         # local Aff-Wild2 copy (EULA data); None hides that source
    weights_ddamfn: str | None = None         # local file or hf://org/repo/file.pt; None = random init
    weights_lstm: str | None = None
    weights_clip: str | None = None           # open_clip pretrained tag, local file or hf:// id
    weights_clip_prompted: str | None = None  # trained CLIP adapter checkpoint
    clip_model: str = "ViT-B-32"              # open_clip architecture name
    device: str = "auto"
    max_upload_mb: int = 200
    max_duration_s: float = 600.0
    users: tuple[tuple[str, str], ...] = ()   # local logins; empty = no password page
    oauth: bool = False                       # Hugging Face login (on a Space with OAuth enabled)
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(os.environ))
    runs_dir: Path = Path("runs")             # checkpoints of retraining runs started from the page
    host: str = "127.0.0.1"
    port: int = 7860
    gpu_concurrency: int = 1                  # analyses that may run on the GPU at once

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AppConfig":
        env = os.environ if env is None else env
        return cls(
            db_url=env.get("AFFECTLENS_DB_URL") or None,
            affwild2_root=_path(env.get("AFFECTLENS_AFFWILD2_ROOT")),
            weights_ddamfn=env.get("AFFECTLENS_WEIGHTS_DDAMFN") or None,
            weights_lstm=env.get("AFFECTLENS_WEIGHTS_LSTM") or None,
            weights_clip=env.get("AFFECTLENS_WEIGHTS_CLIP") or None,
            weights_clip_prompted=env.get("AFFECTLENS_WEIGHTS_CLIP_PROMPTED") or None,
            clip_model=env.get("AFFECTLENS_CLIP_MODEL") or "ViT-B-32",
            device=env.get("AFFECTLENS_DEVICE") or "auto",
            max_upload_mb=int(env.get("AFFECTLENS_MAX_UPLOAD_MB") or 200),
            max_duration_s=float(env.get("AFFECTLENS_MAX_DURATION_S") or 600),
            users=_users(env.get("AFFECTLENS_USERS", "")),
            oauth=bool(env.get("SPACE_ID") and env.get("OAUTH_CLIENT_ID")),
            cache_dir=_path(env.get("AFFECTLENS_CACHE_DIR")) or _default_cache_dir(env),
            runs_dir=_path(env.get("AFFECTLENS_RUNS_DIR")) or Path("runs"),
            host=env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
            port=int(env.get("PORT") or env.get("GRADIO_SERVER_PORT") or 7860),
            gpu_concurrency=int(env.get("AFFECTLENS_GPU_CONCURRENCY") or 1),
        )
