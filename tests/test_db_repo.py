"""db.repo and db.export against a real database (SQLite always, PostgreSQL when configured): validation
that writes nothing, idempotent submissions, the two-reviewer rule and the audit trail, effective labels,
exports in Aff-Wild2, CSV and JSON form (prompt sets and prediction runs: test_db_prompts_runs.py)."""
import json
import re
from datetime import timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from core.affwild2 import AnnotationError, read_annotation, write_annotation
from core.affwild2_index import AffWild2Index
from core.labels import AUS, EXPRESSIONS
from db import export, repo
from db.models import Correction, Video

FRAMES = 60


def write_labels(path: Path, task: str, values) -> Path:
    columns = {"va": ["valence", "arousal"], "expr": ["expression"], "au": list(AUS)}[task]
    df = pd.DataFrame(np.asarray(values, dtype="float64").reshape(-1, len(columns)), columns=columns)
    write_annotation(df, path, task)
    return path


@pytest.fixture
def setup(sessions, tmp_path):
    """Three reviewers, video "v" (60 frames at 30 fps) with VA, EXPR and AU annotations imported."""
    rng = np.random.default_rng(0)
    va = np.round(rng.uniform(-1, 1, (FRAMES, 2)), 3)
    va[:3] = np.nan                                         # invalid at the start, as in many files
    expr = np.repeat(np.arange(6), 10).astype(float)
    expr[50:52] = np.nan
    au = (rng.random((FRAMES, 12)) < 0.3).astype(float)
    au[55:] = np.nan
    files = {"va": write_labels(tmp_path / "va.txt", "va", va),
             "expr": write_labels(tmp_path / "expr.txt", "expr", expr),
             "au": write_labels(tmp_path / "au.txt", "au", au)}
    with sessions.begin() as session:
        for name in ("alice", "bob", "carol"):
            repo.get_or_create_reviewer(session, name)
        repo.register_video(session, "v", FRAMES, 30.0, name="clip.mp4")
        for task, path in files.items():
            repo.import_annotations(session, "v", task, path, version="test")
    return files


def rows(engine, *tables):
    return tuple(count(engine, t) for t in tables)


# ---------------------------------------------------------------------------------------------------
# Reviewers, videos, annotation sets


def test_reviewers_and_videos_are_created_once(sessions, media_dir):
    with sessions.begin() as session:
        alice = repo.get_or_create_reviewer(session, "alice")
        assert repo.get_or_create_reviewer(session, "  alice ") .id == alice.id
        video = repo.register_video(session, "10-24-640x360", 300, 24.0)
        assert repo.register_video(session, "10-24-640x360", 300, 24.0).id == video.id
        key = repo.upload_key(media_dir / "single_face.mp4")
        upload = repo.register_video(session, key, 120, 29.97, name="single_face.mp4")
    assert key.startswith("sha256:") and len(key) == 7 + 64
    assert upload.sha256 == key[7:] and upload.name == "single_face.mp4"
    assert video.created_at.tzinfo == timezone.utc
    with sessions.begin() as session:
        with pytest.raises(repo.ValidationError, match="registered with 300 frames at 24 fps"):
            repo.register_video(session, "10-24-640x360", 301, 24.0)
        for bad in [dict(frame_count=0, fps=30.0), dict(frame_count=10, fps=0.0), dict(frame_count=10.5, fps=30.0),
                    dict(frame_count=10, fps=float("nan"))]:
            with pytest.raises(repo.ValidationError):
                repo.register_video(session, "other", **bad)
        with pytest.raises(repo.ValidationError, match="reviewer name is empty"):
            repo.get_or_create_reviewer(session, "   ")
        with pytest.raises(repo.NotFoundError, match="unknown reviewer 'dave'"):
            repo.get_reviewer(session, "dave")
    with sessions() as session:
        assert [v.key for v in session.scalars(sa.select(Video).order_by(Video.id))] == ["10-24-640x360", key]


