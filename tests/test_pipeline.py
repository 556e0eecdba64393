"""core.pipeline on real videos, on CPU with random weights (untrained): one row per decoded frame, faces
where there are faces, none where there are none, faceless rows filled or empty as documented, the
subject's track, the CLIP columns, a checkpoint's outputs reproduced, and Aff-Wild2 aligned images."""
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from core.faces import FaceDetector, crop_faces, iou
from core.labels import AUS, EXPRESSIONS
from core.models import create_model
from core.models.clip import PromptSet
from core.analysis import Analysis, RunInfo, Source, Stride
from core.pipeline import AnalysisConfig, Step, analyze_affwild2, analyze_video, load_models, video_steps
from core.table import prediction_columns
from core.video import VideoError, iter_frames
from core.weights import save_checkpoint

P_EXPR = [f"p_{e}" for e in EXPRESSIONS]
P_AU = [f"p_{a}" for a in AUS]


@pytest.fixture(scope="module")
def lstm_models():
    return load_models(AnalysisConfig(models=("ddamfn", "lstm"), device="cpu"))


@pytest.fixture(scope="module")
def ddamfn_models():
    return load_models(AnalysisConfig(models=("ddamfn",), device="cpu"))


def check_table(df, frames, clip_sets=()):
    assert list(df.columns) == prediction_columns(clip_sets)
    assert len(df) == frames and df["frame"].tolist() == list(range(frames))
    assert df["frame"].dtype == np.int64 and df["face"].dtype == bool and df["filled"].dtype == bool
    assert df["expr"].dtype == "Int64" and all(df[a].dtype == "Int64" for a in AUS)
    assert np.all(np.diff(df["time_s"]) > 0)
    assert not (df["face"] & df["filled"]).any()
    rows = df[df["valence"].notna()]
    assert rows[["valence", "arousal"]].abs().le(1).all().all()
    assert np.allclose(rows[P_EXPR].sum(axis=1), 1, atol=1e-5)
    assert (rows["expr"].to_numpy(dtype=int) == rows[P_EXPR].to_numpy().argmax(axis=1)).all()
    assert (rows["expr_name"] == [EXPRESSIONS[i] for i in rows["expr"]]).all()
    assert ((rows[P_AU].to_numpy() >= 0.5) == rows[list(AUS)].to_numpy(dtype=int).astype(bool)).all()
    faces = df[df["face"]]
    assert faces["face_prob"].ge(0.9).all() and faces[["box_x1", "box_y1", "box_x2", "box_y2"]].notna().all().all()
    assert df.loc[~df["face"], "face_prob"].isna().all()


def test_single_face_every_frame_has_the_face(lstm_models, media_dir, tmp_path):
    config = AnalysisConfig(models=("ddamfn", "lstm"), device="cpu")
    steps = list(video_steps(media_dir / "single_face.mp4", config, loaded=lstm_models))
    progress = [(s.done, s.total) for s in steps[:-1]]
    assert all(isinstance(s, Step) for s in steps[:-1]) and isinstance(steps[-1], Analysis)
    df_analysis = steps[-1]
    df = df_analysis.table
    check_table(df, 72)
    assert df["face"].all() and not df["filled"].any() and df["valence"].notna().all()
    assert progress[-1] == (72, 72) and all(b[0] >= a[0] for a, b in zip(progress, progress[1:]))
    run = df_analysis.run
    assert run.device == "cpu" and run.untrained and run.main_outputs == "lstm" and run.config == config
    assert run.models["ddamfn"].source == "random" and run.models["lstm"].untrained
    assert run.frames == 72 and run.video.codec == "h264" and run.source.path == str(media_dir / "single_face.mp4")
    assert run.detection.every == 4 and run.detection.settings["min_face_px"] == 40
    assert run.detection.settings["detect_size"] is None
    assert len(run.tracks) == 1 and run.track == 0 and run.tracks[0].n_frames == 72 and not run.track_from_user
    assert {"decode", "detect", "ddamfn", "total"} <= set(run.timings)
    assert run.notes == () and not run.no_face and run.faceless == "lstm"
    df.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back.columns) == list(df.columns) and back["expr"].dtype == "Int64"
    # the run JSON reads back as the same RunInfo, and a saved analysis reopens
    data = run.to_dict()
    assert RunInfo.from_dict(data).to_dict() == data and data["config"]["prompt_sets"] == ["basic"]
    assert RunInfo.from_dict(data).tracks == run.tracks and RunInfo.from_dict(data).detection == run.detection
    reopened = Analysis.load(df_analysis.save(tmp_path / "saved"))
    assert reopened.run.to_dict() == data and reopened.run.models == run.models
    assert reopened.table.equals(df)


