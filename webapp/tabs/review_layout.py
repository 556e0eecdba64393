"""The Review tab's layout, fitted to a 1440x1000 window: the video picker in one row, then the segment's
frames (a strip of face crops) beside the review queue, and right under them the flag, correction and
decision forms, so that a reviewer sees the frames, the queue and the decision on one screen; the
tables follow, their columns wrapped rather than cut."""
from __future__ import annotations

import gradio as gr

from core.labels import AUS, EXPRESSIONS, TASKS
from core.review import SEGMENT_COLUMNS
from core.table import FACE, FRAME, TIME
from db.models import FLAG_REASONS, FLAG_RESOLUTIONS
from webapp.page import status_box
from webapp.reviews import (AGREEMENT_COLUMNS, CORRECTION_TABLE, FLAG_TABLE, HISTORY_COLUMNS, VIDEO_COLUMNS,
                            WAITING_COLUMNS)
from webapp.tabs import audit_queue
from webapp.tabs.views import ReviewView

DECISIONS = ("accepted", "rejected")
SEGMENT_LABEL_COLUMNS = [FRAME, TIME, FACE]
NO_VIDEO = "No video open: analyse one on the Analyse tab, or pick one above and press Open video."
TABLE_HEIGHT = 220          # px: the database's videos, and what waits for me
LABELS_CHECK_S = 5          # how often an open page asks whether the open video's labels changed

# J / K on the Review tab (outside text fields): the next / previous segment of the review queue.
KEYS_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target, tag = ((target && target.tagName) || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag) || (target && target.isContentEditable)) return;
    const id = {j: "next-segment", k: "previous-segment"}[event.key.toLowerCase()];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null) return;   // only while the Review tab shows
    event.preventDefault();
    event.stopPropagation();
    button.click();
  }, true);   // capture: before a focused table's own key handling
}
"""


def _table(headers, label, elem_id, **kwargs) -> gr.Dataframe:
    """A read-only table whose cells wrap instead of being cut at the column's edge."""
    return gr.Dataframe(headers=list(headers), label=label, interactive=False, wrap=True, elem_id=elem_id, **kwargs)


