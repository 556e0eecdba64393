"""Reading and writing the review database. Every function takes a Session first; the caller opens it and
commits, so one Gradio event or one script step is one transaction: writes through
db.engine.write(sessions, lambda session: ...) (retried while the database is busy, then DatabaseBusy),
reads in a read-only session (`with readers.begin() as session: ...`, make_session_factory(engine,
read_only=True)), which never waits for a writer.

Writes check their input before they touch the session: a bad range, value, reason, an unknown video or
reviewer, an id or frame that is not a whole number in range, a text or prompt set over its limit
(db/limits.py) raises ValidationError (a ValueError) and nothing is added. Flags and corrections carry an
idempotency key, given by the client (one per form submission) or derived from the content, under a UNIQUE
constraint: the same submission sent twice -- a double click, a retried request, two processes racing --
is stored once and the stored row is returned. Corrections are never edited: a reviewer other than the
author accepts or rejects one with the video open (a changed decision is a revision with a reason), and
every step is an AuditEvent.

Frames are 0-based and ranges inclusive: (start_frame, end_frame) = (0, 9) are the first ten frames.

One module per aggregate, all re-exported here (`from db import repo; repo.add_flag(...)`):
videos (reviewers, videos, the list of videos), labels (annotation sets, effective labels), runs
(prediction runs), review (flags and their resolution, corrections and decisions, audit trail), models
(model records, training jobs), prompts (CLIP prompt sets), audit (the annotation audit's runs and its
dataset queue of suggestions).
"""
from db.repo.audit import (
    audit_progress,
    confirm_suggestion,
    dismiss_suggestion,
    latest_audit_run,
    list_suggestions,
    sample_units,
    suggestions_table,
    write_audit,
)
from db.repo.common import DatabaseBusy, NotFoundError, ReviewRuleError, ValidationError
from db.repo.labels import (
    add_annotation_set,
    annotation_frame,
    effective_labels,
    excluded_frames,
    import_annotations,
    labels_stamp,
    latest_annotation_set,
)
from db.repo.models import (
    create_job,
    finish_job,
    get_job,
    get_model,
    list_jobs,
    list_models,
    reap_dead_jobs,
    register_model,
    start_job,
    update_job_progress,
)
from db.repo.prompts import check_prompt_set, get_prompt_set, list_prompt_sets, save_prompt_set
from db.repo.review import (
    add_correction,
    add_flag,
    correction_value,
    decide_correction,
    history,
    list_corrections,
    list_flags,
    resolve_flag,
    revise_decision,
    waiting_for,
)
from db.repo.runs import add_prediction_run, find_run, latest_run, list_prediction_runs
from db.repo.videos import (
    file_sha256,
    get_or_create_reviewer,
    get_reviewer,
    get_video,
    list_videos,
    open_video,
    register_video,
    upload_key,
)

__all__ = [
    "DatabaseBusy", "NotFoundError", "ReviewRuleError", "ValidationError",
    "audit_progress", "confirm_suggestion", "dismiss_suggestion", "latest_audit_run", "list_suggestions",
    "sample_units", "suggestions_table", "write_audit",
    "add_annotation_set", "annotation_frame", "effective_labels", "excluded_frames", "import_annotations",
    "labels_stamp", "latest_annotation_set",
    "create_job", "finish_job", "get_job", "get_model", "list_jobs", "list_models", "reap_dead_jobs", "register_model",
    "start_job",
    "update_job_progress",
    "check_prompt_set", "get_prompt_set", "list_prompt_sets", "save_prompt_set",
    "add_correction", "add_flag", "correction_value", "decide_correction", "history", "list_corrections",
    "list_flags", "resolve_flag", "revise_decision", "waiting_for",
    "add_prediction_run", "find_run", "latest_run", "list_prediction_runs",
    "file_sha256", "get_or_create_reviewer", "get_reviewer", "get_video", "list_videos", "open_video",
    "register_video", "upload_key",
]
