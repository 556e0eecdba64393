"""The page in a real browser (Debian chromium through Playwright, headless, no background networking):
log in, upload, wait for the timelines, check that plotly drew them, review with clicks, and bad input
that must end in a clear message while the app goes on serving."""
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect, sync_playwright

from core.affwild2 import write_annotation
from tests.test_webapp_api import N_FRAMES, start_server

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
ANALYSIS_TIMEOUT_MS = 180_000  # CPU only, random weights; generous for a loaded CI machine
SCREENSHOT_DIR = Path(os.environ.get("AFFECTLENS_SCREENSHOTS") or tempfile.gettempdir()) / "affectlens-screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"chromium not installed at {CHROMIUM}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-browser"), None)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory, media_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser-files")
    t = np.arange(N_FRAMES)
    write_annotation(pd.DataFrame({"valence": np.round(np.sin(t / 12) * 0.6, 3),
                                   "arousal": np.round(np.cos(t / 15) * 0.4, 3)}), folder / "va.txt", "va")
    write_annotation(pd.DataFrame({"expression": pd.array([0] * 36 + [4] * 36, dtype="Int64")}),
                     folder / "expr.txt", "expr")
    write_annotation(pd.DataFrame({"valence": [0.1] * 30, "arousal": [0.2] * 30}), folder / "short_va.txt", "va")
    data = (media_dir / "single_face.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not a video\n")
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.locator("input[type=text]").fill("alice")
        page.locator("input[type=password]").fill("alice-pw")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#who")).to_contain_text("Signed in as alice")
        yield page
        browser.close()


def upload_and_analyse(page, video: Path | None, annotations=(), clip: bool = False):
    """A fresh session (reload), the files into the inputs, then Analyse."""
    page.reload()
    page.locator("#analyse").wait_for()
    if video is not None:
        page.locator("#video input[type=file]").set_input_files(str(video))
        if video.suffix == ".mp4":
            page.locator("#video video").wait_for(state="attached")
    if annotations:
        page.locator("#annotations input[type=file]").set_input_files([str(p) for p in annotations])
        for p in annotations:
            expect(page.locator("#annotations")).to_contain_text(p.stem)
    if not clip:
        page.get_by_role("checkbox", name="CLIP", exact=True).uncheck()
    page.locator("#analyse").click()


def expect_message(page, text: str):
    expect(page.get_by_text(text).first).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)


def test_bad_input_shows_a_message_and_the_next_request_works(page, files, media_dir):
    upload_and_analyse(page, files["notes.txt"])
    expect_message(page, "Invalid file type: notes.txt")      # the browser refuses it
    expect_message(page, "Choose a video first")                # and the server says what to do
    upload_and_analyse(page, files["broken.mp4"])
    expect_message(page, "broken.mp4 cannot be read as a video")
    upload_and_analyse(page, media_dir / "WolfgangLanger_Pexels.mp4")
    expect_message(page, "lasts 20 s; this app accepts videos up to 10 s")
    upload_and_analyse(page, media_dir / "no_face.mp4")
    expect_message(page, "No face was found in any of the 95 frames of no_face.mp4")
    upload_and_analyse(page, media_dir / "single_face.mp4", [files["short_va.txt"]])
    expect_message(page, "30 annotated frames, but the video has 72")

    # The next request, with the bundled example clip (served from webapp/examples), goes through.
    page.reload()
    page.locator("#example").get_by_text("single_face.mp4").click()
    page.locator("#video video").wait_for(state="attached")
    page.get_by_role("checkbox", name="CLIP", exact=True).uncheck()
    page.locator("#analyse").click()
    expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)


