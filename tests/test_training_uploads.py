"""Uploaded videos are training data (training.uploads): two real face clips analysed by the pipeline, kept in
the data folder, registered in a review database with EXPR annotation files and an accepted correction, become an
Aff-Wild2-layout root whose labels are the effective ones and whose crops are the analysis's own; `train` runs on
them with no Aff-Wild2 folder, and they join one."""
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from core.affwild2 import write_annotation
from core.faces import crop_face
from core.labels import EXPRESSIONS
from core.pipeline import AnalysisConfig, analyze_video
from core.table import BOX_COLUMNS, FACE, frame_rate
from core.video import iter_frames
from core.weights import load_checkpoint
from db import repo
from db.engine import init_db, make_session_factory
from training import config
from training.data import load_labels
from training.loop import train
from training.uploads import build_root, layout_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLIPS = ("single_face.mp4", "face_noface.mov")           # their first 48 frames
SAD, HAPPY = EXPRESSIONS.index("Sadness"), EXPRESSIONS.index("Happiness")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, media_dir):
    """The data folder and review database of two analysed uploads: every frame annotated Happiness, an accepted
    correction to Sadness on frames 0-9 of the first, and a third upload whose kept copy is gone."""
    data = tmp_path_factory.mktemp("data")
    url = f"sqlite:///{data / 'affectlens.db'}"
    engine = init_db(url)
    keys = []
    for i, clip in enumerate(CLIPS):
        source = media_dir / clip
        key = repo.upload_key(source)
        kept = data / "videos" / (key.removeprefix("sha256:") + source.suffix)
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, kept)
        analysis = analyze_video(kept, AnalysisConfig(models=("ddamfn",), device="cpu", max_frames=48))
        analysis.save(data / "analyses" / str(i))
        n = len(analysis.table)
        labels = pd.DataFrame({"expression": pd.array([HAPPY] * n, dtype="Int64")})
        write_annotation(labels, data / f"{clip}.txt", "expr")
        with make_session_factory(engine).begin() as s:
            repo.register_video(s, key, n, frame_rate(analysis.table), name=clip)
            repo.import_annotations(s, key, "expr", data / f"{clip}.txt")
            repo.add_prediction_run(s, key, models=["ddamfn"], device="cpu", untrained=True, details={},
                                    table_path=f"analyses/{i}/table.parquet", artifacts_dir=f"analyses/{i}")
        keys.append(key)
    with make_session_factory(engine).begin() as s:
        for name in ("ann", "bob"):
            repo.get_or_create_reviewer(s, name)
        fix = repo.add_correction(s, keys[0], "expr", 0, 9, "Sadness", "ann")
        repo.decide_correction(s, fix.id, video=keys[0], reviewer="bob", accept=True)
        gone = "sha256:" + "0" * 64
        repo.register_video(s, gone, 10, 25.0, name="gone.mp4")
        write_annotation(pd.DataFrame({"expression": pd.array([HAPPY] * 10, dtype="Int64")}), data / "g.txt", "expr")
        repo.import_annotations(s, gone, "expr", data / "g.txt")
    engine.dispose()
    return data, url, keys, fix.id


def test_uploads_become_a_layout_with_the_analysis_crops_and_the_effective_labels(uploads):
    data, url, keys, fix = uploads
    root, summary = build_root(url, data, ("expr",))
    first, second = (layout_name(k) for k in keys)
    assert summary == {"uploads": {"train": [first], "val": [second]}, "affwild2_root": None,
                       "left_out": ["gone.mp4: no kept copy of the video in the data folder, so its faces cannot "
                                    "be cropped"]}

    table = pd.read_parquet(data / "analyses" / "0" / "table.parquet")
    faces = np.flatnonzero(table[FACE].to_numpy(dtype=bool))
    train_set = load_labels(root, ("expr",), "train", corrections=True, db=url)
    assert train_set.corrections == [fix] and set(train_set.table["video"]) == {first}
    rows = train_set.table.set_index("frame")
    assert (rows["expression"].loc[0:9] == SAD).all() and (rows["expression"].loc[10:] == HAPPY).all()
    assert np.flatnonzero(rows["image_path"].notna().to_numpy()).tolist() == faces.tolist()

    frame = faces[len(faces) // 2]
    decoded = next(b for b in iter_frames(data / "videos" / (keys[0].removeprefix("sha256:") + ".mp4"),
                                          batch_size=100)).frames[frame]
    expected = crop_face(decoded, table[BOX_COLUMNS].to_numpy()[frame], 112)
    written = cv2.cvtColor(cv2.imread(rows["image_path"].loc[frame]), cv2.COLOR_BGR2RGB)
    assert written.shape == (112, 112, 3) and np.abs(written.astype(int) - expected).mean() < 2.0   # JPEG q95

    files_only = load_labels(root, ("expr",), "train", corrections=False)
    assert (files_only.table["expression"] == HAPPY).all()


def test_train_runs_on_uploads_alone_and_they_join_an_affwild2_copy(uploads, affwild2_root, tmp_path, monkeypatch):
    data, url, keys, fix = uploads
    monkeypatch.setenv("AFFECTLENS_DATA_DIR", str(data))
    settings = dict(model="ddamfn", tasks="expr", uploads=True, db=url, batch_size=4)
    best = train(config.build(config.TrainConfig, "tiny", root="", out=str(tmp_path / "alone"), **settings))
    meta = load_checkpoint(best).metadata["training"]
    assert meta["data"]["train"]["videos"] == 1 and meta["data"]["val"]["videos"] == 1
    assert meta["data"]["uploads"]["uploads"] == {"train": [layout_name(keys[0])], "val": [layout_name(keys[1])]}
    assert meta["corrections"]["train_ids"] == [fix]

    root, summary = build_root(url, data, ("expr",), str(affwild2_root))       # beside an Aff-Wild2 copy
    both = load_labels(root, ("expr",), "train", corrections=True, db=url)
    alone = load_labels(affwild2_root, ("expr",), "train", corrections=True, db=url)
    assert set(both.table["video"]) == set(alone.table["video"]) | {layout_name(keys[0])}
    assert both.corrections == [fix] and summary["affwild2_root"] == str(affwild2_root)
