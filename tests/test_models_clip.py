"""CLIP: prompt sets, zero-shot with cached text embeddings, weights, and the trainable adapter.

A tiny open_clip architecture (small ViT, one-layer text tower, the real tokenizer) is registered with
open_clip.add_model_config so that everything runs in seconds on a CPU.
"""
import json
import time

import cv2
import numpy as np
import pytest
import torch

from core.labels import EXPRESSIONS
from core.models import create_model
from core.models.clip import (DEFAULT_PROMPT_SETS, ClipAdapter, ClipExpression, PromptSet, contrastive_loss,
                              prompt_set)
from core.models.temporal import TemporalLSTM
from core.weights import WeightsError, save_checkpoint

TINY = "AffectLens-Tiny-ViT"


@pytest.fixture(scope="module", autouse=True)
def tiny_open_clip(tmp_path_factory):
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("open_clip") / f"{TINY}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)


@pytest.fixture(scope="module")
def face_crops(media_dir):
    """Two real face photos' central regions as uint8 RGB (the pipeline hands over such crops)."""
    img = cv2.cvtColor(cv2.imread(str(media_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    side = min(h, w)
    crop = img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
    return np.stack([cv2.resize(crop, (224, 224)), cv2.resize(crop[::-1], (224, 224))])


def test_prompt_sets_validate_and_hash_by_content():
    for name, ps in DEFAULT_PROMPT_SETS.items():
        assert ps.name == name and list(ps.classes) == list(EXPRESSIONS)
        assert all(len(p) >= 2 for p in ps.prompts())
    basic = DEFAULT_PROMPT_SETS["basic"]
    assert basic.prompts()[EXPRESSIONS.index("Happiness")][0] == "a photo of a happy face."
    renamed = PromptSet("mine", list(basic.templates), {c: list(v) for c, v in basic.classes.items()})
    assert renamed.key == basic.key and prompt_set(renamed.to_dict()).key == basic.key
    other = PromptSet("x", ["{} face"], {c: [c.lower()] for c in EXPRESSIONS})
    assert other.key != basic.key
    with pytest.raises(ValueError, match="exactly"):
        PromptSet("x", ["{} face"], {"Happiness": ["happy"]})
    with pytest.raises(ValueError, match="one {}"):
        PromptSet("x", ["a face"], {c: [c] for c in EXPRESSIONS})
    with pytest.raises(ValueError, match="letters"):
        PromptSet("a b", ["{}"], {c: [c] for c in EXPRESSIONS})
    with pytest.raises(ValueError, match="unknown prompt set"):
        prompt_set("nope")


def test_zero_shot_on_real_faces_with_cached_text_embeddings(face_crops):
    torch.manual_seed(0)
    clip = ClipExpression(TINY)
    assert clip.untrained and clip.embed_dim == 32
    x = clip.preprocess(face_crops)
    assert x.shape == (2, 3, 64, 64)
    emb = clip.encode_images(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))

    calls = []
    encode_text = clip.model.encode_text
    clip.model.encode_text = lambda tokens: calls.append(len(tokens)) or encode_text(tokens)
    text = clip.text_embeddings("emotion")
    assert text.shape == (8, 32) and len(calls) == 8
    assert torch.equal(clip.text_embeddings(DEFAULT_PROMPT_SETS["emotion"]), text) and len(calls) == 8
    probs = clip.zero_shot(emb, "emotion")
    assert probs.shape == (2, 8)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    out = clip(x)
    torch.testing.assert_close(out["expr"].softmax(dim=1), clip.zero_shot(emb, "basic"))

    other = ClipExpression(TINY)                  # other random weights: never the first one's cache
    assert not torch.allclose(other.text_embeddings("emotion"), text)


def test_random_clip_through_the_registry_is_untrained(face_crops):
    loaded = create_model("clip", device="cpu", model_name=TINY, prompts="facs")
    assert loaded.info.untrained and loaded.info.tasks == ("expr",) and loaded.info.untrained_tasks == ("expr",)
    out = loaded.model(loaded.preprocess(face_crops))
    assert out["embedding"].shape == (2, 32) and out["expr"].shape == (2, 8)


def test_open_clip_weight_file_save_reload_gives_identical_outputs(tmp_path, face_crops):
    torch.manual_seed(1)
    original = ClipExpression(TINY)
    path = tmp_path / "tiny_clip.pt"
    torch.save(original.model.state_dict(), path)
    loaded = create_model("clip", weights=str(path), device="cpu", model_name=TINY)
    assert not loaded.info.untrained and loaded.info.metadata["open_clip"]["pretrained"] == str(path)
    x = original.preprocess(face_crops)
    a, b = original(x), loaded.model(loaded.preprocess(face_crops))
    torch.testing.assert_close(a["embedding"], b["embedding"])
    torch.testing.assert_close(a["expr"], b["expr"])


def test_pretrained_tags_fail_fast_offline_with_clear_messages(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"open_clip:ViT-B-32:openai: not in the local Hugging Face cache "
                                           r"and the Hub is offline"):
        create_model("clip", weights="openai", device="cpu")
    with pytest.raises(WeightsError, match="has no pretrained tag 'nope' for ViT-B-32"):
        create_model("clip", weights="ViT-B-32:nope", device="cpu")
    with pytest.raises(WeightsError, match="unknown open_clip model 'ViT-Q-99'"):
        create_model("clip", weights="open_clip:ViT-Q-99:openai", device="cpu")
    assert time.monotonic() - start < 5


def test_contrastive_loss_definition():
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]), dim=1)
    cls = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    scale = 10.0
    logits = scale * img @ cls.T
    i2t = torch.nn.functional.cross_entropy(logits, labels)
    per_prompt = scale * cls[labels] @ img.T
    target = torch.tensor([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])
    t2i = -(target * per_prompt.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(contrastive_loss(img, cls, labels, scale), (i2t + t2i) / 2)
    assert contrastive_loss(img, cls, labels, scale) < contrastive_loss(img, cls, 1 - labels, scale)


def test_adapter_starts_at_zero_shot_and_learns_with_frozen_encoders(face_crops):
    torch.manual_seed(2)
    adapter = ClipAdapter(TINY, prompts="basic")
    assert adapter.untrained and not any(p.requires_grad for p in adapter.clip.parameters())
    x = adapter.preprocess(face_crops)
    with torch.no_grad():
        torch.testing.assert_close(adapter(x)["expr"], adapter.clip(x)["expr"])   # zero-init = zero-shot

    # Synthetic "CLIP embeddings": each expression is a direction plus noise; the adapter must learn it.
    gen = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(8, 32, generator=gen), dim=1)
    labels = torch.randint(0, 8, (256,), generator=gen)
    emb = torch.nn.functional.normalize(centres[labels] + 0.3 * torch.randn(256, 32, generator=gen), dim=1)
    clip_before = {k: v.clone() for k, v in adapter.clip.state_dict().items()}
    opt = torch.optim.Adam([p for p in adapter.parameters() if p.requires_grad], lr=1e-2)
    adapter.train()
    assert not adapter.clip.model.training                                        # frozen CLIP stays in eval

    def accuracy():
        with torch.no_grad():
            return (adapter.forward_embeddings(emb)["expr"].argmax(1) == labels).float().mean().item()

    before = accuracy()
    for _ in range(80):
        opt.zero_grad()
        adapter.loss(emb, labels).backward()
        opt.step()
    assert accuracy() > max(0.9, before + 0.3)
    assert all(torch.equal(v, adapter.clip.state_dict()[k]) for k, v in clip_before.items())


