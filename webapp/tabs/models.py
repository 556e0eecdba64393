"""The Models tab: every registered checkpoint (picked on the Analyse tab without a restart) and
retraining on the reviewers' corrected labels as a job that goes on when the browser closes."""
from __future__ import annotations

import gradio as gr

from training.config import presets
from webapp.inputs import InputError
from webapp.models import MODEL_COLUMNS, Models
from webapp.page import bind, login, status_box
from webapp.tabs.views import AnalyseView, ModelsView


class ModelsTab:
    def __init__(self, models: Models, view: ModelsView, analyse: AnalyseView):
        self.models, self.view, self.analyse = models, view, analyse

    # -- handlers ---------------------------------------------------------------------------------------
    def retrain(self, data: dict, user):
        """Start retraining as a job in its own process: it goes on when the browser closes."""
        v = self.view
        job_id = self.models.retrain(data[v.preset], data[v.epochs], data[v.steps], data[v.batch], login(user))
        return {**self._job(job_id), v.job_id: job_id}

    def job_status(self, data: dict):
        return self._job(data[self.view.job_id])

    def _job(self, job_id) -> dict:
        """The job's progress and metrics, and the Analyse tab's weights picker with its model once done."""
        if not job_id:
            raise InputError("Enter the number of a retraining job (Retrain shows it).")
        text, metrics, model_id = self.models.job_status(job_id)
        picker = gr.update(choices=self.models.model_choices(), value=model_id) if model_id else gr.update()
        return {self.view.retrain_info: text, self.view.retrain_metrics: metrics, self.analyse.trained_model: picker}

    # -- page -------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks):
        v = self.view
        bind(v.retrain_btn.click, self.retrain, {v.preset, v.epochs, v.steps, v.batch},
             [v.retrain_info, v.retrain_metrics, v.job_id, self.analyse.trained_model], status=v.retrain_status,
             api_name="retrain")
        bind(v.job_btn.click, self.job_status, {v.job_id}, [v.retrain_info, v.retrain_metrics,
                                                             self.analyse.trained_model],
             status=v.job_status, api_name="job_status")


def layout() -> ModelsView:
    training_presets = [p for p in presets() if p != "tiny"]
    with gr.Tab("Models"):
        gr.Markdown("### Models\nEvery checkpoint written by `python -m training` or by a retraining job; pick one "
                    "on the Analyse tab to analyse with it, no restart.")
        model_table = gr.Dataframe(headers=MODEL_COLUMNS, label="Models (none yet: train one with `python -m "
                                   "training` or Retrain below)", interactive=False, wrap=True, elem_id="models")
        gr.Markdown("### Retrain on the corrected labels (the uploaded videos with annotations, and the Aff-Wild2 "
                    "folder when one is set)")
        with gr.Row():
            preset = gr.Dropdown(training_presets, value="ddamfn-va" if "ddamfn-va" in training_presets else None,
                                 label="Training preset")
            epochs = gr.Number(1, label="Epochs", elem_id="epochs")
            steps = gr.Number(0, label="Steps per epoch (0: all)", elem_id="steps")
            batch = gr.Number(0, label="Batch size (0: the preset's)", elem_id="batch")
            retrain_btn = gr.Button("Retrain", elem_id="retrain")
        retrain_status = status_box("retrain-status")
        with gr.Row():
            job_id = gr.Number(label="Job", elem_id="job-id")
            job_btn = gr.Button("Refresh job", elem_id="job-refresh")
        job_status = status_box("job-status")
        retrain_info = gr.Markdown(elem_id="retrain-info")
        retrain_metrics = gr.Dataframe(headers=["metric", "before", "after"], interactive=False,
                                       label="Validation metrics, before and after")
    return ModelsView.of(locals())
