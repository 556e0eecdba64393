"""TemporalLSTM: faceless-frame handling, sliding-window video inference, trainability."""
import math

import numpy as np
import pytest
import torch

from core.models import create_model
from core.models.temporal import TemporalLSTM, fill_missing, window_starts


def test_fill_missing_interpolates_between_faces_and_ignores_what_faceless_frames_hold():
    seq = torch.tensor([0.0, 99, float("nan"), 3, 4, float("nan")]).view(6, 1).repeat(1, 2)
    mask = torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.bool)
    filled = fill_missing(seq, mask)
    torch.testing.assert_close(filled[:, 0], torch.tensor([0.0, 1, 2, 3, 4, 4]))
    torch.testing.assert_close(fill_missing(seq, mask, "zeros")[:, 0], torch.tensor([0.0, 0, 0, 3, 4, 0]))
    leading = fill_missing(seq, torch.tensor([0, 0, 0, 1, 0, 0], dtype=torch.bool))
    torch.testing.assert_close(leading[:, 0], torch.full((6,), 3.0))
    batch = fill_missing(seq.expand(2, 6, 2), torch.stack([mask, torch.zeros(6, dtype=torch.bool)]))
    torch.testing.assert_close(batch[0], filled)
    assert torch.equal(batch[1], torch.zeros(6, 2))                # no face at all: zeros, flag says so
    with pytest.raises(ValueError, match="fill mode"):
        fill_missing(seq, mask, "nearest")


def test_window_starts_cover_every_frame():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(3, 64, 32) == [0]
    for n, w, s in [(100, 16, 5), (64, 64, 32), (65, 64, 32), (7, 3, 3)]:
        covered = set()
        for start in window_starts(n, w, s):
            covered.update(range(start, min(start + w, n)))
        assert covered == set(range(n))


def test_mask_is_an_input_feature_and_nan_faceless_frames_stay_harmless():
    torch.manual_seed(0)
    model = TemporalLSTM(input_dim=16, hidden=8, layers=2).eval()
    seq = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.bool)
    out = model(seq, mask)
    assert {k: v.shape for k, v in out.items()} == {
        "va": (2, 12, 2), "expr": (2, 12, 8), "au": (2, 12, 12)}
    assert out["va"].abs().max() <= 1
    holed = mask.clone()
    holed[0, 4:8] = False
    seq_nan = seq.clone()
    seq_nan[0, 4:8] = float("nan")
    out_holed = model(seq_nan, holed)
    assert all(torch.isfinite(v).all() for v in out_holed.values())
    assert not torch.allclose(out_holed["va"][0, 4:], out["va"][0, 4:])    # the flag changes the output
    torch.testing.assert_close(out_holed["va"][1], out["va"][1])
    torch.testing.assert_close(model(seq), out)                             # mask=None means all faces
    with pytest.raises(ValueError, match="embeddings"):
        model(torch.randn(2, 12, 15))


def test_predict_video_averages_overlapping_windows():
    torch.manual_seed(1)
    model = TemporalLSTM(input_dim=6, hidden=5, layers=1, tasks=("va", "au")).eval()
    emb = torch.randn(10, 6)
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    pred = model.predict_video(emb.numpy(), mask.numpy(), window=4, stride=3, batch_size=2)
    assert set(pred) == {"va", "au"} and pred["va"].shape == (10, 2) and pred["au"].shape == (10, 12)
    sums, counts = torch.zeros(10, 2), torch.zeros(10, 1)
    with torch.no_grad():
        for start in (0, 3, 6):
            out = model(emb[None, start:start + 4], mask[None, start:start + 4])["va"][0]
            sums[start:start + 4] += out
            counts[start:start + 4] += 1
    torch.testing.assert_close(pred["va"], sums / counts)
    with torch.no_grad():                                        # one window covers a short video
        whole = model(emb[None], mask[None])
    torch.testing.assert_close(model.predict_video(emb, mask, window=64)["au"], whole["au"][0])
    assert model.predict_video(torch.zeros(0, 6))["va"].shape == (0, 2)


def test_registry_builds_lstms_for_ddamfn_and_clip_embeddings():
    ddamfn_lstm = create_model("ddamfn-lstm", device="cpu")
    assert ddamfn_lstm.model.input_dim == 512 and ddamfn_lstm.info.untrained
    clip_lstm = create_model("clip-lstm", device="cpu", input_dim=64, tasks=("expr",), hidden=32)
    pred = clip_lstm.model.predict_video(clip_lstm.preprocess(np.random.rand(30, 64)), window=8, stride=4)
    assert set(pred) == {"expr"} and pred["expr"].shape == (30, 8)
    assert clip_lstm.info.tasks == ("expr",) and clip_lstm.info.untrained_tasks == ("expr",)


def test_lstm_learns_a_temporal_signal_on_windows():
    """Valence follows a slow sine hidden in the embeddings; a few Adam steps on windows fit it."""
    torch.manual_seed(0)
    t = torch.arange(400, dtype=torch.float32)
    target = torch.sin(t / 15).unsqueeze(1).repeat(1, 2) * 0.8
    emb = torch.randn(400, 16) * 0.5
    emb[:, 0] += target[:, 0] * 3
    mask = torch.rand(400) > 0.2
    model = TemporalLSTM(input_dim=16, hidden=16, layers=1, tasks=("va",), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    starts = torch.arange(0, 400 - 32, 8)
    windows = starts.unsqueeze(1) + torch.arange(32)

    def loss_now():
        return torch.nn.functional.mse_loss(model(emb[windows], mask[windows])["va"], target[windows])

    before = loss_now().item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_now()
        loss.backward()
        opt.step()
    after = loss_now().item()
    assert math.isfinite(after) and after < 0.3 * before
