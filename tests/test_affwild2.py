"""Aff-Wild2 / ABAW readers, writers and the local dataset index, on real files."""
import shutil
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from core.affwild2 import (
    AnnotationError,
    read_annotation,
    read_mtl_csv,
    read_submission,
    write_annotation,
    write_mtl_csv,
    write_submission,
)
from core.affwild2_index import AffWild2Index
from core.labels import AUS
from tests.datagen import SPLITS, copy_affwild2, make_affwild2

VA_HEADER = "valence,arousal"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
AU_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- annotation files -------------------------------------------------------------------------------


def test_va_file_invalid_marker_becomes_nan(tmp_path):
    df = read_annotation(write(tmp_path / "v.txt", f"{VA_HEADER}\n0.25,-0.5\n-5,-5\n1,-1\n-5.0,0.1\n"), "va")
    assert list(df.columns) == ["valence", "arousal"]
    assert df.index.name == "frame" and list(df.index) == [0, 1, 2, 3]
    assert (df.dtypes == "float64").all()
    expected = pd.DataFrame({"valence": [0.25, np.nan, 1.0, np.nan], "arousal": [-0.5, np.nan, -1.0, 0.1]})
    np.testing.assert_array_equal(df.to_numpy(), expected.to_numpy())
    assert not (df == -5).any().any()


def test_expr_file_is_one_int_per_line_with_na_for_invalid(tmp_path):
    df = read_annotation(write(tmp_path / "e.txt", f"{EXPR_HEADER}\n0\n7\n-1\n4\n"), "expr")
    assert list(df.columns) == ["expression"]
    assert str(df["expression"].dtype) == "Int64"
    assert df["expression"].tolist() == [0, 7, pd.NA, 4]


def test_au_file_twelve_columns_with_na_for_invalid(tmp_path):
    lines = ["1,0,0,0,0,0,0,0,0,0,0,1", ",".join(["-1"] * 12), "0,1,1,1,1,1,1,1,1,1,1,0"]
    df = read_annotation(write(tmp_path / "a.txt", AU_HEADER + "\n" + "\n".join(lines) + "\n"), "au")
    assert list(df.columns) == list(AUS)
    assert (df.dtypes == "Int64").all()
    assert df.iloc[1].isna().all()
    assert df.iloc[0].tolist() == [1] + [0] * 10 + [1]
    assert df.iloc[2].sum() == 10


