"""What a reviewer sees of a video, in a real browser at 1440x1000 (Debian chromium through Playwright): a
new analysis in the Review tab's list without Refresh and the weights table once; a video opened from the
Review tab drawn on the Analyse tab at its panel's full width with its summary, metrics, frame view and
downloads; an accepted correction outlined on every open view of the video and named in "This frame";
agreement rows that say what they compare; table text wrapped between words, never inside one."""
import re

import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import expect

from tests.test_webapp_api import analyse, start_server
from tests.test_webapp_browser import (ANALYSIS_TIMEOUT_MS, CLIPPED_CELLS, SCREENSHOT_DIR, WINDOW,  # noqa: F401
                                       browser, signed_in_page, upload_and_analyse)
from tests.test_webapp_views import annotations  # noqa: F401  (a fixture)

# Each word of a table's text drawn on one line: a word whose box spans two lines was broken inside it.
BROKEN_WORDS = """(ids) => ids.flatMap((id) => {
  const root = document.getElementById(id);
  if (!root) return [`#${id} is missing`];
  const out = [];
  for (const cell of root.querySelectorAll("[role=gridcell], [role=columnheader], td, th")) {
    if (!cell.offsetParent) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (lines.size > 1) out.push(`#${id}: "${m[0]}" is broken over ${lines.size} lines`);
      }
    }
  }
  return out;
})"""
# The timeline's plotly figure: its width, its container's, the plot area's and margins, its outlines.
TIMELINE = """() => {
  const gd = document.querySelector("#timeline .js-plotly-plot"), size = gd._fullLayout._size;
  return {width: gd._fullLayout.width, panel: gd.parentElement.getBoundingClientRect().width,
          drawn: size.w + size.l + size.r,
          corrected: (gd.layout.shapes || []).map((s) => s.name || "").filter((n) => n.startsWith("corrected"))};
}"""
CORRECTED = """() => { const gd = document.querySelector("#timeline .js-plotly-plot");
  return !!gd && (gd.layout.shapes || []).some((s) => s.name === "corrected expr 1"); }"""


@pytest.fixture(scope="module", autouse=True)
def patient_expect():
    """Expectations wait up to 30 s here (2 shared cores: a page's first answers can take more than 5 s)."""
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)          # Playwright's default


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-views-browser"), None)
    yield url
    demo.close()


def open_from_review(page):
    """The Review tab's Open video on single_face.mp4."""
    page.get_by_role("tab", name="Review").click()
    page.locator("#open-choice input").click()
    page.get_by_role("option", name=re.compile("single_face.mp4")).first.click()
    page.locator("#open-video").click()
    expect(page.locator("#corrections")).to_contain_text("status", timeout=60_000)


def test_a_new_analysis_is_in_the_review_list_without_refresh_and_its_weights_table_shows_once(
        browser, server, annotations, media_dir):
    page = signed_in_page(browser, server, "alice")
    try:
        upload_and_analyse(page, media_dir / "single_face.mp4", annotations)
        expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
        weights = page.locator("table:has(th:text-is('weights'))")
        expect(weights).to_have_count(1)
        expect(page.locator("#weights-info")).to_have_text("")
        page.get_by_role("tab", name="Review").click()
        expect(page.locator("#videos")).to_contain_text("single_face.mp4", timeout=30_000)
    finally:
        page.context.close()


