"""The page in a real browser (Debian chromium through Playwright, headless, no background networking):
log in, upload, wait for the timelines, check that plotly drew them, review with clicks and keys, bad input
that must end in a clear message while the app goes on serving, and every refusal of the Review, prompts and
Models tabs shown beside its button with every output left as it was (no error badge, no toast)."""
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from core.affwild2 import write_annotation
from tests.test_webapp_api import N_FRAMES, analyse, start_server

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
ANALYSIS_TIMEOUT_MS = 180_000  # CPU only, random weights; generous for a loaded CI machine
SCREENSHOT_DIR = Path(os.environ.get("AFFECTLENS_SCREENSHOTS") or tempfile.gettempdir()) / "affectlens-screenshots"
WINDOW = {"width": 1440, "height": 1000}     # the working size the page is laid out for


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless; a missing one fails the browser tests (not a quiet skip)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"chromium is not installed at {CHROMIUM}: the browser tests need it (`apt-get install "
                    "chromium`)", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield browser
        browser.close()


def signed_in_page(browser, url: str, user: str):
    """A page of its own (own cookies) at the working size, signed in as `user`."""
    page = browser.new_context(viewport=WINDOW).new_page()
    page.goto(url)
    page.locator("input[type=text]").fill(user)
    page.locator("input[type=password]").fill(f"{user}-pw")
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#who")).to_contain_text(f"Signed in as {user}")
    return page


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
    # A one-frame flicker (Surprise at frame 20) gives the review queue a second segment for J / K.
    write_annotation(pd.DataFrame({"expression": pd.array([0] * 20 + [6] + [0] * 15 + [4] * 36, dtype="Int64")}),
                     folder / "expr.txt", "expr")
    write_annotation(pd.DataFrame({"valence": [0.1] * 30, "arousal": [0.2] * 30}), folder / "short_va.txt", "va")
    data = (media_dir / "single_face.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not a video\n")
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def page(browser, server):
    page = signed_in_page(browser, server, "alice")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def reviewed(browser, tmp_path_factory, files, media_dir):
    """A server of its own with a reviewed video, made through the API: single_face.mp4 analysed by
    alice with DDAMFN and CLIP and her VA / EXPR annotation, her flag 1 and correction 1, which bob
    accepted; and alice's page on it."""
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-reviewed"), None)
    alice, bob = (Client(url, auth=(name, f"{name}-pw"), verbose=False) for name in ("alice", "bob"))
    key = analyse(alice, media_dir / "single_face.mp4", [files["va.txt"], files["expr.txt"]],
                  models=("DDAMFN", "CLIP"))["key"]
    alice.predict(key, "expr", 10, 20, "wrong label", "the smile starts earlier", api_name="/flag")
    alice.predict(key, "va", 30, 39, 0.6, 0.3, "Neutral", [], "a clear smile", api_name="/correct")
    bob.predict(key, 1, "the smile is there", api_name="/accept_correction")
    page = signed_in_page(browser, url, "alice")
    yield page
    page.context.close()
    demo.close()


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
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    upload_and_analyse(page, files["notes.txt"])
    expect_message(page, "Invalid file type: notes.txt")      # the browser refuses it
    expect(page.locator("#analyse-status .refused")).to_contain_text("Choose a video first")   # the server says what to do
    upload_and_analyse(page, files["broken.mp4"])
    expect_message(page, "Video not playable")                  # the browser's player gives up on it
    expect(page.locator("#analyse-status .refused")).to_contain_text("broken.mp4 cannot be read as a video",
                                                                   timeout=ANALYSIS_TIMEOUT_MS)
    for name, video, annotations, message in (
            ("too-long", media_dir / "WolfgangLanger_Pexels.mp4", (), "lasts 20 s; this app accepts videos up to 10 s"),
            ("no-face", media_dir / "no_face.mp4", (), "No face was found in any of the 95 frames of no_face.mp4"),
            ("short-annotation", media_dir / "single_face.mp4", [files["short_va.txt"]],
             "30 annotated frames, but the video has 72")):
        refused(page, lambda: upload_and_analyse(page, video, annotations), "analyse-status", message, name)

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
    expect(timeline.locator("svg.main-svg").first).to_be_visible(timeout=30_000)
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

    # Review: the video under review by its file name; no key anywhere on the page.
    page.get_by_role("tab", name="Review").click()
    expect(page.locator("#review-name input, #review-name textarea").first).to_have_value("single_face.mp4")
    assert "sha256" not in page.locator("body").inner_text()
    # Click the top segment of the queue; J and K step through the queue.
    first_row = page.locator("#queue [role=row][aria-rowindex='2'] [role=gridcell]").first
    expect(first_row).to_be_visible()
    first_row.click()
    expect(page.locator("#segment-plot svg.main-svg").first).to_be_visible(timeout=60_000)
    expect(page.locator("#gallery img").first).to_be_visible()
    expect(page.locator("#segment-labels")).to_contain_text("gt_valence")
    segment = page.locator("#segment input")
    expect(segment).to_have_value("0")
    first_range = (page.locator("#start input").input_value(), page.locator("#end input").input_value())
    page.evaluate("document.activeElement && document.activeElement.blur()")
    expect(page.locator("#queue [role=row][aria-rowindex='3']")).to_be_visible()     # two segments at least
    page.keyboard.press("j")
    expect(page.locator("#segment-status")).to_have_text("")
    expect(segment).to_have_value("1")
    page.keyboard.press("k")
    expect(segment).to_have_value("0")
    expect(page.locator("#start input")).to_have_value(first_range[0])
    expect(page.locator("#end input")).to_have_value(first_range[1])
    # The frame range in seconds too, the unit of the timelines (single_face.mp4: 30 frames/s).
    start, end = (int(float(v)) for v in first_range)
    expect(page.locator("#range-seconds")).to_contain_text(
        f"Frames {start}-{end} are {start / 30:.3f}-{(end + 1) / 30:.3f} s into the video")
    # Flag and propose with notes: the notes are emptied after each submit.
    page.locator("#flag-note textarea, #flag-note input").first.fill("the smile starts earlier")
    page.locator("#flag").click()
    expect(page.locator("#flag-status")).to_contain_text("Flag 1:")
    expect(page.locator("#flag-note textarea, #flag-note input").first).to_have_value("")
    expect(page.locator("#history")).to_contain_text("flagged as wrong label: the smile starts earlier")
    page.locator("#correct-note textarea, #correct-note input").first.fill("a clear smile")
    page.locator("#correct").click()
    expect(page.locator("#correct-status")).to_contain_text("Correction 1:")
    expect(page.locator("#correct-note textarea, #correct-note input").first).to_have_value("")
    expect(page.locator("#corrections")).to_contain_text("proposed")
    expect(page.locator("#corrections")).to_contain_text(re.compile(r"frames \d+-\d+, was \w"))  # a sentence
    assert "null" not in page.locator("#corrections").inner_text()
    page.locator("#correction-id input").fill("1")
    page.locator("#accept").click()
    expect(page.locator("#decision-status .refused")).to_contain_text("a second reviewer must accept or reject it")
    page.locator("#export").click()
    expect(page.get_by_role("cell", name=re.compile("^single_face_corrections.json$"))).to_be_visible()
    page.screenshot(path=str(SCREENSHOT_DIR / "review.png"), full_page=True)


