"""Stage overlap (issue 31.4): with AFFECTLENS_STAGE_OVERLAP=1 detection of the next batch runs in a thread
beside the encoders, and the analysis is the same as without it; a value other than 0 or 1 is refused."""
import pandas as pd
import pytest

from core.pipeline import OVERLAP_ENV, AnalysisConfig, analyze_video, load_models
from tests.datagen import MEDIA_DIR

VIDEO = MEDIA_DIR / "face_noface.mov"


def test_overlapped_stages_give_the_same_analysis(monkeypatch):
    config = AnalysisConfig(models=("ddamfn", "lstm"), device="cpu", max_frames=40, batch_size=8)
    loaded = load_models(config)
    monkeypatch.setenv(OVERLAP_ENV, "0")
    plain = analyze_video(VIDEO, config, loaded=loaded)
    monkeypatch.setenv(OVERLAP_ENV, "1")
    overlapped = analyze_video(VIDEO, config, loaded=loaded)
    assert len(plain.table) == 40 and plain.table["face"].all()
    pd.testing.assert_frame_equal(overlapped.table, plain.table)
    assert "detect_wait" in overlapped.run.timings and "detect_wait" not in plain.run.timings
    assert overlapped.run.detection == plain.run.detection


def test_an_overlap_setting_that_is_not_0_or_1_is_refused(monkeypatch):
    monkeypatch.setenv(OVERLAP_ENV, "yes")
    with pytest.raises(ValueError) as err:
        analyze_video(VIDEO, AnalysisConfig(models=("ddamfn",), device="cpu", max_frames=4))
    assert str(err.value) == "AFFECTLENS_STAGE_OVERLAP='yes': use 1 (overlap detection with the encoders) or 0"
