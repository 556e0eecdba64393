"""The web app driven through its API with gradio_client, against the real server on 127.0.0.1.

One server per module: a temporary SQLite database, two logins (alice, bob), the shared Aff-Wild2 test copy,
a small CLIP (ViT-S-32, random weights) to keep CPU time down. Every model is untrained here, so the tests
check plumbing, files, messages and the database, never the quality of predictions.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# This process's own Gradio upload folder (read when gradio is imported): uploads are stored by content
# hash, and another test run on the machine that uploads the same files would delete them on shutdown.
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="affectlens-gradio-"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from core.affwild2 import read_annotation, read_submission, write_annotation  # noqa: E402
from core.labels import AUS  # noqa: E402
from core.weights import load_checkpoint  # noqa: E402
from db import repo  # noqa: E402
from db.engine import make_engine, make_session_factory  # noqa: E402
from webapp.app import build_app, launch  # noqa: E402
from webapp.config import AppConfig  # noqa: E402

N_FRAMES = 72  # single_face.mp4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, affwild2_root: Path | None) -> tuple:
    cfg = AppConfig(db_url=f"sqlite:///{tmp / 'review.db'}", affwild2_root=affwild2_root,
                    users=(("alice", "alice-pw"), ("bob", "bob-pw")), cache_dir=tmp / "cache",
                    runs_dir=tmp / "runs", data_dir=tmp / "data", port=free_port(),
                    clip_model="ViT-S-32", device="cpu", max_duration_s=10, max_upload_mb=2)
    demo = build_app(cfg)
    launch(demo, cfg, prevent_thread_lock=True, quiet=True)
    return demo, cfg, f"http://127.0.0.1:{cfg.port}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory, affwild2_root):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp"), affwild2_root)
    yield cfg, url
    demo.close()


@pytest.fixture(scope="module")
def annotations(tmp_path_factory) -> dict[str, Path]:
    """Aff-Wild2 annotation files for single_face.mp4: VA with an invalid stretch, a constant EXPR, AUs."""
    folder = tmp_path_factory.mktemp("annotations")
    t = np.arange(N_FRAMES)
    va = pd.DataFrame({"valence": np.round(np.sin(t / 12) * 0.6, 3), "arousal": np.round(np.cos(t / 15) * 0.4, 3)})
    va.loc[50:54] = np.nan
    expr = pd.DataFrame({"expression": pd.array([0] * 36 + [4] * 36, dtype="Int64")})
    au = pd.DataFrame({au: pd.array((t >= 36).astype(int) if au in ("AU6", "AU12") else np.zeros(N_FRAMES, int),
                                    dtype="Int64") for au in AUS})
    paths = {"va": folder / "va.txt", "expr": folder / "expr.txt", "au": folder / "au.txt"}
    for task, table in (("va", va), ("expr", expr), ("au", au)):
        write_annotation(table, paths[task], task)
    return paths


def plotly_array(value) -> np.ndarray:
    """An array from plotly JSON: a list, or {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return array.reshape([int(n) for n in str(value.get("shape", len(array))).split(",")])
    return np.asarray(value)


def table(data: dict) -> pd.DataFrame:
    """A Dataframe output as gradio_client returns it."""
    return pd.DataFrame(data["data"], columns=data["headers"])


ANALYSE_OUTPUTS = ("run_info", "timeline", "metrics", "metrics_hint", "frame", "crop", "frame_info", "downloads",
                   "queue", "key", "weights_info", "player", "player_note", "status")


def analyse(client, video, annotation_files=(), models=("DDAMFN+LSTM", "CLIP"), source="Uploaded video",
            affwild2_video=None, prompt="basic", model_id=0) -> dict:
    """/analyse's outputs by name (its inputs in the order the page made them)."""
    files = [handle_file(str(p)) for p in annotation_files]
    video = handle_file(str(video)) if video else None
    outputs = client.predict(source, video, files, affwild2_video, list(models), prompt, model_id, api_name="/analyse")
    return dict(zip(ANALYSE_OUTPUTS, outputs, strict=True))


def test_analyse_review_export_and_database(server, media_dir, annotations):
    cfg, url = server
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    out = analyse(alice, media_dir / "single_face.mp4", annotations.values())
    run_info, timeline, metrics, frame, crop, downloads, key = (out[k] for k in (
        "run_info", "timeline", "metrics", "frame", "crop", "downloads", "key"))

    # What ran, said plainly.
    assert "72 frames, 72 with a face" in run_info
    assert "every face frame was encoded" in run_info          # no stride unless the user asks for one (issue 21)
    assert run_info.count("**untrained**") >= 3 and "`random`" in run_info
    # Timelines drawn from the table, ground truth beside the predictions.
    figure = json.loads(timeline["plot"])
    names = {trace.get("name") for trace in figure["data"]}
    assert {"valence prediction", "valence annotation", "expression", "AU probability", "AU annotation",
            "AU disagreement"} <= names
    # Per-video ABAW metrics against the uploaded annotation (VA has 5 invalid frames).
    m = table(metrics).set_index(["output", "metric"])
    assert m.loc[("DDAMFN+LSTM (untrained)", "CCC valence"), "frames"] == N_FRAMES - 5
    assert ("CLIP basic (untrained)", "P_EXPR (F1, 8 classes)") in m.index and m["value"].between(-1, 1).all()
    assert frame["maximum"] == N_FRAMES - 1
    assert Path(crop).is_file()
    # Downloads: the predictions table, the run metadata and the ABAW files, each saying `untrained`.
    files = {Path(p).name: Path(p) for p in downloads}
    assert set(files) == {"single_face_predictions.csv", "single_face_run.json", "single_face_VA_submission.txt",
                          "single_face_EXPR_submission.txt", "single_face_AU_submission.txt"}
    predictions = pd.read_csv(files["single_face_predictions.csv"])
    assert len(predictions) == N_FRAMES and {"gt_valence", "clip_basic_expr", "p_AU12"} <= set(predictions)
    assert predictions.filter(like="untrained_").all().all()
    assert json.loads(files["single_face_run.json"].read_text())["untrained"]
    va = read_submission(files["single_face_VA_submission.txt"], "va")
    assert va["image_location"].iloc[0] == "single_face/00001.jpg" and len(va) == N_FRAMES
    assert np.allclose(va["valence"], predictions["valence"], atol=1e-4)
    assert key.startswith("sha256:")

    crop, frame_info, _ = alice.predict(10, api_name="/show_frame")
    assert Path(crop).is_file() and ["face", "True"] in frame_info["data"]

    # The review queue is ranked, and a segment opens with crops and per-frame labels.
    queue, _ = alice.predict(api_name="/review_queue")
    ranked = table(queue)
    assert len(ranked) > 0 and list(ranked["score"]) == sorted(ranked["score"], reverse=True)
    _, task, start, end, segment_plot, gallery, labels, _ = alice.predict(queue, 0, api_name="/open_segment")
    assert (task, start, end) == (ranked["task"][0], ranked["start_frame"][0], ranked["end_frame"][0])
    assert 0 < len(gallery) <= 24 and Path(gallery[0]["image"]).is_file()
    assert table(labels)["frame"].tolist() == list(range(start, end + 1))

    # Flag, propose a correction, and have the other reviewer accept it.
    status, corrections, history, flags, _ = alice.predict(key, "expr", 10, 20, "wrong label",
                                                           "the smile starts earlier", api_name="/flag")
    assert status.startswith("Flag 1: EXPR frames 10-20") and "by alice" in status
    status, corrections, history, flags, _ = alice.predict(key, "va", 30, 39, 0.6, 0.3, "Neutral", [],
                                                           "clearly positive", api_name="/correct")
    assert status.startswith("Correction 1: VA frames 30-39")
    with pytest.raises(AppError, match="a second reviewer must accept or reject it"):
        alice.predict(key, 1, "", api_name="/accept_correction")
    bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
    status, corrections, history, flags, _ = bob.predict(key, 1, "", api_name="/accept_correction")
    assert status == "Correction 1 accepted by bob."
    assert table(corrections)[["id", "status", "proposed by", "decided by"]].values.tolist() == [
        [1, "accepted", "alice", "bob"]]
    # Corrections and audit entries read as sentences with label names, not JSON.
    [sentence] = table(corrections)["correction"]
    assert sentence.startswith("valence 0.6, arousal 0.3, frames 30-39, was valence ") and "null" not in sentence
    assert table(corrections)["seconds"].iloc[0].endswith(" s")
    events = table(history).set_index("action")
    assert events.loc["flagged", "detail"] == "EXPR frames 10-20 flagged as wrong label: the smile starts earlier"
    assert events.loc["accepted", "subject"] == "correction 1 (VA frames 30-39)"
    assert not table(history)["detail"].str.contains("[{}]").any()
    assert table(history)["action"].tolist() == ["flagged", "proposed", "accepted"]

    # The timeline of a segment now shows the corrected annotation.
    _, _, labels, _ = alice.predict(28, 41, api_name="/show_range")
    labels = table(labels).set_index("frame")
    assert (labels.loc[30:39, "gt_valence"] == 0.6).all() and labels.loc[29, "gt_valence"] != 0.6

    exported = {Path(p).name: Path(p) for p in alice.predict(key, api_name="/export_corrections")[0]}
    stem = "single_face"                  # files are named after the video's file name, not its key
    assert set(exported) == {f"{stem}_corrections.json", f"{stem}_flags.json", f"{stem}_VA.txt",
                             f"{stem}_EXPR.txt", f"{stem}_AU.txt"}
    records = json.loads(exported[f"{stem}_corrections.json"].read_text())
    assert [e["action"] for e in records[0]["events"]] == ["proposed", "accepted"]
    va_export = read_annotation(exported[f"{stem}_VA.txt"], "va")
    assert (va_export.loc[30:39, "valence"] == 0.6).all() and (va_export.loc[30:39, "arousal"] == 0.3).all()
    expr_export = read_annotation(exported[f"{stem}_EXPR.txt"], "expr")
    assert expr_export.loc[10:20, "expression"].isna().all(), "flagged frames are exported as invalid"

    # The database, read directly.
    sessions = make_session_factory(make_engine(cfg.db_url))
    with sessions() as s:
        video = repo.get_video(s, key)
        assert (video.name, video.frame_count) == ("single_face.mp4", N_FRAMES)
        [correction] = repo.list_corrections(s, key)
        assert (correction.reviewer.name, correction.reviewed_by.name) == ("alice", "bob")
        assert correction.status == "accepted"
        assert correction.value == {"valence": 0.6, "arousal": 0.3}
        assert len(correction.original["valence"]) == 10
        [flag] = repo.list_flags(s, key)
        assert (flag.task, flag.start_frame, flag.end_frame, flag.reviewer.name) == ("expr", 10, 20, "alice")
        [run] = repo.list_prediction_runs(s, key)
        assert run.untrained and set(run.models) == {"ddamfn", "lstm", "clip"}
        assert all(repo.latest_annotation_set(s, key, t) is not None for t in ("va", "expr", "au"))


def test_bad_input_gives_a_message_and_the_app_keeps_serving(server, media_dir, annotations, tmp_path):
    _, url = server
    client = Client(url, auth=("alice", "alice-pw"), verbose=False)
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video either\n")
    broken = tmp_path / "broken.mp4"
    data = (media_dir / "single_face.mp4").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    short = tmp_path / "short_va.txt"
    write_annotation(pd.DataFrame({"valence": [0.1] * 30, "arousal": [0.2] * 30}), short, "va")

    cases = [
        (dict(video=text), "notes.txt is not a video file"),
        (dict(video=fake), "fake.mp4 cannot be read as a video"),
        (dict(video=broken), "broken.mp4 cannot be read as a video"),
        (dict(video=media_dir / "WolfgangLanger_Pexels.mp4"), "lasts 20 s; this app accepts videos up to 10 s"),
        (dict(video=media_dir / "no_face.mp4", models=("DDAMFN+LSTM",)),
         "No face was found in any of the 95 frames"),
        (dict(video=media_dir / "single_face.mp4", annotation_files=[short]),
         "30 annotated frames, but the video has 72"),
        (dict(video=media_dir / "single_face.mp4", annotation_files=[text]),
         "is not an Aff-Wild2 annotation file"),
        (dict(video=None), "Choose a video first"),
        (dict(video=media_dir / "single_face.mp4", models=()), "Choose at least one model"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError, match=message):
            analyse(client, **kwargs)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):   # 2.7 MB, the limit is 2 MB
        analyse(client, media_dir / "noface_face.mov")
    with pytest.raises(AppError, match="Analyse a video first"):
        client.predict(api_name="/review_queue")
    with pytest.raises(AppError, match="unknown video 'nothing-here'"):
        client.predict("nothing-here", "va", 0, 3, "wrong label", "", api_name="/flag")

    # The same session, right after: a real analysis with a face.
    out = analyse(client, media_dir / "single_face.mp4", models=("DDAMFN+LSTM",))
    run_info, key = out["run_info"], out["key"]
    assert "72 frames, 72 with a face" in run_info
    for args, message in [(("va", 9, 3, "wrong label", ""), "the end is before the start"),
                          (("va", 0, 72, "wrong label", ""), "outside video"),
                          (("va", 0, 3, "other", ""), "reason 'other' needs a note")]:
        with pytest.raises(AppError, match=message):
            client.predict(key, *args, api_name="/flag")


def test_affwild2_video_corrections_feed_a_retraining_run(server, affwild2_root):
    cfg, url = server
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    bob = Client(url, auth=("bob", "bob-pw"), verbose=False)
    video = "10-24-640x360"  # VA train split of the test copy
    out = analyse(alice, None, models=("DDAMFN+LSTM",), source="Aff-Wild2 video", affwild2_video=video)
    run_info, metrics, key = out["run_info"], out["metrics"], out["key"]
    assert key == video and "40 frames" in run_info
    assert {"CCC valence", "P_VA", "P_EXPR (F1, 8 classes)", "P_AU (F1 at 0.5)"} <= set(table(metrics)["metric"])

    status, corrections, *_ = alice.predict(key, "va", 0, 9, -0.5, 0.5, "Neutral", [], "", api_name="/correct")
    correction_id = int(table(corrections)["id"].iloc[-1])
    bob.predict(key, correction_id, "", api_name="/accept_correction")

    # Retraining runs as a job in its own process; its status is readable while it runs.
    info, metrics, job, *_ = alice.predict("ddamfn-va", 1, 1, 16, api_name="/retrain")
    assert f"Job {int(job)}" in info and ("queued" in info or "running" in info)
    deadline = time.time() + 240
    while "**done**" not in info and "**failed**" not in info:
        assert time.time() < deadline, info
        time.sleep(1)
        info, metrics, picker, *_ = alice.predict(job, api_name="/job_status")
    assert "**done**" in info and "trained 1 steps" in info, info
    metrics = table(metrics).set_index("metric")
    assert {"p_va", "ccc_valence", "score"} <= set(metrics.index) and metrics["before"].isna().all()
    with make_session_factory(make_engine(cfg.db_url))() as s:
        [model] = repo.list_models(s)
        assert model.trained_steps == 1 and correction_id in model.correction_ids
        assert Path(model.path).is_file() and Path(model.path).is_relative_to(cfg.runs_dir)
        model_id = model.id
    assert meta_p_va(model.path) == pytest.approx(metrics.loc["p_va", "after"], abs=5e-4)   # shown to 3 decimals
    # The next analysis with the registered model: its predictions, not the untrained ones.
    untrained = pd.read_csv(next(p for p in analyse(alice, None, models=("DDAMFN",), source="Aff-Wild2 video",
                                                    affwild2_video=video)["downloads"] if p.endswith(".csv")))
    trained_run = analyse(alice, None, models=("DDAMFN",), source="Aff-Wild2 video", affwild2_video=video,
                          model_id=model_id)
    trained = pd.read_csv(next(p for p in trained_run["downloads"] if p.endswith(".csv")))
    assert untrained["untrained_va"].all() and not trained["untrained_va"].any()
    assert not np.allclose(trained["valence"], untrained["valence"])


def meta_p_va(path) -> float:
    return load_checkpoint(path).metadata["metrics"]["val"]["p_va"]


def test_compare_prompt_sets_save_and_reuse(server, media_dir, annotations):
    cfg, url = server
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    analyse(alice, media_dir / "single_face.mp4", [annotations["expr"]], models=("CLIP",))
    name, templates, classes, _ = alice.predict("basic", api_name="/load_prompt_set")
    assert name == "basic" and "{}" in templates and classes.splitlines()[4].startswith("Happiness:")
    mine = ("mine", "a photo of a {} person.", classes.replace("Happiness: happy", "Happiness: grinning"))

    note, probs, f1, confusion_1, confusion_2, confusion_3, _ = alice.predict(
        name, templates, classes, *mine, "", "", "", api_name="/compare_prompts")
    assert "random weights (untrained)" in note
    traces = json.loads(probs["plot"])["data"]
    assert len(traces) == 16 and all(plotly_array(t["y"]).shape == (N_FRAMES,) for t in traces)
    scores = table(f1).set_index("prompt set")["P_EXPR (F1, 8 classes)"]
    assert list(scores.index) == ["basic", "mine"] and scores.between(0, 1).all()
    for figure in (confusion_1, confusion_2):
        counts = plotly_array(json.loads(figure["plot"])["data"][0]["z"])
        assert counts.shape == (8, 8) and counts.sum() == N_FRAMES    # every frame annotated and with a face
    assert confusion_3 is None
    with pytest.raises(AppError, match="each template needs exactly one"):
        alice.predict("odd", "a photo", classes, "", "", "", "", "", "", api_name="/compare_prompts")

    assert alice.predict(*mine, api_name="/save_prompt_set") == "Saved prompt set **mine** (version 1)."
    assert alice.predict(*mine, api_name="/save_prompt_set") == "Saved prompt set **mine** (version 1)."
    edited = (mine[0], mine[1] + "\na face that looks {}.", mine[2])
    assert alice.predict(*edited, api_name="/save_prompt_set") == "Saved prompt set **mine** (version 2)."
    with pytest.raises(AppError, match="built-in prompt set"):
        alice.predict("basic", templates, classes, api_name="/save_prompt_set")
    assert alice.predict("mine", api_name="/load_prompt_set")[:3] == edited

    # A saved set runs in an analysis like the built-in ones.
    downloads = analyse(alice, media_dir / "single_face.mp4", models=("CLIP",), prompt="mine")["downloads"]
    predictions = pd.read_csv(next(p for p in downloads if p.endswith("_predictions.csv")))
    assert predictions["clip_mine_expr"].between(0, 7).all()
    with make_session_factory(make_engine(cfg.db_url))() as s:
        saved = repo.get_prompt_set(s, "mine")
        assert (saved.version, saved.author.name, len(saved.templates)) == (2, "alice", 2)


def test_python_m_webapp_serves_on_the_configured_port(tmp_path):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'app.db'}",
           "AFFECTLENS_CACHE_DIR": str(tmp_path / "cache"), "AFFECTLENS_USERS": ""}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "python -m webapp did not start in 120 s"
                time.sleep(1)
        assert config["title"] == "AffectLens"
        assert {"/analyse", "/flag", "/correct", "/accept_correction", "/export_corrections", "/compare_prompts",
                "/retrain"} <= {f"/{d['api_name']}" for d in config["dependencies"] if d.get("api_name")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
