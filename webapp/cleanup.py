"""Session folders go within an hour of their last use. A browser tab's folder is removed when the tab
closes (demo.unload), but sessions of the REST API (/gradio_api/call) and tabs that never say goodbye
have no such event: a sweeper thread removes every session folder not used for `ttl_s`."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path


def sweep(cache_dir: Path, ttl_s: float, now: float | None = None) -> list[Path]:
    """Remove the session folders under cache_dir last used (modified) more than ttl_s ago; returns them."""
    now = time.time() if now is None else now
    removed = []
    for folder in cache_dir.iterdir() if cache_dir.is_dir() else ():
        try:
            stale = folder.is_dir() and now - folder.stat().st_mtime > ttl_s
        except FileNotFoundError:     # removed meanwhile by the session's own unload
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def start_sweeper(cache_dir: Path, ttl_s: float) -> threading.Thread:
    """A daemon thread that sweeps every tenth of ttl_s (at most every 10 minutes)."""
    interval = min(600.0, max(0.5, ttl_s / 10))

    def run():
        while True:
            time.sleep(interval)
            sweep(cache_dir, ttl_s)

    thread = threading.Thread(target=run, name="affectlens-session-sweeper", daemon=True)
    thread.start()
    return thread
