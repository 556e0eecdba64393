"""Label Studio both ways (db.interop): the task JSON and labeling config in Label Studio's documented
form (TimelineLabels results with value.ranges in 1-based frames and value.timelinelabels; a TimeSeries
with inline JSON), a project export read back as annotation sets frame for frame, and one-line refusals
naming the file and line."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from core.labels import AUS, EXPRESSIONS
from core.table import AU_DECISIONS, EXPR, output_expr, prompt_output
from db import repo
from db.__main__ import main
from db.engine import write
from db.interop import InteropError, export_video, import_label_studio
from db.interop.tracks import runs
from interop_data import FACELESS, FRAMES, KEY, make_reviewed_video


@pytest.fixture
def reviewed(sessions, tmp_path):
    return make_reviewed_video(sessions, tmp_path)


MEDIA_URL = "/data/local-files/?d=videos/"          # Label Studio's local storage, as a user configures it


@pytest.fixture
def exported(sessions, reviewed, tmp_path):
    with sessions() as s:
        files, notes = export_video(s, KEY, tmp_path / "out", ("labelstudio",), data_dir=reviewed.data_dir,
                                    media_url=MEDIA_URL)
    assert notes == []
    return files


def timeline(rid: str, control: str, start: int, end: int, label: str, text: str | None = None) -> dict:
    """A TimelineLabels result in Label Studio's form (1-based frames, the end included)."""
    out = {"id": rid, "from_name": control, "to_name": "video", "type": "timelinelabels",
           "value": {"ranges": [{"start": start, "end": end}], "timelinelabels": [label]}}
    return {**out, "meta": {"text": [text]}} if text is not None else out


def labels_of(results: list[dict], control: str) -> list[tuple[str, int, int]]:
    return [(r["value"]["timelinelabels"][0], r["value"]["ranges"][0]["start"], r["value"]["ranges"][0]["end"])
            for r in results if r["from_name"] == control]


def spans(values, label) -> list[tuple[str, int, int]]:
    """(label, start, end) in Label Studio frames of each stretch of equal non-NaN values."""
    return [(label(v), first + 1, last + 1) for first, last, v in runs(np.asarray(values, dtype=float))]


def test_tasks_and_config_follow_label_studios_documented_form(exported, reviewed):
    assert set(exported) == {"labelstudio", "labelstudio_config"}
    tasks = json.loads(exported["labelstudio"].read_text())
    assert len(tasks) == 1 and list(tasks[0]) == ["data", "annotations", "predictions"]
    data = tasks[0]["data"]
    assert data["video"] == "/data/local-files/?d=videos/clip%20one.mp4" and data["affectlens_video"] == KEY
    assert list(data["va"]) == ["time", "valence", "arousal", "DDAMFN (untrained): valence",
                                "DDAMFN (untrained): arousal"]
    assert data["va"]["time"][:3] == [0.0, 0.033367, 0.066733] and len(data["va"]["time"]) == FRAMES
    assert data["va"]["valence"][:4] == [None, None, None, reviewed.va[3, 0]]
    assert data["va"]["DDAMFN (untrained): valence"] == \
        [None if np.isnan(v) else v for v in reviewed.table["valence"].tolist()]

    # One prediction per model, its EXPR and AU together, named as the page names the model.
    predictions = tasks[0]["predictions"]
    assert [p["model_version"] for p in predictions] == ["DDAMFN+LSTM (AU untrained)", "CLIP basic"]
    lstm = predictions[0]["result"]
    model = reviewed.table
    expression = lambda v: EXPRESSIONS[int(v)]                                     # noqa: E731
    assert labels_of(lstm, "expr") == spans(model[EXPR].to_numpy(dtype=float, na_value=np.nan), expression)
    assert labels_of(lstm, "au")[-1] == ("AU unannotated", 61, 66)      # the faceless frames 60-65: no AU output
    assert [r for r in lstm if r["from_name"] == "au"][-1] == timeline(lstm[-1]["id"], "au", 61, 66, "AU unannotated")
    assert labels_of(predictions[1]["result"], "expr") == spans(
        model[output_expr(prompt_output("basic"))].to_numpy(dtype=float, na_value=np.nan), expression)

    # The review team's state: the reviewed annotation (EXPR, AU), accepted corrections and open flags.
    assert len(tasks[0]["annotations"]) == 1 and list(tasks[0]["annotations"][0]) == ["result"]
    reviewed_result = tasks[0]["annotations"][0]["result"]
    assert labels_of(reviewed_result, "expr") == spans(reviewed.expr, expression)
    au12 = [x for x in labels_of(reviewed_result, "au") if x[0] == "AU12"]
    assert au12 == [x for x in spans(reviewed.au[:, AUS.index("AU12")], lambda v: "AU12" if v == 1 else None)
                    if x[0] == "AU12"]
    assert labels_of(reviewed_result, "au")[-1] == ("AU unannotated", 81, 90)
    review = [r for r in reviewed_result if r["from_name"] == "review"]
    assert review == [
        timeline(review[0]["id"], "review", 11, 15, "correction EXPR", "Happiness by alice, accepted by bob: smiling"),
        timeline(review[1]["id"], "review", 21, 31, "flag AU", "occluded by carol: hand"),
        timeline(review[2]["id"], "review", 26, 36, "flag AU", "ambiguous by dave")]
    ids = [r["id"] for r in reviewed_result + [r for p in predictions for r in p["result"]]]
    assert len(ids) == len(set(ids))

    config = ET.parse(exported["labelstudio_config"]).getroot()
    assert config.tag == "View"
    video = config.find("Video")
    assert video.attrib == {"name": "video", "value": "$video", "framerate": "29.97", "sync": "video"}
    controls = {c.get("name"): [label.get("value") for label in c] for c in config.findall("TimelineLabels")}
    assert controls == {"expr": list(EXPRESSIONS), "au": [*AUS, "AU unannotated"],
                        "review": ["correction VA", "correction EXPR", "correction AU", "flag VA", "flag EXPR",
                                   "flag AU"]}
    assert all(c.get("toName") == "video" for c in config.findall("TimelineLabels"))
    series = config.find("TimeSeries")
    assert series.attrib == {"name": "va", "value": "$va", "valueType": "json", "timeColumn": "time", "sync": "video"}
    assert [c.get("column") for c in series] == ["valence", "arousal", "DDAMFN (untrained): valence",
                                                  "DDAMFN (untrained): arousal"]


