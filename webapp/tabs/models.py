"""The Models tab: every registered checkpoint (picked on the Analyse tab without a restart) and
retraining on the reviewers' corrected labels as a job that goes on when the browser closes."""
from __future__ import annotations

import gradio as gr

from training.config import presets
from webapp.inputs import InputError
from webapp.models import MODEL_COLUMNS, Models
from webapp.page import bind, status_box, user


class ModelsTab:
    def __init__(self, models: Models):
        self.models = models

    # -- handlers ---------------------------------------------------------------------------------------
    def retrain(self, preset, epochs, steps_per_epoch, batch_size, request: gr.Request,
                profile: gr.OAuthProfile | None):
        """Start retraining as a job in its own process: it goes on when the browser closes."""
        job_id = self.models.retrain(preset, epochs, steps_per_epoch, batch_size, user(request, profile))
        return (*self.job_status(job_id)[:2], job_id)

    def job_status(self, job_id):
        if not job_id:
            raise InputError("Enter the number of a retraining job (Retrain shows it).")
        text, metrics, model_id = self.models.job_status(job_id)
        picker = gr.update(choices=self.models.model_choices(), value=model_id) if model_id else gr.update()
        return text, metrics, picker

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        training_presets = [p for p in presets() if p != "tiny"]
        with gr.Tab("Models"):
            gr.Markdown("### Models\nEvery checkpoint written by `python -m training` or by a retraining job; "
                        "pick one on the Analyse tab to analyse with it, no restart.")
            c.model_table = gr.Dataframe(headers=MODEL_COLUMNS, label="Models (none yet: train one with `python -m "
                                         "training` or Retrain below)", interactive=False,
                                         elem_id="models")
            gr.Markdown("### Retrain on the corrected labels (needs the Aff-Wild2 folder)")
            with gr.Row():
                c.preset = gr.Dropdown(training_presets, value="ddamfn-va" if "ddamfn-va" in training_presets
                                       else None, label="Training preset")
                c.epochs = gr.Number(1, label="Epochs", elem_id="epochs")
                c.steps = gr.Number(0, label="Steps per epoch (0: all)", elem_id="steps")
                c.batch = gr.Number(0, label="Batch size (0: the preset's)", elem_id="batch")
                c.retrain_btn = gr.Button("Retrain", elem_id="retrain")
            c.retrain_status = status_box("retrain-status")
            with gr.Row():
                c.job_id = gr.Number(label="Job", elem_id="job-id")
                c.job_btn = gr.Button("Refresh job", elem_id="job-refresh")
            c.job_status = status_box("job-status")
            c.retrain_info = gr.Markdown(elem_id="retrain-info")
            c.retrain_metrics = gr.Dataframe(headers=["metric", "before", "after"], interactive=False,
                                             label="Validation metrics, before and after")

    def wire(self, c, demo: gr.Blocks):
        bind(c.retrain_btn.click, self.retrain, [c.preset, c.epochs, c.steps, c.batch],
             [c.retrain_info, c.retrain_metrics, c.job_id], status=c.retrain_status, api_name="retrain")
        bind(c.job_btn.click, self.job_status, c.job_id, [c.retrain_info, c.retrain_metrics, c.trained_model],
             status=c.job_status, api_name="job_status")
