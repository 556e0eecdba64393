"""Every limit on the work one request may cause, in one place. Each can be changed with the environment
variable named beside it (read once, when db is first imported); the defaults suit a small team.

- AFFECTLENS_MAX_TEXT_LENGTH (2000): characters in a note, comment, reason or resolution note -- a
  paragraph, not a document (a longer one is refused, not cut, and the message says so).
- AFFECTLENS_MAX_PROMPT_LENGTH (300): characters in one prompt template or class phrasing (CLIP reads 77
  tokens at most).
- AFFECTLENS_MAX_PROMPTS_PER_CLASS (80): prompts one expression gets from a saved prompt set (templates x
  its phrasings); 80 is the template count of CLIP's ImageNet prompts.
- AFFECTLENS_MAX_PROMPTS (320): prompts of a saved set over all eight classes: each is encoded for every
  comparison, and a saved set is in every reviewer's list.
- AFFECTLENS_DB_WRITE_TIMEOUT_S (30): seconds a write may wait for other writers, retries included, before
  it gives up with DatabaseBusy (nothing saved).
- AFFECTLENS_MAX_RUNNING_JOBS (1): retraining jobs running at once (each is a process of several GB);
  later ones wait in the queue, in order, and the page says how many are ahead.
- AFFECTLENS_JOB_WRITE_TIMEOUT_S (600): seconds a training job's writes (start, finish, model) wait for a
  busy database: nobody waits on the page for them, and losing a finished job costs its whole run.
- AFFECTLENS_MAX_FRAME_PIXELS (8,847,360: 4096 x 2160, DCI 4K): pixels in one frame of an uploaded video,
  read from the container before anything is decoded (a decoded 8K frame is 192 MiB).
- AFFECTLENS_FRAME_CACHE_MB (256): decoded frames the page keeps for browsing, over all sessions.
- AFFECTLENS_MAX_HEADER_CHARS (10,000): characters read for the first line of an annotation file.

HISTORY_PAGE (200, fixed): audit events, and corrections, a review action shows: the newest (all of them
are exported).
"""
from __future__ import annotations

import os


def _positive(name: str, default: int | float, kind=int):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name}={text!r}: expected a positive {'integer' if kind is int else 'number'}")
    return value


MAX_TEXT_LENGTH = _positive("AFFECTLENS_MAX_TEXT_LENGTH", 2_000)
MAX_PROMPT_LENGTH = _positive("AFFECTLENS_MAX_PROMPT_LENGTH", 300)
MAX_PROMPTS_PER_CLASS = _positive("AFFECTLENS_MAX_PROMPTS_PER_CLASS", 80)
MAX_PROMPTS = _positive("AFFECTLENS_MAX_PROMPTS", 320)
WRITE_TIMEOUT_S = _positive("AFFECTLENS_DB_WRITE_TIMEOUT_S", 30.0, float)
MAX_RUNNING_JOBS = _positive("AFFECTLENS_MAX_RUNNING_JOBS", 1)
JOB_WRITE_TIMEOUT_S = _positive("AFFECTLENS_JOB_WRITE_TIMEOUT_S", 600.0, float)
MAX_FRAME_PIXELS = _positive("AFFECTLENS_MAX_FRAME_PIXELS", 4096 * 2160)
FRAME_CACHE_MB = _positive("AFFECTLENS_FRAME_CACHE_MB", 256.0, float)
MAX_HEADER_CHARS = _positive("AFFECTLENS_MAX_HEADER_CHARS", 10_000)
HISTORY_PAGE = 200
