"""The Review tab: the videos in the database and what waits for my decision, the review queue of
suspicious segments, flags and corrections with their life cycle, agreement figures, history, export."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core.labels import AUS, EXPRESSIONS, TASKS
from core.review import SEGMENT_COLUMNS
from core.table import FRAME
from db.export import CORRECTION_COLUMNS
from db.models import FLAG_REASONS, FLAG_RESOLUTIONS
from webapp import plots
from webapp.analyses import Analyses
from webapp.inputs import InputError
from webapp.models import Models
from webapp.page import need, page_errors, session_dir, signed_in, user
from webapp.reviews import AGREEMENT_COLUMNS, HISTORY_COLUMNS, WAITING_COLUMNS, Reviews

DECISIONS = ("accepted", "rejected")


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
            raise InputError("Choose a video from the list.")
        state = {**self.analyses.open_video(key), "owner": signed_in(request, profile)}
        table = state["table"]
        return (state, key, plots.timeline_figure(table, state["name"]),
                self.reviews.review_queue(self.reviews.labelled_table(key, table)), *self._tables(key)[:3],
                gr.update(maximum=max(1, int(table[FRAME].max())), value=0))

    # -- handlers: segments -----------------------------------------------------------------------------
    def review_queue(self, state, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        return self.reviews.review_queue(self.reviews.labelled_table(state["key"], state["table"]))

    def open_segment(self, state, queue, number, request: gr.Request, profile: gr.OAuthProfile | None):
        state = need(state, request, profile)
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: rank the segments first.")
        number = int(number or 0)
        if not 0 <= number < len(queue):
            raise InputError(f"There is no segment {number}: the queue has segments 0 to {len(queue) - 1}.")
        seg = queue.iloc[number]
        start, end = int(seg["start_frame"]), int(seg["end_frame"])
        return (seg["task"], start, end, *self._range_view(state, start, end))

    @staticmethod
    def select_segment(evt: gr.SelectData):
        return evt.index[0]

    def show_range(self, state, start, end, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._range_view(need(state, request, profile), int(start), int(end))

    def _range_view(self, state, start, end):
        table = self.reviews.labelled_table(state["key"], state["table"])
        last = int(table[FRAME].max())
        if not 0 <= start <= end <= last:
            raise InputError(f"Frames {start}-{end} are not a range inside the video (frames 0-{last}).")
        part = table[(table[FRAME] >= start) & (table[FRAME] <= end)]
        return (plots.timeline_figure(part, f"{state['name']}: frames {start}-{end}"),
                self.analyses.gallery(state, start, end), self.reviews.segment_labels(part))

    # -- handlers: flags, corrections, decisions --------------------------------------------------------
    def flag(self, video_key, task, start, end, reason, note, request: gr.Request,
             profile: gr.OAuthProfile | None):
        who = user(request, profile)
        flag_id = self.reviews.flag(self._key(video_key), task, int(start), int(end), reason, note, who)
        return (f"Flag {flag_id}: {task.upper()} frames {int(start)}-{int(end)} ({reason}), by {who}.",
                *self._tables(video_key))

    def correct(self, video_key, task, start, end, valence, arousal, expression, aus, note,
                request: gr.Request, profile: gr.OAuthProfile | None):
        who = user(request, profile)
        value = {"va": {"valence": valence, "arousal": arousal}, "expr": expression,
                 "au": [int(au in (aus or [])) for au in AUS]}[task]
        correction_id = self.reviews.correct(self._key(video_key), task, int(start), int(end), value, note, who)
        return (f"Correction {correction_id}: {task.upper()} frames {int(start)}-{int(end)}, proposed by {who}; "
                "another reviewer can accept or reject it.", *self._tables(video_key))

    def accept(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, True, comment, user(request, profile))

    def reject(self, video_key, correction_id, comment, request: gr.Request, profile: gr.OAuthProfile | None):
        return self._decide(video_key, correction_id, False, comment, user(request, profile))

    def _decide(self, video_key, correction_id, accept, comment, who):
        if correction_id is None:
            raise InputError("Enter the id of the correction to accept or reject.")
        self.reviews.decide(video_key or None, correction_id, accept, comment, who)
        return (f"Correction {int(correction_id)} {'accepted' if accept else 'rejected'} by {who}.",
                *self._tables(video_key))

    def revise(self, video_key, correction_id, decision, reason, request: gr.Request,
               profile: gr.OAuthProfile | None):
        who = user(request, profile)
        if correction_id is None:
            raise InputError("Enter the id of the correction whose decision you revise.")
        accept = decision == DECISIONS[0]
        self.reviews.revise(video_key or None, correction_id, accept, reason, who)
        return (f"Correction {int(correction_id)} revised to {'accepted' if accept else 'rejected'} by {who}.",
                *self._tables(video_key))

    def resolve_flag(self, video_key, flag_id, resolution, correction_id, note, request: gr.Request,
                     profile: gr.OAuthProfile | None):
        who = user(request, profile)
        if flag_id is None:
            raise InputError("Enter the id of the flag to resolve.")
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
        name = key.removeprefix("sha256:")[:16]
        return [str(p) for p in self.reviews.export(key, name, session_dir(self.config.cache_dir, request) / "export")]

    @staticmethod
    def _key(video_key) -> str:
        if not video_key:
            raise InputError("No video under review: analyse one first.")
        return video_key

    def _tables(self, video_key):
        key = self._key(video_key)
        return self.reviews.corrections(key), self.reviews.history(key), self.reviews.flags(key)

    # -- page -------------------------------------------------------------------------------------------
    def layout(self, c):
        with gr.Tab("Review"):
            gr.Markdown("Segments worth a look, most suspicious first: the models disagree with the annotation "
                        "for a while, the annotation jumps, flickers, holds still for long, or is missing where "
                        "a face is visible.")
            gr.Markdown("### Videos in the database\nOpen any analysed video without analysing it again; "
                        "Refresh shows what other reviewers did.")
            c.videos = gr.Dataframe(label="Videos", interactive=False, elem_id="videos")
            with gr.Row():
                c.refresh_btn = gr.Button("Refresh", elem_id="refresh")
                c.open_choice = gr.Dropdown([], label="Video", elem_id="open-choice")
                c.open_video_btn = gr.Button("Open video", elem_id="open-video")
            c.waiting = gr.Dataframe(headers=WAITING_COLUMNS, label="Waiting for my decision (proposed by others)",
                                     interactive=False, elem_id="waiting")
            c.review_video = gr.Textbox(label="Video under review (database key)", interactive=False,
                                        elem_id="review-video")
            c.queue_btn = gr.Button("Rank segments")
            c.queue = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Review queue: click a row to open it",
                                   interactive=False, elem_id="queue")
            with gr.Row():
                c.segment = gr.Number(0, label="Segment #", precision=0, minimum=0)
                c.open_btn = gr.Button("Open segment", elem_id="open-segment")
            with gr.Row():
                c.task = gr.Dropdown(list(TASKS), value="va", label="Task", elem_id="task")
                c.start = gr.Number(0, label="First frame", precision=0, minimum=0, elem_id="start")
                c.end = gr.Number(0, label="Last frame", precision=0, minimum=0, elem_id="end")
                c.show_btn = gr.Button("Show these frames")
            c.segment_plot = gr.Plot(label="Segment", elem_id="segment-plot")
            c.gallery = gr.Gallery(label="Face crops (up to 24 frames of the range, evenly spaced)", columns=8,
                                   height=240, elem_id="gallery")
            c.segment_labels = gr.Dataframe(label="Per frame", interactive=False, elem_id="segment-labels")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Flag the range")
                    c.reason = gr.Dropdown(list(FLAG_REASONS), value=FLAG_REASONS[0], label="Reason",
                                           elem_id="reason")
                    c.flag_note = gr.Textbox(label="Note (needed for 'other')")
                    c.flag_btn = gr.Button("Flag", elem_id="flag")
                with gr.Column():
                    gr.Markdown("### Propose a corrected label for the range (the task above)")
                    with gr.Row():
                        c.valence = gr.Number(0.0, label="Valence", minimum=-1, maximum=1)
                        c.arousal = gr.Number(0.0, label="Arousal", minimum=-1, maximum=1)
                    c.expression = gr.Dropdown(list(EXPRESSIONS), value=EXPRESSIONS[0], label="Expression")
                    c.aus = gr.CheckboxGroup(list(AUS), label="Active AUs")
                    c.correct_note = gr.Textbox(label="Note")
                    c.correct_btn = gr.Button("Propose correction", elem_id="correct")
            c.review_status = gr.Markdown(elem_id="review-status")
            c.corrections = gr.Dataframe(headers=[col for col in CORRECTION_COLUMNS if col != "video"],
                                         interactive=False, label="Corrections of this video", elem_id="corrections")
            with gr.Row():
                c.correction_id = gr.Number(label="Correction id", precision=0, elem_id="correction-id")
                c.decision_comment = gr.Textbox(label="Comment (optional)", elem_id="decision-comment")
                c.accept_btn = gr.Button("Accept", elem_id="accept")
                c.reject_btn = gr.Button("Reject", elem_id="reject")
            with gr.Row():
                c.revised = gr.Radio(list(DECISIONS), value=DECISIONS[0], label="Revise a decision to")
                c.revise_reason = gr.Textbox(label="Reason (required)", elem_id="revise-reason")
                c.revise_btn = gr.Button("Revise decision", elem_id="revise")
            c.flags = gr.Dataframe(label="Flags of this video", interactive=False, elem_id="flags")
            with gr.Row():
                c.flag_id = gr.Number(label="Flag id", precision=0, elem_id="flag-id")
                c.resolution = gr.Dropdown(list(FLAG_RESOLUTIONS), value=FLAG_RESOLUTIONS[0], label="Resolution",
                                           elem_id="resolution")
                c.fixing_correction = gr.Number(label="Fixed by correction id", precision=0)
                c.resolve_note = gr.Textbox(label="Note")
                c.resolve_btn = gr.Button("Resolve flag", elem_id="resolve")
            with gr.Row():
                c.agreement_btn = gr.Button("Agreement figures", elem_id="agreement-btn")
            c.agreement = gr.Dataframe(headers=AGREEMENT_COLUMNS, label="Agreement: the model against the "
                                       "annotation (before and after accepted corrections) and between reviewers",
                                       interactive=False, elem_id="agreement")
            c.history = gr.Dataframe(headers=list(HISTORY_COLUMNS), label="History", interactive=False,
                                     elem_id="history")
            with gr.Row():
                c.export_btn = gr.Button("Export corrections", elem_id="export")
                c.export_files = gr.File(label="Export", file_count="multiple", interactive=False)

    def wire(self, c, demo: gr.Blocks):
        on_page = {name: page_errors(getattr(self, name)) for name in (
            "who", "review_queue", "open_segment", "show_range", "flag", "correct", "accept", "reject", "history",
            "revise", "resolve_flag", "list_videos", "open_video", "agreement", "export")}
        demo.load(on_page["who"], None, c.who, api_name=False)
        segment_view = [c.task, c.start, c.end, c.segment_plot, c.gallery, c.segment_labels]
        c.queue_btn.click(on_page["review_queue"], c.state, c.queue, api_name="review_queue")
        c.queue.select(self.select_segment, None, c.segment, api_name=False).success(
            on_page["open_segment"], [c.state, c.queue, c.segment], segment_view, api_name=False)
        c.open_btn.click(on_page["open_segment"], [c.state, c.queue, c.segment], segment_view,
                         api_name="open_segment")
        c.show_btn.click(on_page["show_range"], [c.state, c.start, c.end], segment_view[3:], api_name="show_range")
        tables = [c.review_status, c.corrections, c.history, c.flags]
        c.flag_btn.click(on_page["flag"], [c.review_video, c.task, c.start, c.end, c.reason, c.flag_note], tables,
                         api_name="flag")
        c.correct_btn.click(on_page["correct"], [c.review_video, c.task, c.start, c.end, c.valence, c.arousal,
                                                 c.expression, c.aus, c.correct_note], tables, api_name="correct")
        c.accept_btn.click(on_page["accept"], [c.review_video, c.correction_id, c.decision_comment], tables,
                           api_name="accept_correction")
        c.reject_btn.click(on_page["reject"], [c.review_video, c.correction_id, c.decision_comment], tables,
                           api_name="reject_correction")
        c.revise_btn.click(on_page["revise"], [c.review_video, c.correction_id, c.revised, c.revise_reason], tables,
                           api_name="revise_decision")
        c.resolve_btn.click(on_page["resolve_flag"], [c.review_video, c.flag_id, c.resolution, c.fixing_correction,
                                                      c.resolve_note], tables, api_name="resolve_flag")
        c.agreement_btn.click(on_page["agreement"], c.state, c.agreement, api_name="agreement")
        video_lists = [c.videos, c.open_choice, c.waiting, c.model_table, c.trained_model]
        demo.load(on_page["list_videos"], None, video_lists, api_name=False)
        c.refresh_btn.click(on_page["list_videos"], None, video_lists, api_name="list_videos")
        c.open_video_btn.click(on_page["open_video"], c.open_choice, [c.state, c.review_video, c.timeline, c.queue,
                                                                      c.corrections, c.history, c.flags, c.frame],
                               api_name="open_video")
        c.review_video.change(on_page["history"], c.review_video, tables[1:], api_name="history")
        c.export_btn.click(on_page["export"], c.review_video, c.export_files, api_name="export_corrections")