def test_annotation_sets_keep_every_version(sessions, setup, tmp_path, engine):
    with sessions.begin() as session:
        first = repo.latest_annotation_set(session, "v", "expr")
        assert (first.version, first.frame_count, first.source_path) == ("test", FRAMES, str(setup["expr"]))
        for task, path in setup.items():
            pd.testing.assert_frame_equal(repo.annotation_frame(repo.latest_annotation_set(session, "v", task)),
                                          read_annotation(path, task))
            assert repo.import_annotations(session, "v", task, path).id == \
                repo.latest_annotation_set(session, "v", task).id          # same file again: same set
        changed = write_labels(tmp_path / "expr2.txt", "expr", np.full(FRAMES - 10, 6.0))
        second = repo.import_annotations(session, "v", "expr", changed)
    assert second.id != first.id and count(engine, "annotation_sets") == 4
    with sessions() as session:
        labels = repo.effective_labels(session, "v", "expr")
    assert labels["expression"].iloc[:50].tolist() == [6] * 50     # the newest set is used...
    assert labels["expression"].iloc[50:].isna().all()              # ...padded to the video's length


def test_annotation_import_refuses_bad_files(sessions, setup, tmp_path, engine):
    too_long = write_labels(tmp_path / "long.txt", "va", np.zeros((FRAMES + 1, 2)))
    malformed = tmp_path / "bad.txt"
    malformed.write_text("valence,arousal\n0.1,0.2\n0.3\n")
    with sessions.begin() as session:
        with pytest.raises(AnnotationError, match=r"^long\.txt, line 62: more frames than the video's 60 "):
            repo.import_annotations(session, "v", "va", too_long)
        with pytest.raises(AnnotationError, match="line 3"):
            repo.import_annotations(session, "v", "va", malformed)
        with pytest.raises(repo.NotFoundError, match="unknown video 'w'"):
            repo.import_annotations(session, "w", "va", setup["va"])
    assert count(engine, "annotation_sets") == 3


def test_labels_are_stored_compactly(sessions, setup):
    with sessions() as session:
        au = repo.latest_annotation_set(session, "v", "au")
    assert len(au.labels) < FRAMES * 12          # int8 and compressed: less than a byte per label
    assert np.isnan(au.labels_array()[55:]).all()


# ---------------------------------------------------------------------------------------------------
# Validation: refused with a clear message, nothing written


BAD_FLAGS = [
    (dict(start_frame=0, end_frame=FRAMES), "frames 0-60 are outside video 'v' (frames 0-59)"),
    (dict(start_frame=-1, end_frame=3), "outside video"),
    (dict(start_frame=10, end_frame=5), "frames 10-5: the end is before the start"),
    (dict(start_frame=1.5, end_frame=3), "start_frame must be an integer"),
    (dict(reason=""), "reason is empty"),
    (dict(reason="   "), "reason is empty"),
    (dict(reason="blurry"), "unknown reason 'blurry'; choose one of wrong label, ambiguous"),
    (dict(reason="other"), "reason 'other' needs a note"),
    (dict(reviewer="dave"), "unknown reviewer 'dave'"),
    (dict(video="w"), "unknown video 'w'"),
    (dict(task="gaze"), "unknown task 'gaze'"),
]


BAD_CORRECTIONS = [
    ("va", (1.5, 0.0), "valence 1.5 is not a number in [-1, 1]"),
    ("va", (0.0, float("nan")), "arousal nan is not a number in [-1, 1]"),
    ("va", (0.5,), "a VA correction is a (valence, arousal) pair"),
    ("va", {"valence": 0.2}, "needs valence and arousal"),
    ("va", ("0.1", 0.2), "valence '0.1' is not a number"),
    ("expr", 8, "expression 8 is not an integer in 0..7"),
    ("expr", -1, "expression -1 is not an integer in 0..7"),
    ("expr", 2.0, "expression 2.0 is not an integer"),
    ("expr", "Contempt", "unknown expression 'Contempt'"),
    ("expr", True, "expression True is not an integer"),
    ("au", {"AU3": 1}, "AU correction keys must be among AU1, AU2"),
    ("au", {"AU12": 2}, "AU12 2 is not an integer in 0..1"),
    ("au", {}, "AU correction keys must be among"),
    ("au", [1] * 11, "an AU correction is 12 values 0/1"),
]


def refused(sessions, write, kwargs: dict, message: str) -> None:
    """write(session, **kwargs) raises ValidationError with `message` (literal text) in one transaction."""
    with pytest.raises(repo.ValidationError, match=re.escape(message)):
        with sessions.begin() as session:
            write(session, **kwargs)


