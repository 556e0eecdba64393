"""The review database: videos, Aff-Wild2 annotation sets, prediction runs, reviewers, flags, corrections
(with their audit trail), model records, training jobs and CLIP prompt sets.

db/engine.py opens a database (SQLite under ./data by default, any SQLAlchemy URL otherwise) and migrates it
with Alembic; db/models.py holds the tables; db/repo/ the functions that read and write them, each taking
a Session first (one module per aggregate, all importable as `db.repo.<name>`); db/export.py writes the
work out as files and db/agreement.py computes agreement figures. db/errors.py holds the errors people
read (each means nothing was written; DatabaseBusy: other writers kept the database busy too long) and
db/limits.py every limit on the work one request may cause, each with its environment variable. Nothing here imports torch or Gradio, so
training jobs, scripts and the web app share it.
"""