@pytest.fixture(scope="module")
def proposed(tmp_path_factory, files, media_dir):
    """A server of its own on which alice, through the API, analysed single_face.mp4 with her VA / EXPR
    annotation, flagged frames 10-20 and proposed correction 1, which waits for a second reviewer."""
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-proposed"), None)
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    key = analyse(alice, media_dir / "single_face.mp4", [files["va.txt"], files["expr.txt"]],
                  models=("DDAMFN",))["key"]
    alice.predict(key, "expr", 10, 20, "wrong label", "the smile starts earlier", api_name="/flag")
    alice.predict(key, "va", 30, 39, 0.6, 0.3, "Neutral", [], "a clear smile", api_name="/correct")
    yield url
    demo.close()


def test_a_second_reviewer_opens_the_video_from_the_database_and_decides(browser, proposed):
    """Bob, in his own browser, never analyses: he finds Alice's video in the database list and her
    correction among those waiting for him, opens the video and accepts the correction with a comment."""
    page = signed_in_page(browser, proposed, "bob")       # his own cookies
    try:
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
        expect(page.locator("#decision-status")).to_contain_text("Correction 1 accepted by bob")
        expect(page.locator("#decision-comment textarea, #decision-comment input").first).to_have_value("")
        expect(page.locator("#history")).to_contain_text("accepted")
        expect(page.locator("#corrections")).to_contain_text("the smile is there")
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT_DIR / "second-reviewer.png"
        page.screenshot(path=str(shot), full_page=True)
        # The screenshot is of the whole page, and the decision's message is drawn in it where the page
        # puts it (dark text pixels inside that box).
        image = np.asarray(Image.open(shot).convert("L"))
        size = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert image.shape[1] == size[0] and abs(image.shape[0] - size[1]) <= 2
        box = page.locator("#decision-status").evaluate(
            "(e) => { const r = e.getBoundingClientRect(); "
            "return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }")
        x, y, w, h = (int(round(v)) for v in box)
        text = image[y:y + h, x:x + w]
        assert text.size and (text < 100).mean() > 0.01, "the decision's message is not in the screenshot"
        assert page.get_by_text("Error", exact=True).count() == 0      # no output replaced by an error badge
    finally:
        page.context.close()