def test_bad_flags_are_refused_and_nothing_is_written(sessions, setup, engine):
    good = dict(video="v", task="va", start_frame=0, end_frame=5, reason="occluded", reviewer="alice")
    for change, message in BAD_FLAGS:
        refused(sessions, repo.add_flag, good | change, message)
    assert rows(engine, "flags", "audit_events") == (0, 0)


def test_bad_corrections_are_refused_and_nothing_is_written(sessions, setup, engine):
    for task, value, message in BAD_CORRECTIONS:
        refused(sessions, repo.add_correction, dict(video="v", task=task, start_frame=0, end_frame=5, value=value,
                                                    reviewer="alice"), message)
    good = dict(video="v", task="expr", start_frame=0, end_frame=5, value=4, reviewer="alice")
    for change, message in BAD_FLAGS:
        if "reason" not in change:                    # the same ranges, reviewers, videos and tasks
            refused(sessions, repo.add_correction, good | change, message)
    assert rows(engine, "corrections", "audit_events") == (0, 0)


# ---------------------------------------------------------------------------------------------------
# Idempotency


def test_double_submissions_are_stored_once(sessions, setup, engine):
    for _ in range(3):                              # content-derived keys: three clicks, one row each
        with sessions.begin() as session:
            flag = repo.add_flag(session, "v", "va", 5, 9, "Annotation lag", "alice", note=" late ")
            correction = repo.add_correction(session, "v", "va", 5, 9, (0.2, -0.1), "alice")
    assert (flag.reason, flag.note) == ("annotation lag", "late")
    assert rows(engine, "flags", "corrections", "audit_events") == (1, 1, 2)
    for _ in range(2):                              # client keys
        with sessions.begin() as session:
            keyed = repo.add_flag(session, "v", "va", 5, 9, "annotation lag", "alice", note="late",
                                  idempotency_key="form-1")
            repo.add_correction(session, "v", "au", 0, 0, {"AU12": 1}, "bob", idempotency_key="form-2")
    assert keyed.id != flag.id                      # a new form submission is a new flag
    assert rows(engine, "flags", "corrections", "audit_events") == (2, 2, 4)
    with sessions.begin() as session:
        with pytest.raises(repo.ReviewRuleError, match="'form-1' was already used for another flag"):
            repo.add_flag(session, "v", "va", 6, 9, "annotation lag", "alice", idempotency_key="form-1")
        with pytest.raises(repo.ReviewRuleError, match="'form-2' was already used for another correction"):
            repo.add_correction(session, "v", "au", 0, 0, {"AU12": 0}, "bob", idempotency_key="form-2")
    assert rows(engine, "flags", "corrections", "audit_events") == (2, 2, 4)


# ---------------------------------------------------------------------------------------------------
# Corrections, review, audit trail, effective labels


def test_correction_keeps_the_values_it_replaces(sessions, setup):
    va, au = read_annotation(setup["va"], "va"), read_annotation(setup["au"], "au")
    with sessions.begin() as session:
        c_va = repo.add_correction(session, "v", "va", 1, 4, {"valence": 0.5, "arousal": -0.25}, "alice")
        c_au = repo.add_correction(session, "v", "au", 53, 56, {"AU12": 1}, "alice", note="smile")
        c_vec = repo.add_correction(session, "v", "au", 0, 0, [0] * 12, "alice")
        c_expr = repo.add_correction(session, "v", "expr", 0, 1, "Happiness", "alice")
    assert c_va.value == {"valence": 0.5, "arousal": -0.25}
    assert c_va.original == {"valence": [None, None, va.valence[3], va.valence[4]],
                             "arousal": [None, None, va.arousal[3], va.arousal[4]]}
    assert c_au.original == {"AU12": [int(au.AU12[53]), int(au.AU12[54]), None, None]}
    assert c_vec.value == dict.fromkeys(AUS, 0) and set(c_vec.original) == set(AUS)
    assert c_expr.value == {"expression": EXPRESSIONS.index("Happiness")}
    assert c_expr.annotation_set_id is not None and c_expr.status == "proposed" and c_expr.reviewed_by is None


