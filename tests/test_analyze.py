"""The command line `python -m core.analyze`: files written, ABAW files, no-face note, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.analyze import main
from core.labels import AUS
from core.table import prediction_columns, untrained_column

REPO = Path(__file__).resolve().parents[1]


def test_writes_csv_parquet_metadata_and_abaw_files(media_dir, tmp_path):
    """Run as a user would, in a fresh process."""
    out = tmp_path / "out" / "preds.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "core.analyze", str(media_dir / "single_face.mp4"), "--out", str(out), "--parquet",
         "--models", "ddamfn,lstm", "--device", "cpu", "--max-frames", "8", "--abaw", str(tmp_path / "abaw")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "untrained (random) models: ddamfn, lstm" in proc.stderr
    df = pd.read_csv(out)
    flags = [untrained_column(o) for o in ("va", "expr", "au")]
    assert list(df.columns) == [*prediction_columns(), *flags] and len(df) == 8 and df["face"].all()
    assert df[flags].all().all()
    assert pd.read_parquet(out.with_suffix(".parquet"))["expr"].dtype == "Int64"
    run = json.loads(out.with_suffix(".run.json").read_text())
    assert run["device"] == "cpu" and run["main_outputs"] == "lstm" and run["frames"] == 8
    va = (tmp_path / "abaw" / "va.txt").read_text().splitlines()
    assert va[0] == "image_location,valence,arousal" and va[1].startswith("single_face/00001.jpg,")
    assert len(va) == 9
    au = (tmp_path / "abaw" / "au.txt").read_text().splitlines()
    assert au[0] == "image_location," + ",".join(AUS) and len(au) == 9
    assert (tmp_path / "abaw" / "expr.txt").read_text().splitlines()[1].split(",")[1] in list("01234567")
    # every frame scored (no stride asked for), and the submission folder says how it was made
    assert df["ddamfn_scored"].all() and "note: encoders ran" not in proc.stderr
    assert json.loads((tmp_path / "abaw" / "run.json").read_text()) == run
    assert run["embedding_strides"]["ddamfn"]["every"] == 1 and run["config"]["ddamfn_every"] == 1


def test_no_face_writes_a_table_that_says_so(media_dir, tmp_path, capsys):
    out = tmp_path / "nf.csv"
    code = main([str(media_dir / "no_face.mp4"), "--out", str(out), "--device", "cpu", "--max-frames", "12",
                 "--abaw", str(tmp_path / "abaw")])
    err = capsys.readouterr().err
    assert code == 0 and "no face was found in any frame" in err and "no ABAW file written" in err
    df = pd.read_csv(out)
    assert len(df) == 12 and not df["face"].any() and df["valence"].isna().all()
    assert not (tmp_path / "abaw").exists()


def bad_input(case: str, media_dir: Path, tmp_path: Path) -> Path:
    if case == "missing":
        return tmp_path / "missing.mp4"
    path = tmp_path / {"empty": "empty.mp4", "text": "notes.webm", "cut": "cut.mp4"}.get(case, "x")
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case == "cut":
        path.write_bytes((media_dir / "single_face.mp4").read_bytes()[:60_000])
    else:
        return media_dir / "single_face.mp4"
    return path


@pytest.mark.parametrize("case, args, message", [
    ("missing", [], "no such file"),
    ("empty", [], "empty file"),
    ("text", [], "cannot open"),
    ("cut", [], "cannot open"),
    ("good", ["--weights", "ddamfn=/no/such/weights.pt"], "weights file not found"),
    ("good", ["--models", "resnet"], "unknown model"),
])
def test_failures_end_with_one_line(media_dir, tmp_path, capsys, case, args, message):
    video = bad_input(case, media_dir, tmp_path)
    code = main([str(video), "--out", str(tmp_path / "x.csv"), "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_affwild2_video_id(affwild2_data, tmp_path, capsys):
    from core.affwild2_index import AffWild2Index

    video = "12-30-640x360"
    out = tmp_path / "aw.csv"
    code = main([video, "--affwild2", str(affwild2_data.root), "--out", str(out), "--device", "cpu",
                 "--abaw", str(tmp_path / "abaw")])
    assert code == 0, capsys.readouterr().err
    df = pd.read_csv(out)
    lines = AffWild2Index(affwild2_data.root).video_frames(video)
    assert len(df) == len(lines) and df["face"].tolist() == lines["image_path"].notna().tolist()
    first = (tmp_path / "abaw" / "va.txt").read_text().splitlines()[1]
    assert first.startswith(f"{video}/00001.jpg,")
    assert main(["no-such-video", "--affwild2", str(affwild2_data.root), "--out", str(out)]) == 1
    assert "no annotation for video 'no-such-video'" in capsys.readouterr().err
