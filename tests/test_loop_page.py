"""The loop on the page for a team with one video, driven through the running server with gradio_client: one
uploaded clip (the first 160 frames of the crying-then-laughing Pexels clip) with its EXPR annotation file is
retrained on from the page, with a batch size that leaves one training frame over, validating on its last
frames; the job's panel says how it split the video and which epoch it kept, and the new model is picked and
answers with the default ticks; "Audit this dataset", clicked in Chromium, runs the audit as a job whose panel
follows it to its end by itself, and fills the dataset queue."""
import re
import time

import pandas as pd
import pytest
from gradio_client import Client
from playwright.sync_api import expect

from core.affwild2 import write_annotation
from core.labels import EXPRESSIONS
from core.table import FACE, FRAME
from core.weights import load_checkpoint
from db import repo
from db.engine import make_engine, make_session_factory
from tests.test_webapp_api import analyse, start_server, table
from tests.test_webapp_browser import SCREENSHOT_DIR, browser, signed_in_page  # noqa: F401 (browser: a fixture)
from training.uploads import HOLDOUT_GAP, MIN_HELD_OUT_FRAMES, VAL_FRACTION

N_FRAMES = 160             # the fewest that hold frames out (training.uploads.MIN_HELD_OUT_FRAMES)
SAD, HAPPY = EXPRESSIONS.index("Sadness"), EXPRESSIONS.index("Happiness")
FIRST_VAL = N_FRAMES - round(N_FRAMES * VAL_FRACTION)          # 128: validation is frames 128-159


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("loop"), None)      # no Aff-Wild2 folder: uploads only
    yield cfg, url
    demo.close()


