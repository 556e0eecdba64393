"""core/device: device choice and batched inference; the GPU's fp16 autocast path against fp32 on CPU."""
import cv2
import numpy as np
import pytest
import torch

from core.device import autocast, inference_autocast, pick_device, run_batched
from core.models.ddamfn import DDAMFN, preprocess
from models_helpers import calibrate_bn, fill_state


def _center_crops(path, count, step):
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            h, w = frame.shape[:2]
            s = min(h, w)
            square = frame[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
            out.append(cv2.resize(cv2.cvtColor(square, cv2.COLOR_BGR2RGB), (112, 112)))
        i += 1
    cap.release()
    return np.stack(out)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
    with autocast(torch.device("cpu")), inference_autocast(torch.device("cpu")):   # off on CPU by default
        assert not torch.is_autocast_enabled("cpu")


def test_autocast_matches_fp32_within_the_stated_tolerances(media_dir):
    """Random DDAMFN whose BatchNorm statistics come from real frames, run on other real frames."""
    torch.manual_seed(0)
    model = DDAMFN()
    model.load_state_dict(fill_state([(k, list(v.shape)) for k, v in model.state_dict().items()], seed=0))
    calibration = np.concatenate([_center_crops(media_dir / "single_face.mp4", 8, 9),
                                  _center_crops(media_dir / "no_face.mp4", 8, 11)])
    calibrate_bn(model, preprocess(calibration))
    x = preprocess(_center_crops(media_dir / "WolfgangLanger_Pexels.mp4", 4, 110))  # fp16 is slow on CPU
    exact = run_batched(model, x, batch_size=4, amp=False)
    fast = run_batched(model, x, batch_size=2, amp=True)
    assert set(fast) == set(exact) and all(v.dtype == torch.float32 for v in fast.values())
    cosine = torch.nn.functional.cosine_similarity(fast["embedding"], exact["embedding"])
    assert cosine.min() >= 0.999
    for key in exact:
        assert (fast[key] - exact[key]).abs().max() <= 0.03 * exact[key].abs().max(), key
    assert not torch.equal(fast["embedding"], exact["embedding"])            # autocast really ran in fp16

    with torch.no_grad(), autocast(torch.device("cpu"), True):                # bf16, the training flavour
        bf16 = model(x)
    assert bf16["embedding"].dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(bf16["embedding"].float(), exact["embedding"]).min() >= 0.99


def test_run_batched_concatenates_and_recomputes_overflowing_batches_in_fp32():
    torch.manual_seed(0)
    model = DDAMFN(tasks="va").eval()
    x = torch.randn(8, 3, 112, 112)
    with torch.no_grad():
        whole = model(x)
    parts = run_batched(model, x, batch_size=4, amp=False)
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], atol=1e-5, rtol=1e-4)

    big = torch.nn.Linear(64, 2, bias=False)
    torch.nn.init.constant_(big.weight, 1e3)
    x = torch.full((4, 64), 10.0)                   # 64 * 1e4 = 640000: beyond fp16's 65504
    with torch.no_grad(), inference_autocast(torch.device("cpu"), True):
        assert not torch.isfinite(big(x)).all()
    out = run_batched(big, x, batch_size=2, amp=True)
    assert torch.isfinite(out).all() and out[0, 0].item() == pytest.approx(640000.0)
    with pytest.raises(ValueError, match="at least one"):
        run_batched(big, torch.zeros(0, 64))
