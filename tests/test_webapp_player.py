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
import pandas as pd
import pytest
from gradio_client import Client
from PIL import Image
from playwright.sync_api import expect

from tests.test_webapp_api import N_FRAMES, analyse, start_server, table
from tests.test_webapp_browser import (ANALYSIS_TIMEOUT_MS, SCREENSHOT_DIR, files, page,  # noqa: F401 fixtures
                                       pytestmark, upload_and_analyse)

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
        const box = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
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
    red = near(image, CURSOR_RGB, tol=30)
    box = timeline.bounding_box()
    column = int(round(x - box["x"]))
    assert red[:, column - 2:column + 3].sum() > 0.4 * image.shape[0], "no cursor line at frame 20"
    assert red[:, : column - 6].sum() < 0.1 * image.shape[0] and red[:, column + 6:].sum() < 0.1 * image.shape[0]

    # The player seeked while paused sets the frame view (and the cursor) to its frame.
    page.evaluate("() => { document.querySelector('#player video').currentTime = 45.25 / 30; }")
    expect_frame(page, 45)
    expect_cursor_at(page, 45)

    # Focused frame view (not the slider): the same keys.
    page.locator("#frame-view").focus()
    page.keyboard.press("ArrowLeft")
    expect_frame(page, 44)