def decide(session, correction, reviewer: str, accept: bool, comment: str = ""):
    """A decision made with the correction's video ("v") open, as the page makes it."""
    return repo.decide_correction(session, getattr(correction, "id", correction), video="v", reviewer=reviewer,
                                  accept=accept, comment=comment)


def test_a_second_reviewer_decides_and_every_step_is_kept(sessions, setup, engine):
    with sessions.begin() as session:
        correction = repo.add_correction(session, "v", "expr", 10, 19, 4, "alice", note="she smiles")
    with sessions.begin() as session:
        with pytest.raises(repo.ReviewRuleError, match="alice proposed correction .*a second reviewer"):
            decide(session, correction, "alice", accept=True)
        with pytest.raises(repo.NotFoundError, match="No correction 999"):
            decide(session, 999, "bob", accept=True)
    with sessions() as session:
        assert repo.effective_labels(session, "v", "expr")["expression"].iloc[10:20].tolist() == [1] * 10
    with sessions.begin() as session:
        accepted = decide(session, correction, "bob", accept=True, comment="agreed")
        assert decide(session, correction, "bob", accept=True).status == "accepted"   # double click
    assert (accepted.status, accepted.reviewed_by.name, accepted.decision_comment) == ("accepted", "bob", "agreed")
    with sessions() as session:
        labels = repo.effective_labels(session, "v", "expr")
    assert labels["expression"].iloc[10:20].tolist() == [4] * 10
    assert labels["correction_id"].iloc[10:20].tolist() == [correction.id] * 10
    assert labels["correction_id"].iloc[:10].isna().all()
    with sessions.begin() as session:
        rejected = repo.revise_decision(session, correction.id, video="v", reviewer="carol", accept=False,
                                        reason="she grimaces")
    assert (rejected.status, rejected.reviewed_by.name, rejected.decision_comment) == (
        "rejected", "carol", "she grimaces")
    with sessions() as session:
        assert repo.effective_labels(session, "v", "expr")["expression"].iloc[10:20].tolist() == [1] * 10
        events = repo.history(session, correction=correction)
        assert [(e.action, e.reviewer.name) for e in events] == [
            ("proposed", "alice"), ("accepted", "bob"), ("revised", "carol")]
        assert events[1].detail == {"from": "proposed", "to": "accepted", "comment": "agreed"}
        assert events[2].detail == {"before": "accepted", "after": "rejected", "reason": "she grimaces"}
        assert events[0].detail["value"] == {"expression": 4}
        assert [e.id for e in repo.history(session, reviewer="bob")] == [events[1].id]
        stored = repo.list_corrections(session, "v")[0]
        assert stored.value == {"expression": 4} and stored.note == "she smiles"   # the value never changes
    assert count(engine, "audit_events") == 3
    # The database itself refuses a self-review, whoever writes to it.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.update(Correction).values(reviewed_by_id=correction.reviewer_id))


