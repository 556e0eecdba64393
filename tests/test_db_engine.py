"""db.engine and the Alembic migrations, on SQLite always and on PostgreSQL when
AFFECTLENS_TEST_POSTGRES_URL is set (CI starts a server). Also holds the engine fixtures the other
test_db_* modules import: each test gets a fresh database (a new SQLite file, or a new PostgreSQL schema
that is dropped afterwards)."""
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from core.labels import EXPRESSIONS
from db import repo
from core import settings
from db.engine import (
    alembic_config,
    current_revision,
    init_db,
    make_engine,
    make_session_factory,
)
from db.models import Base, Flag

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("AFFECTLENS_TEST_POSTGRES_URL")
HEAD = "0005"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """URL of an empty database: a SQLite file in tmp_path, or a fresh schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'affectlens.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need AFFECTLENS_TEST_POSTGRES_URL (.ci/run sets it)")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url):
    engine = init_db(make_engine(db_url))
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


def count(engine, table: str) -> int:
    """Rows in a table, read without taking SQLite's write lock (a reader never waits for a writer)."""
    with make_session_factory(engine, read_only=True)() as session:
        return session.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


# ---------------------------------------------------------------------------------------------------


def test_db_imports_neither_torch_nor_gradio():
    code = ("import sys, db, db.engine, db.models, db.repo, db.export, db.agreement, db.__main__\n"
            "print(sorted(m for m in ('torch', 'gradio', 'open_clip') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_url_follows_the_environment(tmp_path):
    assert settings.db_url({}) == "sqlite:///data/affectlens.db"
    assert settings.db_url({"AFFECTLENS_DATA_DIR": str(tmp_path)}) == f"sqlite:///{tmp_path}/affectlens.db"
    url = "postgresql+psycopg://u:p@db.example/affectlens"
    assert settings.db_url({"AFFECTLENS_DB_URL": url, "AFFECTLENS_DATA_DIR": str(tmp_path)}) == url


def test_default_sqlite_file_is_created_on_first_use_with_safe_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFFECTLENS_DB_URL", raising=False)
    monkeypatch.delenv("AFFECTLENS_DATA_DIR", raising=False)
    engine = init_db()
    assert (tmp_path / "data" / "affectlens.db").is_file()
    with engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("foreign_keys") == 1
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") == 30_000
    engine.dispose()

    nested = tmp_path / "a" / "b"
    monkeypatch.setenv("AFFECTLENS_DATA_DIR", str(nested))
    engine = init_db()
    assert engine.url.database == str(nested / "affectlens.db")
    assert (nested / "affectlens.db").is_file()
    engine.dispose()


def test_migrations_build_exactly_the_models(engine):
    assert current_revision(engine) == HEAD
    init_db(engine)                                 # an up-to-date database is left alone
    assert current_revision(engine) == HEAD
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_foreign_keys_and_checks_are_enforced(sessions):
    with sessions.begin() as session:
        video = repo.register_video(session, "v", 10, 25.0)
        alice = repo.get_or_create_reviewer(session, "alice")
    bad_rows = [
        Flag(video_id=999, task="va", start_frame=0, end_frame=1, reason="other", note="x", reviewer_id=alice.id,
             idempotency_key="k1"),                                            # no such video
        Flag(video_id=video.id, task="va", start_frame=5, end_frame=2, reason="other", note="x",
             reviewer_id=alice.id, idempotency_key="k2"),                      # end before start
        Flag(video_id=video.id, task="gaze", start_frame=0, end_frame=1, reason="other", note="x",
             reviewer_id=alice.id, idempotency_key="k3"),                      # unknown task
    ]
    for row in bad_rows:
        with pytest.raises(IntegrityError), sessions.begin() as session:
            session.add(row)
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Flag)) == 0


