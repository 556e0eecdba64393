"""The web app's pure parts: configuration, plots from a predictions table, the review queue ranking."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core.labels import AUS, EXPRESSIONS
from core.review import ReviewSettings, suspicious_segments
from tests.runs import run_info
from webapp.config import AppConfig
from webapp.plots import confusion_figure, confusion_matrix, prompt_probabilities_figure, timeline_figure


def predictions_table(n: int = 90, fps: float = 30.0, with_gt: bool = True) -> pd.DataFrame:
    """A table with the contract's columns; frames 40-49 have no face."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"frame": np.arange(n), "time_s": np.arange(n) / fps})
    df["face"] = True
    df.loc[40:49, "face"] = False
    df["filled"] = ~df["face"]
    df["valence"] = np.sin(np.arange(n) / 10) * 0.5
    df["arousal"] = np.cos(np.arange(n) / 10) * 0.3
    probs = rng.dirichlet(np.ones(8), size=n)
    for k, name in enumerate(EXPRESSIONS):
        df[f"p_{name}"] = probs[:, k]
    df["expr"] = pd.array(probs.argmax(1), dtype="Int64")
    df["expr_name"] = [EXPRESSIONS[k] for k in probs.argmax(1)]
    au_p = rng.random((n, 12))
    for k, au in enumerate(AUS):
        df[f"p_{au}"] = au_p[:, k]
        df[au] = pd.array((au_p[:, k] > 0.5).astype(int), dtype="Int64")
    for k, name in enumerate(EXPRESSIONS):
        df[f"clip_default_p_{name}"] = probs[::-1, k]
    df["clip_default_expr"] = pd.array(probs[::-1].argmax(1), dtype="Int64")
    if with_gt:
        df["gt_valence"] = df["valence"] + 0.1
        df["gt_arousal"] = df["arousal"] - 0.1
        df.loc[0:4, ["gt_valence", "gt_arousal"]] = np.nan
        df["gt_expr"] = pd.array([4] * n, dtype="Int64")
        df.loc[0:2, "gt_expr"] = pd.NA
        for au in AUS:
            df[f"gt_{au}"] = pd.array(rng.integers(0, 2, n), dtype="Int64")
    return df


def test_config_from_env_parses_users_ports_and_paths(tmp_path):
    cfg = AppConfig.from_env({
        "AFFECTLENS_USERS": "alice:pw1, bob:pw2", "PORT": "8123", "AFFECTLENS_AFFWILD2_ROOT": str(tmp_path),
        "AFFECTLENS_MAX_DURATION_S": "12.5", "AFFECTLENS_CLIP_MODEL": "ViT-S-32",
        "AFFECTLENS_CACHE_DIR": str(tmp_path / "cache"),
    })
    assert cfg.users == (("alice", "pw1"), ("bob", "pw2"))
    assert cfg.port == 8123 and cfg.host == "127.0.0.1"
    assert cfg.affwild2_root == tmp_path and cfg.cache_dir == tmp_path / "cache"
    assert cfg.max_duration_s == 12.5 and cfg.clip_model == "ViT-S-32"
    assert not cfg.oauth
    assert AppConfig.from_env({"GRADIO_SERVER_PORT": "7999"}).port == 7999
    assert AppConfig.from_env({"SPACE_ID": "me/app", "OAUTH_CLIENT_ID": "x"}).oauth
    with pytest.raises(ValueError, match="user:password"):
        AppConfig.from_env({"AFFECTLENS_USERS": "alice"})


def test_timeline_has_one_time_axis_and_every_track():
    df = predictions_table()
    fig = timeline_figure(df, title="clip")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["valence", "arousal", "expression", "AU probability", "AU annotation", "AU disagreement"]
    # Every row shares the bottom x axis.
    assert all(fig.layout[f"xaxis{i}"].matches == "x6" for i in range(1, 6))
    va = [tr for tr in fig.data if isinstance(tr, go.Scatter) and tr.name and tr.name.startswith("valence")]
    assert [tr.name for tr in va] == ["valence prediction", "valence annotation"]
    assert np.isnan(va[1].y[:5]).all() and np.allclose(va[0].y, df["valence"])
    strip = next(tr for tr in fig.data if tr.name == "expression")
    assert list(strip.y) == ["annotation", "CLIP default", "model"]  # model drawn on top
    assert np.isnan(strip.z[0][:3]).all() and strip.z[0][3] == 4
    disagreement = next(tr for tr in fig.data if tr.name == "AU disagreement")
    expected = np.abs(df["AU1"].astype(float) - df["gt_AU1"].astype(float))
    assert np.allclose(np.asarray(disagreement.z[0], dtype=float), expected)
    # The faceless run 40-49 is shaded across all six rows (one shape over the whole plot height).
    shaded = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(shaded) == 1 and (shaded[0].yref, shaded[0].y0, shaded[0].y1) == ("paper", 0, 1)
    assert shaded[0].x0 < df.time_s[40] < df.time_s[49] < shaded[0].x1