def test_effective_labels_apply_accepted_corrections_and_mark_flags(sessions, setup):
    expr = read_annotation(setup["expr"], "expr")
    au = read_annotation(setup["au"], "au")
    with sessions.begin() as session:
        early = repo.add_correction(session, "v", "expr", 0, 29, "Surprise", "alice")
        late = repo.add_correction(session, "v", "expr", 20, 39, "Anger", "bob")
        repo.add_correction(session, "v", "expr", 40, 49, "Fear", "alice")                  # never reviewed
        single = repo.add_correction(session, "v", "au", 0, 9, {"AU12": 1}, "alice")
        decide(session, late, "carol", accept=True)      # accepted first...
        decide(session, early, "bob", accept=True)       # ...but this acceptance is later
        decide(session, single, "bob", accept=True)
        flag = repo.add_flag(session, "v", "expr", 45, 47, "ambiguous", "carol")
        repo.add_flag(session, "v", "expr", 47, 48, "no face", "bob")
        repo.add_flag(session, "v", "va", 0, 59, "occluded", "bob")      # another task: not marked
    with sessions() as session:
        labels = repo.effective_labels(session, "v", "expr")
        au_labels = repo.effective_labels(session, "v", "au")
    assert list(labels.columns) == ["expression", "correction_id", "flagged", "flag_reasons"]
    assert labels.index.name == "frame" and len(labels) == FRAMES
    assert str(labels["expression"].dtype) == "Int64" and labels["flagged"].dtype == bool
    assert labels["expression"].iloc[:30].tolist() == [6] * 30          # the later acceptance wins
    assert labels["expression"].iloc[30:40].tolist() == [1] * 10
    pd.testing.assert_series_equal(labels["expression"].iloc[40:], expr["expression"].iloc[40:])
    assert labels["flagged"].to_numpy().nonzero()[0].tolist() == [45, 46, 47, 48]
    assert labels["flag_reasons"].iloc[[44, 45, 47, 48]].tolist() == ["", "ambiguous", "ambiguous; no face", "no face"]
    assert au_labels["AU12"].iloc[:10].tolist() == [1] * 10               # only AU12 changed
    pd.testing.assert_frame_equal(au_labels[[a for a in AUS if a != "AU12"]], au[[a for a in AUS if a != "AU12"]])
    with sessions.begin() as session:
        resolved = repo.resolve_flag(session, flag.id, video="v", reviewer="alice", resolution="annotation is right",
                                     note="label is fine")
        assert resolved.resolved_by.name == "alice"
        repo.resolve_flag(session, flag.id, video="v", reviewer="bob", resolution="annotation is right")  # no change
        assert [e.action for e in repo.history(session, flag=flag)] == ["flagged", "resolved"]
        assert len(repo.list_flags(session, "v", "expr", open_only=True)) == 1
        assert repo.effective_labels(session, "v", "expr")["flagged"].to_numpy().nonzero()[0].tolist() == [47, 48]


def test_effective_labels_for_a_given_annotation_table(sessions, setup):
    """What training/ does: it reads the annotation file itself and asks for corrections and flags."""
    expr = read_annotation(setup["expr"], "expr").iloc[:40]
    with sessions.begin() as session:
        c = repo.add_correction(session, "v", "expr", 35, 59, 7, "alice")
        decide(session, c, "bob", accept=True)
        repo.add_flag(session, "v", "expr", 0, 0, "wrong label", "bob")
    with sessions() as session:
        labels = repo.effective_labels(session, "v", "expr", expr)
        unknown = repo.effective_labels(session, "not-in-db", "expr", expr)
        with pytest.raises(repo.NotFoundError):
            repo.effective_labels(session, "not-in-db", "expr")
    assert len(labels) == 40 and labels["expression"].iloc[35:].tolist() == [7] * 5
    assert labels["flagged"].iloc[0] and not labels["flagged"].iloc[1:].any()
    pd.testing.assert_series_equal(unknown["expression"], expr["expression"])
    assert not unknown["flagged"].any() and unknown["correction_id"].isna().all()


def test_listing_filters(sessions, setup):
    with sessions.begin() as session:
        repo.add_flag(session, "v", "va", 0, 9, "occluded", "alice")
        repo.add_flag(session, "v", "va", 20, 29, "no face", "bob")
        repo.add_flag(session, "v", "au", 5, 25, "ambiguous", "bob")
        a = repo.add_correction(session, "v", "va", 0, 4, (0, 0), "alice")
        repo.add_correction(session, "v", "va", 30, 39, (0.1, 0.1), "bob")
        decide(session, a, "bob", accept=False)
    with sessions() as session:
        reasons = lambda flags: [f.reason for f in flags]  # noqa: E731
        assert reasons(repo.list_flags(session, "v", frames=(9, 20))) == ["occluded", "no face", "ambiguous"]
        assert reasons(repo.list_flags(session, "v", "va", frames=(10, 19))) == []
        assert reasons(repo.list_flags(session, reviewer="bob")) == ["no face", "ambiguous"]
        assert [c.status for c in repo.list_corrections(session, "v", "va")] == ["rejected", "proposed"]
        assert [c.reviewer.name for c in repo.list_corrections(session, status="proposed")] == ["bob"]
        assert repo.list_corrections(session, frames=(5, 29)) == []
        with pytest.raises(repo.ValidationError, match="unknown status"):
            repo.list_corrections(session, status="done")
        with pytest.raises(repo.ValidationError, match="end is before the start"):
            repo.list_flags(session, frames=(5, 1))


# ---------------------------------------------------------------------------------------------------
# Exports


