"""Session folders: how long a session's files stay, and who may download them.

A session folder (cache_dir/<session hash>) holds the files a browser session's actions wrote (downloads,
frame crops, exports). A session is in use while it makes requests: it has ended once it has made none
for ttl_s (ended(), the one rule). Every request of a session counts -- an event of the queue names its
session hash in the query string, an open tab's heartbeat in its path, a download of the session's files
in the file's path -- and SessionRequests, an ASGI middleware, notes each one; a folder's own time stamp
counts too (a session whose requests name no session, e.g. the REST API's, still touches its folder when
it writes). A download from an ended session is answered in words (410 Gone), not served; a sweeper
thread removes the folders of ended sessions, and a browser tab's folder goes when the tab closes
(demo.unload).

Gradio serves the files from the folder itself (webapp.app makes cache_dir a static path), so its own
cache deletion, which ages files from their creation, never takes a file of a session in use.

Also here: the analysis folders of the data directory that no stored run names, removed at start-up
(remove_orphan_analyses).
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

ORPHAN_AGE_S = 3600.0    # an unnamed analysis folder younger than this may be being stored by another server
ANALYSES = "analyses"    # the stored analyses' folders, in the data directory (webapp.analyses writes them)
_SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,100}")
_HEARTBEAT = re.compile(r"/heartbeat/([^/]+)/?$")
_FILE = "/file="
_last_request: dict[str, float] = {}        # session hash -> time.time() of its last request


def ended_message(ttl_s: float) -> str:
    return (f"This file belonged to a session that ended: it made no request for {ttl_s:g} s, and its files "
            "were removed. Analyse the video again, or open it from the Review tab, to get its files anew.")


class SessionRequests:
    """ASGI middleware: notes the time of each session's requests (for ended()) and refuses downloads of
    an ended session's files in words."""

    def __init__(self, app, cache_dir: Path, ttl_s: float):
        self.app, self.cache_dir, self.ttl_s = app, Path(cache_dir).resolve(), ttl_s

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            session, is_file = self._session_of(scope)
            if session and _SESSION_HASH.fullmatch(session):
                folder = self.cache_dir / session
                if is_file and ended(folder, self.ttl_s):
                    response = PlainTextResponse(ended_message(self.ttl_s), status_code=410)
                    return await response(scope, receive, send)
                if folder.is_dir():
                    _last_request[session] = time.time()
        await self.app(scope, receive, send)

    def _session_of(self, scope) -> tuple[str | None, bool]:
        """(the session hash a request names, whether it asks for one of its files): a file under
        cache_dir/<session>, the query string (the queue's event stream) or the end of a heartbeat's path
        (an open tab's, every few seconds)."""
        path = scope["path"]
        if _FILE in path:
            try:
                inside = Path(path.split(_FILE, 1)[1]).resolve().relative_to(self.cache_dir)
            except ValueError:
                return None, False
            return (inside.parts[0], True) if len(inside.parts) > 1 else (None, False)
        heartbeat = _HEARTBEAT.search(path)
        if heartbeat:
            return heartbeat.group(1), False
        if b"session_hash=" in scope.get("query_string", b""):
            return (parse_qs(scope["query_string"].decode("latin-1")).get("session_hash") or [""])[0], False
        return None, False


def session_middleware(cache_dir: Path, ttl_s: float) -> Middleware:
    """SessionRequests for the server's app: launch(..., app_kwargs={"middleware": [session_middleware(...)]})."""
    return Middleware(SessionRequests, cache_dir=cache_dir, ttl_s=ttl_s)


def ended(folder: Path, ttl_s: float, now: float | None = None) -> bool:
    """Whether the session of a folder has ended: its folder is gone, or neither a request of the session
    nor a change of the folder came in the last ttl_s."""
    now = time.time() if now is None else now
    try:
        last_use = max(folder.stat().st_mtime, _last_request.get(folder.name, 0.0))
    except FileNotFoundError:
        return True
    return now - last_use > ttl_s


def sweep(cache_dir: Path, ttl_s: float, now: float | None = None) -> list[Path]:
    """Remove the session folders under cache_dir whose session has ended; returns them."""
    now = time.time() if now is None else now
    removed = []
    for folder in cache_dir.iterdir() if cache_dir.is_dir() else ():
        if folder.is_dir() and ended(folder, ttl_s, now):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for session, at in list(_last_request.items()):     # forget sessions whose folders are gone
        if now - at > ttl_s:
            _last_request.pop(session, None)
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


def remove_orphan_analyses(data_dir: Path, stored: set[str], now: float | None = None) -> list[Path]:
    """Remove the analysis folders (data_dir/analyses/*) that no stored run names (`stored`: the runs'
    artifacts_dir, relative to data_dir) and that nothing wrote for ORPHAN_AGE_S: analyses the page showed
    but could not register, the database having refused the write (a full disk, a read-only folder).
    Returns them."""
    now = time.time() if now is None else now
    parent = Path(data_dir) / ANALYSES
    removed = []
    for folder in sorted(parent.iterdir()) if parent.is_dir() else ():
        if (folder.is_dir() and f"{ANALYSES}/{folder.name}" not in stored
                and now - folder.stat().st_mtime > ORPHAN_AGE_S):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
