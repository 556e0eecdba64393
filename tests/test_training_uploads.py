"""Uploaded videos are training data (training.uploads): two real face clips analysed by the pipeline, kept in
the data folder, registered in a review database with EXPR annotation files and an accepted correction, become an
Aff-Wild2-layout root whose labels are the effective ones and whose crops are the analysis's own; `train` runs on
them with no Aff-Wild2 folder, and they join one. Uploads are split by their own content hash (adding one moves
no other); one upload alone validates on the last frames of its video, after a gap of one LSTM window."""
import json
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
from training.uploads import HOLDOUT_GAP, build_root, layout_name, split_sentence, trainable_uploads, video_side

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLIPS = ("single_face.mp4", "face_noface.mov")           # their first 48 frames
SAD, HAPPY = EXPRESSIONS.index("Sadness"), EXPRESSIONS.index("Happiness")


def on_side(source, side: str, folder, ffmpeg):
    """A copy of a real clip whose content hash puts it on `side` (remuxed with a changing title tag)."""
    for i in range(100):
        copy = folder / f"{side}-{i}{source.suffix}"
        ffmpeg("-i", source, "-c", "copy", "-map", "0", "-metadata", f"title={i}", copy)
        if video_side(repo.upload_key(copy)) == side:
            return copy
    raise AssertionError("no remux landed on that side")


def add_upload(engine, data, source, n_frames, i, labels=HAPPY, name=None):
    """Keep, analyse (its first n_frames) and register an upload with an EXPR annotation of `labels`; its key."""
    key = repo.upload_key(source)
    kept = data / "videos" / (key.removeprefix("sha256:") + source.suffix)
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, kept)
    analysis = analyze_video(kept, AnalysisConfig(models=("ddamfn",), device="cpu", max_frames=n_frames))
    analysis.save(data / "analyses" / str(i))
    n = len(analysis.table)
    values = [labels] * n if isinstance(labels, int) else labels
    write_annotation(pd.DataFrame({"expression": pd.array(values, dtype="Int64")}), data / f"{i}.txt", "expr")
    with make_session_factory(engine).begin() as s:
        repo.register_video(s, key, n, frame_rate(analysis.table), name=name or source.name)
        repo.import_annotations(s, key, "expr", data / f"{i}.txt")
        repo.add_prediction_run(s, key, models=["ddamfn"], device="cpu", untrained=True, details={},
                                table_path=f"analyses/{i}/table.parquet", artifacts_dir=f"analyses/{i}")
    return key


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, media_dir, ffmpeg):
    """The data folder and review database of two analysed uploads (one on each side of the split by hash):
    every frame annotated Happiness, an accepted correction to Sadness on frames 0-9 of the first, and a third
    upload whose kept copy is gone."""
    data = tmp_path_factory.mktemp("data")
    url = f"sqlite:///{data / 'affectlens.db'}"
    engine = init_db(url)
    sources = [on_side(media_dir / clip, side, tmp_path_factory.mktemp("clips"), ffmpeg)
               for clip, side in zip(CLIPS, ("train", "val"))]
    keys = [add_upload(engine, data, source, 48, i, name=clip) for i, (source, clip) in enumerate(zip(sources, CLIPS))]
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
                                    "be cropped"], "split": "by video: 1 uploaded video(s) train, 1 validate"}

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
    assert summary["split"] == "by video: 1 uploaded video(s) train, 1 validate, beside the Aff-Wild2 folder's own splits"


def test_with_no_upload_the_split_is_the_affwild2_folders_own():
    assert split_sentence([], {}, affwild2=True) == ("no uploaded video with annotations: the Aff-Wild2 folder's own "
                                                     "training and validation splits")


@pytest.fixture(scope="module")
def one_upload(tmp_path_factory, media_dir):
    """A team's first video: the first 200 frames of the crying-then-laughing clip, alone in its database."""
    data = tmp_path_factory.mktemp("one")
    url = f"sqlite:///{data / 'affectlens.db'}"
    engine = init_db(url)
    key = add_upload(engine, data, media_dir / "WolfgangLanger_Pexels.mp4", 200, 0, labels=[SAD] * 100 + [HAPPY] * 100)
    engine.dispose()
    return data, url, key


