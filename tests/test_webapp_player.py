"""The Analyse tab's player, timeline and frame view in a real browser (Debian chromium through Playwright,
headless), and their API through gradio_client: the slider, the arrow keys, a typed frame number, a click
on the timeline and the player's position all show the same frame, the timeline's red cursor stands at
it, the whole frame carries the face box and the crop DDAMFN's attention; the Aff-Wild2 source shows only
its own inputs. Screenshots are saved (SCREENSHOT_DIR) and their pixels checked for what must be drawn.

Real server, real video (single_face.mp4, 72 frames at 30 fps, a face in each), random weights.
"""
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import expect

from tests.test_webapp_api import N_FRAMES, analyse, start_server, table
from tests.test_webapp_browser import (ANALYSIS_TIMEOUT_MS, SCREENSHOT_DIR, browser, files,  # noqa: F401 fixtures
                                       page, upload_and_analyse)

FPS = 30.0
CURSOR_RGB = (0xE3, 0x1A, 0x1C)                 # webapp.plots.CURSOR_COLOR
BOX_RGB = {"detected": (40, 200, 40), "interpolated": (255, 160, 0)}   # webapp.analyses.BOX_COLORS


@pytest.fixture(scope="module")
def server(tmp_path_factory, affwild2_root):
    demo, cfg, url = start_server(tmp_path_factory.mktemp("webapp-player"), affwild2_root)
    yield url
    demo.close()