def test_timeline_without_ground_truth_or_au_has_fewer_rows():
    df = predictions_table(with_gt=False).drop(columns=[f"p_{a}" for a in AUS])
    fig = timeline_figure(df)
    assert [a.text for a in fig.layout.annotations] == ["valence", "arousal", "expression"]
    with pytest.raises(ValueError, match="no prediction"):
        timeline_figure(df[["frame", "time_s"]])


def test_confusion_matrix_counts_valid_frames_only():
    pred = pd.array([0, 4, 4, 1, pd.NA], dtype="Int64")
    gt = pd.array([0, 4, 5, -1, 2], dtype="Int64")
    counts = confusion_matrix(pred, gt)
    assert counts.sum() == 3 and counts[0, 0] == 1 and counts[4, 4] == 1 and counts[5, 4] == 1
    fig = confusion_figure(pred, gt, "set A")
    assert fig.layout.title.text == "set A" and np.array_equal(np.asarray(fig.data[0].z), counts)
    nothing = confusion_matrix(pd.array([1, pd.NA], dtype="Int64"), pd.array([-1, 2], dtype="Int64"))
    assert nothing.shape == (8, 8) and nothing.sum() == 0                     # no valid frame: zeros


def test_prompt_probabilities_one_row_per_set():
    df = predictions_table()
    for k, name in enumerate(EXPRESSIONS):
        df[f"clip_other_p_{name}"] = df[f"clip_default_p_{name}"]
    fig = prompt_probabilities_figure(df, ["default", "other"])
    assert len(fig.data) == 16 and [a.text for a in fig.layout.annotations] == [
        "prompt set default", "prompt set other"]


def review_table(n: int = 600, fps: float = 30.0) -> pd.DataFrame:
    t = np.arange(n)
    df = pd.DataFrame({"frame": t, "time_s": t / fps, "face": True})
    gv, ga = np.sin(t / 50) * 0.5, np.cos(t / 60) * 0.3
    gv[100] += 0.9                     # a one-frame spike: a jump up and back down
    gv[300:], ga[300:] = 0.1, 0.2      # held constant for 300 frames (10 s)
    df["gt_valence"], df["gt_arousal"] = gv, ga
    df.loc[150:160, ["gt_valence", "gt_arousal"]] = np.nan   # unannotated, face visible
    df.loc[170:175, "face"] = False
    df.loc[170:175, ["gt_valence", "gt_arousal"]] = np.nan   # unannotated, no face: expected
    df["valence"], df["arousal"] = gv, ga
    df.loc[50:70, "valence"] = -0.9    # the model disagrees for 21 frames
    ge = np.zeros(n, int)
    ge[80] = 4                         # a one-frame flicker
    df["gt_expr"] = pd.array(ge, dtype="Int64")
    pe = ge.copy()
    pe[10:30] = 6
    df["expr"] = pd.array(pe, dtype="Int64")
    return df


def test_review_queue_finds_each_kind_and_ranks_by_score():
    queue = suspicious_segments(review_table(), fps=30.0, settings=ReviewSettings(constant_s=5.0))
    found = {(r.task, r.kind): (r.start_frame, r.end_frame) for r in queue.itertuples()}
    assert found[("expr", "label")] == (10, 29)            # the annotation audit's scorer (core/audit.py)
    assert found[("va", "offset")] == (50, 70)
    assert found[("va", "gap")] == (150, 160)
    assert found[("expr", "flicker")] == (75, 85)
    assert found[("va", "constant")] == (300, 599)
    jump = queue[(queue.task == "va") & (queue.kind == "jump")]
    spike = jump[(jump.start_frame <= 100) & (jump.end_frame >= 100)]
    assert len(spike) == 1, "the spike's two jumps are one segment"
    assert not ((queue.kind == "gap") & (queue.start_frame == 170)).any(), "faceless gap is expected"
    assert list(queue.score) == sorted(queue.score, reverse=True)
    assert queue.score.between(0, 1).all()


