"""ELAN both ways (db.interop) against a real database (SQLite, and PostgreSQL when configured): the
written .eaf checked with an independent XML parser against ELAN's rules and read back by pympi; export
then import gives the same labels frame for frame (VA within the CSV's 6 decimals); a user's own tiers
through a mapping; refusals name the file, line and annotation; the command line."""
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from pympi import Eaf
from test_db_engine import count, db_url, engine, sessions  # noqa: F401  (fixtures)

from core.labels import AUS, EXPRESSIONS
from core.table import AU_DECISIONS, EXPR
from core.timebase import frame_ms
from db import repo
from db.__main__ import main
from db.engine import write
from db.interop import InteropError, export_video, import_eaf
from interop_data import FPS, FRAMES, KEY, make_reviewed_video

END_MS = frame_ms(FRAMES, FPS)
MODEL_TIERS = ["DDAMFN+LSTM: EXPR", *(f"DDAMFN+LSTM (untrained): {a}" for a in (*AUS, "AU unannotated")),
               "CLIP basic: EXPR"]        # the models as the page names them


@pytest.fixture
def reviewed(sessions, tmp_path):
    return make_reviewed_video(sessions, tmp_path)


@pytest.fixture
def exported(sessions, reviewed, tmp_path):
    with sessions() as s:
        files, notes = export_video(s, KEY, tmp_path / "out", ("eaf",), data_dir=reviewed.data_dir)
    assert notes == []
    return files