def shot(locator, name: str) -> np.ndarray:
    """The element's screenshot, saved, as an RGB array."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    data = locator.screenshot(path=str(SCREENSHOT_DIR / f"player-{name}.png"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def near(image: np.ndarray, rgb, tol: int = 40) -> np.ndarray:
    """Mask of the pixels within `tol` of a colour on every channel."""
    return (np.abs(image - np.asarray(rgb)) <= tol).all(axis=-1)


def expect_frame(page, frame: int):
    """The whole frame view shows `frame`: the slider, this frame's table and the caption (the last output
    to be redrawn)."""
    expect(page.locator("#frame input[type=number]")).to_have_value(str(frame))
    expect(page.locator("#frame-caption")).to_contain_text(f"Frame {frame} at {frame / FPS:.3f} s")
    expect(page.locator("#frame-info")).to_contain_text(f"{frame / FPS:.3f}")


def cursor_time(page) -> float:
    return page.evaluate("""() => document.querySelector('#timeline .js-plotly-plot').layout.shapes
                                  .find((s) => s.name === 'cursor').x0""")


def expect_cursor_at(page, frame: int):
    page.wait_for_function("""(t) => {
        const gd = document.querySelector('#timeline .js-plotly-plot');
        const c = gd && gd.layout.shapes.find((s) => s.name === 'cursor');
        return c && Math.abs(c.x0 - t) < 0.02; }""", arg=frame / FPS)


def timeline_point(page, t: float) -> tuple[float, float]:
    """Page coordinates of time t in the middle of the first timeline row (the valence plot)."""
    return tuple(page.evaluate("""(t) => {
        const gd = document.querySelector('#timeline .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        window.scrollBy(0, gd.getBoundingClientRect().top + ya._offset - 150);
        const box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.d2p(t), box.top + ya._offset + ya._length / 2]; }""", t))


def test_slider_keys_typed_frames_timeline_clicks_and_player_show_one_frame(page, files, media_dir):  # noqa: F811
    upload_and_analyse(page, media_dir / "single_face.mp4", [files["va.txt"]], clip=True)
    expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
    expect_frame(page, 0)
    expect(page.locator("#player video")).to_be_attached()

    # Keys on the focused slider: a frame, a second (30 frames), the end, and back one.
    slider = page.locator("#frame input[type=range]")
    slider.focus()
    page.keyboard.press("ArrowRight")
    expect_frame(page, 1)
    page.keyboard.press("Shift+ArrowRight")
    expect_frame(page, 31)
    page.keyboard.press("End")
    expect_frame(page, N_FRAMES - 1)
    page.keyboard.press("ArrowLeft")
    expect_frame(page, N_FRAMES - 2)
    page.keyboard.press("Shift+ArrowLeft")
    expect_frame(page, N_FRAMES - 32)
    expect_cursor_at(page, N_FRAMES - 32)

    # A typed frame number with Enter.
    number = page.locator("#frame input[type=number]")
    number.fill("40")
    number.press("Enter")
    expect_frame(page, 40)
    expect_cursor_at(page, 40)

    # A click on the timeline at frame 20 moves the slider, the frame view, the cursor and the player.
    x, y = timeline_point(page, 20 / FPS)
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    expect_frame(page, 20)
    expect_cursor_at(page, 20)
    page.wait_for_function("() => Math.abs(document.querySelector('#player video').currentTime - 20.25 / 30) < 0.02")
    # The hover says seconds and the frame number.
    page.mouse.move(x, y + 2)
    expect(page.locator("#timeline g.hoverlayer")).to_contain_text(re.compile(r"0\.6\d s"))
    expect(page.locator("#timeline g.hoverlayer")).to_contain_text("frame 20")
    page.mouse.move(0, 0)

    # The red cursor is drawn where frame 20 is, across the rows.
    timeline = page.locator("#timeline .js-plotly-plot")
    image = shot(timeline, "timeline")
    top, length = page.evaluate("""() => { const ya = document.querySelector('#timeline .js-plotly-plot')
                                           ._fullLayout.yaxis; return [ya._offset, ya._length]; }""")
    red = near(image, CURSOR_RGB, tol=12)[int(top):int(top + length)]    # the valence row
    column = int(round(page.evaluate("""(t) => { const xa = document.querySelector('#timeline .js-plotly-plot')
                                                   ._fullLayout.xaxis; return xa._offset + xa.d2p(t); }""", 20 / FPS)))
    assert red[:, column - 2:column + 3].any(axis=1).mean() > 0.9, "no cursor line at frame 20"
    assert red[:, : column - 4].sum() + red[:, column + 5:].sum() < 20, "red drawn away from the cursor"

    # The player seeked while paused sets the frame view (and the cursor) to its frame.
    page.evaluate("() => { document.querySelector('#player video').currentTime = 45.25 / 30; }")
    expect_frame(page, 45)
    expect_cursor_at(page, 45)

    # Focused frame view (not the slider): the same keys.
    page.locator("#frame-view").focus()
    page.keyboard.press("ArrowLeft")
    expect_frame(page, 44)


    # The whole frame with its face box: MTCNN ran on even frames (detected, green), odd frames' boxes are
    # interpolated (amber).
    for frame, kind in ((44, "detected"), (45, "interpolated")):
        if frame != 44:
            number.fill(str(frame))
            number.press("Enter")
        expect_frame(page, frame)
        expect(page.locator("#frame-caption")).to_contain_text(f"face box {kind}")
        expect(page.locator("#frame-caption")).to_contain_text("untrained")
        page.locator("#full-frame img").scroll_into_view_if_needed()
        page.wait_for_timeout(300)            # the new image has been swapped in (not an assertion)
        full = shot(page.locator("#full-frame img"), f"full-frame-{kind}")
        assert near(full, BOX_RGB[kind], tol=45).sum() > 100, f"no {kind} face box drawn"
        other = "detected" if kind == "interpolated" else "interpolated"
        assert near(full, BOX_RGB[other], tol=30).sum() < 20
    # DDAMFN's attention over the crop: random weights give a flat map, drawn as one blue (JET, low) tint.
    crop = shot(page.locator("#crop img"), "crop")
    attention = shot(page.locator("#attention img"), "attention")
    assert attention.shape[0] > 100 and attention.shape[1] > 100
    tint = attention.reshape(-1, 3).mean(axis=0) - crop.reshape(-1, 3).mean(axis=0)
    assert tint[2] > 40 and tint[0] < -20, f"no blue attention overlay (mean change {tint})"
    # CLIP's probability of each prompt at this frame, most probable first.
    clip = page.locator("#clip-frame")
    expect(clip).to_contain_text("basic")
    for expression in ("Neutral", "Happiness", "Other"):
        expect(clip).to_contain_text(expression)
    page.screenshot(path=str(SCREENSHOT_DIR / "player-analyse.png"), full_page=True)


def test_readable_timeline_legend_colour_bars_and_metrics(page, files, media_dir):  # noqa: F811
    """One legend entry per track, a colour bar beside each AU row, no raw floats in the metrics."""
    upload_and_analyse(page, media_dir / "single_face.mp4", [files["va.txt"], files["expr.txt"]])
    expect(page.locator("#run-info")).to_contain_text("72 frames, 72 with a face", timeout=ANALYSIS_TIMEOUT_MS)
    page.screenshot(path=str(SCREENSHOT_DIR / "player-readable.png"), full_page=True)
    timeline = page.locator("#timeline")
    expect(timeline.locator("g.legend")).to_be_visible(timeout=30_000)
    entries = timeline.locator("g.legend text.legendtext").all_text_contents()
    assert len(entries) == len(set(entries)), f"duplicated legend entries: {entries}"
    assert {"valence prediction", "valence annotation", "arousal prediction", "arousal annotation"} <= set(entries)
    colors = page.evaluate("""() => document.querySelector('#timeline .js-plotly-plot').data
        .filter((t) => t.type === 'scatter' && t.mode === 'lines').map((t) => [t.name, t.line.color, t.line.dash])""")
    assert len({c for _, c, _ in colors}) == len(colors) == 4, colors
    assert {d for n, _, d in colors if "annotation" in n} == {"dash"}
    assert timeline.locator("g.colorbar").count() >= 1                   # the AU probability row
    metrics = page.locator("#metrics")
    expect(metrics).to_contain_text("CCC valence")
    values = table_texts(metrics)
    assert values and all(re.fullmatch(r"-?\d+(\.\d{1,3})?", v) for v in values), values
    shot(timeline, "legend")


def table_texts(metrics) -> list[str]:
    """The value column's cells of the metrics table as the page shows them."""
    rows = metrics.locator("[role=row]").all()
    header = [c.inner_text().strip() for c in rows[0].locator("[role=columnheader]").all()]
    col = header.index("value")
    return [r.locator("[role=gridcell]").nth(col).inner_text().strip() for r in rows[1:]]


