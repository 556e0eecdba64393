"""The Models tab: every registered checkpoint (picked on the Analyse tab without a restart), retraining on
the reviewers' corrected labels and the annotation audit, each as a job that goes on when the browser closes,
and the job's panel, which follows the job by itself while it runs."""
from __future__ import annotations

from typing import Callable

import gradio as gr

from training.config import presets
from webapp.inputs import InputError
from webapp.models import MODEL_COLUMNS, Models
from webapp.page import bind, login, status_box
from webapp.tabs.audit_queue import AuditQueueView
from webapp.tabs.views import AnalyseView, ModelsView


class ModelsTab:
    def __init__(self, models: Models, view: ModelsView, analyse: AnalyseView, queue: AuditQueueView,
                 refresh_queue: Callable[[dict], dict]):
        self.models, self.view, self.analyse = models, view, analyse
        self.queue, self.refresh_queue = queue, refresh_queue

    # -- handlers ---------------------------------------------------------------------------------------
    def retrain(self, data: dict, user):
        """Start retraining as a job in its own process: it goes on when the browser closes."""
        v = self.view
        job_id = self.models.retrain(data[v.preset], data[v.epochs], data[v.steps], data[v.batch], login(user))
        return {**self._job(job_id), v.job_id: job_id}

    def audit(self, data: dict, user):
        """Start the annotation audit as a job (the same queue and panel as retraining)."""
        job_id = self.models.audit(login(user))
        return {**self._job(job_id), self.view.job_id: job_id}

    def job_status(self, data: dict):
        return self._job(data[self.view.job_id])

    def tick(self, data: dict):
        """The timer's read of the job; with no job number the timer stops."""
        if not data[self.view.job_id]:
            return {self.view.job_timer: gr.Timer(active=False)}
        return self._job(data[self.view.job_id])

    def _job(self, job_id) -> dict:
        """The job's panel; while the job runs the timer keeps ticking (the panel follows it by itself); once a
        retraining job is done its model is in the models table and picked on the Analyse tab, and once an
        audit has ended `audit_ended` changes, which refreshes the dataset queue; no reload."""
        if not job_id:
            raise InputError("Enter the number of a retraining job (Retrain, or Audit this dataset, shows it).")
        v, job = self.view, self.models.job_status(job_id)
        done = job.model_id is not None
        picker = gr.update(choices=self.models.model_choices(), value=job.model_id) if done else gr.update()
        return {v.retrain_info: job.text, v.retrain_metrics: job.metrics, self.analyse.trained_model: picker,
                v.model_table: self.models.model_list() if done else gr.update(),
                v.new_model: job.model_id, v.analyse_with: gr.update(visible=done),
                v.job_timer: gr.Timer(active=not job.ended),
                v.audit_ended: int(job_id) if job.audit and job.ended else gr.update()}

    def analyse_with(self, data: dict):
        """Pick the job's new model on the Analyse tab (the page then analyses the video shown there)."""
        return {self.analyse.trained_model: gr.update(choices=self.models.model_choices(),
                                                      value=data[self.view.new_model])}

    # -- page -------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks):
        v, q = self.view, self.queue
        more = [v.model_table, v.new_model, v.analyse_with, v.job_timer, v.audit_ended]
        panel = [v.retrain_info, v.retrain_metrics, self.analyse.trained_model, *more]
        started = [v.retrain_info, v.retrain_metrics, v.job_id, self.analyse.trained_model, *more]
        bind(v.retrain_btn.click, self.retrain, {v.preset, v.epochs, v.steps, v.batch}, started,
             status=v.retrain_status, api_name="retrain")
        bind(v.audit_btn.click, self.audit, set(), started, status=v.retrain_status, api_name="audit")
        bind(v.job_btn.click, self.job_status, {v.job_id}, panel, status=v.job_status, api_name="job_status")
        bind(v.job_timer.tick, self.tick, {v.job_id}, panel, status=v.job_status, show_progress="hidden")
        bind(v.audit_ended.change, self.refresh_queue, {q.task, q.kind, q.order}, [q.suggestions, q.kind, q.progress],
             status=q.queue_status)
        bind(v.analyse_with.click, self.analyse_with, {v.new_model}, [self.analyse.trained_model],
             status=v.job_status).then(None, js=ANALYSE_JS)


JOB_TICK_S = 2.0       # how often the job panel reads its job while the job runs
# After "Analyse this video with it" picked the model: show the Analyse tab and press its Analyse button.
ANALYSE_JS = """() => {
  const tab = [...document.querySelectorAll('button[role="tab"]')].find(b => b.textContent.trim() === 'Analyse');
  if (tab) tab.click();
  setTimeout(() => document.getElementById('analyse')?.click(), 300);
}"""


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
        with gr.Row(equal_height=True):
            gr.Markdown("The annotation audit trains models on folds of the same data and ranks the stretches "
                        "where the annotation disagrees with what a model that never saw them predicts; its "
                        "suggestions fill the dataset queue on the Review tab.")
            audit_btn = gr.Button("Audit this dataset", elem_id="audit-dataset")
        retrain_status = status_box("retrain-status")
        with gr.Row():
            job_id = gr.Number(label="Job", elem_id="job-id")
            job_btn = gr.Button("Refresh job", elem_id="job-refresh")
        job_status = status_box("job-status")
        job_timer = gr.Timer(JOB_TICK_S, active=False)
        retrain_info = gr.Markdown(elem_id="retrain-info")
        retrain_metrics = gr.Dataframe(headers=["metric", "before", "after"], interactive=False,
                                       label="Validation metrics, before and after")
        new_model = gr.State(None)
        audit_ended = gr.State(None)      # the id of the last audit job seen ended: its change refreshes the queue
        analyse_with = gr.Button("Analyse this video with it", visible=False, elem_id="analyse-with")
    return ModelsView.of(locals())
