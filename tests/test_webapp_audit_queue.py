"""The Review tab's dataset queue (the annotation audit) through the running server: an audit run and its
suggestions written into the review database as `python -m training audit` writes them, with its
out-of-fold predictions (oof.npz) on disk; the queue best first and filtered, a suggestion opened at its
stretch (annotation beside the out-of-fold prediction, the frames of the stored analysis), confirm -> a
flag and a proposed correction with the suggested label, dismiss, reviewed n of N, what the calibrated
scores mean, the random sample in its own order and its stratified estimate; and the queue in Chromium."""
import numpy as np
import pandas as pd
import pytest
from gradio_client import Client
from playwright.sync_api import expect

from core.affwild2 import write_annotation
from core.labels import EXPRESSIONS
from db import repo
from tests.test_webapp_api import N_FRAMES, analyse, start_server, table
from tests.test_webapp_browser import browser, signed_in_page  # noqa: F401  (fixture)
from webapp.context import Context

HAPPY = EXPRESSIONS.index("Happiness")
# /open_suggestion's outputs in the order of its answer: the stretch, then the Analyse tab's (AnalyseTab.shows)
OPEN_OUTPUTS = ("suggestion", "words", "figure", "gallery", "stretch", "task", "start", "end", "run_info", "timeline",
                "metrics", "metrics_hint", "frame", "crop", "frame_info", "downloads", "queue", "key", "weights_info",
                "player", "player_note", "status")


@pytest.fixture(scope="module")
def audited(tmp_path_factory, media_dir):
    """A server with single_face.mp4 analysed (its EXPR annotation Neutral throughout) and an audit run of
    three suggestions: EXPR frames 10-19 should be Happiness (the out-of-fold prediction says so), a VA
    lag in a video without a stored analysis, an AU stuck at 40-59."""
    tmp = tmp_path_factory.mktemp("webapp-audit")
    demo, cfg, url = start_server(tmp, None)
    expr = tmp / "expr.txt"
    write_annotation(pd.DataFrame({"expression": pd.array([0] * N_FRAMES, dtype="Int64")}), expr, "expr")
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    key = analyse(alice, media_dir / "single_face.mp4", [expr], models=("DDAMFN",))["key"]
    out = tmp / "audit-run"
    out.mkdir()
    probs = np.full((N_FRAMES, len(EXPRESSIONS)), 0.02)
    probs[:, 0] = 0.86
    probs[10:20] = np.roll(probs[10:20], HAPPY, axis=1)
    np.savez(out / "oof.npz", video=np.array([key] * N_FRAMES), frame=np.arange(N_FRAMES),
             fold=np.arange(N_FRAMES) % 3, expr=probs)
    calibration = {"threshold": 0.85, "expected_precision": 0.93, "false_alarms_per_10_min": 0.4, "plants": 40,
                   "recall": {"expr/swap": 0.9, "va/lag": 0.5}}
    units = [{"video": key, "task": "expr", "start_frame": 10, "end_frame": 19, "own_frames": 10,
              "stratum": "score 0.9-1.0", "N": 1},
             {"video": "other", "task": "va", "start_frame": 0, "end_frame": 29, "own_frames": 30,
              "stratum": "score 0.9-1.0", "N": 1},
             {"video": key, "task": "au", "start_frame": 40, "end_frame": 59, "own_frames": 20,
              "stratum": "score 0.5-0.9", "N": 2},
             {"video": key, "task": "expr", "start_frame": 60, "end_frame": 71, "own_frames": 12, "stratum": "clean",
              "N": 4}]
    sample = {"frames": {"expr": N_FRAMES, "au": N_FRAMES, "va": 40}, "units": units}
    run = {"split": "train", "tasks": ["va", "expr", "au"],
           "settings": {"out": str(out), "folds": 3, "calibration": calibration, "sample": sample},
           "encoder": {"weights": "untrained", "untrained": True}, "folds": {"0": [key], "1": ["other"]},
           "metrics": {}, "annotated_frames": {"expr": N_FRAMES},
           "videos": {key: {"frames": N_FRAMES, "fps": 24.0}, "other": {"frames": 40, "fps": 25.0}}}
    segments = pd.DataFrame([
        (key, "expr", "label", 10, 19, 10, 0.97, '{"expression": 4}', "annotated Neutral, out-of-fold Happiness"),
        ("other", "va", "lag", 0, 29, 30, 0.91, '{"valence": 0.1, "arousal": -0.2}', "valence lags by +1.00 s"),
        (key, "au", "stuck", 40, 59, 20, 0.80, '{"AU12": 1}', "AU12 annotated 0"),
        (key, "expr", "clean", 60, 71, 12, 0.0, '{}', "a random stretch no suggestion covers"),
    ], columns=["video", "task", "kind", "start_frame", "end_frame", "frames", "score", "suggested", "detail"])
    Context(cfg).write(lambda s: repo.write_audit(s, run, segments))
    yield url, key
    demo.close()


CALIBRATED = ("Scores are the estimated probability that a stretch is wrongly annotated, calibrated on 40 errors "
              "planted into a copy of your videos' labels. From the default threshold **0.85**: expected precision "
              "**93%**, 0.40 false alarms per 10 clean minutes; found there of the planted errors: expr/swap 90%, "
              "va/lag 50%. ")


def queue(client, task="all", kind="all", order="best first"):
    """/audit_queue's suggestions, kind choices and progress (inputs, as all endpoints', in page order)."""
    suggestions, kinds, progress, _ = client.predict(task, kind, order, api_name="/audit_queue")
    return table(suggestions), kinds, progress


