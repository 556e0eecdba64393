"""No leakage into the audit: an encoder whose checkpoint's training record includes audited videos is refused
in one line naming them (or, with --in-sample, used with every suggestion marked in-sample); the in-sample
test knows an upload trained through --uploads by its database key."""
import json

import pandas as pd
import pytest

from core.affwild2 import write_annotation
from core.labels import CHALLENGE_DIRS, SPLIT_DIRS
from core.models import create_model
from core.audit_sample import CLEAN
from core.review import IN_SAMPLE, trained_on
from core.weights import save_checkpoint
from training import config
from training.audit import audit
from training.uploads import KEYS_FILE, layout_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEY = "sha256:" + "ab12" * 16


def test_an_upload_trained_through_uploads_is_in_sample_by_its_database_key(tmp_path):
    root, name = tmp_path / "root", layout_name(KEY)
    labels = pd.DataFrame({"expression": pd.array([1, 2, 3], dtype="Int64")})
    write_annotation(labels, root / CHALLENGE_DIRS["expr"][0] / SPLIT_DIRS["train"] / f"{name}.txt", "expr")
    (root / KEYS_FILE).write_text(json.dumps({name: KEY}))
    record = {"training": {"config": {"root": str(root), "tasks": ["expr"]}}}
    assert trained_on(record, KEY) is True and trained_on(record, name) is True
    assert trained_on(record, "sha256:" + "cd34" * 16) is False


def checkpoint(path, root):
    """A DDAMFN checkpoint whose training record says it trained on `root`'s train split."""
    model = create_model("ddamfn", None, device="cpu").model
    return save_checkpoint(path, model, {"training": {"config": {"root": str(root), "tasks": ["va", "expr", "au"]}}})


def build(root, tmp_path, **extra):
    return config.build(config.AuditConfig, root=str(root), out=str(tmp_path / "out"), cache=str(tmp_path / "cache"),
                        folds=3, epochs=2, batch_size=32, corrections=False, device="cpu", workers=0,
                        progress=False, write_db=False, **extra)


def test_an_encoder_trained_on_audited_videos_is_refused_naming_them(affwild2_root, tmp_path):
    weights = checkpoint(tmp_path / "leaky.pt", affwild2_root)
    with pytest.raises(ValueError) as err:
        audit(build(affwild2_root, tmp_path, encoder=str(weights)))
    said = str(err.value)
    assert "\n" not in said and said.startswith(f"--encoder {weights} was trained on 4 of the audited videos "
                                                "(10-24-640x360, 13-30-960x540, 14-30-960x640_left, "
                                                "14-30-960x640_right)")
    assert not (tmp_path / "out" / "audit.json").exists()


def test_with_in_sample_every_suggestion_says_so(affwild2_root, tmp_path):
    weights = checkpoint(tmp_path / "leaky.pt", affwild2_root)
    summary = audit(build(affwild2_root, tmp_path, encoder=str(weights), in_sample=True))
    assert summary["encoder_trained_on_audited"] == ["10-24-640x360", "13-30-960x540", "14-30-960x640_left",
                                                     "14-30-960x640_right"]
    meta = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert meta["encoder"]["trained_on_audited"] == summary["encoder_trained_on_audited"]
    segments = pd.read_csv(tmp_path / "out" / "segments.csv")
    suggestions = segments[segments["kind"] != CLEAN]          # the random sample's clean stretches suggest nothing
    assert len(suggestions) and suggestions["detail"].str.endswith(IN_SAMPLE).all()


def test_an_encoder_trained_on_other_videos_is_used(affwild2_root, tmp_path):
    other = tmp_path / "other"
    labels = pd.DataFrame({"expression": pd.array([1, 2, 3], dtype="Int64")})
    write_annotation(labels, other / CHALLENGE_DIRS["expr"][0] / SPLIT_DIRS["train"] / "99-30-10x10.txt", "expr")
    summary = audit(build(affwild2_root, tmp_path, encoder=str(checkpoint(tmp_path / "other.pt", other))))
    assert summary["encoder_trained_on_audited"] == []


def test_encoder_clip_without_its_weights_is_refused_in_words(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import torch

    from training.audit import audit_encoder

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as err:
        audit_encoder("clip", torch.device("cpu"))
    said = str(err.value)
    assert said.startswith("--encoder clip: CLIP: no weights configured and the default cannot be had (")
    assert said.endswith("CLIP is random, untrained; use --encoder untrained offline")
