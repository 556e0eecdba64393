"""Training reads the review database's rules: training.data.load_labels on an Aff-Wild2 copy (tests/datagen.py)
with a review database in which each flag resolution, an open flag and accepted corrections touch the
training split's labels."""
import numpy as np
import pandas as pd

from db import repo
from db.engine import init_db, make_session_factory
from training.data import load_labels

VIDEO = "10-24-640x360"      # 40 frames, annotated for VA, EXPR and AU in the training split


def review_db(tmp_path) -> tuple[str, dict]:
    """A review database on VIDEO: EXPR flags 1 (frames 0-4, open), 2 (10-14, "annotation is right"),
    3 (20-29, "fixed by correction" 20-24), 4 (32-35, "frames unusable"); an accepted VA correction
    on frames 0-3. Returns its URL and the correction ids."""
    url = f"sqlite:///{tmp_path / 'review.db'}"
    engine = init_db(url)
    with make_session_factory(engine).begin() as s:
        repo.register_video(s, VIDEO, 40, 24.0)
        for name in ("ann", "bob"):
            repo.get_or_create_reviewer(s, name)
        for start, end in ((0, 4), (10, 14), (20, 29), (32, 35)):
            repo.add_flag(s, VIDEO, "expr", start, end, "wrong label", "ann")
        fix = repo.add_correction(s, VIDEO, "expr", 20, 24, "Surprise", "ann")
        va = repo.add_correction(s, VIDEO, "va", 0, 3, (0.5, -0.5), "ann")
        for c in (fix, va):
            repo.decide_correction(s, c.id, video=VIDEO, reviewer="bob", accept=True)
        resolve = dict(video=VIDEO, reviewer="bob")
        repo.resolve_flag(s, 2, **resolve, resolution="annotation is right")
        repo.resolve_flag(s, 3, **resolve, resolution="fixed by correction", correction_id=fix.id)
        repo.resolve_flag(s, 4, **resolve, resolution="frames unusable")
    engine.dispose()
    return url, {"fix": fix.id, "va": va.id}


def test_training_labels_follow_each_flag_resolution(affwild2_data, tmp_path):
    url, ids = review_db(tmp_path)
    files = load_labels(affwild2_data.root, ("va", "expr"), "train", corrections=False).table
    used = load_labels(affwild2_data.root, ("va", "expr"), "train", corrections=True, db=url)
    assert used.corrections == sorted(ids.values())
    assert used.flagged == 5 + 5 + 4               # open 0-4, 25-29 not covered by the fix, unusable 32-35
    before = files[files["video"] == VIDEO].set_index("frame")
    after = used.table[used.table["video"] == VIDEO].set_index("frame")
    expr_before, expr_after = before["expression"], after["expression"]

    assert expr_after.loc[0:4].isna().all()                                  # open flag: left out
    assert expr_after.loc[10:14].equals(expr_before.loc[10:14])              # annotation is right: back in
    assert (expr_after.loc[20:24] == 6).all()                                # fixed by correction: its label
    assert expr_after.loc[25:29].isna().all()                                # ...frames it did not fix: out
    assert expr_after.loc[32:35].isna().all()                                # frames unusable: out
    rest = [f for f in expr_before.index if not (0 <= f <= 4 or 20 <= f <= 35)]
    assert expr_after.loc[rest].equals(expr_before.loc[rest])

    va_after = after[["valence", "arousal"]].to_numpy()
    assert np.array_equal(va_after[0:4], [[0.5, -0.5]] * 4)                  # an accepted VA correction
    pd.testing.assert_frame_equal(after[["valence", "arousal"]].iloc[4:], before[["valence", "arousal"]].iloc[4:])
    others = used.table[used.table["video"] != VIDEO].reset_index(drop=True)
    assert others.equals(files[files["video"] != VIDEO].reset_index(drop=True))