def test_adapter_checkpoint_save_reload_and_clip_lstm(tmp_path, face_crops):
    torch.manual_seed(3)
    random_clip = ClipAdapter(TINY, prompts="emotion")
    with torch.no_grad():
        random_clip.class_context.normal_()
        random_clip.up.weight.normal_()
    path = save_checkpoint(tmp_path / "adapter.pt", random_clip, {"metrics": {"p_expr": 0.2}})
    saved = torch.load(path, weights_only=True)["model_state_dict"]
    assert any(k.startswith("clip.") for k in saved)                              # random encoders travel along

    for name in ("clip", "clip-adapter"):
        loaded = create_model(name, weights=str(path), device="cpu")
        assert isinstance(loaded.model, ClipAdapter) and loaded.info.metadata["metrics"] == {"p_expr": 0.2}
        random_clip.eval()
        with torch.no_grad():
            a = random_clip(random_clip.preprocess(face_crops))
            b = loaded.model(loaded.preprocess(face_crops))
        torch.testing.assert_close(a["expr"], b["expr"])
        torch.testing.assert_close(a["embedding"], b["embedding"])

    # With CLIP weights from a file (as with a pretrained tag) only the adapter is stored.
    clip_file = tmp_path / "clip.pt"
    torch.save(random_clip.clip.model.state_dict(), clip_file)
    on_file = ClipAdapter(TINY, pretrained=str(clip_file), prompts="emotion")
    assert not on_file.untrained
    small = save_checkpoint(tmp_path / "adapter_small.pt", on_file)
    assert not any(k.startswith("clip.") for k in torch.load(small, weights_only=True)["model_state_dict"])
    assert not create_model("clip-prompted", weights=str(small), device="cpu").info.untrained

    # CLIP+LSTM: the adapted embeddings are the LSTM's input.
    lstm = TemporalLSTM(input_dim=on_file.clip.embed_dim, hidden=8, tasks=("expr",)).eval()
    with torch.no_grad():
        seq = on_file(on_file.preprocess(np.concatenate([face_crops] * 5)))["embedding"]
    pred = lstm.predict_video(seq, np.array([1, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool), window=4, stride=2)
    assert pred["expr"].shape == (10, 8)

    lstm_path = save_checkpoint(tmp_path / "lstm.pt", lstm)
    with pytest.raises(WeightsError, match="is a lstm checkpoint, not CLIP weights"):
        create_model("clip", weights=str(lstm_path), device="cpu")


def test_pretrained_tag_resolves_from_the_hub_cache_offline(tmp_path, monkeypatch):
    """The open_clip tag "openai" of ViT-B-32 lives on the Hub as timm/vit_base_patch32_clip_224.openai;
    with that file in the cache (here a broken one) nothing goes to the network."""
    import huggingface_hub.constants

    from core.weights import resolve

    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    commit = "f" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "open_clip_pytorch_model.bin").write_bytes(b"not weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = resolve("ViT-B-32:openai")
    assert src.path.name == "open_clip_pytorch_model.bin" and src.tag_cfg["quick_gelu"] is True
    with pytest.raises(WeightsError, match="open_clip:ViT-B-32:openai: cannot build the model"):
        create_model("clip", weights="openai", device="cpu")


def test_open_clip_name_without_tag_is_random():
    loaded = create_model("clip", weights=f"open_clip:{TINY}", device="cpu")
    assert loaded.info.untrained and loaded.info.untrained_tasks == ("expr",)
