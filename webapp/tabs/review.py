"""The Review tab: the videos in the database and what waits for my decision, the review queue of
suspicious segments, flags and corrections with their life cycle, agreement figures, history, export."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core.labels import AUS, EXPRESSIONS, TASKS
from core.review import SEGMENT_COLUMNS
from core.table import FACE, FRAME, TIME, frame_rate
from db.models import FLAG_REASONS, FLAG_RESOLUTIONS
from webapp import plots
from webapp.analyses import Analyses
from webapp.inputs import InputError, whole
from webapp.models import Models
from webapp.cleanup import claim_session
from webapp.page import api_only, bind, need, session_dir, signed_in, status_box, user
from webapp.reviews import (AGREEMENT_COLUMNS, CORRECTION_TABLE, FLAG_TABLE, HISTORY_COLUMNS, VIDEO_COLUMNS,
                            WAITING_COLUMNS, Reviews, seconds)

DECISIONS = ("accepted", "rejected")
SEGMENT_LABEL_COLUMNS = [FRAME, TIME, FACE]
NO_VIDEO = "No video open: analyse one on the Analyse tab, or pick one above and press Open video."

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


class ReviewTab:
    def __init__(self, reviews: Reviews, analyses: Analyses, models: Models):
        self.reviews, self.analyses, self.models = reviews, analyses, models
        self.config = analyses.config

    # -- handlers: the database's videos ----------------------------------------------------------------
    def who(self, request: gr.Request, profile: gr.OAuthProfile | None):
        name = signed_in(request, profile)
        return f"Signed in as **{name}**." if name else "Not signed in: reviewing needs a login."

    def list_videos(self, request: gr.Request, profile: gr.OAuthProfile | None):
        """The videos in the database and the corrections waiting for this reviewer (a refresh shows
        what others did), and the models table with the Analyse tab's picker."""
        name = signed_in(request, profile)
        waiting = self.reviews.waiting_for(name) if name else pd.DataFrame(columns=WAITING_COLUMNS)
        return (self.reviews.video_list(), gr.update(choices=self.reviews.video_choices()), waiting,
                self.models.model_list(), gr.update(choices=self.models.model_choices()))

    def open_video(self, key, request: gr.Request, profile: gr.OAuthProfile | None):
        """Any stored video's newest analysis, for any reviewer, without analysing it again."""
        if not key:
            raise InputError("Choose a video from the list, then press Open video.")
        claim_session(self.config.cache_dir, request.session_hash if request else None, signed_in(request, profile))
        state = {**self.analyses.open_video(key), "owner": signed_in(request, profile)}
        table = state["table"]
        return (state, key, plots.timeline_figure(table, state["name"]),
                self.reviews.review_queue(self.reviews.labelled_table(key, table)), *self._tables(key)[:3],
                gr.update(maximum=max(1, int(table[FRAME].max())), value=0))

    def video_view(self, video_key):
        """The video under review by its file name, with its corrections, history and flags."""
        if not video_key:
            return "", *self._empty_tables()
        return self.reviews.video_name(video_key), *self._tables(video_key)

    # -- handlers: segments -----------------------------------------------------------------------------
    def review_queue(self, state, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        return self.reviews.review_queue(self.reviews.labelled_table(state["key"], state["table"]))

    def open_segment(self, state, queue, number, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: press Rank segments first.")
        number = whole(number, "segment number", 0, len(queue) - 1)
        try:
            seg = queue.iloc[number]
            start, end = whole(seg["start_frame"], "first frame"), whole(seg["end_frame"], "last frame")
            task = seg["task"]
        except KeyError as err:
            raise InputError(f"The review queue has no {err} column: press Rank segments to make it again.") from None
        return (task, start, end, *self._range_view(state, start, end))

    def open_selected(self, state, queue, evt: gr.SelectData, request: gr.Request, profile: gr.OAuthProfile | None):
        """A click on a row of the queue opens that segment."""
        return (evt.index[0], *self.open_segment(state, queue, evt.index[0], request, profile))

    def next_segment(self, state, queue, number, request: gr.Request, profile: gr.OAuthProfile | None):
        """J: the next segment of the queue."""
        return self._step(state, queue, number, 1, request, profile)

    def previous_segment(self, state, queue, number, request: gr.Request, profile: gr.OAuthProfile | None):
        """K: the previous segment of the queue."""
        return self._step(state, queue, number, -1, request, profile)

    def _step(self, state, queue, number, delta, request, profile):
        need(state, request, profile)
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: press Rank segments first.")
        number = min(max(whole(number or 0, "segment number"), 0), len(queue) - 1)
        target = number + delta
        if not 0 <= target < len(queue):
            raise InputError(f"Segment {number} is the {'last' if delta > 0 else 'first'} of the queue "
                             "(J: next, K: previous).")
        return (target, *self.open_segment(state, queue, target, request, profile))

    def show_range(self, state, start, end, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        return self._range_view(state, *self._range(start, end))

    def _range_view(self, state, start, end):
        table = self.reviews.labelled_table(state["key"], state["table"])
        last = int(table[FRAME].max())
        if not 0 <= start <= end <= last:
            raise InputError(f"Frames {start}-{end} are not a range inside the video (frames 0-{last}).")
        part = table[(table[FRAME] >= start) & (table[FRAME] <= end)]
        title = f"{state['name']}: frames {start}-{end} ({seconds(start, end, frame_rate(table))})"
        return (plots.timeline_figure(part, title), self.analyses.gallery(state, start, end),
                self.reviews.segment_labels(part))

    def range_in_seconds(self, state, start, end, request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        """The frame range typed above in seconds too, the unit of the timelines (empty until it is a range
        of the open video)."""
        try:
            state = need(state, request, profile)
            start, end = self._range(start, end)
        except InputError:
            return ""
        if not 0 <= start <= end <= int(state["table"][FRAME].max()):
            return ""
        return f"Frames {start}-{end} are {seconds(start, end, frame_rate(state['table']))} into the video."

    # -- handlers: flags, corrections, decisions --------------------------------------------------------
    @staticmethod
    def _range(start, end) -> tuple[int, int]:
        if start is None or end is None:
            raise InputError("Enter the first and the last frame of the range (or open a segment).")
        return whole(start, "first frame"), whole(end, "last frame")

    def flag(self, video_key, task, start, end, reason, note, request: gr.Request,
             profile: gr.OAuthProfile | None):
        who = user(request, profile)
        start, end = self._range(start, end)
        flag_id = self.reviews.flag(self._key(video_key), task, start, end, reason, note, who)
        return (f"Flag {flag_id}: {task.upper()} frames {start}-{end} ({reason}), by {who}.",
                *self._tables(video_key))

    def correct(self, video_key, task, start, end, valence, arousal, expression, aus, note,
                request: gr.Request, profile: gr.OAuthProfile | None):
        who = user(request, profile)
        start, end = self._range(start, end)
        if task == "va" and (valence is None or arousal is None):
            raise InputError("Enter both valence and arousal (each from -1 to 1).")
        value = {"va": {"valence": valence, "arousal": arousal}, "expr": expression,
                 "au": [int(au in (aus or [])) for au in AUS]}[task]
        correction_id = self.reviews.correct(self._key(video_key), task, start, end, value, note, who)
        return (f"Correction {correction_id}: {task.upper()} frames {start}-{end}, proposed by {who}; "
                "another reviewer can accept or reject it.", *self._tables(video_key))

    def accept(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, True, comment, user(request, profile))

    def reject(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, False, comment, user(request, profile))

    def _decide(self, video_key, correction_id, accept, comment, who):
        self._key(video_key)
        if not correction_id:       # an emptied number field on the page sends 0; ids start at 1
            raise InputError("Enter the id of the correction to accept or reject.")
        self.reviews.decide(video_key or None, correction_id, accept, comment, who)
        return (f"Correction {int(correction_id)} {'accepted' if accept else 'rejected'} by {who}.",
                *self._tables(video_key))

    def revise(self, video_key, correction_id, decision, reason, request: gr.Request,
               profile: gr.OAuthProfile | None):
        who = user(request, profile)
        self._key(video_key)
        if not correction_id:
            raise InputError("Enter the id of the correction whose decision you revise.")
        accept = decision == DECISIONS[0]
        self.reviews.revise(video_key or None, correction_id, accept, reason, who)
        return (f"Correction {int(correction_id)} revised to {'accepted' if accept else 'rejected'} by {who}.",
                *self._tables(video_key))

    def resolve_flag(self, video_key, flag_id, resolution, correction_id, note, request: gr.Request,
                     profile: gr.OAuthProfile | None):
        who = user(request, profile)
        self._key(video_key)
        if not flag_id:
            raise InputError("Enter the id of the flag to resolve.")
        correction_id = correction_id or None            # an empty field: no fixing correction
        self.reviews.resolve_flag(video_key or None, flag_id, resolution, correction_id, note, who)
        return (f"Flag {int(flag_id)} resolved ({resolution}) by {who}.", *self._tables(video_key))

    # -- handlers: figures and files --------------------------------------------------------------------
    def agreement(self, state, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        return self.reviews.agreement(state["key"], state["table"])

    def history(self, video_key):
        return self._tables(video_key)

    def export(self, video_key, request: gr.Request):
        key = self._key(video_key)
        return [str(p) for p in self.reviews.export(key, session_dir(self.config.cache_dir, request) / "export")]

    @staticmethod
    def _key(video_key) -> str:
        if not video_key:
            raise InputError(NO_VIDEO)
        return video_key

    def _tables(self, video_key):
        key = self._key(video_key)
        return self.reviews.corrections(key), self.reviews.history(key), self.reviews.flags(key)

    @staticmethod
    def _empty_tables():
        return (pd.DataFrame(columns=CORRECTION_TABLE), pd.DataFrame(columns=list(HISTORY_COLUMNS)),
                pd.DataFrame(columns=FLAG_TABLE))

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        with gr.Tab("Review"):
            gr.Markdown("Segments worth a look, most suspicious first: the models disagree with the annotation "
                        "for a while, the annotation jumps, flickers, holds still for long, or is missing where "
                        "a face is visible. Keys: **J** next segment, **K** previous segment.")
            gr.Markdown("### Videos in the database\nOpen any analysed video without analysing it again; "
                        "Refresh shows what other reviewers did.")
            c.videos = gr.Dataframe(headers=VIDEO_COLUMNS, label="Videos (none yet: analyse one on the Analyse tab)",
                                    interactive=False, elem_id="videos")
            with gr.Row():
                c.refresh_btn = gr.Button("Refresh", elem_id="refresh")
                c.open_choice = gr.Dropdown([], label="Video", elem_id="open-choice")
                c.open_video_btn = gr.Button("Open video", elem_id="open-video")
            c.videos_status = status_box("videos-status")
            c.waiting = gr.Dataframe(headers=WAITING_COLUMNS, label="Waiting for my decision (proposed by others; "
                                     "empty: nothing waits for you)", interactive=False, elem_id="waiting")
            c.review_name = gr.Textbox(label="Video under review", interactive=False, placeholder=NO_VIDEO,
                                       elem_id="review-name")
            c.review_video = gr.Textbox(visible="hidden", elem_id="review-video")     # its database key
            c.queue_btn = gr.Button("Rank segments", elem_id="rank")
            c.queue = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Review queue: click a row to open it (J / K: "
                                   "next / previous); empty: open a video, then Rank segments",
                                   interactive=False, elem_id="queue")
            with gr.Row():
                c.segment = gr.Number(0, label="Segment #", elem_id="segment")
                c.open_btn = gr.Button("Open segment", elem_id="open-segment")
                c.previous_btn = gr.Button("Previous (K)", elem_id="previous-segment")
                c.next_btn = gr.Button("Next (J)", elem_id="next-segment")
            with gr.Row():
                c.task = gr.Dropdown(list(TASKS), value="va", label="Task", elem_id="task")
                c.start = gr.Number(0, label="First frame", elem_id="start")
                c.end = gr.Number(0, label="Last frame", elem_id="end")
                c.show_btn = gr.Button("Show these frames", elem_id="show-range")
            c.range_seconds = gr.Markdown(elem_id="range-seconds")
            c.segment_status = status_box("segment-status")
            c.segment_plot = gr.Plot(label="Segment", elem_id="segment-plot")
            c.gallery = gr.Gallery(label="Face crops (up to 24 frames of the range, evenly spaced)", columns=8,
                                   height=240, elem_id="gallery")
            c.segment_labels = gr.Dataframe(headers=SEGMENT_LABEL_COLUMNS, label="Per frame (open a segment to "
                                            "see its labels)", interactive=False, elem_id="segment-labels")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Flag the range")
                    c.reason = gr.Dropdown(list(FLAG_REASONS), value=FLAG_REASONS[0], label="Reason",
                                           elem_id="reason")
                    c.flag_note = gr.Textbox(label="Note (needed for 'other')", elem_id="flag-note")
                    c.flag_btn = gr.Button("Flag", elem_id="flag")
                    c.flag_status = status_box("flag-status")
                with gr.Column():
                    gr.Markdown("### Propose a corrected label for the range (the task above)")
                    with gr.Row():
                        c.valence = gr.Number(0.0, label="Valence (-1 to 1)", elem_id="valence")
                        c.arousal = gr.Number(0.0, label="Arousal (-1 to 1)", elem_id="arousal")
                    c.expression = gr.Dropdown(list(EXPRESSIONS), value=EXPRESSIONS[0], label="Expression")
                    c.aus = gr.CheckboxGroup(list(AUS), label="Active AUs")
                    c.correct_note = gr.Textbox(label="Note", elem_id="correct-note")
                    c.correct_btn = gr.Button("Propose correction", elem_id="correct")
                    c.correct_status = status_box("correct-status")
            c.corrections = gr.Dataframe(headers=CORRECTION_TABLE, interactive=False, elem_id="corrections",
                                         label="Corrections of this video (none yet: open a segment and propose one)")
            with gr.Row():
                c.correction_id = gr.Number(label="Correction id", elem_id="correction-id")
                c.decision_comment = gr.Textbox(label="Comment (optional)", elem_id="decision-comment")
                c.accept_btn = gr.Button("Accept", elem_id="accept")
                c.reject_btn = gr.Button("Reject", elem_id="reject")
            with gr.Row():
                c.revised = gr.Radio(list(DECISIONS), value=DECISIONS[0], label="Revise a decision to")
                c.revise_reason = gr.Textbox(label="Reason (required)", elem_id="revise-reason")
                c.revise_btn = gr.Button("Revise decision", elem_id="revise")
            c.decision_status = status_box("decision-status")
            c.flags = gr.Dataframe(headers=FLAG_TABLE, label="Flags of this video (none yet: open a segment and "
                                   "flag it)", interactive=False, elem_id="flags")
            with gr.Row():
                c.flag_id = gr.Number(label="Flag id", elem_id="flag-id")
                c.resolution = gr.Dropdown(list(FLAG_RESOLUTIONS), value=FLAG_RESOLUTIONS[0], label="Resolution",
                                           elem_id="resolution")
                c.fixing_correction = gr.Number(label="Fixed by correction id", elem_id="fixing-correction")
                c.resolve_note = gr.Textbox(label="Note", elem_id="resolve-note")
                c.resolve_btn = gr.Button("Resolve flag", elem_id="resolve")
            c.resolve_status = status_box("resolve-status")
            with gr.Row():
                c.agreement_btn = gr.Button("Agreement figures", elem_id="agreement-btn")
            c.agreement_status = status_box("agreement-status")
            c.agreement = gr.Dataframe(headers=AGREEMENT_COLUMNS, label="Agreement: the model against the "
                                       "annotation (before and after accepted corrections) and between reviewers",
                                       interactive=False, elem_id="agreement")
            c.history = gr.Dataframe(headers=list(HISTORY_COLUMNS), label="History (every flag, correction and "
                                     "decision of this video)", interactive=False, elem_id="history")
            with gr.Row():
                c.export_btn = gr.Button("Export corrections", elem_id="export")
                c.export_files = gr.File(label="Export", file_count="multiple", interactive=False,
                                         elem_id="export-files")
            c.export_status = status_box("export-status")

    def wire(self, c, demo: gr.Blocks):
        demo.load(self.who, None, c.who, api_name=False)
        segment_view = [c.task, c.start, c.end, c.segment_plot, c.gallery, c.segment_labels]
        bind(c.queue_btn.click, self.review_queue, c.state, c.queue, status=c.segment_status, api_name="review_queue")
        bind(c.queue.select, self.open_selected, [c.state, c.queue], [c.segment, *segment_view],
             status=c.segment_status)
        bind(c.open_btn.click, self.open_segment, [c.state, c.queue, c.segment], segment_view,
             status=c.segment_status, api_name="open_segment")
        bind(c.next_btn.click, self.next_segment, [c.state, c.queue, c.segment], [c.segment, *segment_view],
             status=c.segment_status)
        bind(c.previous_btn.click, self.previous_segment, [c.state, c.queue, c.segment], [c.segment, *segment_view],
             status=c.segment_status)
        gr.on([c.start.change, c.end.change], self.range_in_seconds, [c.state, c.start, c.end], c.range_seconds,
              api_name=False, show_progress="hidden")
        bind(c.show_btn.click, self.show_range, [c.state, c.start, c.end], segment_view[3:], status=c.segment_status,
             api_name="show_range")
        tables = [c.corrections, c.history, c.flags]
        bind(c.flag_btn.click, self.flag, [c.review_video, c.task, c.start, c.end, c.reason, c.flag_note],
             [c.flag_status, *tables], status=c.flag_status, clear=[c.flag_note], api_name="flag")
        bind(c.correct_btn.click, self.correct, [c.review_video, c.task, c.start, c.end, c.valence, c.arousal,
                                                 c.expression, c.aus, c.correct_note],
             [c.correct_status, *tables], status=c.correct_status, clear=[c.correct_note], api_name="correct")
        decision = [c.review_video, c.correction_id, c.decision_comment]
        bind(c.accept_btn.click, self.accept, decision, [c.decision_status, *tables], status=c.decision_status,
             clear=[c.decision_comment], api_name="accept_correction")
        bind(c.reject_btn.click, self.reject, decision, [c.decision_status, *tables], status=c.decision_status,
             clear=[c.decision_comment], api_name="reject_correction")
        bind(c.revise_btn.click, self.revise, [c.review_video, c.correction_id, c.revised, c.revise_reason],
             [c.decision_status, *tables], status=c.decision_status, clear=[c.revise_reason],
             api_name="revise_decision")
        bind(c.resolve_btn.click, self.resolve_flag, [c.review_video, c.flag_id, c.resolution, c.fixing_correction,
                                                      c.resolve_note],
             [c.resolve_status, *tables], status=c.resolve_status, clear=[c.resolve_note], api_name="resolve_flag")
        bind(c.agreement_btn.click, self.agreement, c.state, c.agreement, status=c.agreement_status,
             api_name="agreement")
        video_lists = [c.videos, c.open_choice, c.waiting, c.model_table, c.trained_model]
        bind(demo.load, self.list_videos, None, video_lists, status=c.videos_status)
        bind(c.refresh_btn.click, self.list_videos, None, video_lists, status=c.videos_status, api_name="list_videos")
        bind(c.open_video_btn.click, self.open_video, c.open_choice,
             [c.state, c.review_video, c.timeline, c.queue, *tables, c.frame], status=c.videos_status,
             api_name="open_video")
        bind(c.review_video.change, self.video_view, c.review_video, [c.review_name, *tables], status=c.videos_status)
        api_only(self.history, c.review_video, tables, api_name="history")
        bind(c.export_btn.click, self.export, c.review_video, c.export_files, status=c.export_status,
             api_name="export_corrections")