def layout() -> ReviewView:
    with gr.Tab("Review"):
        gr.Markdown("Segments worth a look, most suspicious first: the models disagree with the annotation for a "
                    "while, the annotation jumps, flickers, holds still for long, or is missing where a face is "
                    "visible. Keys: **J** next segment, **K** previous segment. Refresh shows what other reviewers "
                    "did.")
        # One above the other, each the tab's width: side by side, their columns were narrower than their words.
        videos = _table(VIDEO_COLUMNS, "Videos in the database (open any analysed one without analysing it again)",
                        "videos", max_height=TABLE_HEIGHT, column_widths=["36%", "9%", "7%", "11%", "18%", "19%"])
        waiting = _table(WAITING_COLUMNS, "Waiting for my decision (proposed by others)", "waiting",
                         max_height=TABLE_HEIGHT, column_widths=["5%", "14%", "6%", "8%", "11%", "30%", "10%", "16%"])
        with gr.Row(equal_height=True):
            open_choice = gr.Dropdown([], label="Video", elem_id="open-choice", scale=3)
            open_video_btn = gr.Button("Open video", elem_id="open-video", scale=1)
            refresh_btn = gr.Button("Refresh", elem_id="refresh", scale=1)
            review_name = gr.Textbox(label="Video under review", interactive=False, placeholder=NO_VIDEO,
                                     elem_id="review-name", scale=3)
            review_video = gr.Textbox(visible="hidden", elem_id="review-video")     # its database key
        videos_status = status_box("videos-status")
        with gr.Row(equal_height=True):
            queue_btn = gr.Button("Rank segments", elem_id="rank", scale=0, min_width=160)
            range_seconds = gr.Markdown(elem_id="range-seconds")
        queue = _table(SEGMENT_COLUMNS, "Review queue: click a row to open it (J / K: next / previous)", "queue",
                       max_height=230, column_widths=["6%", "12%", "10%", "10%", "7%", "8%", "8%", "7%", "32%"])
        with gr.Row():
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="The segment's frames (face crops, up to 24 evenly spaced)", columns=8,
                                     height=200, elem_id="gallery")
                with gr.Row(equal_height=True):
                    segment = gr.Number(0, label="Segment #", elem_id="segment", min_width=90)
                    open_btn = gr.Button("Open segment", elem_id="open-segment", min_width=90)
                    previous_btn = gr.Button("Previous (K)", elem_id="previous-segment", min_width=90)
                    next_btn = gr.Button("Next (J)", elem_id="next-segment", min_width=90)
                    task = gr.Dropdown(list(TASKS), value="va", label="Task", elem_id="task", min_width=80)
                    start = gr.Number(0, label="First frame", elem_id="start", min_width=90)
                    end = gr.Number(0, label="Last frame", elem_id="end", min_width=90)
                    show_btn = gr.Button("Show these frames", elem_id="show-range", min_width=90)
                segment_status = status_box("segment-status")
            with gr.Column(scale=1, min_width=300):
                gr.Markdown("**Decide on a correction** (another reviewer's)")
                correction_id = gr.Number(label="Correction id", elem_id="correction-id")
                decision_comment = gr.Textbox(label="Comment (optional)", elem_id="decision-comment")
                with gr.Row():
                    accept_btn = gr.Button("Accept", elem_id="accept", variant="primary")
                    reject_btn = gr.Button("Reject", elem_id="reject")
                decision_status = status_box("decision-status")
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Flag the range**")
                reason = gr.Dropdown(list(FLAG_REASONS), value=FLAG_REASONS[0], label="Reason", elem_id="reason")
                flag_note = gr.Textbox(label="Note (needed for 'other')", elem_id="flag-note")
                flag_btn = gr.Button("Flag", elem_id="flag")
                flag_status = status_box("flag-status")
            with gr.Column(scale=2):
                gr.Markdown("**Propose a corrected label for the range** (the task above)")
                with gr.Row():
                    valence = gr.Number(0.0, label="Valence (-1 to 1)", elem_id="valence")
                    arousal = gr.Number(0.0, label="Arousal (-1 to 1)", elem_id="arousal")
                    expression = gr.Dropdown(list(EXPRESSIONS), value=EXPRESSIONS[0], label="Expression")
                aus = gr.CheckboxGroup(list(AUS), label="Active AUs")
                with gr.Row(equal_height=True):
                    correct_note = gr.Textbox(label="Note", elem_id="correct-note", scale=3)
                    correct_btn = gr.Button("Propose correction", elem_id="correct", scale=1)
                correct_status = status_box("correct-status")
        corrections = _table(CORRECTION_TABLE, "Corrections of this video (propose one under the segment's frames)",
                             "corrections", column_widths=["5%", "5%", "8%", "10%", "25%", "8%", "9%", "9%", "10%",
                                                           "11%"])
        with gr.Row(equal_height=True):
            revised = gr.Radio(list(DECISIONS), value=DECISIONS[0], label="Revise a decision to")
            revise_reason = gr.Textbox(label="Reason (required)", elem_id="revise-reason")
            revise_btn = gr.Button("Revise decision", elem_id="revise")
        segment_plot = gr.Plot(label="Segment", elem_id="segment-plot")
        segment_labels = _table(SEGMENT_LABEL_COLUMNS, "Per frame (open a segment to see its labels)",
                                "segment-labels")
        flags = _table(FLAG_TABLE, "Flags of this video (flag a range under the segment's frames)", "flags",
                       column_widths=["4%", "5%", "7%", "9%", "10%", "12%", "8%", "10%", "9%", "8%", "18%"])
        with gr.Row(equal_height=True):
            flag_id = gr.Number(label="Flag id", elem_id="flag-id")
            resolution = gr.Dropdown(list(FLAG_RESOLUTIONS), value=FLAG_RESOLUTIONS[0], label="Resolution",
                                     elem_id="resolution")
            fixing_correction = gr.Number(label="Fixed by correction id", elem_id="fixing-correction")
            resolve_note = gr.Textbox(label="Note", elem_id="resolve-note")
            resolve_btn = gr.Button("Resolve flag", elem_id="resolve")
        resolve_status = status_box("resolve-status")
        agreement_btn = gr.Button("Agreement figures", elem_id="agreement-btn")
        agreement_status = status_box("agreement-status")
        agreement = _table(AGREEMENT_COLUMNS, "Agreement: each output against the annotation (before and after "
                           "accepted corrections) and between reviewers", "agreement",
                           column_widths=["17%", "13%", "10%", "12%", "11%", "6%", "13%", "6%", "6%", "6%"])
        history = _table(HISTORY_COLUMNS, "History (every flag, correction and decision of this video)", "history",
                         column_widths=["14%", "9%", "9%", "20%", "48%"])
        with gr.Row():
            export_btn = gr.Button("Export corrections", elem_id="export")
            export_interop_btn = gr.Button("Export for ELAN and Label Studio", elem_id="export-interop")
            export_files = gr.File(label="Export", file_count="multiple", interactive=False, elem_id="export-files")
        export_status = status_box("export-status")
        dataset_queue = audit_queue.layout()
        labels_timer = gr.Timer(LABELS_CHECK_S)
    return ReviewView.of(locals())