def as_project_export(exported, tmp_path, result) -> Path:
    """The file Label Studio exports (JSON) after an annotator submitted `result`: the task with its id and
    one annotation with Label Studio's own fields beside the result."""
    task = json.loads(exported["labelstudio"].read_text())[0]
    task.update(id=7, annotations=[{"id": 31, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
                                    "created_at": "2026-12-01T10:00:00.000000Z", "lead_time": 12.5, "task": 7,
                                    "project": 1, "result": result}], drafts=[], predictions=[3, 4],
                file_upload=None, inner_id=1)
    path = tmp_path / "project-1-at-2026-12-01.json"
    path.write_text(json.dumps([task], indent=2))
    return path


def imported(sessions, path, **kwargs) -> dict[str, np.ndarray]:
    sets = write(sessions, lambda s: import_label_studio(s, KEY, path, **kwargs))
    return {s.task: repo.annotation_frame(s).to_numpy(dtype=float, na_value=np.nan) for s in sets}


def test_a_submitted_prediction_comes_back_frame_for_frame_in_one_import(sessions, exported, reviewed, tmp_path):
    """The model's EXPR and AU come back together; its faceless frames come back without AU labels, not
    as every AU off."""
    task = json.loads(exported["labelstudio"].read_text())[0]
    lstm = [{**r, "origin": "prediction"} for r in task["predictions"][0]["result"]]
    got = imported(sessions, as_project_export(exported, tmp_path, lstm))
    assert list(got) == ["expr", "au"]
    model = reviewed.table
    np.testing.assert_array_equal(got["expr"][:, 0], model[EXPR].to_numpy(dtype=float, na_value=np.nan))
    au = model[AU_DECISIONS].to_numpy(dtype=float, na_value=np.nan)
    assert np.isnan(au[FACELESS]).all() and np.isnan(got["au"][FACELESS]).all()
    np.testing.assert_array_equal(got["au"], au)
    clip = [{**r, "origin": "prediction"} for r in task["predictions"][1]["result"]]
    got = imported(sessions, as_project_export(exported, tmp_path, clip))
    assert list(got) == ["expr"]
    np.testing.assert_array_equal(got["expr"][:, 0], model[output_expr(prompt_output("basic"))].to_numpy(
        dtype=float, na_value=np.nan))


