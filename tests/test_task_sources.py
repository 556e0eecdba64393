"""A random model never stands in front of a trained one: a trained DDAMFN beside an LSTM with random weights
answers every task with its own heads (exactly what DDAMFN alone gives), the run says which card gave each task
and why; with both random, the LSTM answers as before."""
import numpy as np
import pytest
import torch

from core.labels import TASKS
from core.models.ddamfn import DDAMFN
from core.pipeline import AnalysisConfig, analyze_video
from core.weights import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained_ddamfn(tmp_path_factory):
    torch.manual_seed(3)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "ddamfn.pt", DDAMFN(tasks=TASKS).eval(),
                           {"note": "every head stored: loads as trained"})


def test_a_trained_ddamfn_answers_before_a_random_lstm(trained_ddamfn, media_dir):
    video = media_dir / "single_face.mp4"
    weights = {"ddamfn": str(trained_ddamfn)}
    both = analyze_video(video, AnalysisConfig(models=("ddamfn", "lstm"), weights=weights, device="cpu", max_frames=9))
    alone = analyze_video(video, AnalysisConfig(models=("ddamfn",), weights=weights, device="cpu", max_frames=9))
    assert both.run.outputs_from == {"va": "ddamfn", "expr": "ddamfn", "au": "ddamfn"}
    assert both.run.main_outputs == "ddamfn" and both.run.models["lstm"].untrained
    assert both.run.notes == ("VA, EXPR, AU come from DDAMFN's trained heads: the LSTM's are random weights "
                              "(train an LSTM on this DDAMFN's embeddings to use it)",)
    assert not any(both.run.untrained_outputs()[t] for t in TASKS)
    columns = ["valence", "arousal", "expr", "AU1", "AU12"]
    assert np.array_equal(both.table[columns].to_numpy(dtype=float), alone.table[columns].to_numpy(dtype=float))


def test_with_both_random_the_lstm_answers(media_dir):
    run = analyze_video(media_dir / "single_face.mp4",
                        AnalysisConfig(models=("ddamfn", "lstm"), device="cpu", max_frames=9)).run
    assert run.outputs_from == {"va": "lstm", "expr": "lstm", "au": "lstm"} and run.main_outputs == "lstm"
    assert run.notes == ()