def test_windows_line_ends_bom_and_spaces_are_tolerated(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes("\ufeffvalence, arousal\r\n0.1, 0.2\r\n-5,-5\r\n\r\n".encode("utf-8"))
    df = read_annotation(path, "va")
    assert len(df) == 2 and df.iloc[0].tolist() == [0.1, 0.2] and df.iloc[1].isna().all()


def test_header_only_file_is_an_empty_table(tmp_path):
    df = read_annotation(write(tmp_path / "a.txt", AU_HEADER + "\n"), "au")
    assert len(df) == 0 and list(df.columns) == list(AUS)


@pytest.mark.parametrize(
    "task, text, line, fragment",
    [
        ("va", "", 1, "empty file"),
        ("va", "\n\n", 1, "empty file"),
        ("va", "arousal,valence\n0,0\n", 1, "header"),
        ("expr", VA_HEADER + "\n0.1,0.2\n", 1, "header"),
        ("au", "AU1,AU2\n1,0\n", 1, "header"),
        ("va", f"{VA_HEADER}\n0.1,0.2\n0.3\n", 3, "expected 2 values, found 1"),
        ("va", f"{VA_HEADER}\n0.1,0.2,0.3\n", 2, "found 3"),
        ("va", f"{VA_HEADER}\n0.1,0.2\n\n0.1,0.2\n", 3, "empty line"),
        ("expr", f"{EXPR_HEADER}\n0\n1,2\n", 3, "found 2"),
        ("au", f"{AU_HEADER}\n" + ",".join(["0"] * 11) + "\n", 2, "expected 12 values"),
        ("va", f"{VA_HEADER}\n0.1,0.2\n0.5,abc\n", 3, "'abc' is not a number"),
        ("va", f"{VA_HEADER}\n0.1,\n", 2, "is not a number"),
        ("va", f"{VA_HEADER}\nnan,0.1\n", 2, "is not a number"),
        ("va", f"{VA_HEADER}\n0.1,0.2\n1.5,0\n", 3, "'1.5' is not in [-1, 1]"),
        ("va", f"{VA_HEADER}\n-1.01,0\n", 2, "not in [-1, 1]"),
        ("va", f"{VA_HEADER}\ninf,0\n", 2, "not in [-1, 1]"),
        ("va", f"{VA_HEADER}\n-4,0\n", 2, "not in [-1, 1]"),
        ("expr", f"{EXPR_HEADER}\n0\n8\n", 3, "'8' is not an integer 0..7"),
        ("expr", f"{EXPR_HEADER}\n-2\n", 2, "not an integer 0..7"),
        ("expr", f"{EXPR_HEADER}\n2.5\n", 2, "not an integer"),
        ("expr", f"{EXPR_HEADER}\nHappy\n", 2, "not a number"),
        ("au", f"{AU_HEADER}\n" + ",".join(["0"] * 11 + ["2"]) + "\n", 2, "AU26: '2' is not an integer 0..1"),
        ("au", f"{AU_HEADER}\n" + ",".join(["1"] * 12) + "\n" + ",".join(["-5"] * 12) + "\n", 3, "AU1"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, task, text, line, fragment):
    path = write(tmp_path / "bad_video.txt", text)
    with pytest.raises(AnnotationError) as info:
        read_annotation(path, task)
    message = str(info.value)
    assert message.startswith(f"bad_video.txt, line {line}: ")       # the base name: never a server path
    assert str(tmp_path) not in message
    assert fragment in message
    assert info.value.line == line and info.value.path == str(path)


def test_a_file_longer_than_its_video_is_refused_at_its_first_surplus_line(tmp_path):
    """Two million lines for a video of 1,000 frames: refused at line 1,002 (the header is line 1), long
    before the rest is read; the message names the file, never the folder it was uploaded to."""
    path = tmp_path / "upload-8f3a" / "clip.txt"
    path.parent.mkdir()
    with open(path, "w", encoding="utf-8") as f:
        f.write(EXPR_HEADER + "\n")
        f.writelines("3\n" for _ in range(2_000_000))
    started = time.perf_counter()
    with pytest.raises(AnnotationError) as info:
        read_annotation(path, "expr", max_frames=1000)
    assert time.perf_counter() - started < 0.5
    assert str(info.value) == ("clip.txt, line 1002: more frames than the video's 1,000 "
                               "(one line per frame after the header)")
    assert info.value.line == 1002


def test_a_file_as_long_as_its_video_is_read_and_trailing_blank_lines_are_ignored(tmp_path):
    path = write(tmp_path / "v.txt", f"{VA_HEADER}\n0.1,0.2\n0.3,0.4\n\n\n")
    assert len(read_annotation(path, "va", max_frames=2)) == 2
    with pytest.raises(AnnotationError, match="^v.txt, line 3: more frames than the video's 1 "):
        read_annotation(path, "va", max_frames=1)
    assert len(read_annotation(path, "va")) == 2                       # no limit given: read as before


def test_unknown_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        read_annotation(write(tmp_path / "v.txt", VA_HEADER + "\n"), "valence")


def test_writers_produce_the_exact_format(tmp_path):
    va = pd.DataFrame({"valence": [0.5, np.nan, -1.0], "arousal": [0.125, np.nan, 1.0]})
    write_annotation(va, tmp_path / "va" / "v.txt", "va")
    assert (tmp_path / "va" / "v.txt").read_text() == "valence,arousal\n0.5,0.125\n-5.0,-5.0\n-1.0,1.0\n"

    expr = pd.DataFrame({"expression": pd.array([3, pd.NA, 7], dtype="Int64")})
    write_annotation(expr, tmp_path / "e.txt", "expr")
    assert (tmp_path / "e.txt").read_text() == f"{EXPR_HEADER}\n3\n-1\n7\n"

    au = pd.DataFrame([[1] * 12, [pd.NA] * 12], columns=list(AUS), dtype="Int64")
    write_annotation(au, tmp_path / "a.txt", "au")
    assert (tmp_path / "a.txt").read_text() == f"{AU_HEADER}\n" + ",".join(["1"] * 12) + "\n" + ",".join(["-1"] * 12) + "\n"


@pytest.mark.parametrize("task", ["va", "expr", "au"])
def test_write_then_read_round_trips(tmp_path, task):
    rng = np.random.default_rng(1)
    n = 200
    if task == "va":
        df = pd.DataFrame(rng.uniform(-1, 1, (n, 2)), columns=["valence", "arousal"])
        df.iloc[rng.choice(n, 20, replace=False)] = np.nan
    elif task == "expr":
        df = pd.DataFrame({"expression": pd.array(rng.integers(0, 8, n), dtype="Int64")})
        df.iloc[rng.choice(n, 20, replace=False)] = pd.NA
    else:
        df = pd.DataFrame(rng.integers(0, 2, (n, 12)), columns=list(AUS)).astype("Int64")
        df.iloc[rng.choice(n, 20, replace=False)] = pd.NA
    write_annotation(df, tmp_path / "x.txt", task)
    back = read_annotation(tmp_path / "x.txt", task)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), df, check_dtype=True)


def test_writer_refuses_values_outside_the_format(tmp_path):
    with pytest.raises(ValueError, match="row 1, valence"):
        write_annotation(pd.DataFrame({"valence": [0.1, 1.2], "arousal": [0, 0]}), tmp_path / "v.txt", "va")
    with pytest.raises(ValueError, match="expression"):
        write_annotation(pd.DataFrame({"expression": [8]}), tmp_path / "e.txt", "expr")
    with pytest.raises(ValueError, match="missing column"):
        write_annotation(pd.DataFrame({"valence": [0.1]}), tmp_path / "v.txt", "va")
    assert not (tmp_path / "v.txt").exists() and not (tmp_path / "e.txt").exists()


# --- 7th ABAW multi-task CSV ------------------------------------------------------------------------


def test_mtl_csv_reads_with_either_header(tmp_path):
    rows = ["vid_1/00001.jpg,0.5,-0.25,4," + ",".join(["0"] * 11 + ["1"]),
            "vid_1/00002.jpg,-5,-5,-1," + ",".join(["-1"] * 12),
            "other_right/00010.jpg,0.1,0.2,7," + ",".join(["1"] * 12)]
    long_header = "image,valence,arousal,expression," + AU_HEADER
    for header in (long_header, "image,valence,arousal,expression,aus"):
        df = read_mtl_csv(write(tmp_path / "mtl.txt", header + "\n" + "\n".join(rows) + "\n"))
        assert list(df.columns) == ["image", "video", "frame", "valence", "arousal", "expression", *AUS]
        assert df["video"].tolist() == ["vid_1", "vid_1", "other_right"]
        assert df["frame"].tolist() == [0, 1, 9]
        assert df.loc[0, "valence"] == 0.5 and df.loc[0, "expression"] == 4 and df.loc[0, "AU26"] == 1
        assert np.isnan(df.loc[1, "valence"]) and df.loc[1, ["expression", *AUS]].isna().all()
        assert str(df["expression"].dtype) == "Int64" and str(df["AU1"].dtype) == "Int64"


@pytest.mark.parametrize(
    "row, fragment",
    [
        ("vid/00001.jpg,0.5,0.5,9," + ",".join(["0"] * 12), "expression: '9'"),
        ("vid/00001.jpg,0.5,0.5,1," + ",".join(["0"] * 11), "expected 16 values"),
        ("vid/frame1.png,0.5,0.5,1," + ",".join(["0"] * 12), "image name"),
        ("vid/00001.jpg,0.5,7,1," + ",".join(["0"] * 12), "arousal: '7'"),
    ],
)
def test_mtl_csv_errors_name_the_line(tmp_path, row, fragment):
    good = "vid/00002.jpg,0.1,0.1,1," + ",".join(["0"] * 12)
    path = write(tmp_path / "mtl.txt", "image,valence,arousal,expression,aus\n" + good + "\n" + row + "\n")
    with pytest.raises(AnnotationError, match="line 3") as info:
        read_mtl_csv(path)
    assert fragment in str(info.value)


def test_mtl_csv_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    n = 50
    df = pd.DataFrame({"image": [f"v{i % 3}/{i + 1:05d}.jpg" for i in range(n)]})
    df["valence"], df["arousal"] = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    df["expression"] = pd.array(rng.integers(0, 8, n), dtype="Int64")
    for name in AUS:
        df[name] = pd.array(rng.integers(0, 2, n), dtype="Int64")
    df.loc[3, "valence"] = np.nan
    df.loc[4, "expression"] = pd.NA
    df.loc[5, list(AUS)] = pd.NA
    write_mtl_csv(df, tmp_path / "m.txt")
    assert (tmp_path / "m.txt").read_text().splitlines()[0] == "image,valence,arousal,expression," + AU_HEADER
    back = read_mtl_csv(tmp_path / "m.txt")
    pd.testing.assert_frame_equal(back.drop(columns=["video", "frame"]), df)


# --- submissions ------------------------------------------------------------------------------------


def test_submission_files_have_the_abaw_layout(tmp_path):
    images = ["2-30-640x360/00001.jpg", "2-30-640x360/00002.jpg"]
    write_submission(pd.DataFrame({"image_location": images, "valence": [0.51, 0.5], "arousal": [-0.2, 0.0]}),
                     tmp_path / "va.txt", "va")
    assert (tmp_path / "va.txt").read_text() == (
        "image_location,valence,arousal\n2-30-640x360/00001.jpg,0.51,-0.2\n2-30-640x360/00002.jpg,0.5,0.0\n"
    )
    write_submission(pd.DataFrame({"image_location": images, "expression": [4, 0]}), tmp_path / "e.txt", "expr")
    assert (tmp_path / "e.txt").read_text() == (
        f"image_location,{EXPR_HEADER}\n2-30-640x360/00001.jpg,4\n2-30-640x360/00002.jpg,0\n"
    )
    au = pd.DataFrame([[1] + [0] * 11, [0] * 11 + [1]], columns=list(AUS))
    au.insert(0, "image_location", images)
    write_submission(au, tmp_path / "a.txt", "au")
    assert (tmp_path / "a.txt").read_text().splitlines() == [
        f"image_location,{AU_HEADER}", "2-30-640x360/00001.jpg,1,0,0,0,0,0,0,0,0,0,0,0",
        "2-30-640x360/00002.jpg,0,0,0,0,0,0,0,0,0,0,0,1",
    ]


def test_faceless_frames_take_the_nearest_frame_of_the_same_video(tmp_path):
    # Video a: frames 1..7 with values at frames 2 and 5 only; video b: one valued frame; video c: none.
    rows = [("a", 1, None), ("a", 2, 2), ("a", 3, None), ("a", 4, None), ("a", 5, 5), ("a", 6, None),
            ("a", 7, None), ("b", 1, None), ("b", 2, 6), ("c", 1, None), ("c", 2, None)]
    df = pd.DataFrame({"image_location": [f"{v}/{f:05d}.jpg" for v, f, _ in rows],
                       "expression": pd.array([e for _, _, e in rows], dtype="Int64")})
    filled = write_submission(df, tmp_path / "e.txt", "expr")
    assert filled == 8
    back = read_submission(tmp_path / "e.txt", "expr")
    # a: frame 3 is nearer frame 2, frames 4, 6, 7 nearer frame 5; b: frame 2; c has no value -> Neutral (0).
    assert back["expression"].tolist() == [2, 2, 2, 5, 5, 5, 5, 6, 6, 0, 0]
    assert back["image_location"].tolist() == df["image_location"].tolist()
    assert back["video"].tolist() == [v for v, _, _ in rows]
    assert back["frame"].tolist() == [f - 1 for _, f, _ in rows]


def test_fill_ties_take_the_earlier_frame_and_order_does_not_matter(tmp_path):
    df = pd.DataFrame({"image_location": ["v/00005.jpg", "v/00003.jpg", "v/00001.jpg", "v/00004.jpg"],
                       "valence": [0.5, np.nan, -0.5, np.nan], "arousal": [0.25, np.nan, -0.25, np.nan]})
    assert write_submission(df, tmp_path / "va.txt", "va") == 2
    back = read_submission(tmp_path / "va.txt", "va")
    # frame 3 is 2 away from both frame 1 and frame 5 -> the earlier (frame 1); frame 4 is nearest frame 5.
    assert back["valence"].tolist() == [0.5, -0.5, -0.5, 0.5]
    assert back["arousal"].tolist() == [0.25, -0.25, -0.25, 0.25]


def test_submission_with_au_probabilities_is_refused(tmp_path):
    df = pd.DataFrame([[0.7] * 12], columns=list(AUS))
    df.insert(0, "image_location", ["v/00001.jpg"])
    with pytest.raises(ValueError, match="AU1 = 0.7 is not a valid AU value"):
        write_submission(df, tmp_path / "a.txt", "au")
    df["image_location"] = ["v_00001.jpg"]
    with pytest.raises(ValueError, match="image_location|<video>/<number>.jpg"):
        write_submission(df.assign(**{a: 1 for a in AUS}), tmp_path / "a.txt", "au")


def test_submission_reader_checks_its_header(tmp_path):
    path = write(tmp_path / "s.txt", "image,valence,arousal\nv/00001.jpg,0.1,0.1\n")
    with pytest.raises(AnnotationError, match="line 1"):
        read_submission(path, "va")


# --- the dataset index ------------------------------------------------------------------------------


def test_index_lists_videos_per_task_and_split(affwild2_data):
    index = AffWild2Index(affwild2_data.root)
    assert index.missing == []
    for task, splits in SPLITS.items():
        for split, videos in splits.items():
            assert index.videos(task, split) == sorted(videos)
            folder = {"train": "Train_Set", "val": "Validation_Set"}[split]
            assert index.videos(task, folder) == sorted(videos)
    assert index.all_videos() == sorted(affwild2_data.labels)
    assert index.splits("13-30-960x540") == {"va": "train", "expr": "train", "au": "val"}
    assert index.splits("12-30-640x360") == {"va": "val", "expr": "val"}


def test_index_frames_pair_lines_with_images(affwild2_data):
    index = AffWild2Index(affwild2_data.root)
    for task in ("va", "expr", "au"):
        for split, videos in SPLITS[task].items():
            for video in videos:
                frames = index.frames(task, split, video)
                truth = affwild2_data.labels[video]
                assert frames["frame"].tolist() == list(range(len(truth)))
                has_image = frames["image_path"].notna().to_numpy()
                np.testing.assert_array_equal(has_image, truth["has_image"].to_numpy())
                for frame, path in zip(frames["frame"], frames["image_path"]):
                    if path is not None:
                        assert path.endswith(f"cropped_aligned/{video}/{frame + 1:05d}.jpg")
                columns = {"va": ["valence", "arousal"], "expr": ["expression"], "au": list(AUS)}[task]
                pd.testing.assert_frame_equal(frames[columns], truth[columns].reset_index(drop=True))
    # Lines without images exist: the face leaves 13-30-960x540, and 10-24-640x360 lost frames 5-7.
    frames = index.frames("va", "train", "13-30-960x540")
    assert frames["image_path"].isna().sum() == 16 and frames["image_path"].iloc[:24].notna().all()
    frames = index.frames("va", "train", "10-24-640x360")
    assert frames.loc[frames["image_path"].isna(), "frame"].tolist() == [5, 6, 7]


def test_index_image_paths_are_real_112px_images(affwild2_data):
    frames = AffWild2Index(affwild2_data.root).frames("expr", "val", "12-30-640x360")
    image = cv2.imread(frames["image_path"].iloc[0])
    assert image.shape == (112, 112, 3)


def test_left_right_videos_share_one_raw_video(affwild2_data):
    index = AffWild2Index(affwild2_data.root)
    left = index.raw_video_path("14-30-960x640_left")
    assert left is not None and left == index.raw_video_path("14-30-960x640_right")
    assert left.name == "14-30-960x640.mp4"
    assert index.raw_video_path("10-24-640x360").name == "10-24-640x360.mp4"
    assert index.raw_video_path("99-30-640x360") is None
    assert index.image_dir("14-30-960x640_left") != index.image_dir("14-30-960x640_right")


def test_video_frames_joins_all_tasks(affwild2_data):
    index = AffWild2Index(affwild2_data.root)
    df = index.video_frames("12-30-640x360")  # annotated for VA and EXPR, not AU
    assert df.attrs["splits"] == {"va": "val", "expr": "val"}
    truth = affwild2_data.labels["12-30-640x360"]
    np.testing.assert_allclose(df["valence"], truth["valence"])
    assert df["expression"].tolist() == truth["expression"].tolist()
    assert df[list(AUS)].isna().all().all() and (df.dtypes[list(AUS)] == "Int64").all()
    with pytest.raises(KeyError, match="no annotation"):
        index.video_frames("nope")


def test_index_accepts_the_older_expr_folder_name(tmp_path, media_dir):
    data = make_affwild2(tmp_path, expr_dir="EXPR_Classification_Challenge", raw_videos=False,
                         media_dir=media_dir)
    assert (tmp_path / "EXPR_Classification_Challenge" / "Train_Set").is_dir()
    assert not (tmp_path / "EXPR_Recognition_Challenge").exists()
    index = AffWild2Index(data.root)
    assert index.missing == []
    assert index.videos("expr", "train") == sorted(SPLITS["expr"]["train"])
    assert len(index.frames("expr", "val", "11-24-640x360")) == 40
    assert index.raw_video_path("11-24-640x360") is None


def test_incomplete_copy_is_reported_not_fatal(tmp_path, affwild2_data):
    data = copy_affwild2(affwild2_data, tmp_path / "copy")
    shutil.rmtree(data.root / "VA_Estimation_Challenge")
    shutil.rmtree(data.root / "AU_Detection_Challenge" / "Validation_Set")
    shutil.rmtree(data.root / "cropped_aligned" / "12-30-640x360")
    index = AffWild2Index(data.root)
    assert index.videos("va", "train") == [] and index.videos("au", "val") == []
    assert index.videos("au", "train") == sorted(SPLITS["au"]["train"])
    report = "\n".join(index.missing)
    assert "VA_Estimation_Challenge" in report
    assert "AU_Detection_Challenge/Validation_Set" in report
    assert "12-30-640x360" in report and "cropped_aligned/12-30-640x360" in report
    assert len(index.missing) == 3
    frames = index.frames("expr", "val", "12-30-640x360")
    assert len(frames) == 40 and frames["image_path"].isna().all()
    with pytest.raises(KeyError, match="VA Train_Set annotation for video '10-24-640x360'"):
        index.annotation_path("va", "train", "10-24-640x360")


def test_missing_image_folder_and_root_are_reported(tmp_path, affwild2_data):
    data = copy_affwild2(affwild2_data, tmp_path / "copy")
    shutil.rmtree(data.root / "cropped_aligned")
    index = AffWild2Index(data.root)
    assert any("cropped_aligned" in problem for problem in index.missing)
    assert index.frames("va", "val", "11-24-640x360")["image_path"].isna().all()
    nowhere = AffWild2Index(tmp_path / "does-not-exist")
    assert nowhere.missing and "does not exist" in nowhere.missing[0]
    assert nowhere.all_videos() == [] and nowhere.raw_video_path("10-24-640x360") is None


def test_malformed_file_in_the_index_names_file_and_line(tmp_path, affwild2_data):
    data = copy_affwild2(affwild2_data, tmp_path / "copy")
    path = data.root / "AU_Detection_Challenge" / "Train_Set" / "10-24-640x360.txt"
    lines = path.read_text().splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0]  # line 8 loses a value
    path.write_text("\n".join(lines) + "\n")
    index = AffWild2Index(data.root)
    with pytest.raises(AnnotationError) as info:
        index.frames("au", "train", "10-24-640x360")
    assert str(info.value) == "10-24-640x360.txt, line 8: expected 12 values, found 11"


def test_index_refuses_unknown_task_and_split(affwild2_root):
    index = AffWild2Index(affwild2_root)
    with pytest.raises(ValueError, match="unknown split"):
        index.videos("va", "test")
    with pytest.raises(ValueError, match="unknown task"):
        index.videos("emotion", "train")
