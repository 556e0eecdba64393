"""The review database: videos, Aff-Wild2 annotation sets, prediction runs, reviewers, flags, corrections
(with their audit trail) and CLIP prompt sets.

db/engine.py opens a database (SQLite under ./data by default, any SQLAlchemy URL otherwise) and migrates it
with Alembic; db/models.py holds the tables; db/repo.py the functions that read and write them, each taking
a Session first. Nothing here imports torch or Gradio, so training jobs, scripts and the web app share it.
"""
