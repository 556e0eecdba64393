"""The Review tab's dataset queue (the annotation audit, webapp/audit.py): suggestions of all videos best
first, filtered by task and kind; a click opens one at its stretch (annotation beside the out-of-fold
prediction, and the frames when the video has a stored analysis, which also becomes the page's open
video with the stretch in the flag and correction forms); confirm or dismiss; reviewed n of N and the
random-sample estimate of wrongly annotated frames. Its own view and layout, placed at the end of the Review tab."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.labels import TASKS
from webapp.analyses import Analyses
from webapp.audit import ALL, BEST_FIRST, QUEUE_COLUMNS, RANDOM_SAMPLE, Audit
from webapp.frames import Frames
from webapp.inputs import InputError
from webapp.page import bind, login, session_dir, status_box
from webapp.state import claim
from webapp.tabs.analyse import AnalyseTab
from webapp.tabs.views import PageView, ReviewView, View


@dataclass
class AuditQueueView(View):
    task: gr.Dropdown
    kind: gr.Dropdown
    order: gr.Radio
    refresh_btn: gr.Button
    progress: gr.Markdown
    suggestions: gr.Dataframe
    suggestion: gr.Number
    open_btn: gr.Button
    queue_status: gr.Markdown
    words: gr.Markdown
    figure: gr.Plot
    gallery: gr.Gallery
    stretch: gr.Dataframe
    note: gr.Textbox
    propose: gr.Checkbox
    confirm_btn: gr.Button
    dismiss_btn: gr.Button
    decision_status: gr.Markdown


def layout() -> AuditQueueView:
    with gr.Accordion("Dataset queue: the annotation audit's suggestions across all videos", open=True,
                      elem_id="audit-queue"):
        with gr.Row(equal_height=True):
            task = gr.Dropdown([ALL, *TASKS], value=ALL, label="Task", elem_id="audit-task")
            kind = gr.Dropdown([ALL], value=ALL, label="Kind", allow_custom_value=True, elem_id="audit-kind")
            order = gr.Radio([BEST_FIRST, RANDOM_SAMPLE], value=BEST_FIRST, label="Order", elem_id="audit-order",
                             info="random sample: drawn within score bands and among clean stretches; its reviews "
                                  "make the estimate of how much is wrongly annotated")
            refresh_btn = gr.Button("Refresh dataset queue", elem_id="audit-refresh")
        progress = gr.Markdown(elem_id="audit-progress")
        suggestions = gr.Dataframe(headers=QUEUE_COLUMNS, label="Suggestions (score: estimated probability that the "
                                   "stretch is wrongly annotated): click a row to open it",
                                   interactive=False, wrap=True, max_height=260, elem_id="audit-suggestions")
        with gr.Row(equal_height=True):
            suggestion = gr.Number(label="Suggestion id", precision=0, elem_id="audit-suggestion")
            open_btn = gr.Button("Open suggestion", elem_id="audit-open")
        queue_status = status_box("audit-queue-status")
        words = gr.Markdown(elem_id="audit-words")
        with gr.Row():
            figure = gr.Plot(label="Annotation and out-of-fold prediction (the stretch shaded)", elem_id="audit-plot")
            gallery = gr.Gallery(label="The stretch's frames", columns=6, height=220, elem_id="audit-gallery")
        stretch = gr.Dataframe(label="Per frame", interactive=False, wrap=True, max_height=220, elem_id="audit-stretch")
        with gr.Row(equal_height=True):
            note = gr.Textbox(label="Note", elem_id="audit-note", scale=3)
            propose = gr.Checkbox(True, label="Also propose the suggested label as a correction",
                                  elem_id="audit-propose")
            confirm_btn = gr.Button("Confirm: the annotation is wrong", elem_id="audit-confirm")
            dismiss_btn = gr.Button("Dismiss: the annotation is right", elem_id="audit-dismiss")
        decision_status = status_box("audit-decision-status")
    return AuditQueueView.of(locals())


class AuditQueueTab:
    def __init__(self, audit: Audit, analyses: Analyses, frames: Frames, page: PageView, view: AuditQueueView,
                 review: ReviewView, analyse_tab: AnalyseTab):
        self.audit, self.analyses, self.frames = audit, analyses, frames
        self.page, self.view, self.review, self.analyse_tab = page, view, review, analyse_tab

    def refresh(self, data: dict):
        """The open suggestions under the filters, the kinds to filter by, and the progress."""
        v = self.view
        table, kinds, progress = self.audit.queue(data[v.task], data[v.kind], data[v.order])
        return {v.suggestions: table, v.kind: gr.update(choices=[ALL, *kinds]), v.progress: progress}

    def open_selected(self, data: dict, evt: gr.SelectData, user, request):
        """A click on a row opens that suggestion."""
        table = data[self.view.suggestions]
        return self._open(int(table.iloc[evt.index[0]]["id"]), data[self.page.state], user, request)

    def open(self, data: dict, user, request):
        return self._open(data[self.view.suggestion], data[self.page.state], user, request)

    def _open(self, suggestion_id, state, user, request) -> dict:
        """The suggestion's stretch; its video, where it has a stored analysis, opened on the Analyse tab
        as the Review tab opens it (AnalyseTab.shown), so the timeline, player and frame view follow."""
        v, r = self.view, self.review
        claim(state, user)
        stretch = self.audit.open(suggestion_id)
        out = {v.suggestion: stretch.id, v.figure: stretch.figure, v.stretch: stretch.table, v.gallery: None,
               r.task: stretch.task, r.start: stretch.start, r.end: stretch.end}
        try:
            analysed = self.analyses.open_video(stretch.key, user, session_dir(self.analyses.config.cache_dir,
                                                                               request))
        except InputError as err:       # no stored analysis: the annotation and prediction, no frames
            return {**out, v.words: f"{stretch.words} No frames: {err}"}
        video = analysed.video
        return {**self.analyse_tab.shown(analysed), **self.analyse_tab.view.player_waits_for(video.name), **out,
                v.words: stretch.words, v.gallery: self.frames.gallery(video, stretch.start, stretch.end)}

    def confirm(self, data: dict, user):
        v = self.view
        said = self.audit.confirm(data[v.suggestion], login(user), data[v.note], data[v.propose])
        return {**self.refresh(data), v.decision_status: said}

    def dismiss(self, data: dict, user):
        v = self.view
        said = self.audit.dismiss(data[v.suggestion], login(user), data[v.note])
        return {**self.refresh(data), v.decision_status: said}

    def wire(self, demo: gr.Blocks):
        v, r = self.view, self.review
        listed = [v.suggestions, v.kind, v.progress]
        filters = {v.task, v.kind, v.order}
        bind(v.refresh_btn.click, self.refresh, filters, listed, status=v.queue_status, api_name="audit_queue")
        bind([v.task.input, v.kind.input, v.order.input], self.refresh, filters, listed, status=v.queue_status)
        opened = [v.suggestion, v.words, v.figure, v.gallery, v.stretch, r.task, r.start, r.end, self.page.state,
                  *self.analyse_tab.shows]
        bind(v.suggestions.select, self.open_selected, {self.page.state, v.suggestions}, opened, status=v.queue_status)
        bind(v.open_btn.click, self.open, {self.page.state, v.suggestion}, opened, status=v.queue_status, api_name="open_suggestion")
        decided = [*listed, v.decision_status]
        bind(v.confirm_btn.click, self.confirm, {v.suggestion, v.note, v.propose, *filters}, decided,
             status=v.decision_status, clear=[v.note], api_name="confirm_suggestion")
        bind(v.dismiss_btn.click, self.dismiss, {v.suggestion, v.note, *filters}, decided,
             status=v.decision_status, clear=[v.note], api_name="dismiss_suggestion")