OLD_ROWS = """
INSERT INTO reviewers (id, name, created_at) VALUES (1, 'alice', '2024-05-01 10:00:00'),
                                                     (2, 'bob', '2024-05-01 10:05:00');
INSERT INTO videos (id, key, name, sha256, frame_count, fps, created_at)
    VALUES (1, '10-24-640x360', '10-24-640x360', NULL, 100, 24.0, '2024-05-01 10:00:00');
INSERT INTO flags (id, video_id, task, start_frame, end_frame, reason, note, reviewer_id, created_at,
                   idempotency_key)
    VALUES (1, 1, 'va', 10, 20, 'occluded', 'hand over face', 1, '2024-05-01 11:00:00', 'old-flag');
INSERT INTO corrections (id, video_id, task, start_frame, end_frame, value, original, annotation_set_id, note,
                         reviewer_id, status, reviewed_by_id, reviewed_at, created_at, idempotency_key)
    VALUES (1, 1, 'expr', 30, 39, '{"expression": 4}', '{"expression": [0,0,0,0,0,0,0,0,0,0]}', NULL, 'smiling',
            1, 'accepted', 2, '2024-05-01 12:30:00', '2024-05-01 12:00:00', 'old-correction');
INSERT INTO audit_events (id, created_at, reviewer_id, action, correction_id, flag_id, detail) VALUES
    (1, '2024-05-01 11:00:00', 1, 'flagged', NULL, 1, '{"reason": "occluded"}'),
    (2, '2024-05-01 12:00:00', 1, 'proposed', 1, NULL, '{"value": {"expression": 4}}'),
    (3, '2024-05-01 12:30:00', 2, 'accepted', 1, NULL, '{"from": "proposed", "to": "accepted"}');
"""


def test_upgrade_keeps_rows_written_by_the_first_revision(db_url):
    engine = init_db(make_engine(db_url), "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as connection:
        for statement in filter(str.strip, OLD_ROWS.split(";")):
            connection.exec_driver_sql(statement)
        if connection.dialect.name == "postgresql":   # explicit ids above: move the sequences past them
            for table in ("reviewers", "videos", "flags", "corrections", "audit_events"):
                connection.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT MAX(id) FROM {table}))")

    init_db(engine)
    assert current_revision(engine) == HEAD
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        [flag] = repo.list_flags(session, "10-24-640x360")
        assert (flag.task, flag.start_frame, flag.end_frame, flag.reason, flag.note, flag.reviewer.name) == (
            "va", 10, 20, "occluded", "hand over face", "alice")
        assert flag.created_at == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)
        assert flag.resolved_at is None
        [correction] = repo.list_corrections(session, "10-24-640x360")
        assert correction.value == {"expression": 4} and correction.status == "accepted"
        assert correction.reviewed_by.name == "bob"
        assert [e.action for e in repo.history(session, video="10-24-640x360")] == ["flagged", "proposed", "accepted"]
        labels = repo.effective_labels(session, "10-24-640x360", "expr")
        assert labels["expression"].iloc[30:40].tolist() == [4] * 10
        assert labels["flagged"].sum() == 0
        # What the second revision added works on the old rows.
        repo.resolve_flag(session, flag.id, video="10-24-640x360", reviewer="bob", resolution="frames unusable",
                          note="hand over face")
        repo.save_prompt_set(session, "kept", ["a {} face"], {c: [c.lower()] for c in EXPRESSIONS}, "alice")
        repo.add_flag(session, "10-24-640x360", "au", 0, 5, "no face", "bob")
    with sessions() as session:
        assert repo.list_flags(session, "10-24-640x360")[0].resolved_by.name == "bob"
        assert [e.id for e in repo.history(session)] == [1, 2, 3, 4, 5]
    assert count(engine, "reviewers") == 2 and count(engine, "prompt_sets") == 1
    engine.dispose()


ROWS_0002 = """
INSERT INTO flags (id, video_id, task, start_frame, end_frame, reason, note, reviewer_id, created_at,
                   idempotency_key, resolved_at, resolved_by_id, resolution_note)
    VALUES (2, 1, 'expr', 50, 59, 'ambiguous', '', 1, '2024-05-02 09:00:00', 'old-flag-2', '2024-05-02 10:00:00',
            2, 'label is fine');
INSERT INTO audit_events (id, created_at, reviewer_id, action, correction_id, flag_id, detail) VALUES
    (4, '2024-05-02 09:00:00', 1, 'flagged', NULL, 2, '{"reason": "ambiguous"}'),
    (5, '2024-05-02 10:00:00', 2, 'resolved', NULL, 2, '{"note": "label is fine"}');
INSERT INTO prediction_runs (id, video_id, models, weights, device, table_path, untrained, details, created_at)
    VALUES (1, 1, '{"ddamfn": {}}', '{"ddamfn": null}', 'cpu', '/tmp/session/table.parquet', TRUE, '{}',
            '2024-05-02 08:00:00');
"""


