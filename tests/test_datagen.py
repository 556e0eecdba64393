"""The generated Aff-Wild2 copy has the exact layout, real faces, and (on request) the documented signal."""
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from facenet_pytorch import MTCNN

from core.affwild2 import read_mtl_csv
from core.labels import ANNOTATION_HEADER, AUS
from tests.datagen import (
    AU_HEIGHT, AU_ROW0, AU_STEP, AU_WIDTH, BAND, INVALID_FRAMES, SPLITS, TINTS, face_crops, make_affwild2,
)

CHALLENGES = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge"}
SPLIT_FOLDERS = {"train": "Train_Set", "val": "Validation_Set"}


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_folders_and_annotation_files_are_laid_out_like_aff_wild2(affwild2_data):
    root = affwild2_data.root
    assert {p.name for p in root.iterdir()} == {"cropped_aligned", "videos", "MTL_Challenge", *CHALLENGES.values()}
    for task, challenge in CHALLENGES.items():
        assert {p.name for p in (root / challenge).iterdir()} == {"Train_Set", "Validation_Set"}
        for split, folder in SPLIT_FOLDERS.items():
            files = sorted(p.name for p in (root / challenge / folder).iterdir())
            assert files == sorted(f"{v}.txt" for v in SPLITS[task][split])
            for name in files:
                lines = (root / challenge / folder / name).read_text().splitlines()
                assert lines[0] == ANNOTATION_HEADER[task]
                assert len(lines) == 41


def test_images_are_numbered_112px_jpegs_only_where_a_face_was_found(affwild2_data):
    root = affwild2_data.root / "cropped_aligned"
    assert sorted(p.name for p in root.iterdir()) == affwild2_data.videos
    for video, labels in affwild2_data.labels.items():
        names = sorted(p.name for p in (root / video).iterdir())
        assert all(re.fullmatch(r"\d{5}\.jpg", n) for n in names)
        assert names == [f"{f + 1:05d}.jpg" for f in labels.index[labels["has_image"]]]
        first = root / video / names[0]
        assert first.read_bytes()[:3] == b"\xff\xd8\xff"
        assert cv2.imread(str(first)).shape == (112, 112, 3)
    # Lines without images: the face leaves 13-30-960x540 after 24 frames; 10-24-640x360 lost frames 5-7.
    assert affwild2_data.labels["13-30-960x540"]["has_image"].tolist() == [True] * 24 + [False] * 16
    assert np.flatnonzero(~affwild2_data.labels["10-24-640x360"]["has_image"]).tolist() == [5, 6, 7]


def test_invalid_markers_are_written_on_the_documented_lines(affwild2_data):
    root = affwild2_data.root
    va = (root / CHALLENGES["va"] / "Train_Set" / "10-24-640x360.txt").read_text().splitlines()
    assert [va[f + 1] for f in INVALID_FRAMES["va"]["10-24-640x360"]] == ["-5.0,-5.0"] * 4
    assert "-5" not in va[1] and len(va) == 41
    expr = (root / CHALLENGES["expr"] / "Validation_Set" / "11-24-640x360.txt").read_text().splitlines()
    assert expr[1:4] == ["-1"] * 3 and "-1" not in expr[4:]
    au = (root / CHALLENGES["au"] / "Train_Set" / "14-30-960x640_left.txt").read_text().splitlines()
    assert [au[f + 1] for f in range(20, 25)] == [",".join(["-1"] * 12)] * 5
    assert sum(line == ",".join(["-1"] * 12) for line in au) == 5


def test_crops_are_real_faces_and_left_right_are_different_people(affwild2_data):
    detector = MTCNN(keep_all=True, device="cpu")
    root = affwild2_data.root / "cropped_aligned"
    crops = {v: read_rgb(sorted((root / v).iterdir())[0]) for v in affwild2_data.videos}
    _, probs = detector.detect(list(crops.values()))
    for video, p in zip(crops, probs):
        assert p is not None and max(p) > 0.9, f"no face found in the first crop of {video}"
    left, right = crops["14-30-960x640_left"], crops["14-30-960x640_right"]
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 30


def test_raw_videos_have_one_frame_per_annotation_line(affwild2_data):
    raw = affwild2_data.raw_videos
    assert sorted(raw) == ["10-24-640x360", "11-24-640x360", "12-30-640x360", "13-30-960x540", "14-30-960x640"]
    for name, path in raw.items():
        assert path == affwild2_data.root / "videos" / f"{name}.mp4"
        cap = cv2.VideoCapture(str(path))
        width, height = (int(v) for v in name.split("-")[2].split("x"))
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (width, height)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(float(name.split("-")[1]))
        count = 0
        while cap.read()[0]:
            count += 1
        assert count == 40


