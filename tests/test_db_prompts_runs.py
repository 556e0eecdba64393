"""db.repo's prompt sets (versioned, loaded in CLIP, bad ones refused) and prediction runs, against a real
database (SQLite always, PostgreSQL when configured)."""
from datetime import timezone

import numpy as np
import pytest
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)
from test_db_repo import refused, setup  # noqa: F401  (a fixture and a helper)

from core.labels import EXPRESSIONS
from db import repo


def test_prompt_sets_are_versioned_and_load_in_clip(sessions, setup):
    from core.models.clip import DEFAULT_PROMPT_SETS, prompt_set

    basic = DEFAULT_PROMPT_SETS["basic"].to_dict()
    with sessions.begin() as session:
        first = repo.save_prompt_set(session, basic["name"], basic["templates"], basic["classes"], "alice")
        again = repo.save_prompt_set(session, basic["name"], basic["templates"], basic["classes"], "bob")
        changed = repo.save_prompt_set(session, "basic", ["a {} face."], basic["classes"], "bob")
        other = repo.save_prompt_set(session, "emotion", **{k: v for k, v in DEFAULT_PROMPT_SETS["emotion"].to_dict()
                                                           .items() if k != "name"}, author="carol")
    assert again.id == first.id and (first.version, changed.version, other.version) == (1, 2, 1)
    assert first.author.name == "alice"
    with sessions() as session:
        assert [(p.name, p.version) for p in repo.list_prompt_sets(session)] == [("basic", 2), ("emotion", 1)]
        assert len(repo.list_prompt_sets(session, all_versions=True)) == 3
        stored = repo.get_prompt_set(session, "basic", version=1)
        assert repo.get_prompt_set(session, "basic").version == 2
        with pytest.raises(repo.NotFoundError, match="unknown prompt set 'facs'"):
            repo.get_prompt_set(session, "facs")
    loaded, expected = prompt_set(stored.to_dict()), DEFAULT_PROMPT_SETS["basic"]
    assert (loaded.name, loaded.templates, loaded.classes) == (expected.name, expected.templates, expected.classes)
    assert loaded.key == expected.key


BAD_PROMPT_SETS = [
    ("my set", ["a {} face"], None, "must be letters, digits or _"),
    ("s", ["a face"], None, "every template needs exactly one {}"),
    ("s", ["a {} {} face"], None, "every template needs exactly one {}"),
    ("s", [], None, "every template needs exactly one {}"),
    ("s", "a {} face", None, "templates must be a list of strings"),
    ("s", ["a {} face"], {"Neutral": ["calm"]}, "needs phrasings for exactly Neutral, Anger"),
    ("s", ["a {} face"], {c: [] for c in EXPRESSIONS}, "no phrasing for Neutral"),
]


def test_bad_prompt_sets_are_refused(sessions, setup, engine):
    for name, templates, classes, message in BAD_PROMPT_SETS:
        classes = classes if classes is not None else {c: [c.lower()] for c in EXPRESSIONS}
        refused(sessions, repo.save_prompt_set, dict(name=name, templates=templates, classes=classes,
                                                     author="alice"), message)
    refused(sessions, repo.save_prompt_set, dict(name="s", templates=["a {} face"],
                                                 classes={c: [c] for c in EXPRESSIONS}, author="dave"),
            "unknown reviewer 'dave'")
    assert count(engine, "prompt_sets") == 0


def test_prediction_runs(sessions, setup, tmp_path):
    details = {"fps": np.float32(30.0), "frames": np.int64(60), "timings": {"decode_s": 0.5}, "path": tmp_path}
    with sessions.begin() as session:
        first = repo.add_prediction_run(session, "v", models={"ddamfn": {"untrained": True}}, device="cpu",
                                        table_path=tmp_path / "run1.parquet", untrained=True, details=details)
        second = repo.add_prediction_run(session, "v", models=["ddamfn", "clip"], device="cuda:0",
                                         table_path=str(tmp_path / "run2.parquet"), untrained=False,
                                         weights={"ddamfn": "hf://org/repo/ddamfn.pt", "clip": "openai"})
        with pytest.raises(repo.ValidationError, match="untrained must be True or False"):
            repo.add_prediction_run(session, "v", models=["x"], device="cpu", table_path="t", untrained="no")
        with pytest.raises(repo.ValidationError, match="at least one model"):
            repo.add_prediction_run(session, "v", models={}, device="cpu", table_path="t", untrained=False)
        with pytest.raises(repo.NotFoundError):
            repo.add_prediction_run(session, "w", models=["x"], device="cpu", table_path="t", untrained=False)
    with sessions() as session:
        runs = repo.list_prediction_runs(session, "v")
    assert [r.id for r in runs] == [second.id, first.id]
    assert runs[1].details == {"fps": 30.0, "frames": 60, "timings": {"decode_s": 0.5}, "path": str(tmp_path)}
    assert runs[1].table_path == str(tmp_path / "run1.parquet") and runs[1].untrained
    assert runs[0].models == {"ddamfn": {}, "clip": {}} and runs[0].weights["clip"] == "openai"
    assert runs[0].created_at.tzinfo == timezone.utc