def test_review_queue_without_annotation_is_empty():
    df = review_table().drop(columns=["gt_valence", "gt_arousal", "gt_expr"])
    assert suspicious_segments(df, fps=30.0).empty


def write_gt_files(folder, n):
    from core.affwild2 import write_annotation
    t = np.arange(n)
    va = pd.DataFrame({"valence": np.sin(t / 10) * 0.5, "arousal": np.cos(t / 10) * 0.3})
    va.loc[0:2] = np.nan
    expr = pd.DataFrame({"expression": pd.array([4] * n, dtype="Int64")})
    au = pd.DataFrame({au: pd.array(t % 2, dtype="Int64") for au in AUS})
    paths = {"va": folder / "v.txt", "expr": folder / "e.txt", "au": folder / "a.txt"}
    for task, table in (("va", va), ("expr", expr), ("au", au)):
        write_annotation(table, paths[task], task)
    return paths


def test_ground_truth_join_metrics_and_length_check(tmp_path):
    from core.affwild2 import AnnotationError
    from core.table import attach_ground_truth, ground_truth_from_files
    from webapp.results import metrics_table, prompt_f1_table

    n = 90
    paths = write_gt_files(tmp_path, n)
    gt, notes = ground_truth_from_files(paths, n)
    assert notes == [] and len(gt) == n and gt["gt_valence"].isna().sum() == 3
    df = attach_ground_truth(predictions_table(with_gt=False), gt)
    run = run_info({"va": "lstm", "expr": "lstm", "au": "lstm", "clip_default": "clip"}, {"lstm": False, "clip": True})
    table = metrics_table(df, run).set_index(["output", "metric"])
    expected = (np.sin(np.arange(3, n) / 10) * 0.5)
    assert expected.size == table.loc[("DDAMFN+LSTM", "CCC valence"), "frames"]
    assert table.loc[("DDAMFN+LSTM", "CCC valence"), "value"] == pytest.approx(1.0)  # same curve
    assert ("CLIP default (untrained)", "P_EXPR (F1, 8 classes)") in table.index
    assert 0 <= table.loc[("DDAMFN+LSTM", "P_AU (F1 at 0.5)"), "value"] <= 1
    assert (table["missing"] == 0).all()
    # Frames without a prediction (CLIP on faceless frames, an AU left empty) are counted, not hidden.
    df.loc[40:49, "clip_default_expr"] = pd.NA
    df.loc[0:9, ["p_AU12", "AU12"]] = np.nan
    table = metrics_table(df, run).set_index(["output", "metric"])
    assert table.loc[("CLIP default (untrained)", "P_EXPR (F1, 8 classes)"), "missing"] == 10
    assert table.loc[("DDAMFN+LSTM", "P_AU (F1 at 0.5)"), "missing"] == 10
    assert table.loc[("DDAMFN+LSTM", "P_EXPR (F1, 8 classes)"), "missing"] == 0
    f1 = prompt_f1_table(df, ["default"]).set_index("prompt set")
    assert f1.loc["default", "missing"] == 10
    assert f1.loc["default", "P_EXPR (F1, 8 classes)"] == table.loc[("CLIP default (untrained)", "P_EXPR (F1, 8 classes)"), "value"]
    assert prompt_f1_table(df.drop(columns="gt_expr"), ["default"])["missing"].isna().all()

    _, notes = ground_truth_from_files(paths, n + 2)
    assert len(notes) == 3 and "90 annotated frames for 92 video frames" in notes[0]
    assert "the last 2 frame(s) are left unannotated" in notes[0]
    _, notes = ground_truth_from_files(paths, n - 1)          # one line too many: said as such
    assert "its last 1 line(s) are left out" in notes[0] and "unannotated" not in notes[0]
    with pytest.raises(AnnotationError, match="more than 74 annotated frames, but the video has 72"):
        ground_truth_from_files(paths, 72)


