"""DDAMFN: upstream-compatible parameters and outputs, task heads, attention loss, preprocessing."""
import numpy as np
import pytest
import torch

from core.labels import AFFECTNET8, AFFECTNET8_TO_AFFWILD2, EXPRESSIONS
from core.models import create_model
from core.models.ddamfn import DDAMFN, DDAMNet, attention_loss, fc_to_affwild2, preprocess
from core.weights import WeightsError
from models_helpers import calibrate_bn, fill_state, seeded_images, upstream_reference, upstream_state


@pytest.fixture(scope="module")
def reference():
    return upstream_reference()


def test_parameter_names_shapes_and_order_match_upstream(reference):
    ours = [[k, list(v.shape)] for k, v in DDAMNet(num_class=8, num_head=2).state_dict().items()]
    assert ours == reference["state"]
    assert len(ours) == 1190


def test_forward_reproduces_upstream_logits(reference):
    ref = reference["reference"]
    net = DDAMNet(num_class=8, num_head=2)
    net.load_state_dict(fill_state(reference["state"], ref["state_seed"]), strict=True)
    calibrate_bn(net, seeded_images(ref["calibration_seed"], ref["calibration_batch"]))
    with torch.no_grad():
        logits, feats, heads = net(seeded_images(ref["input_seed"], ref["input_batch"]))
    expected = torch.tensor(ref["fc_logits"])
    assert expected.std(0).mean() > 0.5           # the reference depends on the input, so this can fail
    torch.testing.assert_close(logits, expected, atol=2e-4, rtol=1e-4)
    assert feats.shape == (4, 512, 7, 7) and len(heads) == 2
    assert feats.mean().item() == pytest.approx(ref["feature_map_mean"], abs=1e-4)
    assert [h.mean().item() for h in heads] == pytest.approx(ref["attention_means"], abs=1e-4)