def cut_clip(folder, media_dir, ffmpeg, name: str, frames: int):
    """The Pexels clip's first `frames` frames and an EXPR annotation: Sadness, then Happiness from the middle."""
    video = folder / f"{name}.mp4"
    ffmpeg("-i", media_dir / "WolfgangLanger_Pexels.mp4", "-frames:v", frames, "-an", "-c:v", "libx264", "-crf", "28",
           video)
    expr = folder / f"{name}.txt"
    labels = [SAD] * (frames // 2) + [HAPPY] * (frames - frames // 2)
    write_annotation(pd.DataFrame({"expression": pd.array(labels, dtype="Int64")}), expr, "expr")
    return video, expr


@pytest.fixture(scope="module")
def clip(tmp_path_factory, media_dir, ffmpeg):
    """The clip's first 160 frames (6.7 s): Sadness, then Happiness from frame 80."""
    return cut_clip(tmp_path_factory.mktemp("clip"), media_dir, ffmpeg, "crying_then_laughing", N_FRAMES)


def wait_for_job(client, job) -> tuple[str, dict, object]:
    """/job_status until the job ends: (text, metrics table, picker)."""
    deadline = time.time() + 1800        # CPU only, a loaded machine
    while True:
        info, metrics, picker, *_ = client.predict(job, api_name="/job_status")
        if "**done**" in info or "**failed**" in info:
            return info, metrics, picker
        assert time.time() < deadline, info
        time.sleep(2)


def test_one_upload_retrains_from_the_page_with_one_frame_over_and_its_model_answers(server, clip):
    cfg, url = server
    video, expr = clip
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    first = analyse(alice, video, [expr], models=("DDAMFN",))
    key = first["key"]
    predictions = pd.read_csv(next(p for p in first["downloads"] if p.endswith(".csv")))
    assert len(predictions) == N_FRAMES and predictions["untrained_expr"].all()
    # Training frames: those with a face before the gap; a batch size that leaves exactly one of them over.
    train_frames = int(predictions.loc[predictions[FRAME] < FIRST_VAL - HOLDOUT_GAP, FACE].sum())
    batch = min(b for b in range(4, train_frames) if (train_frames - 1) % b == 0)

    info, _, job, *_ = alice.predict("ddamfn-expr", 1, 0, batch, api_name="/retrain")
    assert f"Job {int(job)}" in info
    info, metrics, picker = wait_for_job(alice, job)
    assert "**done**" in info, info
    split = (f"validation is the last 20% of each video's frames and training the frames before them, {HOLDOUT_GAP} "
             "frames (one LSTM window) left out between, because one uploaded video cannot be split by video: "
             f"crying_then_laughing.mp4 validates on frames {FIRST_VAL}+")
    assert f"Validation split of the uploads: {split}." in info
    assert "s left" not in info and "Kept epoch 1 of 1: first validated epoch (score " in info
    assert "No *before* figures: the app runs untrained (random) weights for this model" in info
    assert "p_expr" in set(table(metrics)["metric"])
    with make_session_factory(make_engine(cfg.db_url))() as s:
        [model] = repo.list_models(s)
        record = model.training
        model_id, path = model.id, model.path
    assert f"New model **{model_id}: ddamfn-expr (job {int(job)})**" in info
    choice = [f"{model_id}: ddamfn-expr (job {int(job)}) (ddamfn, {record['steps']} steps, {train_frames} frames)",
              model_id]
    assert picker["value"] == model_id and choice in picker["choices"]          # picked on the Analyse tab, no reload
    data = load_checkpoint(path).metadata["training"]["data"]
    assert data["uploads"]["split"] == split and record["data"]["uploads"]["split"] == split
    assert N_FRAMES == MIN_HELD_OUT_FRAMES and data["train"]["frames"] == train_frames
    assert train_frames % batch == 1                                           # a last batch of one, merged
    assert record["kept"]["epoch"] == 1

    # Analyse again with the default ticks (DDAMFN+LSTM, CLIP) and the new model: the LSTM's heads are random,
    # so the expressions are the retrained DDAMFN's own (core.predict's precedence), not untrained ones.
    again = analyse(alice, video, [expr], model_id=model_id)
    answers = pd.read_csv(next(p for p in again["downloads"] if p.endswith(".csv")))
    assert not answers["untrained_expr"].any() and answers["untrained_va"].all() and key == again["key"]


def test_audit_this_dataset_in_chromium_the_panel_follows_the_job_and_the_queue_fills(server, media_dir, ffmpeg,
                                                                                      tmp_path, browser):
    """No Refresh click: the panel's timer follows the audit job to its end, and the Review tab's dataset queue
    lists the audit's suggestions for the uploaded video. 235 frames (9.8 s): with 5 folds of blocks and a
    64-frame gap either side of each, a middle fold of a 160-frame video alone would have no frame to train on."""
    cfg, url = server
    video, expr = cut_clip(tmp_path, media_dir, ffmpeg, "crying_then_laughing_235", 235)
    analyse(Client(url, auth=("bob", "bob-pw"), verbose=False), video, [expr], models=("DDAMFN",))
    page = signed_in_page(browser, url, "bob")
    page.get_by_role("tab", name="Models").click()
    page.locator("#audit-dataset").click()
    info = page.locator("#retrain-info")
    expect(info).to_contain_text(re.compile(r"\(audit, started by bob\): (queued|running)\."), timeout=60_000)
    expect(info).to_contain_text("(audit, started by bob): done.", timeout=900_000)
    expect(info).to_contain_text("within each video (fewer subjects than folds)")
    expect(info).to_contain_text("They are in the Review tab's dataset queue")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "loop-audit-done.png"), full_page=True)
    page.get_by_role("tab", name="Review").click()
    # Filled by the job's end, no Refresh click, under the uploaded video's own name (not its training layout's
    # upload-<hash>).
    expect(page.locator("#audit-suggestions")).to_contain_text(re.compile(r"crying_then_laughing_235.mp4\s+expr\s+label"))
    expect(page.locator("#audit-suggestions")).not_to_contain_text("upload-")
    expect(page.locator("#audit-progress")).not_to_contain_text("No audit run")
    page.screenshot(path=str(SCREENSHOT_DIR / "loop-audit-queue.png"), full_page=True)
    page.context.close()
