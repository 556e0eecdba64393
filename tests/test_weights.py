"""core/weights: specs, our checkpoint format (save, reload, compare), Hub cache and offline behaviour,
and one clear error per failure."""
import time

import numpy as np
import pytest
import torch

from core.models import create_model
from core.models.ddamfn import DDAMFN
from core.models.temporal import TemporalLSTM
from core.weights import (FORMAT_VERSION, WeightsError, load_checkpoint, parse_spec, resolve,
                          save_checkpoint)
from models_helpers import seeded_images


@pytest.fixture(scope="module")
def ddamfn_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = DDAMFN(tasks=("va", "au"), num_class=8).eval()
    path = tmp_path_factory.mktemp("ckpt") / "ddamfn_va_au.pt"
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    save_checkpoint(path, model, {"training": {"preset": "va", "epochs": 2, "videos": ["1-30-1280x720"]},
                                  "metrics": {"ccc_valence": np.float64(0.41)},
                                  "au_thresholds": np.linspace(0.3, 0.6, 12)}, optimizer=opt)
    return model, path


def test_ddamfn_save_reload_gives_identical_outputs_and_metadata(ddamfn_checkpoint):
    model, path = ddamfn_checkpoint
    loaded = create_model("ddamfn", weights=str(path), device="cpu")
    assert loaded.info.untrained is False and loaded.info.tasks == ("va", "au")
    assert loaded.model.config == model.config
    x = seeded_images(7, 4)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    assert set(a) == set(b) == {"embedding", "attention", "fc", "va", "au"}
    for k in a:
        assert torch.equal(a[k], b[k]), k
    meta = loaded.info.metadata
    assert meta["architecture"] == "ddamfn" and meta["tasks"] == ["va", "au"]
    assert meta["label_order"]["au"][:3] == ["AU1", "AU2", "AU4"]
    assert meta["preprocessing"]["size"] == 112 and meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert meta["metrics"] == {"ccc_valence": 0.41} and len(meta["au_thresholds"]) == 12
    assert meta["training"]["videos"] == ["1-30-1280x720"]
    ckpt = load_checkpoint(path, architecture="ddamfn")
    assert ckpt.optimizer_state_dict["param_groups"][0]["lr"] == 1e-4
    assert loaded.info.label_order["va"] == ["valence", "arousal"]


def test_lstm_save_reload_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = TemporalLSTM(input_dim=32, hidden=16, layers=2, tasks=("expr",), bidirectional=True).eval()
    path = save_checkpoint(tmp_path / "lstm.pt", model, {"embedding": {"model": "ddamfn", "weights": "x.pt"}})
    loaded = create_model("lstm", weights=str(path), device="cpu")
    emb, mask = torch.randn(40, 32), torch.rand(40) > 0.3
    a = model.predict_video(emb, mask, window=16, stride=8)
    b = loaded.model.predict_video(emb, mask, window=16, stride=8)
    assert torch.equal(a["expr"], b["expr"])
    assert loaded.model.config == model.config and loaded.info.metadata["embedding"]["model"] == "ddamfn"


def test_missing_corrupt_and_foreign_files_give_one_line_errors(tmp_path, ddamfn_checkpoint):
    _, good = ddamfn_checkpoint
    cases = {}
    cases["missing"] = tmp_path / "nope.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50_000])
    cases["truncated"] = truncated
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    cases["text"] = text
    pickled_numbers = tmp_path / "list.pt"
    torch.save([1, 2, 3], pickled_numbers)
    cases["foreign"] = pickled_numbers
    expected = {"missing": "weights file not found", "truncated": "corrupt, truncated",
                "text": "corrupt, truncated", "foreign": "not a checkpoint AffectLens knows"}
    for case, path in cases.items():
        with pytest.raises(WeightsError) as err:
            create_model("ddamfn", weights=str(path), device="cpu")
        message = str(err.value)
        assert expected[case] in message and str(path) in message and "\n" not in message, message


