"""Settings of the web app, read once from the environment so that a Space, `make run` and the tests
configure the same code the same way."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from core import settings
from core.models.clip import DEFAULT_MODEL as DEFAULT_CLIP_MODEL
from core.registry import cards, configured_weights
from db.engine import WRITER_TURNS
from webapp.gpu import ZEROGPU_MAX_VIDEO_S


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
    # model card -> weights spec (core.weights: local file, hf://org/repo/file.pt, open_clip tag); absent or
    # None = random init. from_env reads each card's variable (core.registry: AFFECTLENS_WEIGHTS_DDAMFN, ...).
    weights: dict = field(default_factory=dict)
    weights_notes: tuple[str, ...] = ()       # from_env: where default weights came from (for the log)
    clip_model: str = DEFAULT_CLIP_MODEL      # open_clip architecture name
    device: str = "auto"
    max_upload_mb: int = 200
    max_duration_s: float = 600.0
    max_frames: int = 36_000                  # ten minutes at 60 frames/s: the work an analysis may take on
    users: tuple[tuple[str, str], ...] = ()   # local logins; empty = no password page
    oauth: bool = False                       # Hugging Face login (on a Space with OAuth enabled)
    space_id: str | None = None               # set on a Hugging Face Space (SPACE_ID)
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(os.environ))
    runs_dir: Path = Path("runs")             # checkpoints of retraining runs started from the page
    data_dir: Path = settings.DATA_DIR        # stored analyses and uploaded videos (and the default SQLite)
    host: str = "127.0.0.1"
    port: int = 7860
    gpu_concurrency: int = 1                  # analyses that may run on the GPU at once
    session_ttl_s: float = 3600.0             # a session has ended this long after its last request
    model_cache_mb: float = 2048.0            # models kept loaded between analyses (webapp.context)
    trusted_proxies: int = 0                  # proxies in front whose X-Forwarded-For names the client (webapp.logins)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AppConfig":
        """The settings from environment variables. A model card without its weights variable gets its
        default: CLIP the default pretrained weights (downloaded now) or, offline, random ones
        (core.weights.default_clip_weights); the others random weights.
        On ZeroGPU (SPACES_ZERO_GPU, as the `spaces` package reads it) videos are capped at what one GPU
        call can analyse (webapp.gpu)."""
        env = os.environ if env is None else env
        clip_model = env.get("AFFECTLENS_CLIP_MODEL") or DEFAULT_CLIP_MODEL
        weights, notes = configured_weights(cards(), env, clip_model)
        max_duration_s = float(env.get("AFFECTLENS_MAX_DURATION_S") or 600)
        if env.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):
            max_duration_s = min(max_duration_s, ZEROGPU_MAX_VIDEO_S)
        return cls(
            db_url=env.get("AFFECTLENS_DB_URL") or None,
            affwild2_root=_path(env.get("AFFECTLENS_AFFWILD2_ROOT")),
            weights=weights,
            weights_notes=tuple(notes),
            clip_model=clip_model,
            device=env.get("AFFECTLENS_DEVICE") or "auto",
            max_upload_mb=int(env.get("AFFECTLENS_MAX_UPLOAD_MB") or 200),
            max_duration_s=max_duration_s,
            max_frames=int(env.get("AFFECTLENS_MAX_FRAMES") or 36_000),
            users=_users(env.get("AFFECTLENS_USERS", "")),
            oauth=bool(env.get("SPACE_ID") and env.get("OAUTH_CLIENT_ID")),
            space_id=env.get("SPACE_ID") or None,
            cache_dir=_path(env.get("AFFECTLENS_CACHE_DIR")) or _default_cache_dir(env),
            runs_dir=_path(env.get("AFFECTLENS_RUNS_DIR")) or Path("runs"),
            data_dir=settings.data_dir(env),
            host=env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
            port=int(env.get("PORT") or env.get("GRADIO_SERVER_PORT") or 7860),
            gpu_concurrency=int(env.get("AFFECTLENS_GPU_CONCURRENCY") or 1),
            session_ttl_s=float(env.get("AFFECTLENS_SESSION_TTL_S") or 3600),
            model_cache_mb=float(env.get("AFFECTLENS_MODEL_CACHE_MB") or 2048),
            trusted_proxies=int(env.get("AFFECTLENS_TRUSTED_PROXIES") or (1 if env.get("SPACE_ID") else 0)),
        )

    def startup_log(self) -> list[str]:
        """Lines for the log at start-up: the database (for a SQLite file, how its writers take turns and a
        warning on a Space, which loses it at every restart) and where each model's weights come from."""
        from sqlalchemy.engine import make_url

        url = make_url(self.db_url or settings.db_url())
        lines = [f"AffectLens database: {url.render_as_string(hide_password=True)}"]
        if url.get_backend_name() == "sqlite":
            lines.append(f"SQLite writers take turns {WRITER_TURNS}")
        if url.get_backend_name() == "sqlite" and self.space_id:
            lines.append(f"WARNING: the database is a SQLite file on the Space {self.space_id}: it is lost when the "
                         "Space restarts. Set AFFECTLENS_DB_URL to a PostgreSQL server (a Space secret), or "
                         "export the corrections regularly.")
        lines += self.weights_notes
        return lines