def test_mtl_files_list_the_frames_with_images(affwild2_data):
    for split, name in (("train", "training_set_annotations.txt"), ("val", "validation_set_annotations.txt")):
        df = read_mtl_csv(affwild2_data.root / "MTL_Challenge" / name)
        videos = SPLITS["va"][split]
        assert sorted(df["video"].unique()) == sorted(videos)
        assert len(df) == sum(affwild2_data.labels[v]["has_image"].sum() for v in videos)
        for video, rows in df.groupby("video"):
            truth = affwild2_data.labels[video].loc[rows["frame"]]
            np.testing.assert_allclose(rows["valence"], truth["valence"])
            assert rows["expression"].tolist() == truth["expression"].tolist()
            pd.testing.assert_frame_equal(rows[list(AUS)].reset_index(drop=True), truth[list(AUS)].reset_index(drop=True))


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="signal"):
        make_affwild2(tmp_path, signal="brightness")
    with pytest.raises(ValueError, match="expr_dir"):
        make_affwild2(tmp_path, expr_dir="EXPR_Challenge")
    with pytest.raises(ValueError, match="n_frames"):
        make_affwild2(tmp_path, n_frames=100)
    assert not any(tmp_path.iterdir())


def test_same_seed_same_labels_other_seed_other_labels(tmp_path, media_dir):
    a = make_affwild2(tmp_path / "a", raw_videos=False, media_dir=media_dir)
    b = make_affwild2(tmp_path / "b", raw_videos=False, media_dir=media_dir)
    c = make_affwild2(tmp_path / "c", raw_videos=False, seed=1, media_dir=media_dir)
    name = "VA_Estimation_Challenge/Train_Set/10-24-640x360.txt"
    assert (a.root / name).read_text() == (b.root / name).read_text() != (c.root / name).read_text()


def painted_state(image, unpainted):
    """Read back the state painted on a crop: (class, valence, arousal, AU bits)."""
    image = image.astype(float)
    valence = image[:BAND].mean() / 255 * 2 - 1
    arousal = image[-BAND:].mean() / 255 * 2 - 1
    aus = [int(image[AU_ROW0 + AU_STEP * j + 1 : AU_ROW0 + AU_STEP * j + AU_HEIGHT - 1, 1 : AU_WIDTH - 1].mean() > 127)
           for j in range(12)]
    region = (slice(30, 90), slice(24, 88))
    tint = (image[region].mean(axis=(0, 1)) - 0.55 * unpainted[region].astype(float).mean(axis=(0, 1))) / 0.45
    expression = int(np.argmin(np.abs(TINTS - tint).sum(axis=1)))
    return expression, valence, arousal, aus


@pytest.fixture(scope="module")
def static_data(tmp_path_factory, media_dir):
    return make_affwild2(tmp_path_factory.mktemp("static"), signal="static", raw_videos=False, media_dir=media_dir)


def test_static_signal_shows_each_frames_label_in_its_image(static_data):
    checked = 0
    for video, labels in static_data.labels.items():
        crops = face_crops(video, 40)
        for frame, row in labels[labels["has_image"]].iterrows():
            image = read_rgb(static_data.root / "cropped_aligned" / video / f"{frame + 1:05d}.jpg")
            expression, valence, arousal, aus = painted_state(image, crops[frame])
            if not np.isnan(row["valence"]):
                assert abs(valence - row["valence"]) < 0.03 and abs(arousal - row["arousal"]) < 0.03
            if not row[["expression"]].isna().any():
                assert expression == row["expression"]
            if not row[list(AUS)].isna().any():
                assert aus == row[list(AUS)].tolist()
            checked += 1
    assert checked > 200
    # The painting is flip-symmetric: a horizontally flipped image shows the same state.
    crop = face_crops("12-30-640x360", 40)[0]
    image = read_rgb(static_data.root / "cropped_aligned" / "12-30-640x360" / "00001.jpg")
    flipped = painted_state(image[:, ::-1], crop[:, ::-1])
    assert flipped[0] == painted_state(image, crop)[0] and flipped[3] == painted_state(image, crop)[3]
    assert flipped[1] == pytest.approx(painted_state(image, crop)[1], abs=0.01)


def test_static_labels_vary_over_classes_and_values(static_data):
    labels = [df for df in static_data.labels.values()]
    expressions = set().union(*(df["expression"].dropna().tolist() for df in labels))
    assert len(expressions) >= 6
    assert max(df["valence"].std() for df in labels) > 0.05


def test_temporal_signal_labels_are_the_state_shown_lag_frames_before(tmp_path, media_dir):
    lag = 3
    data = make_affwild2(tmp_path, signal="temporal", lag=lag, raw_videos=False, media_dir=media_dir)
    video = "12-30-640x360"  # a face in every frame
    labels = data.labels[video]
    assert labels.iloc[:lag][["valence", "arousal", "expression", *AUS]].isna().all().all()
    lines = (tmp_path / "EXPR_Recognition_Challenge" / "Validation_Set" / f"{video}.txt").read_text().splitlines()
    assert lines[1 : 1 + lag] == ["-1"] * lag
    crops = face_crops(video, 40)
    same_frame = 0
    for frame in range(lag, 40):
        shown = painted_state(read_rgb(tmp_path / "cropped_aligned" / video / f"{frame - lag + 1:05d}.jpg"),
                              crops[frame - lag])
        assert shown[0] == labels.loc[frame, "expression"]
        assert abs(shown[1] - labels.loc[frame, "valence"]) < 0.03
        assert shown[3] == labels.loc[frame, list(AUS)].tolist()
        now = painted_state(read_rgb(tmp_path / "cropped_aligned" / video / f"{frame + 1:05d}.jpg"), crops[frame])
        same_frame += now[0] == labels.loc[frame, "expression"]
    assert same_frame < 15  # the current frame alone does not give the label away