def test_no_face_gives_an_empty_table_that_says_so(lstm_models, media_dir):
    df_analysis = analyze_video(media_dir / "no_face.mp4", AnalysisConfig(models=("ddamfn", "lstm"), device="cpu"),
                       loaded=lstm_models)
    df = df_analysis.table
    check_table(df, 95)
    assert not df["face"].any() and not df["filled"].any()
    assert df[["valence", "arousal", *P_EXPR, *P_AU]].isna().all().all() and df["expr"].isna().all()
    run = df_analysis.run
    assert run.no_face and "no face" in run.notes[0] and run.tracks == () and run.track is None
    assert run.faceless_predictions == "empty (NaN): no face in any frame"


def test_face_leaves_and_faceless_rows_are_interpolated(ddamfn_models, media_dir):
    df_analysis = analyze_video(media_dir / "face_noface.mov", AnalysisConfig(device="cpu", detect_every=4),
                       loaded=ddamfn_models)
    df = df_analysis.table
    check_table(df, 169)
    face = df["face"].to_numpy()
    last = np.flatnonzero(face)[-1]
    assert face[:60].all() and not face[80:].any() and face[:last + 1].all()
    assert df["filled"].to_numpy().tolist() == (~face).tolist()
    # after the last face frame, frame-level predictions are those of the last face frame
    cols = ["valence", "arousal", *P_EXPR, *P_AU]
    assert np.allclose(df.loc[last + 1:, cols].to_numpy(), df.loc[[last], cols].to_numpy())
    assert df_analysis.run.faceless == "interpolated"


def test_face_enters_and_faceless_rows_stay_empty_when_asked(lstm_models, media_dir):
    config = AnalysisConfig(models=("ddamfn", "lstm"), device="cpu", fill="none", detect_every=3)
    df_analysis = analyze_video(media_dir / "noface_face.mov", config, loaded=lstm_models)
    df = df_analysis.table
    check_table(df, 169)
    face = df["face"].to_numpy()
    first = np.flatnonzero(face)[0]
    assert 85 <= first <= 100 and face[first:150].all()
    assert not df["filled"].any()
    assert df.loc[~face, "valence"].isna().all() and df.loc[face, "valence"].notna().all()
    assert df_analysis.run.detection.every == 3 and df_analysis.run.faceless == "empty"


def small_prompt_set(name: str, template: str) -> PromptSet:
    """One prompt per expression: the random text encoder then runs on 8 prompts, not dozens."""
    return PromptSet(name, (template,), {e: (e.lower(),) for e in EXPRESSIONS})


def test_clip_columns_per_prompt_set_and_clip_lstm(media_dir):
    """Each prompt set has its columns, and CLIP+LSTM its own: a prompt set named "lstm" beside it."""
    config = AnalysisConfig(models=("ddamfn", "clip", "clip-lstm"), device="cpu", max_frames=3,
                            prompt_sets=(small_prompt_set("basic", "a {} face."),
                                         small_prompt_set("emotion", "a person feeling {}."),
                                         small_prompt_set("lstm", "a photo of someone {}.")))
    df_analysis = analyze_video(media_dir / "single_face.mp4", config)
    df = df_analysis.table
    outputs = ["clip_basic", "clip_emotion", "clip_lstm", "clip-lstm"]
    check_table(df, 3, outputs)
    for output in outputs:
        probs = df[[f"{output}_p_{e}" for e in EXPRESSIONS]].to_numpy()
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert (df[f"{output}_expr"].to_numpy(dtype=int) == probs.argmax(axis=1)).all()
    # two prompt sets give two different zero-shot answers from the same image embeddings
    assert not np.allclose(df["clip_basic_p_Neutral"], df["clip_emotion_p_Neutral"])
    # the prompt set "lstm" did not overwrite the LSTM's columns, nor the LSTM the set's
    assert not np.allclose(df["clip_lstm_p_Neutral"], df["clip-lstm_p_Neutral"])
    run = df_analysis.run
    assert run.expr_outputs == tuple(outputs) and run.models["clip"].untrained
    assert run.outputs_from["clip_lstm"] == "clip" and run.outputs_from["clip-lstm"] == "clip-lstm"
    assert run.frames == 3 and run.config.prompt_set_names() == ["basic", "emotion", "lstm"]