def test_an_opened_analysis_shows_all_at_full_width_and_every_open_view_follows_a_decision(
        browser, server, annotations, media_dir):
    alice_api = Client(server, auth=("alice", "alice-pw"), verbose=False)
    key = analyse(alice_api, media_dir / "single_face.mp4", annotations, models=("DDAMFN", "CLIP"))["key"]
    alice, bob = (signed_in_page(browser, server, name) for name in ("alice", "bob"))
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        for page in (alice, bob):
            open_from_review(page)
        expect(bob.locator("#review-name textarea, #review-name input").first).to_have_value("single_face.mp4")
        expect(bob.locator("#videos")).to_contain_text("single_face.mp4")
        expect(bob.locator("#waiting")).to_contain_text("proposed by")
        expect(bob.locator("#videos .wrap.default:not(.hide)")).to_have_count(0)        # no spinner over them
        shot = SCREENSHOT_DIR / "views-review-opened.png"
        bob.screenshot(path=str(shot))
        assert Image.open(shot).size == (WINDOW["width"], WINDOW["height"])

        # The Analyse tab shows what alice saw, the timeline at its panel's full width.
        bob.get_by_role("tab", name="Analyse").click()
        expect(bob.locator("#run-info")).to_contain_text("Opened from the database: analysed by alice on")
        expect(bob.locator("#metrics")).to_contain_text("P_EXPR (F1, 8 classes)")
        for name in ("predictions.csv", "run.json", "VA_submission.txt", "EXPR_submission.txt"):
            expect(bob.locator("#downloads").get_by_role("cell", name=f"single_face_{name}")).to_be_visible()
        expect(bob.locator("#frame-info")).to_contain_text("gt_expr")
        expect(bob.locator("#clip-frame")).to_contain_text("Happiness", timeout=60_000)
        bob.wait_for_function("() => { const gd = document.querySelector('#timeline .js-plotly-plot'); "
                              "return gd && gd._fullLayout && Math.abs(gd._fullLayout.width - "
                              "gd.parentElement.getBoundingClientRect().width) <= 4; }", timeout=30_000)
        drawn = bob.evaluate(TIMELINE)
        assert drawn["width"] == drawn["drawn"] and abs(drawn["width"] - drawn["panel"]) <= 4, drawn
        assert drawn["corrected"] == []
        assert not (found := bob.evaluate(BROKEN_WORDS, ["metrics", "frame-info", "clip-frame"])), "\n".join(found)
        assert not (found := bob.evaluate(CLIPPED_CELLS, ["metrics", "frame-info", "clip-frame"])), "\n".join(found)

        # Alice says frames 40-45 are Anger; Bob accepts on his page.
        alice_api.predict(key, "expr", 40, 45, 0.0, 0.0, "Anger", [], "a frown", api_name="/correct")
        bob.get_by_role("tab", name="Review").click()
        bob.locator("#correction-id input").fill("1")
        bob.locator("#accept").click()
        expect(bob.locator("#decision-status")).to_contain_text("Correction 1 accepted by bob")

        # Both open views follow: the deciding reviewer's at once, the other's within the check's period.
        for page in (bob, alice):
            page.get_by_role("tab", name="Analyse").click()
            page.wait_for_function(CORRECTED, timeout=30_000)
            expect(page.locator("#metrics-hint")).to_contain_text("The labels changed at")
        bob.locator("#frame input[type=number]").fill("42")
        bob.locator("#frame input[type=number]").press("Enter")
        expect(bob.locator("#frame-info")).to_contain_text(
            "corrected by correction 1 (proposed by alice, accepted by bob), was Happiness", timeout=30_000)
        expect(bob.locator("#frame-info")).to_contain_text("Anger")
        expect(bob.locator("#frame-caption")).to_contain_text("Frame 42 at 1.400 s")
        bob.screenshot(path=str(SCREENSHOT_DIR / "views-analyse-corrected.png"), full_page=True)
        assert not (found := bob.evaluate(BROKEN_WORDS, ["frame-info"])), "\n".join(found)
        assert not (found := bob.evaluate(CLIPPED_CELLS, ["frame-info"])), "\n".join(found)

        # Agreement rows name what they compare; no reviewer pair yet, said in a sentence.
        bob.get_by_role("tab", name="Review").click()
        bob.locator("#agreement-btn").click()
        expect(bob.locator("#agreement")).to_contain_text("model vs annotation, after corrections")
        expect(bob.locator("#agreement-status")).to_contain_text(
            "No two reviewers labelled the same frames of this video")
        bob.screenshot(path=str(SCREENSHOT_DIR / "views-review-agreement.png"), full_page=True)
        tables = ["agreement", "corrections", "history", "flags", "videos", "waiting", "queue"]
        assert not (found := bob.evaluate(BROKEN_WORDS, tables)), "\n".join(found)
        assert not (found := bob.evaluate(CLIPPED_CELLS, tables)), "\n".join(found)
    finally:
        for page in (alice, bob):
            page.context.close()