def test_checkpoint_of_another_architecture_is_refused(tmp_path, ddamfn_checkpoint):
    _, ddamfn_path = ddamfn_checkpoint
    lstm_path = save_checkpoint(tmp_path / "lstm.pt", TemporalLSTM(input_dim=8, hidden=4))
    with pytest.raises(WeightsError, match=r"lstm\.pt is a lstm checkpoint, not a ddamfn one"):
        create_model("ddamfn", weights=str(lstm_path), device="cpu")
    with pytest.raises(WeightsError, match="is a ddamfn checkpoint, not a lstm one"):
        create_model("lstm", weights=str(ddamfn_path), device="cpu")


def test_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path):
    model = DDAMFN(tasks="va")
    path = save_checkpoint(tmp_path / "bad.pt", model)
    obj = torch.load(path, weights_only=True)
    obj["config"]["num_class"] = 8
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=r"bad\.pt does not fit DDAMFN: wrong shape 6 \(net\.fc\.weight"):
        create_model("ddamfn", weights=str(path), device="cpu")
    obj["format_version"] = FORMAT_VERSION + 1
    torch.save(obj, path)
    with pytest.raises(WeightsError, match="newer AffectLens"):
        load_checkpoint(path)


def test_requests_a_checkpoint_cannot_satisfy(ddamfn_checkpoint):
    _, path = ddamfn_checkpoint
    with pytest.raises(WeightsError, match="has no expr head"):
        create_model("ddamfn", weights=str(path), device="cpu", tasks=("va", "expr"))
    with pytest.raises(TypeError, match="num_head"):
        create_model("ddamfn", weights=str(path), device="cpu", num_head=3)
    assert create_model("ddamfn", weights=str(path), device="cpu", tasks=("va",)).info.tasks == ("va", "au")
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        create_model("resnet")


def test_nothing_configured_means_random_and_untrained():
    loaded = create_model("ddamfn", device="cpu", tasks=("expr",))
    assert loaded.info.untrained and loaded.info.source == "random" and loaded.info.untrained_tasks == ("expr",)
    assert loaded.device == torch.device("cpu") and not loaded.model.training


def test_spec_parsing():
    assert parse_spec("hf://owner/repo/sub/model.pt").kind == "hf"
    assert parse_spec("ViT-B-32:openai").kind == "open_clip"
    src = parse_spec("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert (src.kind, src.model_name, src.pretrained) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert parse_spec("checkpoints/ddamfn.pt").kind == "file"
    with pytest.raises(WeightsError, match="hf://owner/repo/file.pt"):
        parse_spec("hf://owner/model.pt")


def test_hub_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"hf://someone/ddamfn/best\.pt: not in the local Hugging Face cache "
                                           r"and the Hub is offline \(HF_HUB_OFFLINE is set\)"):
        create_model("ddamfn", weights="hf://someone/ddamfn/best.pt", device="cpu")
    assert time.monotonic() - start < 5


def test_a_repository_id_the_hub_cannot_have_is_said_so_not_taken_for_a_cache_miss(monkeypatch):
    """Only "not in the cache" moves on to the Hub: a malformed id is refused as such (offline too)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"hf://some one/ddamfn/best\.pt: not a Hugging Face repository file \("):
        resolve("hf://some one/ddamfn/best.pt")


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")       # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"hf://someone/ddamfn/best\.pt: .*127\.0\.0\.1 is unreachable"):
        resolve("hf://someone/ddamfn/best.pt")
    assert time.monotonic() - start < 5


def test_hub_file_in_the_cache_loads_offline(tmp_path, monkeypatch, ddamfn_checkpoint):
    """The Hub cache layout (models--owner--repo/refs, snapshots) as huggingface_hub writes it."""
    import huggingface_hub.constants

    model, path = ddamfn_checkpoint
    repo_dir = tmp_path / "models--someone--ddamfn"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit / "ckpt"
    snapshot.mkdir(parents=True)
    (snapshot / "best.pt").write_bytes(path.read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = create_model("ddamfn", weights="hf://someone/ddamfn/ckpt/best.pt", device="cpu")
    assert loaded.info.source == "hf://someone/ddamfn/ckpt/best.pt" and not loaded.info.untrained
    x = seeded_images(8, 4)
    with torch.no_grad():
        assert torch.equal(loaded.model(x)["va"], model(x)["va"])