def test_trained_clip_adapter_alone(media_dir, tmp_path):
    """A clip-adapter checkpoint as the only model: zero-shot columns from its frozen CLIP, the adapter's
    own classes as clip-adapter_*, and no DDAMFN columns filled. A prompt set named "adapter" keeps its
    own columns beside the adapter's."""
    adapter = create_model("clip-adapter", device="cpu")
    path = save_checkpoint(tmp_path / "adapter.pt", adapter.model, {"note": "test"})
    config = AnalysisConfig(models=(), weights={"clip": str(path)}, device="cpu", max_frames=2,
                            prompt_sets=(small_prompt_set("basic", "a {} face."),
                                         small_prompt_set("adapter", "someone who looks {}.")))
    df_analysis = analyze_video(media_dir / "single_face.mp4", config)
    df = df_analysis.table
    check_table(df, 2, ["clip_basic", "clip_adapter", "clip-adapter"])
    assert df["face"].all() and df["valence"].isna().all() and df["expr"].isna().all()
    # an untrained (zero-initialised) adapter answers like zero-shot CLIP with its own prompts (the full
    # "basic" set), not like the one-prompt set that happens to be called "adapter"
    raw = torch.as_tensor(df_analysis.clip_embeddings)
    own = adapter.model.clip.zero_shot(raw, "basic").numpy()
    probs = [f"clip-adapter_p_{e}" for e in EXPRESSIONS]
    assert np.allclose(df[probs].to_numpy(), own, atol=1e-4)
    assert not np.allclose(df[probs].to_numpy(), df[[f"clip_adapter_p_{e}" for e in EXPRESSIONS]].to_numpy())
    assert df_analysis.run.models["clip"].source == str(path) and df_analysis.run.main_outputs is None


def calibrated_ddamfn(crops):
    """A random DDAMFN whose BatchNorm statistics are those of `crops`, so that its outputs depend on
    the input (at initialisation the embedding is ~0 for every image)."""
    torch.manual_seed(0)
    model = create_model("ddamfn", device="cpu")
    for m in model.model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None                      # running statistics = this batch's
    model.model.train()
    with torch.no_grad():
        model.model(model.preprocess(crops))
    model.model.eval()
    return model