def test_downloads_csv_and_run_json_say_untrained_and_abaw_submissions_hold_the_predictions(tmp_path):
    """The CSV (a column) and the run JSON say `untrained`; ABAW submission files have a fixed format with
    no room for it, so they are checked to hold the table's predictions, row for row."""
    import json

    from core.affwild2 import read_submission
    from core.analysis import Analysis
    from webapp.results import write_downloads

    df = predictions_table(with_gt=False)
    run = run_info({"va": "lstm", "expr": "lstm", "au": "lstm", "clip_default": "clip"}, {"lstm": False, "clip": True},
                   len(df))
    paths = write_downloads(Analysis(df, run), "clip-1", tmp_path)
    assert [p.name for p in paths] == ["clip-1_predictions.csv", "clip-1_run.json", "clip-1_VA_submission.txt",
                                       "clip-1_EXPR_submission.txt", "clip-1_AU_submission.txt"]
    csv = pd.read_csv(paths[0])
    # one column per output: the trained LSTM's outputs are not marked untrained beside the random CLIP
    flags = {c: csv[c].unique().tolist() for c in csv if c.startswith("untrained")}
    assert len(csv) == len(df) and flags == {"untrained_va": [False], "untrained_expr": [False],
                                             "untrained_au": [False], "untrained_clip_default": [True]}
    assert json.loads(paths[1].read_text())["untrained"] is True
    va, expr, au = (read_submission(path, task) for path, task in zip(paths[2:], ("va", "expr", "au")))
    for submission in (va, expr, au):
        assert submission["image_location"].tolist() == [f"clip-1/{i + 1:05d}.jpg" for i in range(len(df))]
    assert np.allclose(va[["valence", "arousal"]].to_numpy(), df[["valence", "arousal"]].to_numpy(), atol=1e-3)
    assert (expr["expression"].to_numpy() == df["expr"].to_numpy()).all()
    assert (au[list(AUS)].to_numpy() == df[list(AUS)].to_numpy()).all()


def test_prompt_text_round_trip_and_messages():
    from core.models.clip import DEFAULT_PROMPT_SETS
    from webapp.inputs import InputError, format_prompt_text, parse_prompt_text

    ps = DEFAULT_PROMPT_SETS["basic"]
    templates, classes = format_prompt_text(list(ps.templates), {c: list(v) for c, v in ps.classes.items()})
    name, t, c = parse_prompt_text("basic", templates, classes)
    assert (name, tuple(t), {k: tuple(v) for k, v in c.items()}) == ("basic", ps.templates, ps.classes)
    for args, message in [(("bad name", templates, classes), "letters, digits or _"),
                          (("x", "a photo", classes), "exactly one {}"),
                          (("x", templates, classes.replace("Fear: fearful | scared\n", "")), "no phrase for Fear"),
                          (("x", templates, classes + "\nJoy: joyful"), "'Joy: joyful' should read")]:
        with pytest.raises(InputError, match=message):
            parse_prompt_text(*args)


def test_annotation_files_are_recognised_by_their_header(tmp_path):
    from webapp.inputs import InputError, annotation_files, annotation_task

    paths = write_gt_files(tmp_path, 10)
    assert {annotation_task(p) for p in paths.values()} == {"va", "expr", "au"}
    assert annotation_files([str(p) for p in paths.values()]) == {t: str(p) for t, p in paths.items()}
    with pytest.raises(InputError, match="Two VA annotation files"):
        annotation_files([str(paths["va"]), str(paths["va"])])
    other = tmp_path / "other.txt"
    other.write_text("frame,label\n1,2\n")
    with pytest.raises(InputError, match="other.txt is not an Aff-Wild2 annotation file"):
        annotation_task(other)


def test_video_checks_name_the_limit(media_dir, tmp_path):
    from webapp.inputs import InputError, check_video

    clip = media_dir / "single_face.mp4"
    assert check_video(clip, max_mb=1, max_duration_s=3).fps == pytest.approx(30)
    with pytest.raises(InputError, match="single_face.mp4 is 0.2 MB; this app accepts videos up to 0.1 MB"):
        check_video(clip, max_mb=0.1, max_duration_s=3)
    with pytest.raises(InputError, match="single_face.mp4 lasts 2 s; this app accepts videos up to 1 s"):
        check_video(clip, max_mb=1, max_duration_s=1)
    with pytest.raises(InputError, match="multi_face.jpg is not a video file"):
        check_video(media_dir / "multi_face.jpg", max_mb=1, max_duration_s=3)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4 cannot be read as a video: empty file"):
        check_video(empty, max_mb=1, max_duration_s=3)


