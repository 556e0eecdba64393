"""The Review tab: the videos in the database and what waits for my decision, the review queue of
suspicious segments beside the segment's frames, flags and corrections with their life cycle and the
decision on them, agreement figures, history, export. Its layout is in webapp/tabs/review_layout.py."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import gradio as gr
import pandas as pd

from core.labels import AUS
from core.table import FRAME, frame_rate
from webapp import plots
from webapp.analyses import Analyses
from webapp.frames import Frames
from webapp.inputs import InputError, whole
from webapp.models import Models
from webapp.page import bind, login, quiet, session_dir, signed_in
from webapp.reviews import CORRECTION_TABLE, FLAG_TABLE, HISTORY_COLUMNS, WAITING_COLUMNS, Reviews, seconds
from webapp.state import OpenVideo, claim, need
from webapp.tabs.review_layout import DECISIONS, KEYS_JS, NO_VIDEO, layout  # noqa: F401  (app.py takes them here)
from webapp.tabs.analyse import AnalyseTab
from webapp.tabs.views import ModelsView, PageView, ReviewView


class ReviewTab:
    def __init__(self, reviews: Reviews, analyses: Analyses, frames: Frames, models: Models, page: PageView,
                 view: ReviewView, analyse_tab: AnalyseTab, models_view: ModelsView):
        self.reviews, self.analyses, self.frames, self.models = reviews, analyses, frames, models
        self.page, self.view, self.models_view = page, view, models_view
        self.analyse_tab, self.analyse = analyse_tab, analyse_tab.view
        self.config = analyses.config

    # -- handlers: the database's videos ----------------------------------------------------------------
    def who(self, user):
        return f"Signed in as **{user}**." if user else "Not signed in: reviewing needs a login."

    def list_videos(self, user):
        """The videos in the database and the corrections waiting for this reviewer (a refresh shows
        what others did), and the models table with the Analyse tab's picker."""
        v = self.view
        waiting = self.reviews.waiting_for(user) if user else pd.DataFrame(columns=WAITING_COLUMNS)
        return {v.videos: self.reviews.video_list(), v.open_choice: gr.update(choices=self.reviews.video_choices()),
                v.waiting: waiting, self.models_view.model_table: self.models.model_list(),
                self.analyse.trained_model: gr.update(choices=self.models.model_choices())}

    def open_video(self, data: dict, user, request=None):
        """Any stored video's newest analysis, for any reviewer, without analysing it again: the Analyse tab
        shows it as it showed it to the reviewer who analysed it (AnalyseTab.shown)."""
        key = data[self.view.open_choice]
        if not key:
            raise InputError("Choose a video from the list, then press Open video.")
        claim(data[self.page.state], user)
        analysed = self.analyses.open_video(key, user, session_dir(self.config.cache_dir, request))
        return {**self.analyse_tab.shown(analysed), **self.analyse.player_waits_for(analysed.video.name),
                **self._tables(key)}

    def video_view(self, data: dict):
        """The video under review by its file name, with its corrections, history and flags."""
        key = data[self.view.review_video]
        if not key:
            return {self.view.review_name: "", **self._tables(None)}
        return {self.view.review_name: self.reviews.video_name(key), **self._tables(key)}

    # -- handlers: segments -----------------------------------------------------------------------------
    def review_queue(self, data: dict, user):
        video = need(data[self.page.state], user)
        return {self.view.queue: self.reviews.review_queue(self._labelled(video), video.run, video.key)}

    def open_segment(self, data: dict, user, number=None):
        v = self.view
        video, queue = need(data[self.page.state], user), data[v.queue]
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: press Rank segments first.")
        number = whole(data[v.segment] if number is None else number, "segment number", 0, len(queue) - 1)
        try:
            seg = queue.iloc[number]
            start, end = whole(seg["start_frame"], "first frame"), whole(seg["end_frame"], "last frame")
            task = seg["task"]
        except KeyError as err:
            raise InputError(f"The review queue has no {err} column: press Rank segments to make it again.") from None
        return {v.segment: number, v.task: task, v.start: start, v.end: end, **self._range_view(video, start, end)}

    def open_selected(self, data: dict, evt: gr.SelectData, user):
        """A click on a row of the queue opens that segment."""
        return self.open_segment(data, user, evt.index[0])

    def next_segment(self, data: dict, user):
        """J: the next segment of the queue."""
        return self._step(data, user, 1)

    def previous_segment(self, data: dict, user):
        """K: the previous segment of the queue."""
        return self._step(data, user, -1)

    def _step(self, data, user, delta):
        queue = data[self.view.queue]
        need(data[self.page.state], user)
        if queue is None or len(queue) == 0:
            raise InputError("The review queue is empty: press Rank segments first.")
        number = min(max(whole(data[self.view.segment] or 0, "segment number"), 0), len(queue) - 1)
        if not 0 <= number + delta < len(queue):
            raise InputError(f"Segment {number} is the {'last' if delta > 0 else 'first'} of the queue "
                             "(J: next, K: previous).")
        return self.open_segment(data, user, number + delta)

    def show_range(self, data: dict, user):
        video = need(data[self.page.state], user)
        return self._range_view(video, *self._range(data))

    def _labelled(self, video: OpenVideo) -> pd.DataFrame:
        """The open video's table with the effective labels as they are now (others may have decided since)."""
        return self.reviews.labels.labelled(video.key, video.table)

    def _range_view(self, video: OpenVideo, start: int, end: int) -> dict:
        v, table = self.view, self._labelled(video)
        last = int(table[FRAME].max())
        if not 0 <= start <= end <= last:
            raise InputError(f"Frames {start}-{end} are not a range inside the video (frames 0-{last}).")
        part = table[(table[FRAME] >= start) & (table[FRAME] <= end)]
        title = f"{video.name}: frames {start}-{end} ({seconds(start, end, frame_rate(table))})"
        return {v.segment_plot: plots.timeline_figure(part, title, corrected=self.reviews.corrected(video)),
                v.gallery: self.frames.gallery(video, start, end),
                v.segment_labels: self.reviews.segment_labels(part)}

    def range_in_seconds(self, data: dict, user) -> dict:
        """The frame range typed above in seconds too, the unit of the timelines (empty until it is a range
        of the open video)."""
        out = {self.view.range_seconds: ""}
        try:
            video = need(data[self.page.state], user)
            start, end = self._range(data)
        except InputError:
            return out
        if 0 <= start <= end <= video.last_frame:
            out[self.view.range_seconds] = (f"Frames {start}-{end} are "
                                            f"{seconds(start, end, frame_rate(video.table))} into the video.")
        return out

    # -- handlers: flags, corrections, decisions --------------------------------------------------------
    def _range(self, data: dict) -> tuple[int, int]:
        start, end = data[self.view.start], data[self.view.end]
        if start is None or end is None:
            raise InputError("Enter the first and the last frame of the range (or open a segment).")
        return whole(start, "first frame"), whole(end, "last frame")

    def flag(self, data: dict, user):
        v, who = self.view, login(user)
        key, (start, end), task = _key(data[v.review_video]), self._range(data), data[v.task]
        flag_id = self.reviews.flag(key, task, start, end, data[v.reason], data[v.flag_note], who)
        return {v.flag_status: f"Flag {flag_id}: {task.upper()} frames {start}-{end} ({data[v.reason]}), by {who}.",
                **self._tables(key)}

    def correct(self, data: dict, user):
        v, who = self.view, login(user)
        key, (start, end), task = _key(data[v.review_video]), self._range(data), data[v.task]
        valence, arousal = data[v.valence], data[v.arousal]
        if task == "va" and (valence is None or arousal is None):
            raise InputError("Enter both valence and arousal (each from -1 to 1).")
        value = {"va": {"valence": valence, "arousal": arousal}, "expr": data[v.expression],
                 "au": [int(au in (data[v.aus] or [])) for au in AUS]}[task]
        correction_id = self.reviews.correct(key, task, start, end, value, data[v.correct_note], who)
        return {v.correct_status: f"Correction {correction_id}: {task.upper()} frames {start}-{end}, proposed by "
                                  f"{who}; another reviewer can accept or reject it.", **self._tables(key)}

    def accept(self, data: dict, user):
        return self._decide(data, True, login(user))

    def reject(self, data: dict, user):
        return self._decide(data, False, login(user))

    def _decide(self, data, accept, who):
        v = self.view
        key, correction_id = _key(data[v.review_video]), data[v.correction_id]
        if not correction_id:       # an emptied number field on the page sends 0; ids start at 1
            raise InputError("Enter the id of the correction to accept or reject.")
        self.reviews.decide(key, correction_id, accept, data[v.decision_comment], who)
        return {v.decision_status: f"Correction {int(correction_id)} {'accepted' if accept else 'rejected'} by {who}.",
                **self._tables(key)}

    def revise(self, data: dict, user):
        v, who = self.view, login(user)
        key, correction_id = _key(data[v.review_video]), data[v.correction_id]
        if not correction_id:
            raise InputError("Enter the id of the correction whose decision you revise.")
        accept = data[v.revised] == DECISIONS[0]
        self.reviews.revise(key, correction_id, accept, data[v.revise_reason], who)
        return {v.decision_status: f"Correction {int(correction_id)} revised to "
                                   f"{'accepted' if accept else 'rejected'} by {who}.", **self._tables(key)}

    def resolve_flag(self, data: dict, user):
        v, who = self.view, login(user)
        key, flag_id = _key(data[v.review_video]), data[v.flag_id]
        if not flag_id:
            raise InputError("Enter the id of the flag to resolve.")
        correction_id = data[v.fixing_correction] or None            # an empty field: no fixing correction
        self.reviews.resolve_flag(key, flag_id, data[v.resolution], correction_id, data[v.resolve_note], who)
        return {v.resolve_status: f"Flag {int(flag_id)} resolved ({data[v.resolution]}) by {who}.",
                **self._tables(key)}

    def follow_labels(self, data: dict, user):
        """The open video's labels as they are now: when a decision (this reviewer's or another's) changed
        them since they were shown, the Analyse tab's timeline, metrics and frame view show the new ones and
        say so; otherwise nothing changes (the page asks after each decision and every LABELS_CHECK_S)."""
        a, video = self.analyse, data[self.page.state]
        unchanged = {o: gr.skip() for o in self.follows}
        if video is None or video.owner != user or video.key is None:
            return unchanged
        table = self._labelled(video)
        truth = sorted(c for c in table.columns if c.startswith("gt_"))
        if truth == sorted(c for c in video.table.columns if c.startswith("gt_")) and \
                table[truth].equals(video.table[truth]):
            return unchanged
        try:
            frame = video.frame(data[a.frame])
        except InputError:
            frame = 0
        shown = self.analyse_tab.labels_shown(dataclasses.replace(video, table=table), frame)
        note = (f"The labels changed at {datetime.now(timezone.utc):%H:%M:%S} UTC (a correction was accepted, or "
                "a decision revised): the timeline, the metrics and this frame show them now.")
        return {**shown, a.metrics_hint: " ".join(filter(None, [note, shown[a.metrics_hint]]))}

    @property
    def follows(self) -> list:
        """What follow_labels sets: the open video and what shows its labels on the Analyse tab."""
        a = self.analyse
        return [self.page.state, a.timeline, a.metrics, a.metrics_hint, a.crop, a.frame_info]

    # -- handlers: figures and files --------------------------------------------------------------------
    def agreement(self, data: dict, user):
        video = need(data[self.page.state], user)
        if video.key is None:
            raise InputError("This analysis was not stored (the server could not write it): it has no review to "
                             "measure.")
        figures, note = self.reviews.agreement(video, self._labelled(video))
        return {self.view.agreement: figures, self.view.agreement_status: note}

    def history(self, data: dict):
        return self._tables(_key(data[self.view.review_video]))

    def export(self, data: dict, request):
        key = _key(data[self.view.review_video])
        out = session_dir(self.config.cache_dir, request) / "export"
        return {self.view.export_files: [str(p) for p in self.reviews.export(key, out)]}

    def export_interop(self, data: dict, user, request):
        """The open video's ELAN and Label Studio files."""
        video = need(data[self.page.state], user)
        if video.key is None:
            raise InputError("This analysis was not stored (the server could not write it): there is nothing to "
                             "export.")
        out = session_dir(self.config.cache_dir, request) / "interop"
        files, notes = self.reviews.export_interop(video.key, out, video.path)
        return {self.view.export_files: [str(p) for p in files], self.view.export_status: " ".join(notes)}

    def _tables(self, key: str | None) -> dict:
        """The video's corrections, history and flags (empty tables when no video is open)."""
        v = self.view
        if key is None:
            return {v.corrections: pd.DataFrame(columns=CORRECTION_TABLE), v.flags: pd.DataFrame(columns=FLAG_TABLE),
                    v.history: pd.DataFrame(columns=list(HISTORY_COLUMNS))}
        return {v.corrections: self.reviews.corrections(key), v.history: self.reviews.history(key),
                v.flags: self.reviews.flags(key)}

    # -- page -------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks):
        v, state = self.view, self.page.state
        demo.load(signed_in(self.who), None, self.page.who, api_name=False)
        segment_in = {state, v.queue, v.segment}
        segment_view = [v.segment, v.task, v.start, v.end, v.segment_plot, v.gallery, v.segment_labels]
        bind(v.queue_btn.click, self.review_queue, {state}, [v.queue], status=v.segment_status, api_name="review_queue")
        bind(v.queue.select, self.open_selected, segment_in, segment_view, status=v.segment_status)
        bind(v.open_btn.click, self.open_segment, segment_in, segment_view, status=v.segment_status,
             api_name="open_segment")
        bind(v.next_btn.click, self.next_segment, segment_in, segment_view, status=v.segment_status)
        bind(v.previous_btn.click, self.previous_segment, segment_in, segment_view, status=v.segment_status)
        gr.on([v.start.change, v.end.change], signed_in(self.range_in_seconds), {state, v.start, v.end},
              v.range_seconds, api_name=False, show_progress="hidden")
        bind(v.show_btn.click, self.show_range, {state, v.start, v.end}, segment_view[4:], status=v.segment_status,
             api_name="show_range")
        tables = [v.corrections, v.history, v.flags]
        actions = ((v.flag_btn, self.flag, {v.review_video, v.task, v.start, v.end, v.reason, v.flag_note},
                    v.flag_status, [v.flag_note], "flag"),
                   (v.correct_btn, self.correct, {v.review_video, v.task, v.start, v.end, v.valence, v.arousal,
                                                  v.expression, v.aus, v.correct_note},
                    v.correct_status, [v.correct_note], "correct"),
                   (v.accept_btn, self.accept, {v.review_video, v.correction_id, v.decision_comment},
                    v.decision_status, [v.decision_comment], "accept_correction"),
                   (v.reject_btn, self.reject, {v.review_video, v.correction_id, v.decision_comment},
                    v.decision_status, [v.decision_comment], "reject_correction"),
                   (v.revise_btn, self.revise, {v.review_video, v.correction_id, v.revised, v.revise_reason},
                    v.decision_status, [v.revise_reason], "revise_decision"),
                   (v.resolve_btn, self.resolve_flag, {v.review_video, v.flag_id, v.resolution, v.fixing_correction,
                                                       v.resolve_note}, v.resolve_status, [v.resolve_note],
                    "resolve_flag"))
        a = self.analyse
        follow = dict(fn=quiet(self.follow_labels, self.follows), inputs={state, a.frame}, outputs=self.follows,
                      show_progress="hidden")
        for button, handler, inputs, status, clear, name in actions:
            bind(button.click, handler, inputs, [status, *tables], status=status, clear=clear,
                 api_name=name).then(api_name=False, **follow)
        v.labels_timer.tick(api_name=False, **follow)
        bind(v.agreement_btn.click, self.agreement, {state}, [v.agreement], status=v.agreement_status,
             api_name="agreement")
        video_lists = [v.videos, v.open_choice, v.waiting, self.models_view.model_table, self.analyse.trained_model]
        bind(demo.load, self.list_videos, None, video_lists, status=v.videos_status)
        bind(v.refresh_btn.click, self.list_videos, None, video_lists, status=v.videos_status, api_name="list_videos")
        bind(v.open_video_btn.click, self.open_video, {state, v.open_choice},
             [state, v.review_video, v.queue, a.timeline, *tables, a.frame, a.run_info, a.metrics, a.metrics_hint,
              a.crop, a.frame_info, a.downloads, a.weights_info, a.player, a.player_note],
             status=v.videos_status, api_name="open_video").then(**self.analyse_tab.details())
        bind(v.review_video.change, self.video_view, {v.review_video}, [v.review_name, *tables],
             status=v.videos_status).then(signed_in(self.list_videos), None, video_lists, api_name=False,
                                          show_progress="hidden")     # the lists change in place, no spinner
        bind([], self.history, {v.review_video}, tables, status=v.videos_status, api_name="history")
        bind(v.export_btn.click, self.export, {v.review_video}, [v.export_files], status=v.export_status,
             api_name="export_corrections")
        bind(v.export_interop_btn.click, self.export_interop, {state}, [v.export_files], status=v.export_status,
             api_name="export_interop")


def _key(video_key) -> str:
    if not video_key:
        raise InputError(NO_VIDEO)
    return video_key