def test_the_reviewed_annotation_comes_back_as_it_went(sessions, exported, reviewed, tmp_path):
    """Submitted unchanged, the task's annotation gives back the effective EXPR (with the accepted
    correction) and AU (frames 80-89 unannotated) in one import; the remarks are not read as labels."""
    task = json.loads(exported["labelstudio"].read_text())[0]
    result = [{**r, "origin": "manual"} for r in task["annotations"][0]["result"]]
    got = imported(sessions, as_project_export(exported, tmp_path, result))
    assert list(got) == ["expr", "au"]
    np.testing.assert_array_equal(got["expr"][:, 0], reviewed.expr)
    assert np.isnan(got["au"][80:]).all()
    np.testing.assert_array_equal(got["au"], reviewed.au)


def test_the_media_url_comes_from_the_setting(sessions, reviewed, tmp_path, monkeypatch):
    """Without a media URL the task names the bare file (Label Studio answers 404) and the note says which
    setting fixes it; with AFFECTLENS_MEDIA_URL, the URL is that prefix and the file name."""
    monkeypatch.delenv("AFFECTLENS_MEDIA_URL", raising=False)
    with sessions() as s:
        files, notes = export_video(s, KEY, tmp_path / "bare", ("labelstudio",), data_dir=reviewed.data_dir)
    assert json.loads(files["labelstudio"].read_text())[0]["data"]["video"] == "clip one.mp4"
    assert notes == ["the Label Studio task names the video by its file name 'clip one.mp4': set "
                     "AFFECTLENS_MEDIA_URL (or --media-url) to the URL Label Studio serves it from"]
    monkeypatch.setenv("AFFECTLENS_MEDIA_URL", "https://media.example.org/clips/")
    with sessions() as s:
        files, notes = export_video(s, KEY, tmp_path / "url", ("labelstudio",), data_dir=reviewed.data_dir)
    assert json.loads(files["labelstudio"].read_text())[0]["data"]["video"] == \
        "https://media.example.org/clips/clip%20one.mp4"
    assert notes == []


EXAMPLE = [{
    "id": 12,
    "data": {"video": "/data/upload/1/clip.mp4"},
    "annotations": [{
        "id": 40, "completed_by": 2, "was_cancelled": False,
        "result": [
            {"id": "Xa1", "from_name": "timeline", "to_name": "video", "type": "timelinelabels", "origin": "manual",
             "value": {"ranges": [{"start": 1, "end": 10}], "timelinelabels": ["Surprise"]}},
            {"id": "Xa2", "from_name": "timeline", "to_name": "video", "type": "timelinelabels", "origin": "manual",
             "value": {"ranges": [{"start": 20, "end": 20}, {"start": 31, "end": 45}],
                       "timelinelabels": ["AU25"]}},
            {"id": "Xa3", "from_name": "mood", "to_name": "video", "type": "choices",
             "value": {"choices": ["calm"]}},
        ]}],
    "predictions": [],
}]


def test_an_example_export_written_the_documented_way(sessions, reviewed, tmp_path):
    path = tmp_path / "example.json"
    path.write_text(json.dumps(EXAMPLE, indent=2))
    sets = write(sessions, lambda s: import_label_studio(s, KEY, path, version="team A"))
    got = {s.task: repo.annotation_frame(s).to_numpy(dtype=float, na_value=np.nan) for s in sets}
    expr = np.full(FRAMES, np.nan)
    expr[0:10] = EXPRESSIONS.index("Surprise")
    np.testing.assert_array_equal(got["expr"][:, 0], expr)
    au = np.zeros((FRAMES, len(AUS)))
    au[[19, *range(30, 45)], AUS.index("AU25")] = 1
    np.testing.assert_array_equal(got["au"], au)
    assert {s.version for s in sets} == {"team A"}


def refused(sessions, engine, tmp_path, tasks, message: str, text: str | None = None, **kwargs) -> None:
    path = tmp_path / "export.json"
    path.write_text(text if text is not None else json.dumps(tasks, indent=2))
    before = count(engine, "annotation_sets")
    with pytest.raises(InteropError) as err:
        write(sessions, lambda s: import_label_studio(s, KEY, path, **kwargs))
    assert str(err.value) == message
    assert count(engine, "annotation_sets") == before


def line_of(tasks, needle: str) -> int:
    return next(i for i, line in enumerate(json.dumps(tasks, indent=2).splitlines(), 1) if needle in line)