def test_timeline_styles_legend_shading_colour_bars_and_cursor():
    df = predictions_table()
    df["box_detected"] = pd.array([True] * len(df), dtype="boolean")
    df.loc[60:64, "box_detected"] = False                   # boxes interpolated between detected frames
    fig = timeline_figure(df, frame=30)
    lines = {tr.name: tr.line for tr in fig.data if isinstance(tr, go.Scatter) and tr.mode == "lines"}
    assert set(lines) == {"valence prediction", "valence annotation", "arousal prediction", "arousal annotation"}
    assert len({ln.color for ln in lines.values()}) == 4
    assert {ln.dash for n, ln in lines.items() if "annotation" in n} == {"dash"}
    legend = [tr.name for tr in fig.data if tr.showlegend is not False and tr.name and
              (isinstance(tr, go.Scatter))]
    assert len(legend) == len(set(legend)) and {"no face (shaded)", "box interpolated (shaded)"} <= set(legend)
    # Both shaded spans across all six rows: no face above the heatmaps, interpolated boxes behind the lines.
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [s.layer for s in rects] == ["above", "below"] and {s.yref for s in rects} == {"paper"}
    # A colour bar beside each AU row, at that row's height.
    heatmaps = [tr for tr in fig.data if isinstance(tr, go.Heatmap) and tr.name.startswith("AU")]
    assert len(heatmaps) == 3 and all(tr.showscale for tr in heatmaps)
    assert list(heatmaps[1].colorbar.ticktext) == ["absent", "present"]
    # The cursor at frame 30, the frame rate for the page's script, hover in seconds with the frame.
    cursor = next(s for s in fig.layout.shapes if s.name == "cursor")
    assert cursor.x0 == cursor.x1 == pytest.approx(1.0) and cursor.yref == "paper"
    assert fig.layout.meta["fps"] == pytest.approx(30.0)
    assert fig.layout.xaxis.hoverformat == ".2f" and "frame %{customdata}" in fig.data[0].hovertemplate
    default = next(s for s in timeline_figure(df).layout.shapes if s.name == "cursor")
    assert default.x0 == 0.0                                  # the first frame with a face


def test_metrics_are_rounded_and_clip_probabilities_per_frame():
    from webapp.results import clip_frame_table, frame_summary, metrics_table, rounded

    assert rounded(-1.1246821218458471e-08) == 0.0 and str(rounded(-1.1246821218458471e-08)) == "0.0"
    assert rounded(0.123456) == 0.123 and rounded(float("nan")) is None
    df = predictions_table()
    table = metrics_table(df)
    assert len(table) == len(table[["output", "metric"]].drop_duplicates())
    assert all(v == round(v, 3) for v in table["value"])
    clip = clip_frame_table(df, 5, {"default": {e: [e.lower()] for e in EXPRESSIONS}})
    assert len(clip) == 8 and clip["p"].is_monotonic_decreasing
    assert clip["p"].sum() == pytest.approx(1.0, abs=0.01) and clip["prompts"].iloc[0] == clip["expression"].iloc[0].lower()
    assert clip.iloc[0]["p"] == round(float(df.loc[5, f"clip_default_p_{clip.iloc[0]['expression']}"]), 3)
    df["box_detected"] = pd.array([True, False] * 45, dtype="boolean")
    summary = dict(frame_summary(df, 3).itertuples(index=False))
    assert summary["frame"] == "3" and summary["face box"].startswith("interpolated")
    assert "face box" not in dict(frame_summary(df, 41).itertuples(index=False))        # no face
    df["filled"] = ~df["face"].astype(bool)           # a faceless frame says how the run filled it
    lstm = "LSTM output over the face mask (filled=True)"
    assert dict(frame_summary(df, 41, lstm).itertuples(index=False))["note"] == f"no face: prediction {lstm}"


