"""benchmarks/fidelity.py end to end on a tiny set (not timed): an Aff-Wild2-layout set from the Pexels clip,
a calibrated random DDAMFN with heads trained by `python -m training train`, the clip analysed on every frame
and with strides."""
import pytest

from benchmarks import fidelity
from core.affwild2 import read_annotation
from core.labels import CHALLENGE_DIRS, EXPRESSIONS, SPLIT_DIRS


def test_fidelity_benchmark_on_a_tiny_set(tmp_path):
    result = fidelity.run(tmp_path, step=4, strides=(1, 2), epochs=1, max_frames=48)
    # the set: every 4th frame's face of the clip's first 48 frames, labelled as the clip shows (crying)
    images = sorted((tmp_path / "affwild2" / "cropped_aligned" / "pexels_train").glob("*.jpg"))
    assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(1, 13)]
    expr = read_annotation(tmp_path / "affwild2" / CHALLENGE_DIRS["expr"][0] / SPLIT_DIRS["train"] / "pexels_train.txt",
                           "expr")
    assert len(expr) == 12 and (expr["expression"] == EXPRESSIONS.index("Sadness")).all()
    assert (tmp_path / "encoder.pt").is_file() and fidelity.conditioned(tmp_path / "ddamfn-heads" / "best.pt")
    for model in ("DDAMFN",):
        every, strided = result["models"][model][1], result["models"][model][2]
        # a "stride" of 1 is the every-frame run again: the pipeline is deterministic
        assert every == {"frames": 48, "expr_agreement": 1.0, "ccc_valence": pytest.approx(1.0, abs=1e-12),
                         "ccc_arousal": pytest.approx(1.0, abs=1e-12), "au_f1": 1.0}
        assert strided["frames"] == 48
        assert all(0 <= strided[k] <= 1 for k in ("expr_agreement", "au_f1"))
        assert all(-1 <= strided[k] <= 1 for k in ("ccc_valence", "ccc_arousal"))
        signal = result["models"][model]["signal (every frame vs the clip's labels)"]
        assert set(signal) == {"ccc_valence", "ccc_arousal", "p_expr", "p_au"}