def test_confirm_dismiss_counts_and_estimate(audited):
    url, key = audited
    alice, bob = (Client(url, auth=(name, f"{name}-pw"), verbose=False) for name in ("alice", "bob"))
    listed, _, progress = queue(alice)
    assert listed[["id", "video", "task", "kind", "frames", "score", "suggested"]].values.tolist() == [
        [1, "single_face.mp4", "expr", "label", "10-19", 0.97, "Happiness"],
        [2, "other", "va", "lag", "0-29", 0.91, "valence 0.1, arousal -0.2"],
        [3, "single_face.mp4", "au", "stuck", "40-59", 0.8, "AU12 on"]]
    assert progress == CALIBRATED + (
        "Reviewed **0 of 4** suggestions (0 confirmed, 0 dismissed). Random sample for the estimate: **0 of 4** "
        "reviewed (choose the order 'random sample'). No estimate yet: every score band needs a review.")
    drawn = queue(alice, order="random sample")[0]
    assert sorted(drawn["id"].tolist()) == [1, 2, 3, 4] and drawn.loc[drawn["id"] == 4, "kind"].item() == "clean"
    assert queue(alice, task="va")[0]["id"].tolist() == [2] and queue(alice, kind="stuck")[0]["id"].tolist() == [3]

    # Opening one: its stretch with 2 s (60 frames) of context, the annotation beside the prediction, its frames.
    opened = dict(zip(OPEN_OUTPUTS, alice.predict(1, api_name="/open_suggestion"), strict=True))
    number, words, gallery, stretch = opened["suggestion"], opened["words"], opened["gallery"], opened["stretch"]
    assert (number, opened["task"], opened["start"], opened["end"], opened["key"]) == (1, "expr", 10, 19, key)
    # Its video opens on the Analyse tab as the Review tab opens it: the timeline follows, the player waits.
    assert "Opened from the database" in opened["run_info"] and opened["frame"]["value"] == 0
    assert opened["player_note"] == "The player shows **single_face.mp4** once it is open."
    assert words.startswith("Suggestion 1: EXPR frames 10-19 of **single_face.mp4**, label (score 0.970)")
    frames = table(stretch).set_index("frame")
    assert frames.index.tolist() == list(range(N_FRAMES))
    assert (frames.loc[10:19, "out-of-fold"] == "Happiness").all()
    assert (frames.loc[20:, "out-of-fold"] == "Neutral").all() and (frames.loc[:9, "out-of-fold"] == "Neutral").all()
    assert (frames["annotated"] == "Neutral").all() and len(gallery) == 10
    # Without a stored analysis: the annotation and the words say why there are no frames.
    words = alice.predict(2, api_name="/open_suggestion")[1]
    assert "No frames: other has no stored analysis: analyse it first." in words

    # Confirm -> a flag and a proposed correction with the suggested label, waiting for a second reviewer.
    *_, said, note = alice.predict("all", "all", "best first", 1, "the smile is clear", True,
                              api_name="/confirm_suggestion")
    assert note == "" and said == ("Suggestion 1 confirmed by alice: flag 1 and proposed correction 1 (a second "
                                   "reviewer accepts or rejects it).")
    corrections, history, flags, _ = alice.predict(key, api_name="/history")
    assert table(flags)[["id", "task", "frames", "reason"]].values.tolist() == [[1, "EXPR", "10-19", "wrong label"]]
    assert table(corrections)[["id", "task", "correction", "status"]].values.tolist() == [
        [1, "EXPR", "Happiness, frames 10-19, was Neutral", "proposed"]]
    # Dismiss; the queue keeps the open ones; the estimate: AU's band drawn 1 of 2 units and dismissed, as if one
    # more review had found its 20 frames wrong: 0 of 72 frames, 95% interval 0 +- 1.96 * 20; EXPR and VA still
    # lack a review in one stratum.
    listed, _, progress, said, _ = bob.predict("all", "all", "best first", 3, "AU12 is off there",
                                               api_name="/dismiss_suggestion")
    assert said == "Suggestion 3 dismissed by bob: the annotation stays as it is."
    assert table(listed)["id"].tolist() == [2]
    assert progress == CALIBRATED + (
        "Reviewed **2 of 4** suggestions (1 confirmed, 1 dismissed). Random sample for the estimate: **2 of 4** "
        "reviewed (choose the order 'random sample'). Estimated wrongly annotated (95% interval): AU 0 of 72 "
        "frames (0-39).")
    with pytest.raises(Exception, match="suggestion 1 was already confirmed by alice"):
        bob.predict("all", "all", "best first", 1, "", api_name="/dismiss_suggestion")


def test_the_dataset_queue_shows_in_chromium(audited, browser):  # noqa: F811
    url, _ = audited
    page = signed_in_page(browser, url, "alice")
    try:
        page.get_by_role("tab", name="Review").click()
        page.locator("#audit-refresh").click()
        expect(page.locator("#audit-progress")).to_contain_text("suggestions", timeout=60_000)
        expect(page.locator("#audit-suggestions")).to_contain_text("valence lags by +1.00 s")
        lag = page.locator("#audit-suggestions [role=row]").filter(has_text="valence lags by +1.00 s")
        lag.locator("[role=gridcell]").first.click()
        expect(page.locator("#audit-words")).to_contain_text("Suggestion 2: VA frames 0-29 of other", timeout=60_000)
    finally:
        page.context.close()
