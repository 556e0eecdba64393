"""Label Studio both ways (db.interop): the task JSON and labeling config in Label Studio's documented
form (TimelineLabels results with value.ranges in 1-based frames and value.timelinelabels; a TimeSeries
with inline JSON), a project export read back as annotation sets frame for frame, and one-line refusals
naming the file and line."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from core.labels import AUS, EXPRESSIONS
from core.table import AU_DECISIONS, EXPR, output_expr
from db import repo
from db.__main__ import main
from db.engine import write
from db.interop import InteropError, export_video, import_label_studio
from interop_data import FRAMES, KEY, make_reviewed_video


@pytest.fixture
def reviewed(sessions, tmp_path):
    return make_reviewed_video(sessions, tmp_path)


@pytest.fixture
def exported(sessions, reviewed, tmp_path):
    with sessions() as s:
        files, notes = export_video(s, KEY, tmp_path / "out", ("labelstudio",), data_dir=reviewed.data_dir,
                                    video_url="/data/local-files/?d=videos/clip%20one.mp4")
    assert notes == []
    return files


def test_tasks_and_config_follow_label_studios_documented_form(exported, reviewed):
    assert set(exported) == {"labelstudio", "labelstudio_config"}
    tasks = json.loads(exported["labelstudio"].read_text())
    assert len(tasks) == 1 and set(tasks[0]) == {"data", "predictions"}
    data = tasks[0]["data"]
    assert data["video"] == "/data/local-files/?d=videos/clip%20one.mp4" and data["affectlens_video"] == KEY
    assert set(data["va"]) == {"time", "ddamfn (untrained): valence", "ddamfn (untrained): arousal"}
    assert data["va"]["time"][:3] == [0.0, 0.033367, 0.066733] and len(data["va"]["time"]) == FRAMES
    assert data["va"]["ddamfn (untrained): valence"] == reviewed.table["valence"].tolist()
    assert [p["model_version"] for p in tasks[0]["predictions"]] == ["lstm", "lstm (untrained)", "clip basic"]
    lstm = tasks[0]["predictions"][0]["result"]
    assert lstm[0] == {"id": "r1", "from_name": "expr", "to_name": "video", "type": "timelinelabels",
                       "value": {"ranges": [{"start": 1, "end": 15}], "timelinelabels": ["Neutral"]}}
    assert {r["from_name"] for r in lstm} == {"expr"}
    assert {r["from_name"] for r in tasks[0]["predictions"][1]["result"]} == {"au"}
    assert len({r["id"] for p in tasks[0]["predictions"] for r in p["result"]}) == \
        sum(len(p["result"]) for p in tasks[0]["predictions"])

    config = ET.parse(exported["labelstudio_config"]).getroot()
    assert config.tag == "View"
    video = config.find("Video")
    assert video.attrib == {"name": "video", "value": "$video", "framerate": "29.97", "sync": "video"}
    controls = {c.get("name"): [label.get("value") for label in c] for c in config.findall("TimelineLabels")}
    assert controls == {"expr": list(EXPRESSIONS), "au": list(AUS)}
    assert all(c.get("toName") == "video" for c in config.findall("TimelineLabels"))
    series = config.find("TimeSeries")
    assert series.attrib == {"name": "va", "value": "$va", "valueType": "json", "timeColumn": "time", "sync": "video"}
    assert [c.get("column") for c in series] == ["ddamfn (untrained): valence", "ddamfn (untrained): arousal"]


def as_project_export(exported, tmp_path, predictions=(0, 1)):
    """The file Label Studio exports after an annotator submitted predictions unchanged (their results
    become the annotation's, with the annotation's own fields beside them)."""
    task = json.loads(exported["labelstudio"].read_text())[0]
    task.update(id=7, annotations=[{"id": 31, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
                                    "created_at": "2026-12-01T10:00:00.000000Z", "lead_time": 12.5,
                                    "result": [{**r, "origin": "prediction"} for i in predictions
                                               for r in task["predictions"][i]["result"]]}])
    path = tmp_path / "project-1-at-2026-12-01.json"
    path.write_text(json.dumps([task], indent=2))
    return path


def test_submitted_predictions_come_back_frame_for_frame(sessions, exported, reviewed, tmp_path):
    sets = write(sessions, lambda s: import_label_studio(s, KEY, as_project_export(exported, tmp_path)))
    assert [s.task for s in sets] == ["expr", "au"]
    got = {s.task: repo.annotation_frame(s).to_numpy(dtype=float, na_value=np.nan) for s in sets}
    np.testing.assert_array_equal(got["expr"][:, 0], reviewed.table[EXPR].to_numpy(dtype=float))
    np.testing.assert_array_equal(got["au"], reviewed.table[AU_DECISIONS].to_numpy(dtype=float))
    clip = write(sessions, lambda s: import_label_studio(s, KEY, as_project_export(exported, tmp_path, (2,))))
    assert [s.task for s in clip] == ["expr"]
    np.testing.assert_array_equal(repo.annotation_frame(clip[0])["expression"].to_numpy(dtype=float),
                                  reviewed.table[output_expr("clip_basic")].to_numpy(dtype=float))


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
                                               f"'Joy'; known: {', '.join(EXPRESSIONS + AUS)}")
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


def test_the_command_line_exports_and_imports(db_url, reviewed, exported, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--url", db_url, "export", str(out), "--format", "labelstudio", "--video", KEY,
                 "--data-dir", str(reviewed.data_dir)]) == 0
    assert [p.rsplit("/", 1)[1] for p in capsys.readouterr().out.split()] == [
        "clip_one-abababab_labelstudio.json", "clip_one-abababab_labelstudio_config.xml"]
    path = as_project_export(exported, tmp_path)
    assert main(["--url", db_url, "import", KEY, str(path), "--annotation", "31"]) == 0
    assert [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()] == [
        f"expr of {KEY}, {FRAMES} frames", f"au of {KEY}, {FRAMES} frames"]
