"""The encoders' runtime on a CPU (core.runtime, issue 31.3): OpenVINO fp32 made in the background while eager
torch serves, kept in the data folder by the weights' content key and read back by a later process, faithful to
eager torch by the fidelity rule of benchmarks/runtimes.py, and named in the run JSON and the page's model
table; eager torch when AFFECTLENS_RUNTIME=torch or OpenVINO is missing (tested without it in a child process)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import fidelity, runtimes
from core import runtime
from core.affwild2 import IMAGE_DIR
from core.faces import read_face_image
from core.pipeline import AnalysisConfig, analyze_video
from core.predict import encode, load_models
from tests.datagen import MEDIA_DIR
from webapp.results import weights_table

REPO = Path(__file__).resolve().parents[1]
VIDEO = MEDIA_DIR / "single_face.mp4"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Face crops of the Pexels clip and a DDAMFN whose embeddings have a real spread (benchmarks/fidelity)."""
    work = tmp_path_factory.mktemp("faces")
    fidelity.make_dataset(work / "affwild2", step=4, max_frames=256)
    encoder = fidelity.calibrated_encoder(work / "affwild2", work / "encoder.pt")
    images = sorted((work / "affwild2" / IMAGE_DIR / fidelity.VIDEOS["train"]).glob("*.jpg"))
    return encoder, np.stack([read_face_image(p, 112) for p in images])


@pytest.fixture(scope="module")
def openvino_models(faces, tmp_path_factory):
    """DDAMFN (the calibrated encoder) and a small CLIP loaded with AFFECTLENS_RUNTIME=auto in a fresh data
    folder; whether each had its OpenVINO model ready right after loading; both then waited for."""
    pytest.importorskip("openvino")
    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AFFECTLENS_DATA_DIR", str(data))
        mp.setenv(runtime.RUNTIME_ENV, "auto")
        loaded = load_models(["ddamfn", "clip"], {"ddamfn": str(faces[0])}, "cpu", clip_model="ViT-S-32")
        ready_at_once = {n: runtime.handle(m.model).ready.is_set() for n, m in loaded.models.items()}
        first = {}
        encode(loaded.models["ddamfn"], faces[1][:4], ran=first)
        assert all(runtime.wait(m.model) for m in loaded.models.values()), \
            [runtime.handle(m.model).error for m in loaded.models.values()]
    return loaded, data, ready_at_once, first


def test_eager_serves_while_openvino_is_made_then_openvino_runs(openvino_models, faces):
    loaded, data, ready_at_once, first = openvino_models
    assert ready_at_once == {"ddamfn": False, "clip": False}      # conversion takes seconds: nothing is ready yet
    assert first == {"torch": 4}
    name = f"openvino {runtime.version('openvino')} fp32"
    for card, model in loaded.models.items():
        kind = model.model.encoder_kind(adapted=False)
        handle = runtime.handle(model.model)
        assert handle.origin == "converted"
        key = model.model.embedding_key(kind)
        assert handle.path == data / "runtimes" / f"{kind}-{key}-openvino-{runtime.version('openvino')}.xml"
        assert handle.path.is_file() and handle.path.with_suffix(".bin").is_file()
        assert runtime.current(model.model) == name
    ran = {}
    encode(loaded.models["ddamfn"], faces[1], ran=ran)
    assert ran == {name: len(faces[1])}


@pytest.mark.parametrize("card", ["ddamfn", "clip"])
def test_openvino_passes_the_fidelity_rule(openvino_models, faces, card):
    """Eager's own spread over batch sizes 1/16/64 and threads 1/2, OpenVINO's difference at each batch size;
    DDAMFN's decisions with its heads on embeddings that differ by their own size."""
    loaded = openvino_models[0]
    model = loaded.models[card]
    x = model.preprocess(faces[1])
    kind = model.model.encoder_kind(adapted=False)
    eager = lambda b: model.model.embeddings(b, kind, len(b), False)       # noqa: E731  (encode's eager path)
    reference = runtimes.outputs(model.model, runtimes.batched(eager, x))
    variants = [runtimes.outputs(model.model, runtimes.with_threads(t, runtimes.batched, eager, x, b))
                for b in runtimes.BATCHES for t in runtimes.THREADS]
    spread = runtimes.eager_spread(reference, variants)
    fast = runtime.handle(model.model)
    for b in runtimes.BATCHES:
        got = runtimes.outputs(model.model, runtimes.batched(fast, x, b))
        difference = runtimes.largest_difference(got, reference)
        agree = runtimes.decisions(reference, got, loaded.au_thresholds) if card == "ddamfn" else None
        assert runtimes.verdict(difference, spread, agree) == [], (b, difference, spread)
        if card == "ddamfn":
            assert set(agree) == {"expr_agreement", "au_agreement", "va_ccc"}


