"""Temporal heads: an LSTM over per-frame embeddings (DDAMFN 512-d or CLIP) with a head per task.

Trained on fixed-length windows; `predict_video` runs a whole video as overlapping windows and averages
the overlaps, giving one output per frame. Frames without a face are never passed as silent zeros: their
embedding is filled (interpolated from the nearest face frames, or zeros) and a face/no-face flag is
appended to every input vector, so the network always knows which frames were observed.
"""
from __future__ import annotations

import torch
from torch import nn

from core.labels import TASKS
from core.models.heads import TaskHeads, check_tasks
from core.registry import register_architecture
from core.weights import check_loaded, load_checkpoint, load_state

FILL_MODES = ("interpolate", "zeros")
LSTM_WINDOW, LSTM_STRIDE = 64, 32   # frames per window and between window starts (training and prediction)


def fill_missing(seq: torch.Tensor, mask: torch.Tensor, mode: str = "interpolate") -> torch.Tensor:
    """Replace the embeddings of faceless frames (mask False) along the time axis.

    seq (..., T, D), mask (..., T) bool. "interpolate": linear between the nearest face frames before and
    after, the nearest one at the ends, zeros when a sequence has no face at all. "zeros": zeros.
    Whatever faceless frames held before (zeros, NaN) does not leak into the result.
    """
    if mode not in FILL_MODES:
        raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}")
    mask = mask.bool()
    keep = lambda m, v: torch.where(m.unsqueeze(-1), v, torch.zeros_like(v))            # noqa: E731
    if mode == "zeros" or bool(mask.all()):
        return keep(mask, seq)
    t_len = seq.shape[-2]
    t = torch.arange(t_len, device=seq.device).expand_as(mask)
    prev = torch.where(mask, t, torch.full_like(t, -1)).cummax(dim=-1).values          # last face <= t
    nxt = torch.where(mask, t, torch.full_like(t, t_len)).flip(-1).cummin(dim=-1).values.flip(-1)  # first >= t
    has_prev, has_next = prev >= 0, nxt < t_len
    span = (nxt - prev).clamp(min=1).to(seq.dtype)
    w_next = torch.where(has_prev & has_next, (t - prev).to(seq.dtype) / span,
                         has_next.to(seq.dtype))                                         # weight of the next face
    w_prev = has_prev.to(seq.dtype) * (1 - w_next)
    gather = lambda i: torch.gather(seq, -2, i.clamp(0, t_len - 1).unsqueeze(-1).expand_as(seq))  # noqa: E731
    return (keep(has_prev, gather(prev)) * w_prev.unsqueeze(-1)
            + keep(has_next, gather(nxt)) * w_next.unsqueeze(-1))


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Start frames of windows of `window` frames every `stride` frames, the last one flush with the end,
    so that every frame is covered (one shorter window when n < window)."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be positive")
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


class TemporalLSTM(nn.Module):
    """LSTM over embedding sequences with the ABAW task heads at every step.

    forward(seq (B,T,D), mask (B,T) bool or None) -> {task: (B,T,dim)} with the same keys, ranges and
    label orders as DDAMFN (va in [-1,1], expr/au logits). Input: LayerNorm(embedding) with faceless
    frames filled per `fill`, plus the mask as one extra feature; so DDAMFN and CLIP embeddings, whose
    scales differ, both work.
    """

    ARCH = "lstm"

    def __init__(self, input_dim: int = 512, hidden: int = 256, layers: int = 2, tasks=TASKS,
                 dropout: float = 0.1, bidirectional: bool = False, fill: str = "interpolate"):
        super().__init__()
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
        self.tasks = check_tasks(tasks)
        self.fill = fill
        self.input_dim, self.hidden, self.layers = input_dim, hidden, layers
        self.dropout_p, self.bidirectional = dropout, bidirectional
        self.input_norm = nn.LayerNorm(input_dim)
        self.lstm = nn.LSTM(input_dim + 1, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.task_heads = TaskHeads(hidden * (2 if bidirectional else 1), self.tasks)

    @property
    def config(self) -> dict:
        return {"input_dim": self.input_dim, "hidden": self.hidden, "layers": self.layers,
                "tasks": list(self.tasks), "dropout": self.dropout_p, "bidirectional": self.bidirectional,
                "fill": self.fill}

    def forward(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if seq.ndim != 3 or seq.shape[-1] != self.input_dim:
            raise ValueError(f"expected (B, T, {self.input_dim}) embeddings, got {tuple(seq.shape)}")
        if mask is None:
            mask = torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device)
        x = self.input_norm(seq)
        x = fill_missing(x, mask, self.fill)
        x = torch.cat([x, mask.unsqueeze(-1).to(x.dtype)], dim=-1)                      # (B, T, D+1)
        h, _ = self.lstm(x)                                                              # (B, T, H)
        return self.task_heads(self.dropout(h))

    @torch.no_grad()
    def predict_video(self, emb, mask=None, window: int = 64, stride: int = 32,
                      batch_size: int = 64) -> dict[str, torch.Tensor]:
        """One output per frame for a whole video: emb (N, D), mask (N,) -> {task: (N, dim)} float32 CPU.

        Windows of `window` frames every `stride` frames are run in batches; where windows overlap the
        outputs (tanh'd va, logits for expr/au) are averaged. Call `.eval()` first.
        """
        device = next(self.parameters()).device
        emb = torch.as_tensor(emb, dtype=torch.float32).to(device)
        n = emb.shape[0]
        mask = (torch.ones(n, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()).to(device)
        if n == 0:
            return {t: torch.zeros(0, dim) for t, dim in self._dims().items()}
        starts = window_starts(n, window, stride)
        length = min(window, n)
        sums = {t: torch.zeros(n, dim, device=device) for t, dim in self._dims().items()}
        counts = torch.zeros(n, 1, device=device)
        for i in range(0, len(starts), batch_size):
            chunk = starts[i:i + batch_size]
            idx = torch.tensor(chunk, device=device).unsqueeze(1) + torch.arange(length, device=device)
            out = self(emb[idx], mask[idx])                                              # (W, L, dim)
            flat = idx.reshape(-1)
            for t, v in out.items():
                sums[t].index_add_(0, flat, v.float().reshape(flat.numel(), -1))
            counts.index_add_(0, flat, torch.ones(flat.numel(), 1, device=device))
        return {t: (s / counts).cpu() for t, s in sums.items()}

    def _dims(self) -> dict[str, int]:
        return {t: layer.out_features for t, layer in self.task_heads.layers.items()}


@register_architecture("lstm", reads_embeddings=True, aliases=("ddamfn-lstm", "clip-lstm"))
def build_lstm(weights, tasks=None, **options):
    if weights is None:
        model = TemporalLSTM(tasks=tasks or TASKS, **options)
        return model, "random", model.tasks, {}
    ckpt = load_checkpoint(weights, architecture="lstm")
    check_loaded(ckpt, tasks, options)
    model = TemporalLSTM(**ckpt.config)
    load_state(model, ckpt.state_dict, ckpt.source)
    return model, ckpt.source, (), ckpt.metadata
