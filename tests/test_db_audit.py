"""The annotation audit's rows in a real database (SQLite always, PostgreSQL when configured): a run and
its suggestions, the ranked and filtered queue, confirm (a flag, optionally a proposed correction that a
second reviewer decides as any other) and dismiss, both in the audit trail, progress with the Wilson
estimate, and `python -m db audit list|export`."""
import json
import subprocess
import sys

import pandas as pd
import pytest
from test_db_engine import REPO_ROOT, db_url, engine, sessions  # noqa: F401  (fixtures)
from test_db_repo import FRAMES, setup  # noqa: F401  (fixture)

from db import repo
from db.engine import write

RUN = {"split": "train", "tasks": ["va", "expr", "au"], "settings": {"folds": 3}, "encoder": {"weights": "untrained",
       "untrained": True}, "folds": {"0": ["v"], "1": ["w"], "2": ["x"]}, "metrics": {"p_expr": 0.3},
       "annotated_frames": {"va": 150, "expr": 160, "au": 140},
       "videos": {"v": {"frames": FRAMES, "fps": 30.0}, "w": {"frames": 40, "fps": 25.0}}}
SEGMENTS = pd.DataFrame([
    ("v", "expr", "label", 10, 19, 10, 0.97, '{"expression": 2}', "annotated Fear, out-of-fold prediction Happiness"),
    ("w", "va", "lag", 0, 29, 30, 0.91, '{"valence": 0.1, "arousal": -0.2}', "valence lags by +1.00 s"),
    ("v", "au", "stuck", 30, 49, 20, 0.91, '{"AU12": 1}', "AU12 annotated 0"),
    ("v", "va", "offset", 5, 14, 10, 0.85, '{"valence": 0.5, "arousal": 0.0}', "offset valence +0.50"),
], columns=["video", "task", "kind", "start_frame", "end_frame", "frames", "score", "suggested", "detail"])


@pytest.fixture
def run_id(sessions, setup):  # noqa: F811
    return write(sessions, lambda s: repo.write_audit(s, RUN, SEGMENTS).id)


def queue(sessions, **filters):
    with sessions() as s:
        return [(x.video.key, x.task, x.kind, x.score) for x in repo.list_suggestions(s, **filters)]


def test_the_queue_is_ranked_best_first_then_longer_and_filtered(sessions, run_id):
    assert queue(sessions) == [("v", "expr", "label", 0.97), ("w", "va", "lag", 0.91), ("v", "au", "stuck", 0.91),
                               ("v", "va", "offset", 0.85)]
    assert queue(sessions, task="va") == [("w", "va", "lag", 0.91), ("v", "va", "offset", 0.85)]
    assert queue(sessions, kind="stuck") == [("v", "au", "stuck", 0.91)]
    assert queue(sessions, min_score=0.9, limit=1, offset=1) == [("w", "va", "lag", 0.91)]
    with sessions() as s:
        assert repo.latest_audit_run(s).encoder["untrained"] is True
        assert repo.get_video(s, "w").frame_count == 40        # registered by the run; "v" kept as it was


def test_confirm_makes_a_flag_and_a_proposed_correction_a_second_reviewer_accepts(sessions, run_id):
    top = queue_ids(sessions)[0]
    s1 = write(sessions, lambda s: repo.confirm_suggestion(s, top, reviewer="alice", note="clearly happy",
                                                           propose_correction=True))
    assert (s1.status, s1.reviewed_by.name, s1.note) == ("confirmed", "alice", "clearly happy")
    with sessions() as s:
        [flag] = repo.list_flags(s, "v")
        assert (flag.task, flag.start_frame, flag.end_frame, flag.reason) == ("expr", 10, 19, "wrong label")
        [c] = repo.list_corrections(s, "v")
        assert (c.id, c.value, c.status, c.reviewer.name) == (s1.correction_id, {"expression": 2}, "proposed", "alice")
        assert [e.action for e in repo.history(s, reviewer="alice")] == ["flagged", "proposed", "confirmed"]
    write(sessions, lambda s: repo.decide_correction(s, s1.correction_id, video="v", reviewer="bob", accept=True))
    with sessions() as s:
        assert repo.effective_labels(s, "v", "expr")["expression"].iloc[10:20].tolist() == [2] * 10
    assert queue(sessions) == queue(sessions, status="open") and len(queue(sessions)) == 3
    again = write(sessions, lambda s: repo.confirm_suggestion(s, top, reviewer="alice", propose_correction=True))
    assert again.id == top and count_rows(sessions) == (1, 1)            # sent twice: stored once