@pytest.mark.parametrize("module_prefix", [False, True])
def test_upstream_affectnet8_checkpoint_loads_strictly_and_maps_expressions(tmp_path, module_prefix):
    state = upstream_state(module_prefix)
    path = tmp_path / "affecnet8_epoch25.pth"
    torch.save({"iter": 25, "model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []}},
               path)
    loaded = create_model("ddamfn", weights=str(path), device="cpu")
    assert loaded.info.tasks == ("va", "expr", "au") and loaded.info.untrained_tasks == ("va", "au")
    assert "Other has no source" in loaded.info.metadata["expr_source"]
    assert loaded.info.metadata["iter"] == 25

    plain = DDAMNet(num_class=8)
    plain.load_state_dict(upstream_state(False), strict=True)
    plain.eval()
    x = seeded_images(3, 4)
    with torch.no_grad():
        out = loaded.model(x)
        logits, _, _ = plain(x)
    torch.testing.assert_close(out["fc"], logits)
    for an, aw in AFFECTNET8_TO_AFFWILD2.items():
        if aw is not None:
            torch.testing.assert_close(out["expr"][:, aw], logits[:, an])
    other = EXPRESSIONS.index("Other")
    torch.testing.assert_close(out["expr"][:, other], logits.min(dim=1).values)
    assert set(out) == {"embedding", "attention", "fc", "va", "expr", "au"}


def test_upstream_checkpoint_with_all_tasks_says_which_heads_are_random(tmp_path):
    path = tmp_path / "up.pth"
    torch.save({"model_state_dict": upstream_state()}, path)
    loaded = create_model("ddamfn", weights=str(path), device="cpu", tasks=("va", "expr", "au"))
    assert loaded.info.untrained is True and loaded.info.untrained_tasks == ("va", "au")


def test_seven_class_checkpoint_maps_without_contempt(tmp_path):
    keys = [[k, list(v.shape)] for k, v in DDAMNet(num_class=7).state_dict().items()]
    path = tmp_path / "rafdb.pth"
    torch.save({"iter": 1, "model_state_dict": fill_state(keys)}, path)
    loaded = create_model("ddamfn", weights=str(path), device="cpu")
    with torch.no_grad():
        out = loaded.model(seeded_images(4, 4))
    assert out["fc"].shape == (4, 7) and out["expr"].shape == (4, 8)
    assert torch.equal(out["expr"][:, EXPRESSIONS.index("Anger")], out["fc"][:, AFFECTNET8.index("Angry")])


def test_upstream_checkpoint_missing_a_parameter_is_refused(tmp_path):
    state = upstream_state()
    del state["cat_head1.CoordAtt.bn1.weight"]
    path = tmp_path / "broken.pth"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(WeightsError, match=r"broken\.pth does not fit DDAMNet: missing 1 \(cat_head1"):
        create_model("ddamfn", weights=str(path), device="cpu")


def test_task_heads_embedding_and_attention():
    torch.manual_seed(0)
    model = DDAMFN(tasks=("va", "expr", "au")).eval()
    x = seeded_images(5, 4)
    with torch.no_grad():
        out = model(x)
        emb = model.embed(x)
        heads = model.heads(emb)
    assert out["embedding"].shape == (4, 512) and out["attention"].shape == (4, 2, 512, 7, 7)
    assert out["va"].shape == (4, 2) and out["expr"].shape == (4, 8) and out["au"].shape == (4, 12)
    assert out["fc"].shape == (4, 7)
    assert out["va"].abs().max() <= 1.0
    assert ((out["attention"] > 0) & (out["attention"] < 1)).all()
    torch.testing.assert_close(emb, out["embedding"])
    for k in ("va", "expr", "au", "fc"):
        torch.testing.assert_close(heads[k], out[k])

    single = DDAMFN(tasks="au").eval()
    with torch.no_grad():
        assert set(single(x)) == {"embedding", "attention", "fc", "au"}
    with pytest.raises(ValueError, match="tasks"):
        DDAMFN(tasks=("valence",))


def test_fc_to_affwild2_order():
    logits = torch.arange(8.0).unsqueeze(0)          # AffectNet index i scores i
    mapped = fc_to_affwild2(logits)[0].tolist()
    assert mapped[EXPRESSIONS.index("Happiness")] == AFFECTNET8.index("Happy")
    assert mapped[EXPRESSIONS.index("Anger")] == AFFECTNET8.index("Angry")
    assert mapped[EXPRESSIONS.index("Other")] == 0.0     # row minimum: no source class


def test_attention_loss_matches_definition():
    a = torch.zeros(2, 2, 4, 7, 7)
    a[:, 1] = 1.0
    assert attention_loss(a).item() == pytest.approx(1.0)            # P=1 pair, MSE=1
    b = torch.stack([torch.zeros(2, 4), torch.ones(2, 4), 3 * torch.ones(2, 4)], dim=1)
    # pairs: (0,1) mse 1, (0,2) mse 9, (1,2) mse 4 -> 3 / 14
    assert attention_loss(b).item() == pytest.approx(3 / 14)
    assert attention_loss(torch.rand(2, 1, 4)).item() == 0.0
    same = torch.rand(2, 2, 3).requires_grad_()
    assert attention_loss(same[:, [0, 0]]).item() > 1e10              # identical heads are punished
    out = DDAMFN(tasks="va")(seeded_images(6, 4))
    attention_loss(out["attention"]).backward()                       # differentiable through the heads


def test_preprocess_matches_upstream_normalisation():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    x = preprocess(frames)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(preprocess(torch.from_numpy(frames)), expected)
    torch.testing.assert_close(preprocess(list(frames)), expected)
    torch.testing.assert_close(preprocess(frames[0]), expected[:1])
    big = preprocess(rng.integers(0, 256, size=(2, 224, 200, 3), dtype=np.uint8))
    assert big.shape == (2, 3, 112, 112)
    flat = np.full((1, 224, 224, 3), 200, np.uint8)               # resizing keeps a flat image flat
    torch.testing.assert_close(preprocess(flat), ((torch.full((1, 3, 112, 112), 200 / 255) - mean) / std))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(frames.astype(np.float32))
    with pytest.raises(ValueError, match="RGB"):
        preprocess(frames[..., :2])