def test_affwild2_source_shows_only_its_inputs(page):  # noqa: F811
    page.reload()
    page.locator("#analyse").wait_for()
    expect(page.locator("#source")).to_be_visible()
    expect(page.locator("#video")).to_be_visible()
    expect(page.locator("#affwild2-video")).to_be_hidden()
    page.locator("#source").get_by_text("Aff-Wild2 video").click()
    expect(page.locator("#affwild2-video")).to_be_visible()
    expect(page.locator("#video")).to_be_hidden()
    expect(page.locator("#annotations")).to_be_hidden()
    page.locator("#affwild2-video input").click()
    page.get_by_role("option", name="12-30-640x360").click()
    expect(page.locator("#source input[value='Aff-Wild2 video']")).to_be_checked()
    # The prompt set applies to CLIP only.
    expect(page.locator("#prompt-set")).to_be_visible()
    page.get_by_role("checkbox", name="CLIP", exact=True).uncheck()
    expect(page.locator("#prompt-set")).to_be_hidden()
    page.locator("#analyse").click()
    expect(page.locator("#run-info")).to_contain_text("12-30-640x360", timeout=ANALYSIS_TIMEOUT_MS)
    expect(page.locator("#frame-caption")).to_contain_text("Aff-Wild2 aligned face image")
    page.locator("#attention img").scroll_into_view_if_needed()
    expect(page.locator("#attention img")).to_be_visible()
    expect(page.locator("#player")).to_be_hidden()                   # no video file: no player
    page.screenshot(path=str(SCREENSHOT_DIR / "player-affwild2.png"), full_page=True)
    page.locator("#source").get_by_text("Uploaded video").click()
    expect(page.locator("#video")).to_be_visible()
    expect(page.locator("#affwild2-video")).to_be_hidden()


def test_frame_view_through_the_api(server, media_dir):
    """show_frame keeps (crop, this frame); frame_details gives the whole frame, the attention overlay,
    CLIP's probabilities (3 decimals, summing to 1) and the caption."""
    client = Client(server, auth=("alice", "alice-pw"), verbose=False)
    out = analyse(client, media_dir / "single_face.mp4")
    run_info, timeline, metrics = out["run_info"], out["timeline"], out["metrics"]
    figure = json.loads(timeline["plot"])
    assert figure["layout"]["meta"]["fps"] == pytest.approx(FPS)
    assert [s for s in figure["layout"]["shapes"] if s.get("name") == "cursor"]
    crop, info, _ = client.predict(8, api_name="/show_frame")          # MTCNN runs on every 4th frame
    assert Path(crop).is_file() and ["frame", "8"] in info["data"]
    full, attention, clip, caption, _ = client.predict(8, api_name="/frame_details")
    assert Image.open(full).size[0] == 640 and Image.open(attention).size == Image.open(crop).size
    probs = table(clip)
    assert list(probs.columns) == ["prompt set", "expression", "prompts", "p"] and len(probs) == 8
    assert probs["p"].sum() == pytest.approx(1.0, abs=0.01)
    assert (probs["p"].round(3) == probs["p"]).all() and probs["p"].is_monotonic_decreasing
    assert "happy" in " ".join(probs["prompts"]).lower()
    assert "Frame **8**" in caption and "**detected**" in caption and "**untrained**" in caption
    with pytest.raises(Exception, match="The frame must be from 0 to 71; 72 is not"):
        client.predict(72, api_name="/frame_details")
