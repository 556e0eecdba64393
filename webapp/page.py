"""What the tabs' handlers share: who is signed in, expected failures as page messages, progress, the
browser session's folder.

Refused actions. An expected failure (InputError, AnnotationError, ValidationError, or a gr.Error that a
GPU worker sent back) never replaces the outputs by error badges on the page: `bind` wires a handler twice,

- for the page (no API name): on a refusal every output is left as it was (gr.skip()) and the reason goes
  into the action area's status Markdown, where it stays until the next action there; on success the
  handler's outputs are shown, the status shows its success text (or is cleared) and the `clear` fields
  (notes, comments) are emptied;
- for the API (`api_name`, an event without a trigger): the handler as before, so that gradio_client
  callers get an AppError with the reason for a refusal and the same outputs for a success.

A tab adopts it by giving each action area a status component (`status_box()`) and wiring
`bind(button.click, self.handler, inputs, outputs, status=c.some_status, api_name="name")` instead of
`button.click(page_errors(self.handler), inputs, outputs, api_name="name")`.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
from pathlib import Path

import gradio as gr

from core.affwild2 import AnnotationError
from db.repo import ValidationError
from webapp.inputs import InputError

EXPECTED = (InputError, AnnotationError, ValidationError)
STATUS_CLASS = "action-status"       # page.css styles it; a refusal's text sits in a .refused element
REFUSED = "Not done"

CSS = f"""
.{STATUS_CLASS} {{ min-height: 1.5em; }}
.{STATUS_CLASS} .refused, .{STATUS_CLASS} .refused strong {{ color: #b91c1c; }}
.{STATUS_CLASS}:has(.refused) {{ border-left: 4px solid #dc2626; padding-left: 0.6em; background: #fef2f2; }}
"""

# An absolute server path inside a message (/home/x/y.mp4, C:\\data\\y): only its last part is shown.
_PATH = re.compile(r"(?<![\w/.:-])(?:[A-Za-z]:\\|/)(?:[^\s'\"(),:;]+[/\\])+([^\s'\"(),:;/\\]*)")


def readable(message: str) -> str:
    """A message for people: no server paths (a file is named by its name)."""
    return _PATH.sub(lambda m: m.group(1) or Path(m.group(0).rstrip("/\\")).name, str(message)).strip()


def signed_in(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    """The reviewer's name from the login: Hugging Face OAuth on a Space, auth= locally. Never typed."""
    return getattr(profile, "username", None) or getattr(request, "username", None)


def user(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str:
    name = signed_in(request, profile)
    if not name:
        raise InputError("Sign in to review: flags, corrections and decisions are recorded under your login.")
    return name


def _message(err: Exception) -> str:
    return readable(err.message if isinstance(err, gr.Error) else str(err))


def page_errors(fn):
    """Expected failures (bad input, bad files, review rules) become one gr.Error: the API's answer to
    a refusal (gradio_client raises AppError with the message); the app keeps serving the next request.
    A generator (an analysis that streams its timeline) is wrapped as a generator."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except EXPECTED as err:
                raise gr.Error(_message(err), print_exception=False) from None
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except EXPECTED as err:
                raise gr.Error(_message(err), print_exception=False) from None

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


def refusal(reason: str, action: str | None = None) -> str:
    """The status text of a refused action, naming the action when known (styled red by CSS)."""
    what = f" ({action})" if action else ""
    return f'<span class="refused">**{REFUSED}{what}:** {reason}</span>'


def status_box(elem_id: str | None = None) -> gr.Markdown:
    """The message line of an action area: a success note or why the action was refused."""
    return gr.Markdown(elem_id=elem_id, elem_classes=[STATUS_CLASS])


def shown(fn, n_outputs: int, status_at: int, returns_status: bool, n_clear: int = 0, action: str | None = None):
    """fn for the page: a refusal skips every output and puts the reason at status_at; a success returns
    fn's outputs (with an empty status when fn does not write one) and empties the n_clear fields after
    them. A generator's every update is shown the same way."""
    def refused(err):
        out = [gr.skip()] * n_outputs
        out[status_at] = refusal(_message(err), action)
        return out[0] if n_outputs == 1 else tuple(out)

    def outputs(result):
        n_fn = n_outputs - n_clear - (0 if returns_status else 1)
        out = list(result) if n_fn > 1 else [result]
        if not returns_status:
            out.insert(status_at, "")
        out += [""] * n_clear
        return out[0] if n_outputs == 1 else tuple(out)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                for result in fn(*args, **kwargs):
                    yield outputs(result)
            except (*EXPECTED, gr.Error) as err:
                yield refused(err)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except (*EXPECTED, gr.Error) as err:
                return refused(err)
            return outputs(result)

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


def quiet(fn, n_outputs: int):
    """fn for a follow-up page event (the frame details after the frame): when it is refused, its outputs
    stay as they were and nothing is said, because the event before it already said why."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (*EXPECTED, gr.Error):
            return gr.skip() if n_outputs == 1 else tuple(gr.skip() for _ in range(n_outputs))

    wrapper.__signature__ = inspect.signature(fn)
    return wrapper


def bind(triggers, fn, inputs, outputs, *, status: gr.Markdown, api_name: str | None = None, clear=(),
         **event) -> gr.events.Dependency:
    """Wire fn to triggers for the page (refusals as a message in `status`, outputs untouched, `clear`
    fields emptied after a success) and, with api_name, as the API endpoint of that name (refusals raise).
    `event`: further event settings (concurrency_id, ...) for both. Returns the page event."""
    triggers = list(triggers) if isinstance(triggers, (list, tuple)) else [triggers]
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    inputs = inputs if inputs is not None else []
    returns_status = any(o is status for o in outputs)
    page_outputs = outputs + ([] if returns_status else [status]) + list(clear)
    status_at = next(i for i, o in enumerate(page_outputs) if o is status)
    buttons = [t.__self__ for t in triggers if isinstance(getattr(t, "__self__", None), gr.Button)]
    action = str(buttons[0].value) if buttons else None
    if api_name:
        gr.on([], page_errors(fn), inputs, outputs, api_name=api_name, **event)
    return gr.on(triggers, shown(fn, len(page_outputs), status_at, returns_status, len(clear), action), inputs,
                 page_outputs, api_name=f"page_{api_name or fn.__name__}", api_visibility="private", **event)


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


def api_only(fn, inputs, outputs, *, api_name: str, **event) -> gr.events.Dependency:
    """An API endpoint with no trigger on the page (refusals raise, as for every endpoint)."""
    return gr.on([], page_errors(fn), inputs if inputs is not None else [], outputs, api_name=api_name, **event)