RED = np.array([0xdc, 0x26, 0x26])     # the left border of a refused action's message (webapp.page.CSS)


def shows_red(path: Path) -> bool:
    """Whether a screenshot holds the red bar that marks a refusal."""
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    return bool((np.abs(pixels - RED).sum(axis=1) < 40).sum() >= 20)


def refused(page, act, status: str, message: str, name: str):
    """Do something the page must refuse: the reason shows beside the button, in red, and stays; no
    output shows an error badge and no toast pops up."""
    act()
    box = page.locator(f"#{status}")
    expect(box.locator(".refused")).to_contain_text(message, timeout=ANALYSIS_TIMEOUT_MS)
    expect(box).to_contain_text("Not done")
    assert page.get_by_text("Error", exact=True).count() == 0, f"{name}: an output shows an error badge"
    assert page.locator(".toast-body").count() == 0, f"{name}: a toast instead of a message"
    shot = SCREENSHOT_DIR / f"refused-{name}.png"
    box.screenshot(path=str(shot))
    assert shows_red(shot), f"{name}: the message is not shown in red"


def fill(page, elem_id: str, value: str):
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def test_every_refusal_is_a_message_beside_its_button(reviewed):
    """Each refusal of the Review, prompts and Models tabs, first with no video open, then with the
    stored video open: every output stays as it was and the reason stays beside the button."""
    page = reviewed
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.reload()
    page.get_by_role("tab", name="Review").click()
    click = lambda elem_id: (lambda: page.locator(f"#{elem_id}").click())   # noqa: E731
    no_analysis, no_video = "Analyse a video first", "No video open"
    expect(page.locator("#review-name input, #review-name textarea").first).to_have_attribute(
        "placeholder", re.compile("No video open"))

    # No video open.
    refused(page, click("open-video"), "videos-status", "Choose a video from the list", "open-video")
    refused(page, click("rank"), "segment-status", no_analysis, "rank")
    refused(page, click("show-range"), "segment-status", no_analysis, "show-range")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    refused(page, lambda: page.keyboard.press("j"), "segment-status", no_analysis, "key-j")
    refused(page, click("flag"), "flag-status", no_video, "flag-no-video")
    refused(page, click("correct"), "correct-status", no_video, "correct-no-video")
    refused(page, click("accept"), "decision-status", no_video, "accept-no-video")
    refused(page, click("export"), "export-status", no_video, "export-no-video")
    refused(page, click("resolve"), "resolve-status", no_video, "resolve-no-video")
    refused(page, click("agreement-btn"), "agreement-status", no_analysis, "agreement")

    # The stored video, opened from the database.
    page.locator("#open-choice input").click()
    page.get_by_role("option", name="single_face.mp4", exact=True).click()
    page.locator("#open-video").click()
    expect(page.locator("#review-name input, #review-name textarea").first).to_have_value("single_face.mp4",
                                                                                        timeout=60_000)
    expect(page.locator("#videos-status")).to_have_text("")          # the refusal went with the next action
    expect(page.locator("#corrections")).to_contain_text("accepted", timeout=60_000)
    page.locator("#rank").click()
    expect(page.locator("#queue [role=row][aria-rowindex='2']")).to_be_visible()
    page.locator("#open-segment").click()
    expect(page.locator("#segment-plot svg.main-svg").first).to_be_visible(timeout=60_000)
    corrections, flags = page.locator("#corrections").inner_text(), page.locator("#flags").inner_text()
    task = page.locator("#task input").input_value()

    page.locator("#segment input").fill("999")
    refused(page, click("open-segment"), "segment-status", "segment number must be from 0 to", "open-segment")
    page.locator("#segment input").fill("0")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    refused(page, lambda: page.keyboard.press("k"), "segment-status", "is the first of the queue", "key-k")
    page.locator("#start input").fill("9")
    page.locator("#end input").fill("3")
    refused(page, click("show-range"), "segment-status", "are not a range inside the video", "show-range-bad")
    refused(page, click("flag"), "flag-status", "the end is before the start", "flag-backwards")
    page.locator("#start input").fill("0")
    page.locator("#end input").fill("500")
    refused(page, click("flag"), "flag-status", "outside video 'single_face.mp4'", "flag-outside")
    page.locator("#end input").fill("5")
    page.locator("#reason input").click()
    page.get_by_role("option", name="other", exact=True).click()
    refused(page, click("flag"), "flag-status", "reason 'other' needs a note", "flag-other")
    page.locator("#valence input").fill("2")
    if task != "va":
        page.locator("#task input").click()
        page.get_by_role("option", name="va", exact=True).click()
    refused(page, click("correct"), "correct-status", "valence 2 is not a number in [-1, 1]", "correct-valence")
    refused(page, click("accept"), "decision-status", "Enter the id of the correction", "accept-no-id")
    page.locator("#correction-id input").fill("1")
    refused(page, click("reject"), "decision-status", "alice proposed correction 1", "reject-own")
    page.locator("#correction-id input").fill("999")
    refused(page, click("revise"), "decision-status", "No correction 999", "revise-unknown")
    page.locator("#flag-id input").fill("1")
    refused(page, click("resolve"), "resolve-status", "names the correction that fixed", "resolve-without-fix")
    # Nothing the refusals touched changed, and no server path or key showed up.
    assert page.locator("#corrections").inner_text() == corrections
    assert page.locator("#flags").inner_text() == flags
    assert "sha256" not in page.locator("body").inner_text()

    # Compare CLIP prompts.
    page.get_by_role("tab", name="Compare CLIP prompts").click()
    page.get_by_label("Name").nth(1).fill("basic")
    refused(page, click("compare"), "prompt-status", "need different names", "compare-same-names")
    refused(page, click("save-set-1"), "save-status-1", "is a built-in prompt set", "save-builtin")
    page.get_by_label("Name").nth(1).fill("mine")
    page.get_by_label("Templates").nth(1).fill("a photo")
    refused(page, click("save-set-2"), "save-status-2", "each template needs exactly one", "save-bad-template")

    # Models.
    page.get_by_role("tab", name="Models").click()
    page.locator("#batch input").fill("5000")     # the reviewed uploads are training data: a bad size is refused
    refused(page, click("retrain"), "retrain-status", "batch size (0: the preset's) must be from 0 to 4096; 5000 is not",
            "retrain")
    refused(page, click("job-refresh"), "job-status", "Enter the number of a retraining job", "job-no-id")
    page.locator("#job-id input").fill("99")
    refused(page, click("job-refresh"), "job-status", "There is no retraining job 99", "job-unknown")
    page.screenshot(path=str(SCREENSHOT_DIR / "refusals.png"), full_page=True)