def test_upload_timelines_and_review_with_clicks(page, server, files, media_dir):
    upload_and_analyse(page, media_dir / "single_face.mp4", [files["va.txt"], files["expr.txt"]], clip=True)
    run_info = page.locator("#run-info")
    expect(run_info).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
    expect(run_info).to_contain_text("untrained")
    timeline = page.locator("#timeline")
    expect(timeline.locator("svg.main-svg").first).to_be_visible()
    # plotly drew every row: VA lines (prediction + annotation), the expression strip and AU heatmap.
    expect(timeline.locator("g.scatterlayer .trace")).not_to_have_count(0)
    expect(timeline.locator("g.cartesianlayer > g.subplot")).to_have_count(4)   # rows, on one time axis:
    expect(timeline.get_by_text("time (s)")).to_have_count(1)
    assert {"valence", "arousal", "expression", "AU probability"} <= set(
        timeline.locator("g.annotation").all_text_contents())
    assert timeline.locator("g.heatmaplayer image, g.imagelayer image").count() >= 2
    assert timeline.locator("g.scatterlayer path.js-line").count() >= 4
    expect(page.locator("#metrics")).to_contain_text("CCC valence")
    expect(page.locator("#crop img")).to_be_visible()
    va_file = page.locator("#downloads").get_by_role("row", name=re.compile("single_face_VA_submission.txt"))
    expect(va_file).to_be_visible()
    # Files the app wrote are served; nothing else is.
    served = page.request.get(va_file.get_by_role("link").get_attribute("href"))
    assert served.ok and served.text().startswith("image_location,valence,arousal")
    for other in (media_dir / "single_face.mp4", Path("/etc/passwd")):
        assert page.request.get(f"{server}gradio_api/file={other}").status == 403
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "analyse.png"), full_page=True)

    # Review: click the top segment of the queue, flag it, propose a correction, try to accept it.
    page.get_by_role("tab", name="Review").click()
    first_row = page.locator("#queue [role=row][aria-rowindex='2'] [role=gridcell]").first
    expect(first_row).to_be_visible()
    first_row.click()
    expect(page.locator("#segment-plot svg.main-svg").first).to_be_visible(timeout=60_000)
    expect(page.locator("#gallery img").first).to_be_visible()
    expect(page.locator("#segment-labels")).to_contain_text("gt_valence")
    page.locator("#flag").click()
    expect(page.locator("#review-status")).to_contain_text("Flag 1:")
    expect(page.locator("#history")).to_contain_text("flagged")
    page.locator("#correct").click()
    expect(page.locator("#review-status")).to_contain_text("Correction 1:")
    expect(page.locator("#corrections")).to_contain_text("proposed")
    page.locator("#correction-id input").fill("1")
    page.locator("#accept").click()
    expect_message(page, "a second reviewer must accept or reject it")
    page.locator("#export").click()
    expect(page.get_by_role("cell", name=re.compile("_corrections.json$"))).to_be_visible()
    page.screenshot(path=str(SCREENSHOT_DIR / "review.png"), full_page=True)


def test_a_second_reviewer_opens_the_video_from_the_database_and_decides(page, server):
    """Bob, in his own browser, never analyses: he finds Alice's video in the database list and her
    correction among those waiting for him, opens the video and accepts the correction with a comment."""
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})   # his own cookies
    try:
        page = context.new_page()
        page.goto(server)
        page.locator("input[type=text]").fill("bob")
        page.locator("input[type=password]").fill("bob-pw")
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#who")).to_contain_text("Signed in as bob")
        page.get_by_role("tab", name="Review").click()
        expect(page.locator("#videos")).to_contain_text("single_face.mp4")
        expect(page.locator("#waiting")).to_contain_text("alice")
        page.locator("#open-choice input").click()
        page.get_by_role("option", name=re.compile("single_face.mp4")).click()
        page.locator("#open-video").click()
        expect(page.locator("#corrections")).to_contain_text("proposed", timeout=60_000)
        expect(page.locator("#flags")).to_contain_text("wrong label")
        page.locator("#correction-id input").fill("1")
        page.locator("#decision-comment textarea, #decision-comment input").first.fill("the smile is there")
        page.locator("#accept").click()
        expect(page.locator("#review-status")).to_contain_text("Correction 1 accepted by bob")
        expect(page.locator("#history")).to_contain_text("accepted")
        expect(page.locator("#corrections")).to_contain_text("the smile is there")
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "second-reviewer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert page.get_by_text("Error", exact=True).count() == 0      # no output replaced by an error badge
    finally:
        context.close()