def test_export_annotation_files(sessions, setup, tmp_path):
    with sessions.begin() as session:
        c = repo.add_correction(session, "v", "va", 10, 11, (0.5, 0.25), "alice")
        decide(session, c, "bob", accept=True)
        repo.add_flag(session, "v", "va", 20, 21, "annotation lag", "bob")
    with sessions() as session:
        marked = export.export_annotations(session, "v", "va", tmp_path / "marked.txt")
        kept = export.export_annotations(session, "v", "va", tmp_path / "kept.txt", flagged_invalid=False)
        written = export.export_affwild2(session, tmp_path / "all", "expr")
    original = read_annotation(setup["va"], "va")
    marked, kept = read_annotation(marked, "va"), read_annotation(kept, "va")
    assert marked.loc[10:11].to_numpy().tolist() == [[0.5, 0.25]] * 2
    assert marked.loc[20:21].isna().all().all() and not original.loc[20:21].isna().any().any()
    pd.testing.assert_frame_equal(kept.loc[20:21], original.loc[20:21])
    untouched = [i for i in range(FRAMES) if i not in (10, 11, 20, 21)]
    pd.testing.assert_frame_equal(marked.loc[untouched], original.loc[untouched])
    assert written == [tmp_path / "all" / "v.txt"]
    assert written[0].read_text() == setup["expr"].read_text()     # nothing changed: the same file


def test_export_corrections_and_flags(sessions, setup, tmp_path):
    with sessions.begin() as session:
        c = repo.add_correction(session, "v", "expr", 3, 5, "Sadness", "alice", note="tears, \"clearly\"")
        decide(session, c, "bob", accept=True, comment="yes")
        repo.add_correction(session, "v", "au", 7, 7, {"AU4": 1, "AU7": 0}, "carol")
        repo.add_flag(session, "v", "va", 1, 2, "other", "bob", note="camera shake")
    with sessions() as session:
        csv = export.export_corrections(session, tmp_path / "c.csv")
        js = export.export_corrections(session, tmp_path / "c.json")
        accepted = export.corrections_table(session, status="accepted")
        flags_js = export.export_flags(session, tmp_path / "f.json", video="v")
        flags = export.flags_table(session, task="va")
        with pytest.raises(repo.ValidationError, match="export to .csv or .json"):
            export.export_corrections(session, tmp_path / "c.xlsx")
    table = pd.read_csv(csv)
    assert table["id"].tolist() == [1, 2] and table["status"].tolist() == ["accepted", "proposed"]
    assert json.loads(table["value"][0]) == {"expression": 5}
    assert json.loads(table["value"][1]) == {"AU4": 1, "AU7": 0}
    assert table["note"][0] == 'tears, "clearly"' and table["reviewed_by"][0] == "bob"
    records = json.loads(js.read_text())
    assert [e["action"] for e in records[0]["events"]] == ["proposed", "accepted"]
    assert records[0]["events"][1]["detail"]["comment"] == "yes"
    assert records[0]["original"] == {"expression": [0, 0, 0]}
    assert accepted["id"].tolist() == [1]
    assert json.loads(flags_js.read_text())[0]["events"][0]["action"] == "flagged"
    assert flags[["reason", "note", "reviewer"]].values.tolist() == [["other", "camera shake", "bob"]]


def test_import_and_export_a_whole_affwild2_split(sessions, affwild2_root, tmp_path):
    """Real Aff-Wild2-layout files: import every annotation of the training split, export them unchanged."""
    index = AffWild2Index(affwild2_root)
    files = {(task, video): index.annotation_path(task, "train", video)
             for task in ("va", "expr", "au") for video in index.videos(task, "train")}
    frames = {}
    for (task, video), path in files.items():
        frames[video] = max(frames.get(video, 0), len(read_annotation(path, task)))
    with sessions.begin() as session:
        for video, n in frames.items():
            repo.register_video(session, video, n, 30.0)
        for (task, video), path in files.items():
            repo.import_annotations(session, video, task, path)
    with sessions() as session:
        for task in ("va", "expr", "au"):
            written = export.export_affwild2(session, tmp_path / task, task)
            assert [p.stem for p in written] == sorted(index.videos(task, "train"))
            for path in written:
                original = index.annotation_path(task, "train", path.stem)
                pd.testing.assert_frame_equal(read_annotation(path, task), read_annotation(original, task))