def intervals(values) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each stretch of equal labels, as the export should write them."""
    out, v = [], np.asarray(values, dtype=float)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and (v[j + 1] == v[i] or (np.isnan(v[j + 1]) and np.isnan(v[i]))):
            j += 1
        if not np.isnan(v[i]):
            out.append((frame_ms(i, FPS), frame_ms(j + 1, FPS), v[i]))
        i = j + 1
    return out


def test_the_eaf_keeps_elans_rules(exported):
    assert set(exported) == {"eaf", "va_csv"}
    root = ET.parse(exported["eaf"]).getroot()
    assert root.tag == "ANNOTATION_DOCUMENT"
    media = root.find("HEADER/MEDIA_DESCRIPTOR")
    # The video and the CSV beside the .eaf: no path of the server that wrote it (no media URL configured).
    assert media.get("MEDIA_URL") == "file:./clip%20one.mp4" and "file:///" not in exported["eaf"].read_text()
    assert media.get("RELATIVE_MEDIA_URL") == "./clip one.mp4" and media.get("MIME_TYPE") == "video/mp4"
    linked = root.find("HEADER/LINKED_FILE_DESCRIPTOR")
    assert exported["va_csv"].name == "clip_one_va.csv" and exported["eaf"].name == "clip_one.eaf"
    assert linked.get("RELATIVE_LINK_URL") == "./clip_one_va.csv" and linked.get("LINK_URL") == "file:./clip_one_va.csv"

    slots = [(s.get("TIME_SLOT_ID"), int(s.get("TIME_VALUE"))) for s in root.iter("TIME_SLOT")]
    times = [t for _, t in slots]
    assert times == sorted(set(times)), "one time slot per time, in time order"
    assert [i for i, _ in slots] == [f"ts{k + 1}" for k in range(len(slots))]
    slot = dict(slots)
    types = {t.get("LINGUISTIC_TYPE_ID") for t in root.iter("LINGUISTIC_TYPE")}
    ids = [a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")]
    assert len(ids) == len(set(ids))
    used = max(int(i[1:]) for i in ids)
    assert dict((p.get("NAME"), p.text) for p in root.iter("PROPERTY"))["lastUsedAnnotation"] == str(used)
    languages = {lang.get("LANG_ID") for lang in root.iter("LANGUAGE")}
    vocabularies = {cv.get("CV_ID"): [e.find("CVE_VALUE").text for e in cv.iter("CV_ENTRY_ML")]
                    for cv in root.iter("CONTROLLED_VOCABULARY")}
    assert all(v.get("LANG_REF") in languages for v in root.iter("CVE_VALUE"))
    assert vocabularies == {"expression": list(EXPRESSIONS)}
    vocabulary = {t.get("LINGUISTIC_TYPE_ID"): t.get("CONTROLLED_VOCABULARY_REF") for t in root.iter("LINGUISTIC_TYPE")}
    for tier in root.iter("TIER"):
        assert tier.get("LINGUISTIC_TYPE_REF") in types
        if tier.get("TIER_ID").endswith("EXPR") and not tier.get("TIER_ID").startswith(("flags", "corrections")):
            assert vocabulary[tier.get("LINGUISTIC_TYPE_REF")] == "expression"
            assert {v.text for v in tier.iter("ANNOTATION_VALUE")} <= set(EXPRESSIONS)
        spans = []
        for a in tier.iter("ALIGNABLE_ANNOTATION"):
            start, end = slot[a.get("TIME_SLOT_REF1")], slot[a.get("TIME_SLOT_REF2")]
            assert 0 <= start < end <= END_MS, (tier.get("TIER_ID"), start, end)
            spans.append((start, end))
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"overlap in {tier.get('TIER_ID')}"
    assert [t.get("TIER_ID") for t in root.iter("TIER")] == [
        "EXPR", *AUS, "AU unannotated", *MODEL_TIERS, "corrections EXPR", "flags AU", "flags AU 2"]
    annotators = {t.get("TIER_ID"): t.get("ANNOTATOR") for t in root.iter("TIER")}
    assert annotators["DDAMFN+LSTM: EXPR"] == "DDAMFN+LSTM"
    assert annotators["DDAMFN+LSTM (untrained): AU1"] == "DDAMFN+LSTM (untrained)"


def test_a_configured_media_url_links_the_video(sessions, reviewed, tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTLENS_MEDIA_URL", "https://media.example.org/clips/")
    with sessions() as s:
        files, _ = export_video(s, KEY, tmp_path / "url", ("eaf",), data_dir=reviewed.data_dir)
    media = ET.parse(files["eaf"]).getroot().find("HEADER/MEDIA_DESCRIPTOR")
    assert media.get("MEDIA_URL") == "https://media.example.org/clips/clip%20one.mp4"
    assert media.get("RELATIVE_MEDIA_URL") == "./clip one.mp4"


def test_pympi_reads_what_was_written(exported, reviewed, tmp_path):
    eaf = Eaf(str(exported["eaf"]))
    name = lambda v: EXPRESSIONS[int(v)]                                          # noqa: E731
    assert eaf.get_annotation_data_for_tier("EXPR") == [(s, e, name(v)) for s, e, v in intervals(reviewed.expr)]
    assert eaf.get_annotation_data_for_tier("AU12") == [
        (s, e, "on") for s, e, v in intervals(reviewed.au[:, AUS.index("AU12")]) if v == 1]
    assert eaf.get_annotation_data_for_tier("AU unannotated") == [(frame_ms(80, FPS), END_MS, "")]
    model = reviewed.table
    assert eaf.get_annotation_data_for_tier("DDAMFN+LSTM: EXPR") == [
        (s, e, name(v)) for s, e, v in intervals(model[EXPR].to_numpy(dtype=float))]
    assert eaf.get_annotation_data_for_tier("DDAMFN+LSTM (untrained): AU4") == [
        (s, e, "on") for s, e, v in intervals(model[AU_DECISIONS[2]].to_numpy(dtype=float)) if v == 1]
    assert eaf.get_annotation_data_for_tier("DDAMFN+LSTM (untrained): AU unannotated") == [
        (frame_ms(60, FPS), frame_ms(66, FPS), "")]                  # the faceless frames: no AU output
    assert eaf.get_annotation_data_for_tier("corrections EXPR") == [
        (frame_ms(10, FPS), frame_ms(15, FPS), "Happiness by alice, accepted by bob: smiling")]
    assert eaf.get_annotation_data_for_tier("flags AU") == [
        (frame_ms(20, FPS), frame_ms(31, FPS), "occluded by carol: hand")]
    assert eaf.get_annotation_data_for_tier("flags AU 2") == [
        (frame_ms(25, FPS), frame_ms(36, FPS), "ambiguous by dave")]                 # overlaps the first
    assert "flags EXPR" not in eaf.get_tier_names()           # the only EXPR flag is resolved
    again = tmp_path / "again.eaf"
    eaf.to_file(str(again))
    reread = Eaf(str(again))
    assert {t: reread.get_annotation_data_for_tier(t) for t in reread.get_tier_names()} == \
        {t: eaf.get_annotation_data_for_tier(t) for t in eaf.get_tier_names()}


def test_va_goes_to_the_linked_csv_with_the_models_marked_untrained(exported, reviewed):
    lines = exported["va_csv"].read_text().splitlines()
    assert lines[0] == "time_s,valence,arousal,DDAMFN (untrained): valence,DDAMFN (untrained): arousal"
    va = reviewed.table[["valence", "arousal"]].to_numpy()
    assert lines[1] == f"0.000000,NaN,NaN,{va[0, 0]:.6f},{va[0, 1]:.6f}"
    assert lines[4] == f"0.100100,{reviewed.va[3, 0]:.6f},{reviewed.va[3, 1]:.6f},{va[3, 0]:.6f},{va[3, 1]:.6f}"
    assert len(lines) == FRAMES + 1


def test_export_then_import_gives_the_same_labels(sessions, exported, reviewed):
    sets, notes = write(sessions, lambda s: import_eaf(s, KEY, exported["eaf"], version="round trip"))
    assert [s.task for s in sets] == ["expr", "au", "va"]
    left_out = [*MODEL_TIERS, "corrections EXPR", "flags AU", "flags AU 2"]
    assert notes == [f"{exported['eaf'].name}: tiers left out (not in the mapping): {', '.join(left_out)}"]
    got = {s.task: repo.annotation_frame(s).to_numpy(dtype=float, na_value=np.nan) for s in sets}
    np.testing.assert_array_equal(got["expr"][:, 0], reviewed.expr)
    np.testing.assert_array_equal(got["au"], reviewed.au)
    np.testing.assert_allclose(got["va"], reviewed.va, atol=0.5e-6, rtol=0)
    with sessions() as s:
        assert repo.latest_annotation_set(s, KEY, "expr").version == "round trip"
    again, _ = write(sessions, lambda s: import_eaf(s, KEY, exported["eaf"]))
    assert [a.id for a in again] == [a.id for a in sets], "the same file again is the same sets"


def test_a_users_own_tiers_through_a_mapping(sessions, reviewed, tmp_path):
    eaf = Eaf(author="a researcher")
    eaf.remove_tier("default")
    for tier in ("smile", "brows", "lips", "Gesture"):
        eaf.add_tier(tier)
    eaf.add_annotation("smile", 100, 520, "big smile")      # frames with centres in [0.1, 0.52) s: 3..15
    eaf.add_annotation("brows", 0, 51, "")                  # centres 0.017, 0.050: frames 0..1
    eaf.add_annotation("brows", 2000, 2200, "on")
    eaf.add_annotation("Gesture", 0, 3000, "waving")
    path = tmp_path / "mine.eaf"
    eaf.to_file(str(path))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"smile": "happiness", "brows": "au1", "lips": "AU12", "jaw": "AU26"}))
    sets, notes = write(sessions, lambda s: import_eaf(s, KEY, path, mapping))
    assert notes == ["mine.eaf: tiers left out (not in the mapping): Gesture"]
    got = {s.task: repo.annotation_frame(s).to_numpy(dtype=float, na_value=np.nan) for s in sets}
    expr = np.full(FRAMES, np.nan)
    expr[3:16] = EXPRESSIONS.index("Happiness")
    np.testing.assert_array_equal(got["expr"][:, 0], expr)
    au = np.full((FRAMES, len(AUS)), np.nan)
    au[:, [0, AUS.index("AU12")]] = 0                      # an empty tier: never on; no tier: unannotated
    au[[0, 1, *range(60, 66)], 0] = 1                       # 2.0-2.2 s: centres of frames 60..65
    np.testing.assert_array_equal(got["au"], au)


def edited(exported, tmp_path, old: str, new: str, count: int = 1):
    text = exported["eaf"].read_text()
    assert old in text
    path = tmp_path / "edited.eaf"
    path.write_text(text.replace(old, new, count))
    return path, path.read_text().splitlines()


def refused(sessions, engine, path, message: str, mapping=None) -> None:
    before = count(engine, "annotation_sets")
    with pytest.raises(InteropError) as err:
        write(sessions, lambda s: import_eaf(s, KEY, path, mapping))
    assert str(err.value) == message
    assert "\n" not in str(err.value)
    assert count(engine, "annotation_sets") == before


def test_bad_files_are_refused_in_one_line_naming_file_and_line(sessions, engine, exported, tmp_path):
    path, lines = edited(exported, tmp_path, "<ANNOTATION_VALUE>Fear<", "<ANNOTATION_VALUE>Joy<")
    at = next(i for i, line in enumerate(lines) if ">Joy<" in line)
    aid = re.search(r'ANNOTATION_ID="(a\d+)"', lines[at - 1]).group(1)
    refused(sessions, engine, path, f"edited.eaf line {at} (annotation {aid}, tier 'EXPR'): unknown expression "
                                    f"'Joy'; known: {', '.join(EXPRESSIONS)}")

    path, lines = edited(exported, tmp_path, f'TIME_VALUE="{END_MS}"', f'TIME_VALUE="{END_MS + 500}"')
    last_slot = re.findall(r'TIME_SLOT_ID="(ts\d+)"', "\n".join(lines))[-1]
    aid, at = next((re.search(r'ANNOTATION_ID="(a\d+)"', l).group(1), i + 1) for i, l in enumerate(lines)
                   if f'TIME_SLOT_REF2="{last_slot}"' in l)          # the first tier's last annotation
    refused(sessions, engine, path, f"edited.eaf line {at} (annotation {aid}, tier 'EXPR'): 2503-{END_MS + 500} ms "
                                    f"leaves the video (frames 0-{FRAMES - 1}, 0-{END_MS} ms)")

    path = tmp_path / "cut.eaf"
    path.write_text("\n".join(exported["eaf"].read_text().splitlines()[:40]))
    cut = r"^cut\.eaf line 40: not an ELAN file \(no element found: line 40, column \d+\)$"
    with pytest.raises(InteropError, match=cut):
        write(sessions, lambda s: import_eaf(s, KEY, path))

    path, _ = edited(exported, tmp_path, f">{KEY}<", ">another-video<")
    refused(sessions, engine, path, f"edited.eaf: written for video 'another-video', not '{KEY}'")

    with pytest.raises(InteropError, match=r"^mapping: 'smile' maps to unknown target 'Joy'; targets are EXPR, "):
        write(sessions, lambda s: import_eaf(s, KEY, exported["eaf"], {"smile": "Joy"}))
    refused(sessions, engine, exported["eaf"], f"{exported['eaf'].name}: no tier of the mapping found (mapped: "
                                               "Gesture; the file has: " + ", ".join(Eaf(str(exported["eaf"])).tiers)
                                               + ")", {"Gesture": "AU1"})


def test_a_bad_va_file_is_refused_naming_its_line(sessions, engine, exported):
    csv = exported["va_csv"]
    lines = csv.read_text().splitlines()
    lines[7] = lines[7].replace(lines[7].split(",")[1], "1.5", 1)
    csv.write_text("\n".join(lines) + "\n")
    refused(sessions, engine, exported["eaf"], f"{csv.name} line 8: valence = 1.5 is not a number in [-1, 1]")
    lines[7] = "0.2335,0.1,0.1,0,0"                         # frame 7 (0.2336 s) listed twice
    lines[8] = "0.2336,0.1,0.1,0,0"
    csv.write_text("\n".join(lines) + "\n")
    refused(sessions, engine, exported["eaf"], f"{csv.name} line 9: a second row for frame 7 (0.2336 s)")
    csv.unlink()
    refused(sessions, engine, exported["eaf"], f"{exported['eaf'].name}: its linked VA file {csv.name} is not beside "
                                               "it: put it there, or import without valence/arousal in the mapping")


def test_the_command_line_exports_and_imports(db_url, reviewed, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--url", db_url, "export", str(out), "--format", "eaf", "--data-dir", str(reviewed.data_dir)]) == 0
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in written] == ["clip_one.eaf", "clip_one_va.csv"]
    assert Eaf(written[0]).get_annotation_data_for_tier("corrections EXPR")[0][2].startswith("Happiness by alice")
    assert main(["--url", db_url, "import", KEY, written[0], "--version", "cli"]) == 0
    printed = capsys.readouterr()
    assert [line.split(": ", 1)[1] for line in printed.out.splitlines()] == [
        f"expr of {KEY}, {FRAMES} frames", f"au of {KEY}, {FRAMES} frames", f"va of {KEY}, {FRAMES} frames"]
    assert printed.err.startswith("clip_one.eaf: tiers left out (not in the mapping): DDAMFN+LSTM: EXPR")
    bad = tmp_path / "bad.eaf"
    bad.write_text("<ANNOTATION_DOCUMENT>")
    assert main(["--url", db_url, "import", KEY, str(bad)]) == 2
    assert capsys.readouterr().err == "python -m db import: bad.eaf line 1: not an ELAN file (no element found: " \
                                      "line 1, column 21)\n"


def test_interop_imports_neither_torch_nor_gradio():
    code = ("import sys, db.interop, core.timebase\n"
            "print(sorted(m for m in ('torch', 'gradio', 'open_clip') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_video_with_an_annotation_only_and_one_whose_analysis_is_gone(sessions, reviewed, tmp_path):
    """An Aff-Wild2 video (no file here, no analysis) gets its annotation tiers and no media link; a video
    whose stored analysis was deleted is exported without model tiers, and the note says why."""
    expr = tmp_path / "expr_aw.txt"
    expr.write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n" + "4\n" * 30 + "-1\n" * 10)
    with sessions.begin() as s:
        repo.register_video(s, "10-60-1280x720_right", 40, 30.0)
        repo.import_annotations(s, "10-60-1280x720_right", "expr", expr)
    (reviewed.data_dir / "analyses" / "run1" / "table.parquet").unlink()
    with sessions() as s:
        files, notes = export_video(s, "10-60-1280x720_right", tmp_path / "aw", data_dir=reviewed.data_dir)
        assert notes == []
        gone, gone_notes = export_video(s, KEY, tmp_path / "gone", ("eaf",), data_dir=reviewed.data_dir)
    assert set(files) == {"eaf", "labelstudio", "labelstudio_config"}
    root = ET.parse(files["eaf"]).getroot()
    assert root.find("HEADER/MEDIA_DESCRIPTOR") is None and root.find("HEADER/LINKED_FILE_DESCRIPTOR") is None
    assert [t.get("TIER_ID") for t in root.iter("TIER")] == ["EXPR"]
    assert Eaf(str(files["eaf"])).get_annotation_data_for_tier("EXPR") == [(0, 1000, "Happiness")]
    task = json.loads(files["labelstudio"].read_text())[0]
    assert task == {"data": {"video": "10-60-1280x720_right", "affectlens_video": "10-60-1280x720_right"},
                    "annotations": [{"result": [{
                        "id": "r1", "from_name": "expr", "to_name": "video", "type": "timelinelabels",
                        "value": {"ranges": [{"start": 1, "end": 30}], "timelinelabels": ["Happiness"]}}]}],
                    "predictions": []}
    assert ET.parse(files["labelstudio_config"]).getroot().find("TimeSeries") is None
    assert gone_notes == ["the stored analysis of clip one.mp4 (analyses/run1/table.parquet) is missing: the files "
                          "hold no model outputs"]
    assert not any(t.startswith(("DDAMFN", "CLIP")) for t in Eaf(str(gone["eaf"])).get_tier_names())


def test_mapping_files_and_stored_labels_are_checked(sessions, engine, reviewed, tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text('{"smile": "Happiness",\n "brows" "AU1"}')
    with pytest.raises(InteropError, match=r"^map\.json line 2: not JSON \(Expecting ':' delimiter\)$"):
        write(sessions, lambda s: import_eaf(s, KEY, tmp_path / "any.eaf", bad))
    bad.write_text('["smile", "Happiness"]')
    with pytest.raises(InteropError, match=r'^map\.json: expected one JSON object \{"tier name": "target", \.\.\.\}$'):
        write(sessions, lambda s: import_eaf(s, KEY, tmp_path / "any.eaf", bad))
    before = count(engine, "annotation_sets")
    for values, message in [
            (np.full((FRAMES + 1, 1), 1.0), r"expr labels of shape \(91, 1\) do not fit video"),
            (np.full((FRAMES, 1), 8.0), r"expr labels hold values outside the label space \(first: 8\)")]:
        with pytest.raises(repo.ValidationError, match=message):
            write(sessions, lambda s: repo.add_annotation_set(s, KEY, "expr", values, "x.eaf", "k"))
    assert count(engine, "annotation_sets") == before


def test_files_that_are_not_elan_are_refused(sessions, reviewed, tmp_path):
    other = tmp_path / "other.eaf"
    other.write_text('<?xml version="1.0"?>\n<TranscriptionDocument/>\n')
    with pytest.raises(InteropError, match=r"^other\.eaf line 1: not an ELAN file: its root element is "
                                           r"<TranscriptionDocument>, not <ANNOTATION_DOCUMENT>$"):
        write(sessions, lambda s: import_eaf(s, KEY, other))
    other.write_text('<ANNOTATION_DOCUMENT VERSION="3.0"><TIER LINGUISTIC_TYPE_REF="x"/></ANNOTATION_DOCUMENT>')
    with pytest.raises(InteropError, match=r"^other\.eaf: not a complete ELAN file \(KeyError: "):
        write(sessions, lambda s: import_eaf(s, KEY, other))
