"""The Review tab's ELAN and Label Studio export in Chromium: a reviewer opens a stored video, presses
the export, and downloads an .eaf that pympi reads with the EXPR tier and the model's tiers named as the
page names it, linked to the video beside it, next to the VA CSV and the Label Studio task JSON and
labelling config, all named after the upload (no database key)."""
import numpy as np
import pandas as pd
import pympi
import pytest
from gradio_client import Client
from playwright.sync_api import expect

from core.affwild2 import write_annotation
from tests.test_webapp_api import N_FRAMES, analyse, start_server
from tests.test_webapp_browser import browser, signed_in_page  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, media_dir):
    """single_face.mp4 analysed with DDAMFN, with VA and EXPR annotation files."""
    tmp = tmp_path_factory.mktemp("webapp-interop")
    demo, cfg, url = start_server(tmp, None)
    t = np.arange(N_FRAMES)
    write_annotation(pd.DataFrame({"valence": np.round(np.sin(t / 12) * 0.6, 3),
                                   "arousal": np.round(np.cos(t / 15) * 0.4, 3)}), tmp / "va.txt", "va")
    write_annotation(pd.DataFrame({"expression": pd.array([0] * 36 + [4] * 36, dtype="Int64")}), tmp / "expr.txt",
                     "expr")
    alice = Client(url, auth=("alice", "alice-pw"), verbose=False)
    analyse(alice, media_dir / "single_face.mp4", [tmp / "va.txt", tmp / "expr.txt"], models=("DDAMFN",))
    yield url, "single_face"      # the files are named after the upload, not its database key
    demo.close()


def test_the_page_exports_an_eaf_that_pympi_reads(stored, browser, tmp_path):  # noqa: F811
    url, stem = stored
    page = signed_in_page(browser, url, "bob")
    try:
        page.get_by_role("tab", name="Review").click()
        page.locator("#open-choice input").click()
        page.get_by_role("option", name="single_face.mp4").click()
        page.locator("#open-video").click()
        expect(page.locator("#review-name input, #review-name textarea").first).to_have_value("single_face.mp4",
                                                                                           timeout=60_000)
        page.locator("#export-interop").click()
        files = page.locator("#export-files")
        links = {name: files.locator(f'a[href$="/{name}"]').first
                 for name in (f"{stem}.eaf", f"{stem}_va.csv", f"{stem}_labelstudio.json",
                              f"{stem}_labelstudio_config.xml")}
        for link in links.values():
            expect(link).to_be_attached(timeout=60_000)
        with page.expect_download() as download:
            links[f"{stem}.eaf"].click()
        eaf = tmp_path / f"{stem}.eaf"
        download.value.save_as(eaf)
        written = pympi.Eaf(str(eaf))
        tiers = written.get_tier_names()
        assert "EXPR" in tiers and "DDAMFN (untrained): EXPR" in tiers      # the model as the page names it
        assert [(m["MEDIA_URL"], m["RELATIVE_MEDIA_URL"]) for m in written.media_descriptors] == [
            ("file:./single_face.mp4", "./single_face.mp4")]                # beside the .eaf, not a server path
        assert page.get_by_text("Error", exact=True).count() == 0
    finally:
        page.context.close()


def test_the_export_is_refused_in_words_without_an_open_video(stored):
    with pytest.raises(Exception, match="Analyse a video first"):
        Client(stored[0], auth=("alice", "alice-pw"), verbose=False).predict(api_name="/export_interop")