def test_attention_overlay_and_face_box_drawing():
    import torch

    from core.attention import face_attention, is_flat, overlay
    from core.models.ddamfn import DDAMFN
    from webapp.frames import BOX_COLORS, draw_box

    torch.manual_seed(0)
    model = DDAMFN().eval()
    crop = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)
    amap = face_attention(model, crop)
    out = model(model.preprocess(crop))
    fused = torch.max(out["attention"][:, 0], out["attention"][:, 1]).mean(dim=1)[0]
    assert amap.shape == (7, 7) and np.allclose(amap, fused.detach().numpy(), atol=1e-6)
    assert is_flat(amap)                                       # random weights: one value everywhere
    tinted = overlay(crop, amap)
    assert tinted.shape == crop.shape and tinted[..., 2].mean() > crop[..., 2].mean() + 40     # blue (low)
    ramp = np.tile(np.linspace(0, 1, 7, dtype=np.float32), (7, 1))
    grey = np.full((112, 112, 3), 128, np.uint8)
    drawn = overlay(grey, ramp)
    assert drawn[56, 2, 2] > drawn[56, 2, 0] and drawn[56, 109, 0] > drawn[56, 109, 2]          # blue to red
    frame = np.zeros((720, 1280, 3), np.uint8)
    small = draw_box(frame, [400, 100, 800, 600], "interpolated")
    assert small.shape == (360, 640, 3)
    assert (small[50:300, 199] == BOX_COLORS["interpolated"]).all(axis=1).sum() > 100          # left edge


def test_effective_labels_are_read_once_per_video_until_its_next_audit_event(tmp_path):
    """webapp.labels.Labels: the gt_ columns every tab shows come from the database; read once and kept
    while nothing happened to the video, read again after an accepted correction (an audit event)."""
    from core.affwild2 import read_annotation, write_annotation
    from db import repo
    from webapp.context import Context
    from webapp.labels import Labels

    n = 20
    write_annotation(pd.DataFrame({"valence": [0.1] * n, "arousal": [0.2] * n}), tmp_path / "va.txt", "va")
    ctx = Context(AppConfig(db_url=f"sqlite:///{tmp_path / 'labels.db'}", data_dir=tmp_path))

    def setup(s):
        for name in ("alice", "bob"):
            repo.get_or_create_reviewer(s, name)
        video = repo.register_video(s, "video-1", n, 30.0)
        repo.import_annotations(s, video, "va", tmp_path / "va.txt", labels=read_annotation(tmp_path / "va.txt", "va"))
    ctx.write(setup)
    labels = Labels(ctx)
    table = pd.DataFrame({"frame": range(n), "gt_expr": [0] * n})        # a stale gt_ column goes
    first = labels.labelled("video-1", table)
    assert list(first.columns) == ["frame", "gt_valence", "gt_arousal"] and (first["gt_valence"] == 0.1).all()
    assert labels.truth("video-1", n) is labels.truth("video-1", n)      # kept: nothing happened since

    ctx.write(lambda s: repo.add_correction(s, "video-1", "va", 5, 9, {"valence": 0.6, "arousal": 0.3}, "alice"))
    proposed = labels.truth("video-1", n)
    assert (proposed["gt_valence"] == 0.1).all()                      # read again, nothing accepted yet
    ctx.write(lambda s: repo.decide_correction(s, 1, video="video-1", reviewer="bob", accept=True))
    after = labels.labelled("video-1", table)
    assert after["gt_valence"].tolist() == [0.1] * 5 + [0.6] * 5 + [0.1] * 10


def test_models_load_once_per_key_and_the_attention_map_uses_the_analysis_model(tmp_path):
    """webapp.context: a configuration's models are loaded once whatever its prompt sets (CLIP embeds a
    new set's prompts itself), and the attention map gets the very DDAMFN the analysis ran on the CPU,
    not a model set rebuilt for it."""
    import dataclasses

    from core.analysis import AnalysisConfig
    from core.models.clip import DEFAULT_PROMPT_SETS
    from tests.runs import run_info
    from webapp.context import Context

    ctx = Context(AppConfig(db_url=f"sqlite:///{tmp_path / 'models.db'}", clip_model="ViT-S-32", device="cpu"))
    first, second = list(DEFAULT_PROMPT_SETS.values())[:2]
    config = AnalysisConfig(models=("ddamfn", "clip"), prompt_sets=(first,), clip_model="ViT-S-32", device="cpu")
    loaded = ctx.loaded_models(config)
    assert ctx.loaded_models(dataclasses.replace(config, prompt_sets=(second,))) is loaded
    run = run_info({"va": "ddamfn"}, {"ddamfn": True})
    assert ctx.analysis_model(run, "ddamfn") is loaded.models["ddamfn"]
    assert ctx.analysis_model(run, "lstm") is None                     # not part of this analysis