def test_a_checkpoint_gives_the_outputs_of_its_model_on_the_crops(media_dir, tmp_path):
    frames = [f for b in iter_frames(media_dir / "WolfgangLanger_Pexels.mp4", max_frames=12) for f in b.frames]
    model = calibrated_ddamfn(crop_faces(frames[::2], [[300, 40, 560, 350]] * 6, 112))
    path = save_checkpoint(tmp_path / "ddamfn.pt", model.model, {"au_thresholds": [0.3] * 12})
    df_analysis = analyze_video(media_dir / "WolfgangLanger_Pexels.mp4", AnalysisConfig(
        weights={"ddamfn": str(path)}, device="cpu", max_frames=12, detect_every=1, ddamfn_every=1))
    df = df_analysis.table
    assert df_analysis.run.models["ddamfn"].source == str(path) and df["face"].all()
    assert not df_analysis.run.untrained and df_analysis.run.au_thresholds == (0.3,) * 12
    boxes = df[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()
    with torch.no_grad():
        out = model.model(model.preprocess(crop_faces(frames, boxes, 112)))
    assert out["va"].std(dim=0).min() > 1e-3                 # outputs vary from frame to frame
    assert np.allclose(df[["valence", "arousal"]].to_numpy(), out["va"].numpy(), atol=1e-4)
    assert np.allclose(df[P_AU].to_numpy(), torch.sigmoid(out["au"]).numpy(), atol=1e-4)
    assert (df[list(AUS)].to_numpy(dtype=int) == (torch.sigmoid(out["au"]).numpy() >= 0.3)).all()


@pytest.fixture(scope="module")
def multi_face_video(tmp_path_factory, media_dir, ffmpeg):
    out = tmp_path_factory.mktemp("pipeline") / "multi.mp4"
    ffmpeg("-loop", 1, "-framerate", 10, "-i", media_dir / "multi_face.jpg", "-frames:v", 4,
           "-vf", "crop=880:640:x=n*10:y=0", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", out)
    return out


def test_several_people_follow_the_largest_or_the_chosen_one(ddamfn_models, multi_face_video):
    config = AnalysisConfig(device="cpu", detect_every=1, detect_size=640)
    loaded = ddamfn_models
    auto_analysis = analyze_video(multi_face_video, config, loaded=loaded)
    auto = auto_analysis.table
    tracks = auto_analysis.run.tracks
    assert len(tracks) == 5 and auto_analysis.run.track == 0 and auto["face"].all()
    assert tracks[0].area == max(t.area for t in tracks)
    picked_analysis = analyze_video(multi_face_video, AnalysisConfig(device="cpu", detect_every=1, detect_size=640, track=3),
                           loaded=loaded)
    picked = picked_analysis.table
    assert picked_analysis.run.track == 3 and picked_analysis.run.track_from_user
    centre = (picked["box_x1"] + picked["box_x2"]).mean() / 2
    assert centre == pytest.approx((tracks[3].box[0] + tracks[3].box[2]) / 2, abs=1)
    with pytest.raises(ValueError, match="no face track 9"):
        analyze_video(multi_face_video, AnalysisConfig(device="cpu", detect_every=1, detect_size=640, track=9),
                      loaded=loaded)


def test_portrait_phone_video_is_analysed_upright(ddamfn_models, media_dir, tmp_path, ffmpeg):
    """A phone stores a portrait video sideways with a rotation tag: the face must be where it is in
    the upright picture (the landscape frames padded to portrait, 300 px of black above)."""
    sideways = tmp_path / "sideways.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 4, "-an", "-vf", "pad=640:960:0:300,transpose=clock",
           "-c:v", "libx264", "-preset", "ultrafast", sideways)
    portrait = tmp_path / "portrait.mp4"
    try:
        ffmpeg("-display_rotation", 90, "-i", sideways, "-c", "copy", portrait)
    except subprocess.CalledProcessError:
        ffmpeg("-i", sideways, "-c", "copy", "-metadata:s:v:0", "rotate=90", portrait)
    df_analysis = analyze_video(portrait, AnalysisConfig(device="cpu", detect_every=1), loaded=ddamfn_models)
    df = df_analysis.table
    assert len(df) == 4 and df["face"].all()
    assert df_analysis.run.video.rotation in (90, 270)
    assert (df_analysis.run.video.width, df_analysis.run.video.height) == (640, 960)
    frames = [f for b in iter_frames(media_dir / "single_face.mp4", max_frames=4) for f in b.frames]
    upright = [boxes[0] + [0, 300, 0, 300] for boxes, _ in FaceDetector("cpu").detect(frames)]
    found = df[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()
    assert min(iou(found[i:i + 1], upright[i][None])[0, 0] for i in range(4)) > 0.8


def test_one_frame_video(ddamfn_models, media_dir, tmp_path, ffmpeg):
    one = tmp_path / "one.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 1, one)
    df_analysis = analyze_video(one, AnalysisConfig(device="cpu"), loaded=ddamfn_models)
    df = df_analysis.table
    check_table(df, 1)
    assert df["face"].tolist() == [True]


def test_unreadable_videos_raise_video_error(ddamfn_models, media_dir, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((media_dir / "single_face.mp4").read_bytes()[:50_000])
    with pytest.raises(VideoError):
        analyze_video(cut, AnalysisConfig(device="cpu"), loaded=ddamfn_models)
    text = tmp_path / "notes.mov"
    text.write_text("not a video")
    with pytest.raises(VideoError, match="cannot open"):
        analyze_video(text, AnalysisConfig(device="cpu"), loaded=ddamfn_models)


def test_model_choice():
    assert AnalysisConfig(models=("lstm",)).model_names() == ("ddamfn", "lstm")
    assert AnalysisConfig(models=("ddamfn",), weights={"clip": "x"}).model_names() == ("ddamfn", "clip")
    assert AnalysisConfig(models=("clip-lstm", "ddamfn-lstm")).model_names() == ("ddamfn", "lstm", "clip", "clip-lstm")
    with pytest.raises(ValueError, match="unknown model"):
        AnalysisConfig(models=("resnet",)).model_names()


def test_affwild2_video_from_its_aligned_images(ddamfn_models, affwild2_data):
    from core.affwild2_index import AffWild2Index

    index = AffWild2Index(affwild2_data.root)
    video = "13-30-960x540"                      # the face leaves: later lines have no image
    lines = index.video_frames(video)
    df_analysis = analyze_affwild2(index, video, AnalysisConfig(device="cpu"), loaded=ddamfn_models)
    df = df_analysis.table
    assert list(df.columns) == prediction_columns()
    assert len(df) == len(lines) and df["frame"].tolist() == lines["frame"].tolist()
    assert df["face"].tolist() == lines["image_path"].notna().tolist()
    assert 0 < df["face"].sum() < len(df)
    assert df.loc[df["face"], "valence"].notna().all() and df.loc[~df["face"], "filled"].all()
    assert df[["box_x1", "face_prob"]].isna().all().all()
    run = df_analysis.run
    assert run.source == Source("affwild2", root=str(index.root), video=video, splits=lines.attrs["splits"])
    assert np.allclose(df["time_s"], df["frame"] / run.fps) and run.fps > 0
    assert run.detection is None and run.embedding_note is None and run.strides == {}
    assert RunInfo.from_dict(run.to_dict()).to_dict() == run.to_dict()



def test_tiny_video_has_no_face_and_does_not_fail(ddamfn_models, media_dir, tmp_path, ffmpeg):
    """16x16 frames are smaller than the smallest face MTCNN looks for: every row says no face."""
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-i", media_dir / "single_face.mp4", "-frames:v", 5, "-vf", "scale=16:16", tiny)
    analysis = analyze_video(tiny, AnalysisConfig(device="cpu"), loaded=ddamfn_models)
    check_table(analysis.table, 5)
    assert not analysis.table["face"].any() and analysis.run.no_face and "no face" in analysis.run.notes[0]


def test_partial_tables_fill_in_while_the_analysis_runs(lstm_models, media_dir):
    """The steps carry growing tables with the final columns; the last one matches the result's rows."""
    config = AnalysisConfig(models=("ddamfn", "lstm"), device="cpu", batch_size=16, ddamfn_every=1)
    *steps, analysis = video_steps(media_dir / "single_face.mp4", config, loaded=lstm_models, partial_every_s=0)
    partial = [(s.done, s.total, s.table) for s in steps if s.table is not None]
    done = [d for d, _, _ in partial]
    assert len(done) >= 4 and np.all(np.diff(done) > 0) and done[-1] == 72 and all(t == 72 for _, t, _ in partial)
    for done, _, table in partial:
        check_table(table, done)
        assert table["face"].all()
    assert partial[-1][2]["box_x1"].equals(analysis.table["box_x1"])


def test_clip_scores_a_stride_and_interpolates_the_rest(media_dir):
    config = AnalysisConfig(models=("clip",), device="cpu", max_frames=10, clip_every=4,
                            prompt_sets=(small_prompt_set("basic", "a {} face."),))
    analysis = analyze_video(media_dir / "single_face.mp4", config)
    df = analysis.table
    check_table(df, 10, ["clip_basic"])
    assert df["clip_scored"].tolist() == [f % 4 == 0 for f in range(10)]
    assert analysis.run.strides["clip"] == Stride(every=4, scored_frames=3, face_frames=10) and analysis.run.strided
    assert "clip every 4th frame" in analysis.run.embedding_note
    # embeddings between scored frames lie on the straight line between them
    emb = analysis.clip_embeddings
    assert emb.shape[0] == 10 and np.allclose(emb[2], (emb[0] + emb[4]) / 2, atol=1e-5)
    assert np.allclose(emb[9], emb[8])                      # held after the last scored frame


def test_ddamfn_on_a_stride_marks_the_interpolated_rows(ddamfn_models, media_dir):
    """DDAMFN runs on every frame by default, also on a CPU; a stride the user asks for marks the frames
    between, and the frames it scored match the every-frame run."""
    strided = analyze_video(media_dir / "single_face.mp4", AnalysisConfig(device="cpu", max_frames=9, ddamfn_every=2),
                            loaded=ddamfn_models)
    assert strided.table["ddamfn_scored"].tolist() == [f % 2 == 0 for f in range(9)]
    assert strided.run.strides["ddamfn"].every == 2 and strided.run.strided
    assert strided.run.interpolated == {"frames": 9, "face_frames": 9, "ddamfn_embeddings": 4, "faceless_filled": 0,
                                        "boxes": int(strided.table["box_detected"].eq(False).sum())}
    every = analyze_video(media_dir / "single_face.mp4", AnalysisConfig(device="cpu", max_frames=9),
                          loaded=ddamfn_models)
    assert every.table["ddamfn_scored"].all() and every.run.embedding_note == "every face frame was encoded"
    assert not every.run.strided and every.run.interpolated["ddamfn_embeddings"] == 0
    scored = strided.table["ddamfn_scored"].to_numpy(dtype=bool)
    assert np.allclose(strided.table.loc[scored, "valence"], every.table.loc[scored, "valence"], atol=1e-5)
