"""What a reviewer sees of a video, through the running server with gradio_client: a video opened from the
database shows what the reviewer who analysed it saw (summary, metrics against the effective labels,
downloads, the frame view at the first face); an accepted correction shows where labels are shown (the
timeline's annotation row, "This frame", the metrics' labels, the downloads); agreement rows say what they
compare, and say so when no two reviewers labelled the same frames."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client

from core.affwild2 import write_annotation
from tests.test_webapp_api import N_FRAMES, analyse, start_server, table
from webapp.plots import INTERPOLATED_COLOR

# /open_video's outputs in the order of its answer
OPEN_OUTPUTS = ("key", "queue", "timeline", "corrections", "history", "flags", "frame", "run_info", "metrics",
                "metrics_hint", "crop", "frame_info", "downloads", "weights_info", "player", "player_note", "status")


def open_video(client, key) -> dict:
    """/open_video's outputs by name, after the list of videos that the page's box offers (as on the page)."""
    client.predict(api_name="/list_videos")
    return dict(zip(OPEN_OUTPUTS, client.predict(key, api_name="/open_video"), strict=True))


@pytest.fixture(scope="module")
def annotations(tmp_path_factory) -> list[Path]:
    """VA and EXPR for single_face.mp4: Neutral for frames 0-35, Happiness for 36-71."""
    folder = tmp_path_factory.mktemp("view-annotations")
    t = np.arange(N_FRAMES)
    write_annotation(pd.DataFrame({"valence": np.round(np.sin(t / 12) * 0.6, 3),
                                   "arousal": np.round(np.cos(t / 15) * 0.4, 3)}), folder / "va.txt", "va")
    write_annotation(pd.DataFrame({"expression": pd.array([0] * 36 + [4] * 36, dtype="Int64")}),
                     folder / "expr.txt", "expr")
    return [folder / "va.txt", folder / "expr.txt"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-views"), None)
    yield url
    demo.close()


def downloads(paths) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in paths}


def test_an_opened_analysis_shows_what_the_analysing_reviewer_saw(server, media_dir, annotations):
    alice, bob = (Client(server, auth=(n, f"{n}-pw"), verbose=False) for n in ("alice", "bob"))
    seen = analyse(alice, media_dir / "single_face.mp4", annotations, models=("DDAMFN",))
    opened = open_video(bob, seen["key"])
    assert opened["key"] == seen["key"] and opened["status"] == ""
    # The run summary: the same, and where it came from.
    assert re.fullmatch(re.escape(seen["run_info"]) + r"\n\nOpened from the database: analysed by alice on "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\.", opened["run_info"])
    assert "72 frames, 72 with a face" in opened["run_info"] \
        and "| ddamfn | `random` | **untrained** (random weights, fixed seed) |" in opened["run_info"]
    # The metrics against the same labels, the same files to download, the same queue.
    assert table(opened["metrics"]).equals(table(seen["metrics"]))
    assert table(opened["metrics"])["metric"].tolist() == ["CCC valence", "CCC arousal", "P_VA",
                                                           "P_EXPR (F1, 8 classes)"]
    assert opened["metrics_hint"] == seen["metrics_hint"]
    assert downloads(opened["downloads"]) == downloads(seen["downloads"])
    assert set(downloads(opened["downloads"])) == {"single_face_predictions.csv", "single_face_run.json",
                                                   "single_face_VA_submission.txt", "single_face_EXPR_submission.txt",
                                                   "single_face_AU_submission.txt"}
    assert table(opened["queue"]).equals(table(seen["queue"]))
    # The frame view at the first face (frame 0 here), with its headers and values, not a blank "1 2".
    assert opened["frame"]["value"] == seen["frame"]["value"] == 0 and opened["frame"]["maximum"] == N_FRAMES - 1
    assert Path(opened["crop"]).is_file()
    assert opened["frame_info"]["headers"] == seen["frame_info"]["headers"] == ["what", "value"]
    assert opened["frame_info"]["data"] == seen["frame_info"]["data"]
    assert ["gt_expr", "Neutral"] in opened["frame_info"]["data"]
    # The weights box above the summary goes: the summary has the weights table (once on the tab).
    assert seen["weights_info"] == opened["weights_info"] == ""
    # The timeline shades the frames whose face box was interpolated between detections, as the run's
    # predictions record them (box_detected), one span per stretch read at the detection cadence.
    csv = pd.read_csv(next(p for p in opened["downloads"] if p.endswith("_predictions.csv")))
    interpolated = csv.loc[csv["face"] & ~csv["box_detected"], "frame"].to_numpy()
    assert len(interpolated) > N_FRAMES / 2            # MTCNN on every 4th frame of a still face
    figure = json.loads(opened["timeline"]["plot"])
    spans = [(s["x0"] * 30, s["x1"] * 30) for s in figure["layout"]["shapes"]
             if s.get("fillcolor") == INTERPOLATED_COLOR]
    assert spans and all(any(a < f < b for a, b in spans) for f in interpolated)
    assert all(round(a + 0.5) in interpolated and round(b - 0.5) in interpolated for a, b in spans)


def test_an_accepted_correction_shows_where_labels_are_shown(server, media_dir, annotations):
    alice, bob = (Client(server, auth=(n, f"{n}-pw"), verbose=False) for n in ("alice", "bob"))
    key = analyse(alice, media_dir / "single_face.mp4", annotations, models=("DDAMFN",))["key"]
    before = open_video(bob, key)
    figures, note = bob.predict(api_name="/agreement")
    assert note == "No two reviewers labelled the same frames of this video: there is no reviewer-against-reviewer " \
                   "figure."
    # Alice: frames 40-45 are Anger, not Happiness; Bob accepts.
    _, corrections, *_ = alice.predict(key, "expr", 40, 45, 0.0, 0.0, "Anger", [], "a frown", api_name="/correct")
    assert table(corrections)["id"].tolist() == [1]
    status, *_ = bob.predict(key, 1, "yes", api_name="/accept_correction")
    assert status == "Correction 1 accepted by bob."

    # "This frame" (Bob's open view, asked after the decision): the label now, and where it came from.
    crop, info, _ = bob.predict(42, api_name="/show_frame")
    rows = dict(map(tuple, info["data"]))
    assert rows["gt_expr"] == "Anger"
    assert rows["EXPR label"] == "corrected by correction 1 (proposed by alice, accepted by bob), was Happiness"
    crop, info, _ = bob.predict(39, api_name="/show_frame")
    assert dict(map(tuple, info["data"]))["gt_expr"] == "Happiness" and "EXPR label" not in dict(
        map(tuple, info["data"]))

    # Opened again: the timeline outlines frames 40-45 on the expression annotation row (y -0.5..0.5 of the
    # strip's axis: its bottom line, the annotation), the downloads carry the corrected labels.
    after = open_video(bob, key)
    figure = json.loads(after["timeline"]["plot"])
    marks = [s for s in figure["layout"]["shapes"] if s.get("name", "").startswith("corrected")]
    assert [m["name"] for m in marks] == ["corrected expr 1"]
    assert (marks[0]["yref"], marks[0]["y0"], marks[0]["y1"]) == ("y3", -0.5, 0.5)   # rows: valence, arousal,
    assert figure["layout"]["annotations"][2]["text"] == "expression"                 # expression
    assert marks[0]["x0"] == pytest.approx(39.5 / 30, abs=1e-3) and marks[0]["x1"] == pytest.approx(45.5 / 30,
                                                                                                   abs=1e-3)
    assert marks[0]["label"]["text"] == "correction 1"
    assert "corrected label (outlined)" in {t.get("name") for t in figure["data"]}
    assert not [s for s in json.loads(before["timeline"]["plot"])["layout"]["shapes"]
                if s.get("name", "").startswith("corrected")]
    csv = pd.read_csv(next(p for p in after["downloads"] if p.endswith("_predictions.csv")))
    assert csv["gt_expr"].tolist() == [0] * 36 + [4] * 4 + [1] * 6 + [4] * 26
    # Metrics against the effective labels: the EXPR row's figure is the one over the corrected labels.
    m_before = table(before["metrics"]).set_index("metric")
    m_after = table(after["metrics"]).set_index("metric")
    assert m_after.loc["CCC valence", "value"] == m_before.loc["CCC valence", "value"]
    assert m_after.loc["P_EXPR (F1, 8 classes)", "frames"] == N_FRAMES

    # Agreement: every model row names the output, its model, its weights and the run; a reviewer pair row
    # once Bob labels frames Alice labelled.
    rows = table(bob.predict(api_name="/agreement")[0])
    model = rows[rows["compared"].str.startswith("model vs annotation")]
    assert set(model["compared"]) == {"model vs annotation, before corrections",
                                      "model vs annotation, after corrections"}
    assert set(model["output"]) == {"DDAMFN (untrained)"} and set(model["model"]) == {"DDAMFN"}
    assert set(model["weights"]) == {"random, untrained"} and model["run"].str.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$").all()
    assert sorted(set(model["task"])) == ["EXPR", "VA"]
    expr = model[model["task"] == "EXPR"].set_index("compared")
    assert expr.loc["model vs annotation, before corrections", "frames"] == N_FRAMES
    bob.predict(key, "expr", 43, 47, 0.0, 0.0, "Anger", [], "frown until 47", api_name="/correct")
    rows, note = bob.predict(api_name="/agreement")
    pair = table(rows).set_index("compared").loc["reviewer alice vs reviewer bob"]
    assert (pair["task"], pair["measure"], pair["frames"]) == ("EXPR", "kappa", 3) and note == ""


def test_the_prompt_set_name_box_says_which_characters_it_takes(server):
    """Before anything is refused: each Name box of the prompts tab says the rule its refusal names."""
    config = Client(server, auth=("alice", "alice-pw"), verbose=False).config
    boxes = [c["props"] for c in config["components"] if c["props"].get("elem_id", "").startswith("set-name-")]
    assert [b["info"] for b in boxes] == ["The name uses 1-40 letters, digits or _ (it becomes a column name)."] * 3