# The tables a reviewer reads, and what must show in them at the working size.
READ_TABLES = ("metrics", "frame-info", "clip-frame", "queue", "corrections", "flags", "history", "waiting", "videos")

CLIPPED_CELLS = """(ids) => ids.flatMap((id) => {
  // A cell's text is cut when the box its text is drawn in reaches past the cell (hidden by the cell's
  // overflow) or past the table's visible edge (hidden by the table's scrolling).
  const root = document.getElementById(id);
  if (!root) return [`#${id} is missing`];
  const view = root.getBoundingClientRect(), out = [];
  for (const cell of root.querySelectorAll("[role=gridcell], [role=columnheader], td, th")) {
    const text = cell.innerText.trim();
    if (!cell.offsetParent || !text) continue;
    const range = document.createRange();
    range.selectNodeContents(cell);
    const drawn = range.getBoundingClientRect(), box = cell.getBoundingClientRect();
    if (drawn.right > Math.min(box.right, view.right) + 1 || drawn.bottom > box.bottom + 1)
      out.push(`#${id}: "${text}" is cut (drawn to ${Math.round(drawn.right)} px, visible to `
               + `${Math.round(Math.min(box.right, view.right))} px)`);
  }
  return out;
})"""


def test_at_1440_by_1000_no_table_cell_a_reviewer_reads_is_cut(reviewed, files, media_dir):
    """The Analyse tab (metrics, this frame, CLIP's prompts) and the Review tab (queue, corrections with
    status / proposed by / decided by, flags, history) at the working size: every cell shows all its
    text inside its table; and on the Review tab the frames, the queue and the decision fit one screen."""
    page = reviewed
    upload_and_analyse(page, media_dir / "single_face.mp4", [files["va.txt"], files["expr.txt"]], clip=True)
    expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
    expect(page.locator("#clip-frame")).to_contain_text("Happiness", timeout=60_000)
    expect(page.locator("#metrics")).to_contain_text("CCC valence")
    expect(page.locator("#frame-info")).to_contain_text("AUs predicted")
    page.get_by_role("tab", name="Review").click()
    page.locator("#rank").click()
    expect(page.locator("#queue [role=row][aria-rowindex='2']")).to_be_visible()
    page.locator("#queue [role=row][aria-rowindex='2'] [role=gridcell]").first.click()
    expect(page.locator("#gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#corrections")).to_contain_text("decided by")
    expect(page.locator("#corrections")).to_contain_text("bob")
    page.screenshot(path=str(SCREENSHOT_DIR / "review-1440.png"), full_page=True)
    clipped = page.evaluate(CLIPPED_CELLS, ["queue", "corrections", "flags", "history", "waiting", "videos"])
    assert clipped == [], "\n".join(clipped)
    # The segment's frames, the queue and the decision's buttons on one screen.
    top = min(page.locator(f"#{i}").bounding_box()["y"] for i in ("gallery", "queue"))
    bottom = page.locator("#accept").bounding_box()
    assert bottom["y"] + bottom["height"] - top <= WINDOW["height"], "frames, queue and decision need scrolling"
    page.get_by_role("tab", name="Analyse").click()
    page.screenshot(path=str(SCREENSHOT_DIR / "analyse-1440.png"), full_page=True)
    clipped = page.evaluate(CLIPPED_CELLS, ["metrics", "frame-info", "clip-frame"])
    assert clipped == [], "\n".join(clipped)
