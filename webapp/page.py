"""What the tabs' handlers share: who is signed in, expected failures as messages beside the button,
progress, the browser session's folder.

Handlers take their inputs as one dict (Gradio's `inputs={...}` sets) and return a dict of the outputs
they set; a handler that takes `user` gets the signed-in name (`signed_in`). `bind` wires one event per
action, which is also its API endpoint when it has an `api_name`. A refused action (InputError,
AnnotationError, ValidationError, or a gr.Error that a GPU worker sent back):

- on the page, leaves every output as it was (no error badge, no toast) and puts the reason into the
  action area's status Markdown, where it stays until the next action there;
- for an API caller (gradio_client, or any request that is not from the page), raises gr.Error, so that
  the caller gets an AppError with the reason.

A success shows the handler's outputs, its status text (or clears the status) and empties the `clear`
fields (notes, comments).
"""
from __future__ import annotations

import functools
import inspect
import os
import typing
from pathlib import Path

import gradio as gr

from core.affwild2 import AnnotationError
from db.repo import ValidationError
from webapp.inputs import InputError
from webapp.summary import readable

EXPECTED = (InputError, AnnotationError, ValidationError)
STATUS_CLASS = "action-status"       # page.css styles it; a refusal's text sits in a .refused element
REFUSED = "Not done"
PAGE_CLIENT = "app"                  # the x-gradio-user header of the page's own requests (Gradio's JS client)

CSS = f"""
.{STATUS_CLASS} {{ min-height: 1.5em; }}
.{STATUS_CLASS} .refused, .{STATUS_CLASS} .refused strong {{ color: #b91c1c; }}
.{STATUS_CLASS}:has(.refused) {{ border-left: 4px solid #dc2626; padding-left: 0.6em; background: #fef2f2; }}
/* A table's text wraps between words, never inside one ("fra / mes"): columns are sized for their words. */
.table-wrap span.wrap {{ word-break: normal; overflow-wrap: normal; }}
"""


class Page(gr.Blocks):
    """gr.Blocks whose refusals of malformed input -- a value outside a component's choices, a wrong type,
    too few values: Gradio's own checks before a handler runs, which only API callers can fail -- are
    answered in words and logged as one line each. Gradio would print a traceback for each, and a log
    full of them hides the real faults."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as err:
            message = " ".join((err.message if isinstance(err, gr.Error) else str(err)).split())
            print(f"AffectLens refused the input of {block_fn.api_name or block_fn.name}: {message}", flush=True)
            raise gr.Error(message, print_exception=False) from None


def login_name(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    """The reviewer's name from the login: Hugging Face OAuth on a Space, auth= locally. Never typed."""
    return getattr(profile, "username", None) or getattr(request, "username", None)


def login(user: str | None) -> str:
    """The signed-in name, or a message saying that this action needs one."""
    if not user:
        raise InputError("Sign in to review: flags, corrections and decisions are recorded under your login.")
    return user


def _message(err: Exception) -> str:
    return readable(err.message if isinstance(err, gr.Error) else str(err))