def test_bad_exports_are_refused_in_one_line_naming_file_and_line(sessions, engine, reviewed, tmp_path):
    tasks = json.loads(json.dumps(EXAMPLE))
    tasks[0]["annotations"][0]["result"][1]["value"]["timelinelabels"] = ["Joy"]
    refused(sessions, engine, tmp_path, tasks, f"export.json line {line_of(tasks, 'Xa2')} (result Xa2): unknown label "
                                               f"'Joy'; known: {', '.join(EXPRESSIONS + AUS)}, AU unannotated")
    tasks = json.loads(json.dumps(EXAMPLE))
    tasks[0]["annotations"][0]["result"][0]["value"]["ranges"] = [{"start": 85, "end": FRAMES + 1}]
    refused(sessions, engine, tmp_path, tasks, f"export.json line {line_of(tasks, 'Xa1')} (result Xa1): frames "
                                               f"85-{FRAMES + 1} leave the video (Label Studio frames 1-{FRAMES})")
    tasks[0]["annotations"][0]["result"][0]["value"]["ranges"] = [{"start": 0.5, "end": 3}]
    refused(sessions, engine, tmp_path, tasks, f"export.json line {line_of(tasks, 'Xa1')} (result Xa1): range "
                                               "{'start': 0.5, 'end': 3} is not whole frames start <= end")
    refused(sessions, engine, tmp_path, None, "export.json line 3: not JSON (Expecting ',' delimiter)",
            text='[\n {"id": 1,\n  "data": {} "x": 1}\n]')
    tasks = json.loads(json.dumps(EXAMPLE))
    tasks[0]["annotations"].append({**tasks[0]["annotations"][0], "id": 41})
    refused(sessions, engine, tmp_path, tasks, "export.json: task 12 has 2 submitted annotations (40, 41): choose one "
                                               "by its id")
    sets = write(sessions, lambda s: import_label_studio(s, KEY, tmp_path / "export.json", annotation_id=41))
    assert [s.task for s in sets] == ["expr", "au"]
    refused(sessions, engine, tmp_path, tasks * 2, f"export.json: 2 tasks, 0 of them for video '{KEY}': export one "
                                                   "task (data.affectlens_video names the video)")


def test_overlapping_expressions_are_refused(sessions, engine, reviewed, tmp_path):
    tasks = json.loads(json.dumps(EXAMPLE))
    result = tasks[0]["annotations"][0]["result"]
    result.append({**result[0], "id": "Xa4",
                   "value": {"ranges": [{"start": 8, "end": 12}], "timelinelabels": ["Anger"]}})
    refused(sessions, engine, tmp_path, tasks, f"export.json line {line_of(tasks, 'Xa4')} (result Xa4): frame 8 is "
                                               "labelled both Surprise and Anger")


def test_the_command_line_exports_and_imports(db_url, sessions, reviewed, exported, tmp_path, capsys):
    """Files are named after the video, never its key; a second video of the same name is numbered."""
    with sessions.begin() as s:
        repo.register_video(s, "sha256:" + "cd" * 32, 40, 25.0, name="clip one.mp4")
    out = tmp_path / "cli"
    assert main(["--url", db_url, "export", str(out), "--format", "labelstudio", "--data-dir",
                 str(reviewed.data_dir), "--media-url", "https://media.example.org/"]) == 0
    printed = capsys.readouterr()
    assert sorted(p.rsplit("/", 1)[1] for p in printed.out.split()) == [
        "clip_one-2_labelstudio.json", "clip_one-2_labelstudio_config.xml", "clip_one_labelstudio.json",
        "clip_one_labelstudio_config.xml"]
    assert printed.err == ""
    keys = {json.loads((out / name).read_text())[0]["data"]["affectlens_video"]
            for name in ("clip_one_labelstudio.json", "clip_one-2_labelstudio.json")}
    assert keys == {KEY, "sha256:" + "cd" * 32}
    assert json.loads((out / "clip_one_labelstudio.json").read_text())[0]["data"]["video"] == \
        "https://media.example.org/clip%20one.mp4"
    task = json.loads(exported["labelstudio"].read_text())[0]
    path = as_project_export(exported, tmp_path, task["annotations"][0]["result"])
    assert main(["--url", db_url, "import", KEY, str(path), "--annotation", "31"]) == 0
    assert [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()] == [
        f"expr of {KEY}, {FRAMES} frames", f"au of {KEY}, {FRAMES} frames"]
