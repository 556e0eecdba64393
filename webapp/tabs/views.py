"""Each tab's components, by name: a tab's layout function returns its view, and a tab whose events set
another tab's components is given that tab's view when it is made (webapp/app.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr
import pandas as pd

from webapp.state import OpenVideo

if TYPE_CHECKING:
    from webapp.tabs.audit_queue import AuditQueueView


class View:
    @classmethod
    def of(cls, names: dict):
        """The view from a layout function's local names (each field is a component made there)."""
        return cls(**{f.name: names[f.name] for f in dataclasses.fields(cls)})


@dataclass
class PageView(View):
    state: gr.State                  # the OpenVideo of this browser session (webapp.state)
    who: gr.Markdown


@dataclass
class AnalyseView(View):
    source: gr.Radio
    upload_inputs: gr.Column
    video: gr.Video
    upload_note: gr.Markdown         # at once on upload: why it would be refused, or that a preview is being made
    preview: gr.Video                # a browser-playable copy of an upload the browser cannot play (webapp.previews)
    annotations: gr.File
    annotation_names: gr.Markdown
    affwild2_inputs: gr.Column
    affwild2_video: gr.Dropdown
    models: gr.CheckboxGroup
    prompt_set: gr.Dropdown
    trained_model: gr.Dropdown
    analyse_btn: gr.Button
    analyse_status: gr.Markdown
    weights_info: gr.Markdown
    run_info: gr.Markdown
    player_note: gr.Markdown         # why the player is hidden: another video is being analysed, or its copy made
    player: gr.Video
    timeline: gr.Plot
    metrics: gr.Dataframe
    metrics_hint: gr.Markdown
    frame: gr.Slider
    frame_status: gr.Markdown
    crop: gr.Image
    attention: gr.Image
    full_frame: gr.Image
    frame_caption: gr.Markdown
    frame_info: gr.Dataframe
    clip_frame: gr.Dataframe
    downloads: gr.File

    def player_waits_for(self, name: str) -> dict:
        """The player hidden, with a note, while `name` is being analysed or opened: it never shows another
        video than the timeline beside it (the Analyse tab shows `name` once the browser can play it)."""
        return {self.player: gr.update(value=None, visible=False),
                self.player_note: f"The player shows **{name}** once it is open."}


@dataclass
class SetColumn(View):
    """One prompt set's column on the Compare CLIP prompts tab."""

    start_from: gr.Dropdown
    name: gr.Textbox
    templates: gr.Textbox
    classes: gr.Textbox
    save: gr.Button
    saved: gr.Markdown


@dataclass
class PromptsView(View):
    columns: list[SetColumn]
    compare_btn: gr.Button
    prompt_status: gr.Markdown
    prompt_note: gr.Markdown
    prompt_probs: gr.Plot
    prompt_f1: gr.Dataframe
    confusions: list[gr.Plot]


@dataclass
class ReviewView(View):
    videos: gr.Dataframe
    refresh_btn: gr.Button
    open_choice: gr.Dropdown
    open_video_btn: gr.Button
    videos_status: gr.Markdown
    waiting: gr.Dataframe
    review_name: gr.Textbox
    review_video: gr.Textbox          # the open video's key: what the review actions (and API callers) send
    queue_btn: gr.Button
    queue: gr.Dataframe
    segment: gr.Number
    open_btn: gr.Button
    previous_btn: gr.Button
    next_btn: gr.Button
    task: gr.Dropdown
    start: gr.Number
    end: gr.Number
    show_btn: gr.Button
    range_seconds: gr.Markdown
    segment_status: gr.Markdown
    segment_plot: gr.Plot
    gallery: gr.Gallery
    segment_labels: gr.Dataframe
    reason: gr.Dropdown
    flag_note: gr.Textbox
    flag_btn: gr.Button
    flag_status: gr.Markdown
    valence: gr.Number
    arousal: gr.Number
    expression: gr.Dropdown
    aus: gr.CheckboxGroup
    correct_note: gr.Textbox
    correct_btn: gr.Button
    correct_status: gr.Markdown
    corrections: gr.Dataframe
    correction_id: gr.Number
    decision_comment: gr.Textbox
    accept_btn: gr.Button
    reject_btn: gr.Button
    revised: gr.Radio
    revise_reason: gr.Textbox
    revise_btn: gr.Button
    decision_status: gr.Markdown
    flags: gr.Dataframe
    flag_id: gr.Number
    resolution: gr.Dropdown
    fixing_correction: gr.Number
    resolve_note: gr.Textbox
    resolve_btn: gr.Button
    resolve_status: gr.Markdown
    agreement_btn: gr.Button
    agreement_status: gr.Markdown
    agreement: gr.Dataframe
    history: gr.Dataframe
    export_btn: gr.Button
    export_interop_btn: gr.Button
    export_files: gr.File
    export_status: gr.Markdown
    dataset_queue: AuditQueueView     # the annotation audit's queue at the tab's end (webapp/tabs/audit_queue.py)
    labels_timer: gr.Timer            # asks whether the open video's labels changed (ReviewTab.follow_labels)

    def opened(self, video: OpenVideo, queue: pd.DataFrame) -> dict:
        """The Review tab's view of a newly open video: its key in the box the review actions read (a
        view of the page's OpenVideo, set only here) and its review queue."""
        return {self.review_video: video.key, self.queue: queue}


@dataclass
class ModelsView(View):
    model_table: gr.Dataframe
    preset: gr.Dropdown
    epochs: gr.Number
    steps: gr.Number
    batch: gr.Number
    retrain_btn: gr.Button
    audit_btn: gr.Button
    retrain_status: gr.Markdown
    job_id: gr.Number
    job_btn: gr.Button
    job_status: gr.Markdown
    job_timer: gr.Timer
    retrain_info: gr.Markdown
    retrain_metrics: gr.Dataframe
    new_model: gr.State
    audit_ended: gr.State
    analyse_with: gr.Button