def page_errors(fn):
    """Expected failures become one gr.Error: what crosses back from a ZeroGPU worker with its message.
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
    return wrapper


def signed_in(fn, refused=None):
    """fn as Gradio calls it: Gradio hands the request and the login's profile to the wrapper, which
    gives fn `user=` (the signed-in name, None when nobody is) and `request=` when fn takes them.
    `refused(err, request)` answers an expected failure instead of raising it."""
    sig, hints = inspect.signature(fn), _hints(fn)
    given = [name for name in ("user", "request") if name in sig.parameters]
    params = [p for name, p in sig.parameters.items() if name not in given]
    params += [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
               inspect.Parameter("profile", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]

    def split(args):
        *rest, request, profile = args
        values = {"user": login_name(request, profile), "request": request}
        return {**dict(zip((p.name for p in params), rest)), **{name: values[name] for name in given}}, request

    if inspect.isgeneratorfunction(fn):
        def wrapper(*args):
            kwargs, request = split(args)
            try:
                yield from fn(**kwargs)
            except (*EXPECTED, gr.Error) as err:
                if refused is None:
                    raise
                yield refused(err, request)
    else:
        def wrapper(*args):
            kwargs, request = split(args)
            try:
                return fn(**kwargs)
            except (*EXPECTED, gr.Error) as err:
                if refused is None:
                    raise
                return refused(err, request)

    wrapper.__name__, wrapper.__doc__ = _name(fn), fn.__doc__
    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {**{k: v for k, v in hints.items() if k not in given},
                               "request": gr.Request, "profile": gr.OAuthProfile | None}
    return wrapper


def _hints(fn) -> dict:
    """fn's type hints (a functools.partial's: those of its function)."""
    return typing.get_type_hints(getattr(fn, "func", fn))


def _name(fn) -> str:
    return getattr(getattr(fn, "func", fn), "__name__", "handler")


def refusal(reason: str, action: str | None = None) -> str:
    """The status text of a refused action, naming the action when known (styled red by CSS)."""
    what = f" ({action})" if action else ""
    return f'<span class="refused">**{REFUSED}{what}:** {reason}</span>'


def status_box(elem_id: str | None = None) -> gr.Markdown:
    """The message line of an action area: a success note or why the action was refused."""
    return gr.Markdown(elem_id=elem_id, elem_classes=[STATUS_CLASS])


def bind(triggers, fn, inputs, outputs, *, status: gr.Markdown, api_name: str | None = None, clear=(),
         **event) -> gr.events.Dependency:
    """Wire fn (dict in, dict out) to triggers: a success also sets `status` (fn's text or empty) and
    empties the `clear` fields; a refusal is said in `status` on the page and raised for an API caller.
    With api_name the event is also that API endpoint. `event`: further event settings."""
    triggers = list(triggers) if isinstance(triggers, (list, tuple)) else [triggers]
    buttons = [t.__self__ for t in triggers if isinstance(getattr(t, "__self__", None), gr.Button)]
    action = str(buttons[0].value) if buttons else None
    outputs = [*dict.fromkeys([*outputs, status, *clear])]

    def refused(err, request):
        if request is not None and request.headers.get("x-gradio-user") == PAGE_CLIENT:
            return {status: refusal(_message(err), action)}
        raise gr.Error(_message(err), print_exception=False) from None

    def shown(result: dict) -> dict:
        return {**result, status: result.get(status, ""), **{c: "" for c in clear}}

    if inspect.isgeneratorfunction(fn):
        def done(*args, **kwargs):
            for result in fn(*args, **kwargs):
                yield shown(result)
    else:
        def done(*args, **kwargs):
            return shown(fn(*args, **kwargs))
    done.__name__, done.__doc__, done.__signature__ = _name(fn), fn.__doc__, inspect.signature(fn)
    done.__annotations__ = _hints(fn)
    return gr.on(triggers, signed_in(done, refused), inputs, outputs, api_name=api_name or False, **event)


def quiet(fn, outputs):
    """fn for a follow-up page event (the frame details after the frame): when it is refused, its outputs
    stay as they were and nothing is said, because the event before it already said why."""
    return signed_in(fn, lambda err, request: {o: gr.skip() for o in outputs})


class Progress:
    """A core-style progress callback (done, total) that reports to a gr.Progress; a class rather than a
    lambda so that it pickles into a ZeroGPU worker."""

    def __init__(self, progress: gr.Progress, desc: str, unit: str):
        self.progress, self.desc, self.unit = progress, desc, unit

    def __call__(self, done: int, total: int):
        self.progress((done, total), desc=self.desc, unit=self.unit)


def session_dir(cache_dir: Path, request: gr.Request | None) -> Path:
    """This browser session's output folder, inside the app's cache dir (Gradio serves files from there
    because cache_dir is a static path). Its time stamp marks a use of the session: it is removed when the
    browser tab closes, or by webapp.cleanup once the session has ended."""
    path = cache_dir / (getattr(request, "session_hash", None) or "no-session")
    path.mkdir(parents=True, exist_ok=True)
    os.utime(path)
    return path