def test_a_lag_becomes_an_annotation_lag_flag_and_dismiss_is_audited(sessions, run_id):
    ids = queue_ids(sessions)
    write(sessions, lambda s: repo.confirm_suggestion(s, ids[1], reviewer="carol"))
    with sessions() as s:
        [flag] = repo.list_flags(s, "w")
        assert flag.reason == "annotation lag" and repo.list_corrections(s, "w") == []
    d = write(sessions, lambda s: repo.dismiss_suggestion(s, ids[2], reviewer="bob", note="AU12 is off"))
    assert (d.status, d.flag_id, d.note) == ("dismissed", None, "AU12 is off")
    with pytest.raises(repo.ReviewRuleError, match=f"suggestion {ids[2]} was already dismissed by bob"):
        write(sessions, lambda s: repo.confirm_suggestion(s, ids[2], reviewer="alice"))
    with pytest.raises(repo.NotFoundError, match="No audit suggestion 99"):
        write(sessions, lambda s: repo.dismiss_suggestion(s, 99, reviewer="bob"))
    with sessions() as s:
        [event] = repo.history(s, reviewer="bob")
        assert (event.action, event.suggestion_id, event.detail["note"]) == ("dismissed", ids[2], "AU12 is off")


def test_progress_estimates_the_wrong_share_with_a_wilson_interval(sessions, run_id):
    with sessions() as s:
        empty = repo.audit_progress(s)
    assert (empty["total"], empty["reviewed"], empty["share_confirmed"], empty["suggested_frames"]) == (4, 0, None, 70)
    ids = queue_ids(sessions)
    write(sessions, lambda s: repo.confirm_suggestion(s, ids[0], reviewer="alice"))
    write(sessions, lambda s: repo.dismiss_suggestion(s, ids[1], reviewer="alice"))
    write(sessions, lambda s: repo.confirm_suggestion(s, ids[2], reviewer="alice"))
    with sessions() as s:
        p = repo.audit_progress(s)
        va = repo.audit_progress(s, task="va")
    assert (p["reviewed"], p["confirmed"], p["dismissed"], p["share_confirmed"]) == (3, 2, 1, pytest.approx(2 / 3))
    # Wilson 95 % for 2 of 3: (0.2077, 0.9385)
    assert p["interval"] == [pytest.approx(0.20765, abs=1e-4), pytest.approx(0.93851, abs=1e-4)]
    assert p["estimated_wrong_suggestions"][0] == pytest.approx(8 / 3)
    assert p["estimated_wrong_frames"][0] == pytest.approx(70 * 2 / 3)
    assert (va["total"], va["reviewed"], va["confirmed"]) == (2, 1, 0)


def test_command_line_lists_and_exports_the_queue(db_url, run_id, tmp_path):  # noqa: F811
    def run(*args):
        return subprocess.run([sys.executable, "-m", "db", "--url", db_url, "audit", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    listed = run("list", "--task", "va")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "lag" in lines[1] and "offset" in lines[2] and json.loads(lines[-1])["total"] == 2
    out = tmp_path / "export"
    assert run("export", str(out)).returncode == 0
    table = pd.read_csv(out / "suggestions.csv")
    assert table["kind"].tolist() == ["label", "lag", "stuck", "offset"] and set(table["status"]) == {"open"}
    assert json.loads((out / "progress.json").read_text())["total"] == 4
    assert len(json.loads((out / "suggestions.json").read_text())) == 4
    missing = run("export")
    assert missing.returncode == 2 and "audit export needs OUT_DIR" in missing.stderr


def queue_ids(sessions):
    with sessions() as s:
        return [x.id for x in repo.list_suggestions(s)]


def count_rows(sessions):
    with sessions() as s:
        return len(repo.list_flags(s)), len(repo.list_corrections(s))
