"""What the tabs' handlers share: who is signed in, expected failures as page messages, progress, the
browser session's folder."""
from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path

import gradio as gr

from core.affwild2 import AnnotationError
from db.repo import ValidationError
from webapp.inputs import InputError


def signed_in(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    """The reviewer's name from the login: Hugging Face OAuth on a Space, auth= locally. Never typed."""
    return getattr(profile, "username", None) or getattr(request, "username", None)


def user(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str:
    name = signed_in(request, profile)
    if not name:
        raise InputError("Sign in to review: flags, corrections and decisions are recorded under your login.")
    return name


def page_errors(fn):
    """Expected failures (bad input, bad files, review rules) become one message in the page; the app
    keeps serving the next request."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, AnnotationError, ValidationError) as err:
            raise gr.Error(str(err), print_exception=False) from None

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


class Progress:
    """A core-style progress callback (done, total) that reports to a gr.Progress; a class rather than a
    lambda so that it pickles into a ZeroGPU worker."""

    def __init__(self, progress: gr.Progress, desc: str, unit: str):
        self.progress, self.desc, self.unit = progress, desc, unit

    def __call__(self, done: int, total: int):
        self.progress((done, total), desc=self.desc, unit=self.unit)


def need(state, request: gr.Request | None, profile: gr.OAuthProfile | None) -> dict:
    """The analysed video of this browser session, or a message saying how to get one. A session's state
    belongs to the login that made it: a request from another login (one who learnt the session id) is
    refused."""
    if not state:
        raise InputError("Analyse a video first (Analyse tab), or open one from the database (Review tab).")
    if state.get("owner") != signed_in(request, profile):
        raise InputError("This session's video was opened under another login: analyse or open it yourself.")
    return state


def session_dir(cache_dir: Path, request: gr.Request) -> Path:
    """This browser session's output folder, inside the app's cache dir (Gradio serves files from there
    because the app created them). Its time stamp marks the session's last use: it is removed when the
    browser tab closes, or by webapp.cleanup an hour after that last use."""
    path = cache_dir / (request.session_hash or "no-session")
    path.mkdir(parents=True, exist_ok=True)
    os.utime(path)
    return path
