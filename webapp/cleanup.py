"""Session folders: whose they are, and how long they stay.

A session folder (cache_dir/<session hash>) belongs to the login that first claimed it (claim_session,
called before a handler replaces the session's video): another login that learnt the session hash -- it
shows in download URLs -- is refused, so it can neither read (webapp.page.need) nor replace that session.

A folder goes within ttl_s of the session's last request. A browser tab's folder is removed when the tab
closes (demo.unload); sessions of the REST API and tabs that never say goodbye have no such event, so a
sweeper thread removes every folder whose session has made no request for ttl_s. The last request is
seen by an ASGI middleware (LastRequest: every event of a session, a frame view included, reaches
Gradio's queue with the session hash in its query string, and an open tab's heartbeat names it); a
folder's own time stamp counts too (a session whose requests the middleware cannot see, e.g. the REST
API's).
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from starlette.middleware import Middleware

from webapp.inputs import InputError

OWNER_FILE = ".owner"
_SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,100}")
_HEARTBEAT = re.compile(r"/heartbeat/([^/]+)/?$")
_last_request: dict[str, float] = {}        # session hash -> time.time() of its last request


class LastRequest:
    """ASGI middleware: the time of each session's last request, for sweep()."""

    def __init__(self, app, cache_dir: Path):
        self.app, self.cache_dir = app, Path(cache_dir)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            session = _session_of(scope)
            if session and _SESSION_HASH.fullmatch(session) and (self.cache_dir / session).is_dir():
                _last_request[session] = time.time()
        await self.app(scope, receive, send)


def _session_of(scope) -> str | None:
    """The session hash a request names: in the query string (the queue's event stream) or at the end of
    a heartbeat's path (an open tab's, every few seconds)."""
    heartbeat = _HEARTBEAT.search(scope["path"])
    if heartbeat:
        return heartbeat.group(1)
    if b"session_hash=" in scope.get("query_string", b""):
        return (parse_qs(scope["query_string"].decode("latin-1")).get("session_hash") or [""])[0]
    return None


def session_middleware(cache_dir: Path) -> Middleware:
    """LastRequest for the server's app: launch(..., app_kwargs={"middleware": [session_middleware(...)]})."""
    return Middleware(LastRequest, cache_dir=cache_dir)


def claim_session(cache_dir: Path, session_hash: str | None, login: str | None) -> None:
    """Make the session this login's, or refuse (InputError) when another login claimed it first. A
    request without a session (Gradio's plain REST calls) keeps no state to protect."""
    if not session_hash:
        return
    folder = Path(cache_dir) / session_hash
    owner_file = folder / OWNER_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(owner_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if owner_file.read_text() != (login or ""):
            raise InputError("This session was opened under another login: sign in as yourself and open "
                             "your own session.") from None
        return
    except OSError as err:
        raise InputError(f"The server cannot write its session folder ({err.strerror}): nothing was done.") from None
    with os.fdopen(fd, "w") as f:
        f.write(login or "")


def last_use(folder: Path) -> float:
    """When the session of a folder was last used: its last request, or the folder's last change."""
    return max(folder.stat().st_mtime, _last_request.get(folder.name, 0.0))


def sweep(cache_dir: Path, ttl_s: float, now: float | None = None) -> list[Path]:
    """Remove the session folders under cache_dir whose session was last used more than ttl_s ago;
    returns them."""
    now = time.time() if now is None else now
    removed = []
    for folder in cache_dir.iterdir() if cache_dir.is_dir() else ():
        try:
            stale = folder.is_dir() and now - last_use(folder) > ttl_s
        except FileNotFoundError:     # removed meanwhile by the session's own unload
            continue
        if stale:
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