def test_a_later_process_reads_the_converted_model_from_the_data_folder(openvino_models, faces):
    loaded, data, _, _ = openvino_models
    path = runtime.handle(loaded.models["ddamfn"].model).path
    before = path.stat().st_mtime_ns
    script = (f"import json; from core import runtime; from core.predict import load_models;"
              f"m = load_models(['ddamfn'], {{'ddamfn': {str(faces[0])!r}}}, 'cpu').models['ddamfn'].model;"
              f"print(json.dumps([runtime.wait(m), runtime.handle(m).origin, str(runtime.handle(m).path)]))")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "AFFECTLENS_DATA_DIR": str(data),
           runtime.RUNTIME_ENV: "auto"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [True, "cache", str(path)]
    assert path.stat().st_mtime_ns == before


def test_the_run_json_and_the_model_table_name_the_runtime(openvino_models, faces):
    loaded = openvino_models[0]
    name = f"openvino {runtime.version('openvino')} fp32"
    analysis = analyze_video(VIDEO, AnalysisConfig(models=("ddamfn", "clip"), weights={"ddamfn": str(faces[0])},
                                                   device="cpu",
                                                   clip_model="ViT-S-32", max_frames=8), loaded=loaded)
    models = analysis.run.to_dict()["models"]
    assert {card: m["runtime"] for card, m in models.items()} == {"ddamfn": name, "clip": name}
    rows = weights_table(analysis.run.models)
    assert rows[0] == "| model | weights | state | runtime |"
    assert rows[2].endswith(f"| {name} |") and rows[3].endswith(f"| {name} |")


def test_torch_setting_runs_eager_torch(monkeypatch):
    monkeypatch.setenv(runtime.RUNTIME_ENV, "torch")
    loaded = load_models(["ddamfn"], {}, "cpu")
    model = loaded.models["ddamfn"]
    assert runtime.handle(model.model) is None and runtime.current(model.model) == "torch"
    ran = {}
    crops = np.zeros((3, 112, 112, 3), np.uint8)
    emb = encode(model, crops, ran=ran)
    assert ran == {"torch": 3}
    assert np.array_equal(emb, model.model.embeddings(model.preprocess(crops), "ddamfn", 16, False).numpy())
    assert loaded.describe({"ddamfn": ran})["ddamfn"].runtime == "torch"


def test_a_runtime_that_is_not_one_is_refused(monkeypatch):
    monkeypatch.setenv(runtime.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ValueError) as err:
        load_models(["ddamfn"], {}, "cpu")
    assert str(err.value) == "AFFECTLENS_RUNTIME='tensorrt' is not a runtime: use auto, torch or openvino"


WITHOUT_OPENVINO = """
import json, sys
sys.modules["openvino"] = None            # as if it were not installed
from core import runtime
from core.pipeline import AnalysisConfig, analyze_video, load_models
config = AnalysisConfig(models=("ddamfn",), device="cpu", max_frames=8)
loaded = load_models(config)
model = loaded.models["ddamfn"].model
ready = runtime.wait(model)
run = analyze_video({video!r}, config, loaded=loaded).run
print(json.dumps([ready, runtime.current(model), run.models["ddamfn"].runtime, run.frames]))
"""


@pytest.mark.parametrize("setting", ["auto", "openvino"])
def test_without_openvino_the_encoders_run_on_eager_torch(tmp_path, setting):
    """auto falls back to eager torch and says why; openvino refuses to run without it."""
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "AFFECTLENS_DATA_DIR": str(tmp_path),
           runtime.RUNTIME_ENV: setting}
    out = subprocess.run([sys.executable, "-c", WITHOUT_OPENVINO.format(video=str(VIDEO))], cwd=REPO, env=env,
                         capture_output=True, text=True)
    if setting == "openvino":
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1] == (
            "RuntimeError: AFFECTLENS_RUNTIME=openvino: OpenVINO is not installed")
        return
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [False, "torch (OpenVINO is not installed)", "torch", 8]
    assert not (tmp_path / "runtimes").exists()