def test_upgrade_from_the_second_revision_keeps_rows_and_resolved_flags_keep_their_effect(db_url):
    """Rows written at 0002 -- an open and a resolved flag, an accepted correction, a prediction run --
    survive 0003; the old resolution ("dealt with": frames back in) becomes "annotation is right"."""
    engine = init_db(make_engine(db_url), "0002")
    with engine.begin() as connection:
        for statement in filter(str.strip, (OLD_ROWS + ROWS_0002).split(";")):
            connection.exec_driver_sql(statement)
        if connection.dialect.name == "postgresql":
            for table in ("reviewers", "videos", "flags", "corrections", "audit_events", "prediction_runs"):
                connection.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT MAX(id) FROM {table}))")
    init_db(engine)
    assert current_revision(engine) == HEAD
    sessions = make_session_factory(engine)
    key = "10-24-640x360"
    with sessions.begin() as session:
        open_flag, resolved = repo.list_flags(session, key)
        assert (open_flag.resolution, open_flag.resolved_at) == (None, None)
        assert (resolved.resolution, resolved.resolution_note, resolved.resolved_by.name) == (
            "annotation is right", "label is fine", "bob")
        [correction] = repo.list_corrections(session, key)
        assert (correction.status, correction.decision_comment) == ("accepted", None)
        [run] = repo.list_prediction_runs(session, key)
        assert (run.weight_hashes, run.run_key, run.artifacts_dir, run.created_by) == ({}, None, None, None)
        assert run.table_path == "/tmp/session/table.parquet" and run.untrained
        assert repo.effective_labels(session, key, "expr")["flagged"].sum() == 0     # as before the upgrade
        assert [e.id for e in repo.history(session, video=key)] == [1, 2, 3, 4, 5]
        # What 0003 added works on the old rows.
        repo.resolve_flag(session, open_flag.id, video=key, reviewer="carol", resolution="frames unusable")
        repo.revise_decision(session, correction.id, video=key, reviewer="carol", accept=False, reason="not happy")
        assert repo.latest_run(session, key).id == run.id
        repo.add_prediction_run(session, key, models=["ddamfn"], device="cpu", table_path="runs/2/table.parquet",
                                untrained=False, run_key="k", weight_hashes={"ddamfn": "f" * 64})
    with sessions() as session:
        assert [e.action for e in repo.history(session, video=key)][-2:] == ["resolved", "revised"]
        assert repo.find_run(session, "k").id == 2
    assert (count(engine, "reviewers"), count(engine, "flags"), count(engine, "prediction_runs")) == (3, 2, 2)
    engine.dispose()


def test_downgrade_and_upgrade_again_keep_the_rows(engine):
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        repo.get_or_create_reviewer(session, "alice")
        repo.get_or_create_reviewer(session, "bob")
        repo.register_video(session, "v", 50, 30.0)
        flag = repo.add_flag(session, "v", "va", 1, 2, "ambiguous", "alice")
        repo.resolve_flag(session, flag.id, video="v", reviewer="bob", resolution="annotation is right")
        repo.add_correction(session, "v", "va", 3, 4, (0.1, 0.2), "alice")
    config = alembic_config(engine)
    command.downgrade(config, "0001")            # SQLite: the flags table is rebuilt under audit events
    assert current_revision(engine) == "0001"
    assert (count(engine, "flags"), count(engine, "corrections"), count(engine, "audit_events")) == (1, 1, 3)
    command.upgrade(config, "head")
    with sessions() as session:
        [flag] = repo.list_flags(session)
        assert (flag.reason, flag.resolved_at) == ("ambiguous", None)
        assert [e.action for e in repo.history(session)] == ["flagged", "resolved", "proposed"]
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_command_line_upgrade_and_export(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "AFFECTLENS_DB_URL": url}
    run = lambda *args: subprocess.run([sys.executable, "-m", "db", *args], cwd=REPO_ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    result = run("upgrade")
    assert result.returncode == 0, result.stderr
    assert HEAD in run("current").stdout
    engine = make_engine(url)
    with make_session_factory(engine).begin() as session:
        repo.get_or_create_reviewer(session, "alice")
        repo.register_video(session, "v", 20, 25.0)
        repo.add_flag(session, "v", "expr", 0, 3, "wrong label", "alice")
        repo.add_correction(session, "v", "expr", 0, 3, "Happiness", "alice")
    engine.dispose()
    result = run("export", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "corrections.csv", "corrections.json", "flags.csv", "flags.json"]
    bad = run("export")
    assert bad.returncode != 0