def test_one_upload_validates_on_its_last_frames_after_a_gap_of_a_window(one_upload, tmp_path, monkeypatch):
    data, url, key = one_upload
    name = layout_name(key)
    root, summary = build_root(url, data, ("expr",))
    split = ("validation is the last 20% of each video's frames and training the frames before them, 64 frames (one "
             "LSTM window) left out between, because one uploaded video cannot be split by video: "
             "WolfgangLanger_Pexels.mp4 validates on frames 160+")
    assert summary["uploads"] == {"train": [name], "val": []} and summary["split"] == split
    train_set = load_labels(root, ("expr",), "train", db=url).table
    val_set = load_labels(root, ("expr",), "val", db=url).table
    assert HOLDOUT_GAP == 64 and train_set["frame"].tolist() == list(range(96))
    assert val_set["frame"].tolist() == list(range(160, 200)) and (val_set["expression"] == HAPPY).all()

    monkeypatch.setenv("AFFECTLENS_DATA_DIR", str(data))
    out = tmp_path / "run"
    best = train(config.build(config.TrainConfig, "tiny", model="ddamfn", tasks="expr", uploads=True, db=url,
                              batch_size=4, out=str(out)))
    meta = load_checkpoint(best).metadata["training"]["data"]
    assert meta["uploads"]["split"] == split and json.loads((out / "uploads.json").read_text())["split"] == split
    assert (meta["train"]["frames"], meta["val"]["frames"]) == (96, 40)


def register_copy(engine, data, folder, key, source_key, name):
    """Register upload `key` in `folder` with the kept copy, first stored analysis and EXPR file of `source_key`."""
    if not (folder / "analyses" / "0").exists():
        shutil.copytree(data / "analyses" / "0", folder / "analyses" / "0")
    (folder / "videos").mkdir(exist_ok=True)
    shutil.copyfile(data / "videos" / (source_key.removeprefix("sha256:") + ".mp4"),
                    folder / "videos" / (key.removeprefix("sha256:") + ".mp4"))
    with make_session_factory(engine).begin() as s:
        repo.register_video(s, key, 48, 30.0, name=name)
        repo.import_annotations(s, key, "expr", data / "0.txt")
        repo.add_prediction_run(s, key, models=["ddamfn"], device="cpu", untrained=True, details={},
                                table_path="analyses/0/table.parquet", artifacts_dir="analyses/0")


def test_an_upload_too_short_to_hold_frames_out_says_so_in_words(uploads, tmp_path):
    """One 48-frame upload: the refusal names the video and what it needs, no server path, no Aff-Wild2 folder."""
    data, url, keys, _ = uploads
    engine = init_db(f"sqlite:///{tmp_path / 'one.db'}")
    register_copy(engine, data, tmp_path, keys[0], keys[0], "single_face.mp4")
    with pytest.raises(ValueError) as refused:
        build_root(f"sqlite:///{tmp_path / 'one.db'}", tmp_path, ("expr",))
    assert str(refused.value) == ("single_face.mp4 is too short to hold frames out for validation: it has 48 annotated "
                                  "frames and needs at least 160 (64 to train on, 64 left out, then the last 20% to "
                                  "validate on); upload a longer video, or a second one")


def test_adding_an_upload_moves_no_other_video_between_train_and_validation(uploads, tmp_path):
    """Seven uploads' sides before and after an eighth whose hash sorts first: each keeps its own."""
    data, url, keys, _ = uploads
    engine = init_db(f"sqlite:///{tmp_path / 'many.db'}")

    def sides():
        with make_session_factory(engine)() as s:
            return {u.key: u.split for u in trainable_uploads(s, tmp_path, ("expr",))[0]}

    for i in range(7):
        key = f"sha256:{i + 1:x}" + "e" * 63
        register_copy(engine, data, tmp_path, key, keys[0], key[7:15])
    before = sides()
    assert set(before.values()) == {"train", "val"}
    register_copy(engine, data, tmp_path, "sha256:" + "0" * 64, keys[0], "first")
    after = sides()
    assert after.pop("sha256:" + "0" * 64) == "val" and after == before


def test_the_audit_of_one_upload_sees_every_frame(one_upload):
    """The audit folds one split itself: its layout holds no frames out, and its train split is the whole video."""
    data, url, key = one_upload
    root, summary = build_root(url, data, ("expr",), hold_out=False)
    assert summary["uploads"] == {"train": [layout_name(key)], "val": []} and not (root / "held_out.json").exists()
    assert load_labels(root, ("expr",), "train", db=url).table["frame"].tolist() == list(range(200))
